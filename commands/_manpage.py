"""Roff man pages generated from the CLI itself: `python -m reidtools.commands._manpage man/`.

We render pages ourselves instead of using click-man because click-man walks `group.commands`,
which is empty for our lazily loaded group; a test regenerates the pages and fails when man/ is stale.
"""

from __future__ import annotations

import os
import sys

import click

from reidtools import __version__


def _esc(text: str) -> str:
    text = text.replace("\\", "\\e").replace("-", "\\-")
    lines = []
    for line in text.splitlines():
        lines.append("\\&" + line if line.startswith((".", "'")) else line)
    return "\n".join(lines)


def _paragraphs(text: str) -> str:
    out = []
    for para in click.unstyle(text or "").strip().split("\n\n"):
        lines = [ln.strip() for ln in para.splitlines()]
        if para.startswith("\b"):  # click's no-rewrap marker: keep line breaks
            out.append(".nf\n" + _esc("\n".join(ln for ln in lines if ln != "\b")) + "\n.fi")
        else:
            out.append(_esc(" ".join(ln for ln in lines if ln)))
    return "\n.PP\n".join(p for p in out if p)


def render(cmd: click.Command, path: list[str]) -> str:
    """One page for the command reached by `path` (e.g. ['reid', 'invert', 'fit'])."""
    ctx = click.Context(cmd, info_name=" ".join(path), **cmd.context_settings)
    title = "-".join(path)
    lines = [f'.TH "{title.upper()}" "1" "" "reidtools {__version__}" "reid manual"',
             ".SH NAME", f"{_esc(title)} \\- {_esc(cmd.get_short_help_str(limit=200))}",
             ".SH SYNOPSIS", f".B {_esc(' '.join(path))}", _esc(" ".join(cmd.collect_usage_pieces(ctx)))]
    if cmd.help:
        lines += [".SH DESCRIPTION", _paragraphs(cmd.help)]
    records = [p.get_help_record(ctx) for p in cmd.get_params(ctx)]
    records = [r for r in records if r]
    if records:
        lines.append(".SH OPTIONS")
        for opts, help_text in records:
            lines += [".TP", f"\\fB{_esc(opts)}\\fR", _esc(" ".join(help_text.split()))]
    subs = cmd.list_commands(ctx) if isinstance(cmd, click.Group) else []
    if subs:
        lines.append(".SH COMMANDS")
        for name in subs:
            sub = cmd.get_command(ctx, name)
            lines += [".TP", f"\\fB{_esc(name)}\\fR", _esc(sub.get_short_help_str(limit=200))]
        lines += [".SH SEE ALSO", ", ".join(f"\\fB{'-'.join(path + [n])}\\fR(1)" for n in subs)]
    elif len(path) > 1:
        lines += [".SH SEE ALSO", "\\fBreid\\fR(1)"]
    return "\n".join(lines) + "\n"


def pages() -> dict[str, str]:
    """file name -> page text, for `reid` and every command (and sub-command) it can load."""
    from reidtools.commands import cli

    out: dict[str, str] = {}

    def walk(cmd: click.Command, path: list[str]) -> None:
        out["-".join(path) + ".1"] = render(cmd, path)
        if isinstance(cmd, click.Group):
            ctx = click.Context(cmd, info_name=path[-1], **cmd.context_settings)
            for name in cmd.list_commands(ctx):
                walk(cmd.get_command(ctx, name), path + [name])

    walk(cli, ["reid"])
    return out


def write(outdir: str) -> list[str]:
    os.makedirs(outdir, exist_ok=True)
    wanted = pages()
    for name in os.listdir(outdir):
        if name.endswith(".1") and name not in wanted:
            os.remove(os.path.join(outdir, name))
    for name, text in wanted.items():
        with open(os.path.join(outdir, name), "w", encoding="utf-8") as fh:
            fh.write(text)
    return sorted(wanted)


if __name__ == "__main__":
    for page in write(sys.argv[1] if len(sys.argv) > 1 else "man"):
        print(page)
