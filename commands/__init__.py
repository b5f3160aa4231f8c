"""The `reid` command line: a lazily loading click group.

Each subcommand lives in its own module here (`reidtools.commands.<name>`, defining `cli`) and is
imported only when it runs, so `reid --help` and `reid CMD --help` never import torch. A command
listed in COMMANDS whose module is not installed is simply absent.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys

import click

from reidtools import __version__

# name -> one-line help shown by `reid --help` (a test checks it matches each command's own help)
COMMANDS: dict[str, str] = {
    "pack": "Convert a dataset folder in its published layout into shards.",
    "synth": "Render the built-in synthetic clothes-changing ReID dataset.",
    "stats": "Count samples per split, identity, camera, clothes and modality.",
    "show": "Draw a contact sheet of samples, with masks and generated variants.",
    "mask": "Write clothing masks and human parsing maps.",
    "pose": "Write body keypoints into the metadata.",
    "filter": "Keep the samples that pass the selection rules.",
    "caption": "Describe each person's clothes and summarise prompts per clothes id.",
    "inpaint": "Repaint the clothing region K times with a diffusion inpainting model.",
    "finetune": "Fine-tune an inpainting pipeline on masked images and their clothing prompts.",
    "discriminator": "Train DLCR's latent discriminator for guided inpainting.",
    "tryoff": "Extract flat garment images from people (a garment catalogue).",
    "tryon": "Dress people in catalogue garments (shared clothes ids across identities).",
    "invert": "Learn identity tokens and a LoRA (DiVE), then sample new images.",
    "posegen": "Re-render identities in new poses and viewpoints (Pose-dIVE).",
    "train": "Train a ReID model on real and generated shards.",
    "eval": "Evaluate a ReID model or saved features under a benchmark protocol.",
    "refine": "Refine query predictions with test-time query variants (DLCR).",
    "export": "Export a ReID model to ONNX, with its preprocessing in the metadata.",
}


def module_name(name: str) -> str:
    return f"reidtools.commands.{name.replace('-', '_')}"


def available(name: str) -> bool:
    return importlib.util.find_spec(module_name(name)) is not None


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [n for n in COMMANDS if available(n)]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS or not available(name):
            return None
        return importlib.import_module(module_name(name)).cli

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(n, COMMANDS[n]) for n in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    # imported here: the report imports torch and onnxruntime to list devices and providers
    from reidtools.envinfo import report

    click.echo("\n".join(report()))
    ctx.exit()


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_version,
              help=f"Versions (reidtools {__version__}, python, torch, diffusers, transformers, onnxruntime and "
                   "its build) and the CUDA devices and ONNX providers seen, for bug reports.")
def cli() -> None:
    """Composable tools for diffusion-based data expansion in person re-identification.

    Every command reads and writes WebDataset tar shards: chain them in pipes (`-` is stdin/stdout),
    Makefiles and SLURM array jobs. `reid CMD --help` for each command; `man reid-CMD` for details.
    """


def main(argv: list[str] | None = None) -> None:
    from reidtools.commands._options import run_cli

    sys.exit(run_cli(cli, argv))
