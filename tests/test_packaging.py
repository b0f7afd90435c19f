"""The installed package is one import namespace, polyp_live, that carries its model and demo clip."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE_FOLDERS = ("polyp_live", "core", "realtime", "engines", "calibration", "training", "tools", "tests")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    """The wheel `pip wheel .` would build, made by setuptools from a copy of this checkout's tracked
    layout (no network, and no build/ folder left in the checkout)."""
    src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("wheel")
    junk = shutil.ignore_patterns("__pycache__", "*.pyc", "*.int8.*", "*.engine*", "*.prep.onnx")
    for folder in SOURCE_FOLDERS[:-1]:
        shutil.copytree(ROOT / folder, src / folder, ignore=junk)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    script = ("import sys, setuptools.build_meta as b; "
              "sys.stdout.write(b.build_wheel(sys.argv[1]))")
    proc = subprocess.run([sys.executable, "-c", script, str(out)], cwd=src, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    name = proc.stdout.strip().splitlines()[-1]
    with zipfile.ZipFile(out / name) as zf:
        yield zf


@pytest.mark.slow
def test_wheel_holds_only_the_polyp_live_namespace_and_its_dist_info(wheel):
    tops = {name.split("/")[0] for name in wheel.namelist()}
    dist_info = [t for t in tops if t.endswith(".dist-info")]
    assert len(dist_info) == 1 and dist_info[0].startswith("polyp_live-")
    assert tops - set(dist_info) == {"polyp_live"}
    for generic in ("realtime", "engines", "calibration", "training", "tools"):
        assert f"polyp_live/{generic}/__init__.py" in wheel.namelist()


@pytest.mark.slow
def test_wheel_ships_the_model_its_sidecar_the_demo_clip_and_the_license(wheel):
    names = set(wheel.namelist())
    assert "polyp_live/engines/models/polyp-unetpp-lite0-256.onnx" in names
    assert "polyp_live/engines/models/polyp-unetpp-lite0-256.json" in names
    assert "polyp_live/realtime/assets/demo.mp4" in names
    licence = [n for n in names if n.endswith("dist-info/licenses/LICENSE")]
    assert licence and b"Apache License" in wheel.read(licence[0])
    # Derived artefacts never travel: no INT8 models, engines or calibration sets in the wheel.
    assert not [n for n in names if re.search(r"\.int8\.|\.engine|\.npy$|\.prep\.onnx", n)]


def test_wheel_metadata_declares_what_the_cpu_int8_path_needs():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = {re.split(r"[<>=\[ ;]", d)[0].lower() for d in meta["dependencies"]}
    # quantize (onnx) and the cache folder (platformdirs) work after a plain `pip install .`
    assert {"onnx", "onnxruntime", "platformdirs", "av"} <= base
    assert "torch" not in base


def test_bundled_model_and_demo_are_found_through_importlib_resources():
    from polyp_live.resources import bundled_model, demo_clip
    from polyp_live.core.spec import ModelSpec
    assert bundled_model().is_file() and bundled_model().suffix == ".onnx"
    assert ModelSpec.load(bundled_model()).input_height == 256
    assert demo_clip().is_file() and demo_clip().stat().st_size > 100_000


def test_generic_top_level_names_are_not_importable_outside_the_checkout(tmp_path):
    # From any folder other than the checkout, only polyp_live exists; `import engines` must fail.
    code = ("import importlib.util as u, sys; import polyp_live.engines; "
            "sys.exit(sum(u.find_spec(n) is not None for n in ('realtime', 'engines', 'calibration', 'training', 'tools')))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_no_source_file_edits_sys_path():
    offenders = []
    for folder in SOURCE_FOLDERS:
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            if re.search(r"sys\.path\.(insert|append|extend)\(|sys\.path\s*\+=|site\.addsitedir", text):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_version_is_the_installed_distributions():
    from importlib.metadata import version

    import polyp_live
    assert polyp_live.__version__ == version("polyp-live") != "0+unknown"


def test_derived_files_of_the_bundled_model_go_to_the_user_cache_even_in_a_writable_checkout(tmp_path, monkeypatch):
    from polyp_live.cache import artefact_path, file_sha256
    from polyp_live.engines.registry import int8_variant
    from polyp_live.resources import bundled_model
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    model = bundled_model()
    folder = tmp_path / "polyp-live" / "models" / f"{model.stem}-{file_sha256(model)[:12]}"
    assert int8_variant(model) == folder / f"{model.stem}.int8.onnx"
    assert artefact_path(model, "x.engine") == folder / "x.engine"
    assert not list(tmp_path.rglob("*"))  # asking where a file goes creates nothing
