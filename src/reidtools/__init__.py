"""reidtools: diffusion-based data expansion for person re-identification, as composable tools.

The library holds every algorithm; the `reid` command line lives in `reidtools.commands`.
"""

__version__ = "0.1.0"
