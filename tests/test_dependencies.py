"""Every third-party module the library or the CLI imports is a declared dependency (or a guarded extra).

CI installs the `test` extra, so a module that arrives only through it (scipy did) or only as some
other package's dependency (braceexpand did, through webdataset) breaks a plain `pip install .`
without any test noticing. This audit reads the imports from the source and the requirements from
pyproject.toml, so removing a dependency fails here.
"""

from __future__ import annotations

import ast
import pathlib
import re
import sys

import pytest

tomllib = pytest.importorskip("tomllib")

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCES = [p for d in ("src/reidtools", "commands") for p in (ROOT / d).rglob("*.py")]
# import name -> distribution name, where they differ
DISTRIBUTION = {"PIL": "pillow", "yaml": "pyyaml", "huggingface_hub": "huggingface-hub"}
# modules that may be absent: the extra that brings them; the importing code must say so in its error
GUARDED = {"mediapipe": "pose", "matplotlib": "plot", "onnx": "export", "fsspec": "remote"}


def _imports(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _third_party() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in SOURCES:
        for name in _imports(path):
            if name in sys.stdlib_module_names or name in ("reidtools", "__future__"):
                continue
            found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


def _requirement_names(reqs: list[str]) -> set[str]:
    return {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].strip().lower().replace("_", "-") for r in reqs}


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def test_every_imported_module_is_declared():
    project = _project()
    core = _requirement_names(project["dependencies"])
    missing = {}
    for name, files in _third_party().items():
        dist = DISTRIBUTION.get(name, name).lower().replace("_", "-")
        if name == "onnxruntime":
            # one import name, two distributions (chosen by platform markers)
            ok = bool({"onnxruntime", "onnxruntime-gpu"} & core)
        elif name in GUARDED:
            ok = dist in _requirement_names(project["optional-dependencies"][GUARDED[name]])
        else:
            ok = dist in core
        if not ok:
            missing[name] = sorted(files)
    assert not missing, f"imported but not declared in pyproject.toml dependencies: {missing}"


def test_guarded_extras_name_the_extra_in_their_error():
    for name, files in _third_party().items():
        if name not in GUARDED:
            continue
        for f in files:
            text = (ROOT / f).read_text(encoding="utf-8")
            assert f"reidtools[{GUARDED[name]}]" in text or f"'{GUARDED[name]}' extra" in text, (
                f"{f} imports {name} (extra {GUARDED[name]!r}) without an error that names the extra")


def test_audit_sees_the_imports_it_must():
    # the audit itself must find a lazily imported module (scipy inside a function in metrics/rerank.py)
    found = _third_party()
    assert "src/reidtools/metrics/rerank.py" in found["scipy"]
    assert "braceexpand" in found and "torch" in found


def test_exactly_one_onnxruntime_build_per_platform():
    packaging = pytest.importorskip("packaging.requirements")
    reqs = [packaging.Requirement(r) for r in _project()["dependencies"]]
    ort = [r for r in reqs if r.name in ("onnxruntime", "onnxruntime-gpu")]
    for env, want in (({"platform_system": "Linux", "platform_machine": "x86_64"}, "onnxruntime-gpu"),
                      ({"platform_system": "Linux", "platform_machine": "aarch64"}, "onnxruntime"),
                      ({"platform_system": "Darwin", "platform_machine": "arm64"}, "onnxruntime"),
                      ({"platform_system": "Windows", "platform_machine": "AMD64"}, "onnxruntime")):
        chosen = [r.name for r in ort if r.marker is None or r.marker.evaluate(env)]
        assert chosen == [want], (env, chosen)
