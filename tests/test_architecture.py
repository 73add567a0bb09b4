"""The package's shape: layers that import only downward, no import cycle, small modules.

Every ``import`` statement counts, including those inside functions. The layers, bottom up
(README, "The code"):

    core → degrade → fusion → learn → api, samples → jobs → gui → cli

A module may import its own layer and the layers below it; no module below ``gui`` may import
Qt or napari.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = "napari_cofusion"
ROOT = Path(__file__).resolve().parents[1] / "src" / PKG
LAYERS = {"core": 0, "degrade": 1, "fusion": 2, "learn": 3, "api": 4, "samples": 4, "jobs": 5, "gui": 6, "cli": 7,
          "__init__": 0}
GUI_ONLY = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "superqt", "magicgui", "napari_matplotlib")
MAX_LINES = 500


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imports_of(path: Path, name: str, known: set[str]) -> tuple[set[str], set[str]]:
    """(modules of the package, top-level outside packages) that ``path`` imports anywhere in it."""
    return imports_in(path.read_text(encoding="utf-8"), name, path.name == "__init__.py", known)


def imports_in(source: str, name: str, is_pkg: bool, known: set[str]) -> tuple[set[str], set[str]]:
    inside, outside = set(), set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for a in node.names:
                (inside if a.name.split(".")[0] == PKG else outside).add(a.name if a.name.startswith(PKG) else a.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != PKG:
                outside.add(mod.split(".")[0])
                continue
            for a in node.names:  # "from pkg import module" imports the module
                sub = f"{mod}.{a.name}"
                inside.add(sub if sub in known else mod)
    inside.discard(name)
    return inside, outside


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {name: imports_of(path, name, known)[0] & known for name, path in mods.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle in ``graph`` as a list of nodes (first repeated at the end), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def _layer(name: str) -> int:
    parts = name.split(".")
    return LAYERS[parts[1] if len(parts) > 1 else "__init__"]


def test_cycle_finder_finds_a_cycle():
    """The checker itself: a planted cycle (also through a package) is found, a DAG passes."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    src = "def f():\n    from ..learn import train\n    import napari\n"
    inside, outside = imports_in(src, "napari_cofusion.core.ops", False, {"napari_cofusion.learn.train"})
    assert inside == {"napari_cofusion.learn.train"}  # a relative import inside a function counts
    assert outside == {"napari"}


def test_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 30, "the package was not found"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " → ".join(cycle or [])


def test_layers_import_only_downward():
    graph = import_graph()
    bad = [f"{a} ({_layer(a)}) imports {b} ({_layer(b)})" for a, deps in graph.items() for b in deps
           if _layer(b) > _layer(a) or (_layer(b) == _layer(a) and a.split(".")[1:2] != b.split(".")[1:2]
                                        and _layer(a) != 4)]
    assert not bad, "\n".join(bad)


def test_core_layers_import_no_qt_or_napari():
    mods = _modules()
    known = set(mods)
    bad = []
    for name, path in mods.items():
        if _layer(name) >= LAYERS["gui"]:
            continue
        _, outside = imports_of(path, name, known)
        bad += [f"{name} imports {o}" for o in sorted(outside) if o in GUI_ONLY]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("path", sorted(ROOT.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_module_size(path):
    n = len(path.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(ROOT)} has {n} lines (at most {MAX_LINES}): split it"


def test_learned_methods_are_registered_by_explicit_import():
    """api imports the method modules by name (no lazy, error-swallowing plugin loading), and no
    module of the package catches ImportError around one of its own imports."""
    from napari_cofusion import api

    assert {"bicubic", "glp-hs", "cofusion"} <= set(api.method_names())
    graph = import_graph()
    assert {"napari_cofusion.fusion.classical", "napari_cofusion.learn.method"} <= graph["napari_cofusion.api"]
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Try) and any(
                isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError") for h in node.handlers
            ):
                own = [n for b in node.body for n in ast.walk(b)
                       if isinstance(n, ast.ImportFrom) and (n.level or (n.module or "").startswith(PKG))]
                assert not own, f"{path.relative_to(ROOT)}:{node.lineno} swallows an ImportError of the package"
