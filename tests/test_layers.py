"""The import contract: the layers of polyp-live, and imports that only point down.

    3 commands      tools/, polyp_live/commands.py, polyp_live/arguments.py, realtime/cli.py, realtime/options.py
    2 applications  realtime/ (the live pipeline, the web view) | training/ | calibration/
    1 backends      engines/
    0 core          core/, and the package root's version, bundled files and cache folder

A module may import its own layer and the layers below. Within layer 2 the three applications stay
apart, except for the edges declared in SIBLING_EDGES. Outside the commands, modules of ours are
imported at the top of a module (where a reader sees them), except the lazy imports in LAZY. Every
rule here reads the source with ``ast``: nothing is imported, so the test needs no optional extra.
Run this file to list the back-arrows (``python tests/test_layers.py``).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"polyp_live": "polyp_live", "core": "polyp_live.core", "engines": "polyp_live.engines",
           "realtime": "polyp_live.realtime", "training": "polyp_live.training",
           "calibration": "polyp_live.calibration", "tools": "polyp_live.tools"}
COMMAND_MODULES = {"polyp_live.commands", "polyp_live.arguments", "polyp_live.realtime.cli",
                   "polyp_live.realtime.options"}
# (importer module, imported module) across the applications of layer 2, and why.
SIBLING_EDGES = {
    ("polyp_live.training.video_evaluation", "polyp_live.realtime.sources"):
        "video evaluation scores the live path itself: it reads clips with the live sources",
    ("polyp_live.training.video_evaluation", "polyp_live.realtime.appearances"):
        "... and counts appearances with the live tracker",
    ("polyp_live.calibration.frames", "polyp_live.realtime.video_file"):
        "calibration draws a video's frames with the live reader, so damaged frames are skipped as live",
}
# (importer module, imported module): imports kept inside a function, and why.
LAZY = {
    ("polyp_live.training.torch_backend", "polyp_live.training.trainer"):
        "the torch backend says which extra to install before torch is imported",
}


def module_of(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    name = ".".join((FOLDERS[parts[0]],) + parts[1:])
    return name.removesuffix(".__init__")


def layer_of(module: str) -> tuple[int, str]:
    """(layer, group) of one of our modules; the group tells the applications of layer 2 apart."""
    if module in COMMAND_MODULES or module.startswith("polyp_live.tools"):
        return 3, "commands"
    for prefix, layer in (("polyp_live.core", 0), ("polyp_live.engines", 1), ("polyp_live.realtime", 2),
                          ("polyp_live.training", 2), ("polyp_live.calibration", 2)):
        if module == prefix or module.startswith(prefix + "."):
            return layer, prefix
    return 0, "polyp_live"      # the package root: __version__, resources, cache


def our_sources():
    """(module name, file) of every module of the package."""
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            yield module_of(path), path


def imports(sources=None):
    """(importer, imported, line, inside a function) for every import of one of our modules."""
    for importer, path in (our_sources() if sources is None else sources):
        tree = ast.parse(path.read_text(), str(path))
        in_function = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                       for n in ast.walk(f)}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("polyp_live"):
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("polyp_live")]
            else:
                continue
            for name in names:
                yield importer, name, f"{path.name if sources else path.relative_to(ROOT)}:{node.lineno}", \
                    id(node) in in_function


def back_arrows(sources=None) -> list[str]:
    arrows = []
    for importer, imported, where, _ in imports(sources):
        (low, group), (high, target) = layer_of(importer), layer_of(imported)
        if high > low:
            arrows.append(f"{where}: {importer} (layer {low}) imports {imported} (layer {high})")
        elif high == low == 2 and group != target and (importer, imported) not in SIBLING_EDGES:
            arrows.append(f"{where}: {importer} imports {imported}, another application of layer 2")
    return arrows


def test_imports_point_only_down_the_layers():
    arrows = back_arrows()
    assert not arrows, "back-arrows:\n" + "\n".join(arrows)


def test_the_core_imports_nothing_of_ours_but_the_core():
    outside = [f"{where}: {imported}" for importer, imported, where, _ in imports()
               if importer.startswith("polyp_live.core") and not imported.startswith("polyp_live.core")]
    assert not outside, outside


def test_imports_of_our_modules_sit_at_the_top_outside_the_commands():
    hidden = [f"{where}: {imported}" for importer, imported, where, inside in imports()
              if inside and layer_of(importer)[0] < 3 and (importer, imported) not in LAZY]
    assert not hidden, "move these to the top of their module (or declare them in LAZY with a reason):\n" + \
        "\n".join(hidden)


MAX_FUNCTION_LINES = 60


def test_no_function_outside_the_tests_is_longer_than_60_lines():
    long = []
    for module, path in our_sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.name} has {length} lines")
    assert not long, "split these:\n" + "\n".join(long)


def test_the_contract_sees_back_arrows_and_crossed_applications(tmp_path):
    """The checker itself, on made-up modules: what it must report, and what it must let pass."""
    probe = tmp_path / "probe.py"
    (tmp_path / "empty.py").write_text("import os\n")
    probe.write_text("from polyp_live.realtime.pipeline import Pipeline\nimport polyp_live.core.spec\n")
    assert back_arrows([("polyp_live.core.probe", probe)]) == [
        "probe.py:1: polyp_live.core.probe (layer 0) imports polyp_live.realtime.pipeline (layer 2)"]
    assert back_arrows([("polyp_live.calibration.probe", probe)]) == [
        "probe.py:1: polyp_live.calibration.probe imports polyp_live.realtime.pipeline, another application of layer 2"]
    assert len(back_arrows([("polyp_live.training.probe", probe)])) == 1    # no declared edge for it
    assert back_arrows([("polyp_live.tools.probe", probe), ("polyp_live.engines.probe", tmp_path / "empty.py")]) == []


if __name__ == "__main__":
    found = back_arrows()
    print("\n".join(found) if found else "no back-arrows")
    sys.exit(1 if found else 0)
