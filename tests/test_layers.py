"""Import structure of the package: layers, and no import circle between modules.

Layers, lowest first; a module may import its own layer and the ones below, never one above (imports
inside functions count too: a deferred import still runs up the layers).
"""

from __future__ import annotations

import ast
from pathlib import Path

import bids_app

ROOT = Path(bids_app.__file__).resolve().parent

LAYERS = [
    {"errors", "version", "citations", "labels", "config", "algorithms", "container", "progress"},
    {"bids", "derivatives", "execution"},
    {"interfaces"},
    {"segmentation", "group", "reports", "convert"},
    {"pipeline"},
    {"cli", "__main__", "simulate"},  # simulate: the qsmapp-simulate tool, imported by no other layer
]


def _layer(top: str) -> int:
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"bids_app.{top} is in no layer of {__file__}")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(["bids_app", *parts])


def _imports(path: Path, files) -> set:
    """Absolute names of the bids_app modules that ``path`` imports (anywhere in the file)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.startswith("bids_app"):
                submodules = {f"{module}.{a.name}" for a in node.names} & files
                found.update(submodules or {module})
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("bids_app"))
    return found


def _graph() -> dict:
    files = {_module_name(p): p for p in ROOT.rglob("*.py")}
    return {name: {m for m in _imports(path, set(files)) if m in files and m != name} for name, path in files.items()}


def test_no_import_runs_up_a_layer():
    wrong = []
    for module, imported in _graph().items():
        top = module.split(".")[1] if "." in module else "__init__"
        if top == "__init__":
            continue
        for other in imported:
            other_top = other.split(".")[1] if other.count(".") else None
            if other_top and _layer(other_top) > _layer(top):
                wrong.append(f"{module} imports {other}")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_circle_between_packages_of_the_pipeline_and_derivatives():
    """Module-level circles: a module must not import (directly or not) a module that imports it back."""
    graph = _graph()
    circles = []
    for start in graph:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start and len(path) > 1 and not start.endswith("__init__"):
                    # a package importing its own submodules (package/__init__) is not a circle
                    if not any(p == start.rsplit(".", 1)[0] for p in path):
                        circles.append(" -> ".join(path + [nxt]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
    assert not circles, "\n".join(sorted(set(circles))[:20])
