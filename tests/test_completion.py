"""Shell completion through click's own `_REID_COMPLETE`, as the README documents it."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys


def _complete(words: str, shell: str = "bash") -> subprocess.CompletedProcess:
    env = {**os.environ, "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - 1),
           "_REID_COMPLETE": f"{shell}_complete"}
    return subprocess.run([sys.executable, "-c", "from reidtools.commands import main; main()"], env=env,
                          capture_output=True, text=True, timeout=120)


def test_bash_completes_commands_options_and_choices():
    res = _complete("reid ma")
    assert res.returncode == 0 and "plain,mask" in res.stdout.splitlines(), res.stdout + res.stderr
    assert "plain,--dilate" in _complete("reid mask --dil").stdout.splitlines()
    choices = set(_complete("reid mask --engine s").stdout.splitlines())
    assert {"plain,schp-onnx", "plain,segformer"} <= choices


def test_readme_documents_the_completion_scripts_click_generates():
    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    for shell in ("bash", "zsh", "fish"):
        assert f"_REID_COMPLETE={shell}_source reid" in readme
        env = {**os.environ, "_REID_COMPLETE": f"{shell}_source"}
        res = subprocess.run([sys.executable, "-c", "from reidtools.commands import main; main()"], env=env,
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0 and "_REID_COMPLETE" in res.stdout
