# `python -m reidtools ...` and `accelerate launch -m reidtools ...` run the same CLI as `reid`.
from reidtools.commands import main

main()
