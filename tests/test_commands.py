"""polyp-live COMMAND ...: the tools as subcommands, and as python tools/NAME.py in a checkout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from polyp_live import __version__
from polyp_live.commands import COMMANDS, dispatch, run

ROOT = Path(__file__).resolve().parents[1]
TOOL_FILES = sorted(p for p in (ROOT / "tools").glob("*.py")
                    if p.name != "__init__.py" and 'if __name__ == "__main__"' in p.read_text())
# Commands whose tools their owners are moving to the shared vocabulary (train: the lead).
# Strict: the mark must go once they pass.
NOT_YET: set[str] = set()
# Blocks torch in a fresh interpreter, as on a machine with only `pip install .`.
NO_TORCH = "import sys; sys.modules['torch'] = None; "


def python(code: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_live_product_keeps_its_options_and_a_mistyped_command_is_named(capsys):
    assert dispatch(["--source", "demo"]) is None and dispatch([]) is None
    assert dispatch(["trian", "--data", "x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown command 'trian'" in err and "train" in err


def test_polyp_live_version_prints_the_package_version(capsys):
    from polyp_live.realtime.cli import main
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"polyp-live {__version__}"


# Studies that answer one design question, run from a checkout; not user commands.
STUDIES = {"motion_shift_eval"}


def test_every_tool_script_is_a_command():
    modules = {c.module for c in COMMANDS.values()}
    tools = {f"polyp_live.tools.{p.stem}" for p in TOOL_FILES if p.stem not in STUDIES}
    assert tools <= modules, f"add {sorted(tools - modules)} to polyp_live.commands.COMMANDS (or to STUDIES)"


def test_polyp_live_help_lists_every_command_and_has_no_rest_markup(capsys):
    from polyp_live.realtime.cli import main
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "``" not in text and text.count("polyp-live: outline polyps") == 1
    for name in COMMANDS:
        assert f"\n  {name} " in text


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(strict=True, reason="tool not yet moved"))
                                  if n in NOT_YET else n for n in COMMANDS])
def test_every_command_answers_version_under_its_own_name(name, capsys):
    module = COMMANDS[name].module
    try:
        __import__(module)
    except ImportError as exc:
        if exc.name == module:
            pytest.skip(f"{module} is not in this checkout yet")
    with pytest.raises(SystemExit) as info:
        run(name, ["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"polyp-live {name} {__version__}"


@pytest.mark.slow
@pytest.mark.parametrize("tool", TOOL_FILES, ids=lambda p: p.name)
def test_every_tool_script_still_runs_from_a_checkout(tool):
    proc = subprocess.run([sys.executable, str(tool), "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert proc.stdout.startswith("usage: ")


def test_subcommand_without_its_extra_says_which_to_install_in_one_line():
    proc = python(NO_TORCH + "from polyp_live.commands import run; sys.exit(run('export', sys.argv[1:]))",
                  "--model", "best.pt", "--out", "never-written.onnx")
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("polyp-live export: error: polyp-live export needs the [train] extra: "
                                   "pip install 'polyp-live[train]' (torch: see the README for the CPU wheel)")
    assert not (ROOT / "never-written.onnx").exists()


@pytest.mark.slow
@pytest.mark.parametrize("tool", [p.stem for p in TOOL_FILES])
def test_tool_help_works_without_torch(tool):
    proc = python(NO_TORCH + f"import runpy; sys.argv = ['{tool}.py', '--help']; "
                  f"runpy.run_path('tools/{tool}.py', run_name='__main__')")
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert "usage: " in proc.stdout


def test_missing_extra_maps_modules_to_extras():
    from polyp_live.commands import missing_extra
    assert "[tensorrt]" in missing_extra(ModuleNotFoundError("x", name="tensorrt"), "build-engine")
    assert "pypi.nvidia.com" in missing_extra(ModuleNotFoundError("x", name="tensorrt"), "build-engine")
    assert "[serve]" in missing_extra(ModuleNotFoundError("x", name="pytriton.triton"), "serve")
    assert missing_extra(ModuleNotFoundError("x", name="numpyy"), "train") is None


@pytest.mark.train
@pytest.mark.slow
def test_export_refuses_an_existing_out_and_replaces_it_only_with_force(tmp_path, capsys):
    pytest.importorskip("torch")
    from test_training import make_dataset
    from polyp_live.core.spec import ModelSpec
    from polyp_live.training.trainer import TrainConfig, train
    from polyp_live.training.unetplusplus import ModelConfig
    data = make_dataset(tmp_path / "data", count=6)
    train(TrainConfig(data=str(data), out=str(tmp_path / "run"), size=64, epochs=1, batch_size=4, pretrained=False,
                      max_steps_per_epoch=1, threads=1, model=ModelConfig(decoder_channels=(32, 24, 16, 16, 8))))
    out = tmp_path / "shipped.onnx"
    out.write_bytes(b"the shipped model")
    argv = ["--model", str(tmp_path / "run" / "best.pt"), "--out", str(out), "--data", str(data),
            "--split", "train", "--parity-images", "2", "--threshold", "0.6"]
    with pytest.raises(SystemExit) as info:
        run("export", argv)
    assert info.value.code == 2 and "exists; pass --force" in capsys.readouterr().err
    assert out.read_bytes() == b"the shipped model"
    assert run("export", argv + ["--force"]) == 0
    assert ModelSpec.load(out).threshold == 0.6 and out.stat().st_size > 10_000
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["shipped.json", "shipped.onnx"]


@pytest.mark.parametrize("argv, named", [
    (["--source", "demo", "--score-threshold", "2"], "--score-threshold"),
    (["--source", "demo", "--persistence", "3/2"], "--persistence"),
    (["--source", "demo", "--roi", "-10,-10,100,100"], "--option=VALUE"),
    (["evaluate", "--split", "nope", "--model", "m.onnx", "--out", "o"], "--split"),
    (["interpolate", "--models", "a.onnx", "--alpha", "0.5"], "--models"),
])
def test_a_bad_option_is_one_line_that_names_it_and_exits_2(argv, named, capsys):
    from polyp_live.realtime.cli import main
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1 and "usage:" not in err
    assert named in err and "--help" in err


@pytest.mark.parametrize("command, writes", [
    (["quantize", "--calib", "{clip}", "--calib-count", "4", "--save-calib", "{clip}"], "--save-calib"),
    (["quantize", "--calib", "{frames}", "--calib-count", "4", "--out", "{frames}/model.onnx"], "--out"),
    (["benchmark", "--source", "{frames}", "--frames", "2", "--json", "{frames}/bench.json"], "--json"),
    (["make-figures", "overlay", "--source", "{clip}", "--out", "{clip}"], "--out"),
    (["make-demo", "--data", "{frames}", "--out", "{frames}/demo.mp4"], "--out"),
])
def test_no_command_writes_over_or_into_what_it_reads(command, writes, tmp_path, clip, brightness_model, capsys):
    import cv2
    frames = tmp_path / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "f0.png"), cv2.imread(str(ROOT / "docs" / "overlay.png")))
    before = {p: p.read_bytes() for p in (clip, frames / "f0.png")}
    argv = [a.format(clip=clip, frames=frames) for a in command]
    if command[0] in ("quantize", "make-figures", "benchmark"):
        argv += ["--model", str(brightness_model)]
    with pytest.raises(SystemExit) as info:
        dispatch(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1 and writes in err and "would write" in err
    assert {p: p.read_bytes() for p in before} == before and sorted(p.name for p in frames.iterdir()) == ["f0.png"]


@pytest.mark.parametrize("argv, message", [
    (["benchmark", "--model", "{tmp}/missing.onnx"], "missing.onnx not found"),
    (["benchmark", "--frames", "-1"], "--frames and --runs need at least 1"),
    (["benchmark", "--json", "{tmp}"], "is a folder"),
    (["evaluate-video", "--source", "{tmp}", "--out", "{tmp}/a-file.txt"], "is a file; give a folder"),
    (["evaluate-video", "--source", "{tmp}", "--max-frames", "-3", "--out", "{tmp}/v"], "--max-frames must be 0"),
    (["evaluate-video", "--source", "{tmp}", "--masks", "{tmp}/none", "--out", "{tmp}/v"], "is not a folder"),
    (["evaluate", "--model", "m.onnx", "--out", "{tmp}/a-file.txt"], "is a file; give a folder"),
    (["evaluate", "--model", "m.onnx", "--false-alarm-target", "-1", "--out", "{tmp}/e"], "must lie in [0, 1]"),
    (["train", "--data", "{tmp}", "--out", "{tmp}/a-file.txt"], "is a file; give a folder"),
    (["train", "--data", "{tmp}", "--out", "{tmp}/t", "--lr", "-1"], "--lr must be above 0"),
    (["train", "--data", "{tmp}", "--out", "{tmp}/t", "--decoder-channels", "a,b"], "comma-separated whole"),
    (["make-figures", "overlay", "--out", "{tmp}/o.txt"], "must end in .png"),
    (["make-demo", "--out", "{tmp}/a-file.txt"], "must end in .mp4"),
    (["make-demo", "--seconds", "nan", "--out", "{tmp}/d.mp4"], "--seconds at least one frame"),
    (["make-sequence", "--data", "{tmp}", "--limit", "-1", "--out", "{tmp}/s"], "--limit must be 0"),
    (["benchmark", "--threads", "-2"], "--threads must be 0"),
    (["benchmark", "--json", "{tmp}/a-file.txt"], "must end in .json"),
])
def test_bad_arguments_are_refused_before_any_work_in_one_line(argv, message, tmp_path, capsys):
    (tmp_path / "a-file.txt").write_text("keep")
    with pytest.raises(SystemExit) as info:
        dispatch([a.format(tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1 and message in err
    assert (tmp_path / "a-file.txt").read_text() == "keep"


def test_ffmpeg_says_nothing_before_a_commands_own_error(tmp_path, brightness_model):
    """FFmpeg logs to the process's stderr directly ("moov atom not found"): only a subprocess sees it."""
    (tmp_path / "text.mp4").write_text("not a video")
    proc = python("import sys; from polyp_live.commands import dispatch; sys.exit(dispatch(sys.argv[1:]))",
                  "quantize", "--model", str(brightness_model), "--calib", str(tmp_path / "text.mp4"),
                  "--out", str(tmp_path / "q.onnx"))
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert "text.mp4 yields no decodable frames" in proc.stderr



def test_quantize_never_writes_over_the_input_models_sidecar_or_an_existing_file(tmp_path, brightness_model, capsys):
    sidecar = brightness_model.with_suffix(".json")
    before = sidecar.read_bytes()
    (tmp_path / "other.onnx").write_bytes(b"someone else's model")
    for out, message in ((sidecar, "must end in .onnx"), (tmp_path / "other.onnx", "pass --force to replace it")):
        with pytest.raises(SystemExit) as info:
            dispatch(["quantize", "--model", str(brightness_model), "--fp16", "--out", str(out)])
        err = capsys.readouterr().err
        assert info.value.code == 2 and err.count("\n") == 1 and message in err
    assert sidecar.read_bytes() == before and (tmp_path / "other.onnx").read_bytes() == b"someone else's model"
    assert dispatch(["quantize", "--model", str(brightness_model), "--fp16", "--out", str(tmp_path / "other.onnx"),
                     "--force"]) == 0
    assert (tmp_path / "other.onnx").read_bytes() != b"someone else's model"


@pytest.mark.parametrize("argv, message", [
    (["make-demo", "--out", "{tmp}/demo.mp4"], "--out {tmp}/demo.mp4 exists"),
    (["benchmark", "--pipeline", "--json", "{tmp}/b.json", "--markdown", "{tmp}/b.md", "--png", "{tmp}/d.png"],
     "--json {tmp}/b.json exists"),
])
def test_commands_that_write_committed_files_by_default_refuse_to_replace_without_force(argv, message, tmp_path,
                                                                                         capsys):
    for name in ("demo.mp4", "b.json"):
        (tmp_path / name).write_bytes(b"committed")
    with pytest.raises(SystemExit) as info:
        dispatch([a.format(tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1 and message.format(tmp=tmp_path) in err and "--force" in err
    assert (tmp_path / "demo.mp4").read_bytes() == (tmp_path / "b.json").read_bytes() == b"committed"


def test_load_test_without_tritonclient_gives_the_standard_install_line_and_exits_2():
    from polyp_live.commands import install_hint
    proc = python("import sys; sys.modules['tritonclient'] = None; from polyp_live.commands import dispatch; "
                  "sys.exit(dispatch(sys.argv[1:]))", "load-test", "--server", "grpc://127.0.0.1:1")
    assert proc.returncode == 2
    assert proc.stderr == f"polyp-live load-test: error: {install_hint('load-test', 'triton-client')}\n"
    assert "--backend" not in proc.stderr


def test_make_demo_and_the_pipeline_benchmark_replace_an_existing_output_with_force(tmp_path, clip, brightness_model):
    import json
    pytest.importorskip("matplotlib")  # the benchmark's delay histogram
    from test_evaluate import make_sets
    polyps, _ = make_sets(tmp_path)
    (polyps / "splits" / "test.txt").write_text("p0\np1\np2\n")  # make-demo takes its scenes from the test split
    demo = tmp_path / "demo.mp4"
    demo.write_bytes(b"committed")
    assert dispatch(["make-demo", "--data", str(polyps), "--negatives", "", "--images", "1", "--seconds", "0.1",
                     "--out", str(demo), "--force"]) == 0
    assert demo.read_bytes()[4:8] == b"ftyp"  # an MP4 now, not the bytes that were there
    outputs = {name: tmp_path / name for name in ("b.json", "b.md", "d.png")}
    for path in outputs.values():
        path.write_bytes(b"committed")
    assert dispatch(["benchmark", "--pipeline", "--model", str(brightness_model), "--source", str(clip), "--frames",
                     "5", "--sizes", "720p", "--modes", "file", "--precisions", "fp32", "--threads", "1",
                     "--json", str(outputs["b.json"]), "--markdown", str(outputs["b.md"]), "--png",
                     str(outputs["d.png"]), "--force"]) == 0
    assert [r["run"] for r in json.loads(outputs["b.json"].read_text())["runs"]] == ["720p fp32 file"]
    assert "| 720p fp32 file |" in outputs["b.md"].read_text()
    assert outputs["d.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def run_blocking(modules: str, *argv: str, cwd: Path = ROOT) -> tuple[subprocess.CompletedProcess, float]:
    """``polyp-live ARGV`` in a fresh interpreter where ``modules`` (comma-separated) cannot be imported,
    as after a plain ``pip install .``; returns the process and its wall time."""
    import time
    blocks = "; ".join(f"sys.modules[{m!r}] = None" for m in modules.split(","))
    started = time.monotonic()
    proc = python(f"import sys; {blocks}; from polyp_live.commands import dispatch; sys.exit(dispatch(sys.argv[1:]))",
                  *argv, cwd=cwd)
    return proc, time.monotonic() - started


def test_evaluate_of_an_onnx_model_needs_no_extra(tmp_path, brightness_model):
    from test_evaluate import make_sets
    polyps, free = make_sets(tmp_path)
    out = tmp_path / "eval"
    proc, _ = run_blocking("torch,matplotlib,PIL", "evaluate", "--model", str(brightness_model), "--data", str(polyps),
                           "--negatives", str(free), "--split", "val", "--sweep", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in out.iterdir()} >= {"val_summary.json", "val_per_image.csv", "val_frames.json"}
    assert "matplotlib is missing" in proc.stdout and proc.stderr == ""
    assert COMMANDS["evaluate"].extra is None and COMMANDS["evaluate-video"].extra is None


@pytest.mark.parametrize("argv, blocked, needed_by", [
    (["evaluate", "--model", "{tmp}/best.pt", "--data", "{polyps}", "--negatives", "", "--out", "{tmp}/out"],
     "torch", "evaluate --model {tmp}/best.pt"),
    (["evaluate-video", "--source", "{clip}", "--model", "{tmp}/best.pt", "--out", "{tmp}/out"],
     "torch", "evaluate-video --model {tmp}/best.pt"),
    # Without the check, 300 frames of the demo clip went through the model before the PNG could not be written.
    (["make-figures", "overlay", "--frame", "300", "--out", "{tmp}/out/o.png"], "PIL", "make-figures overlay"),
    (["make-figures", "curves", "--log", "{tmp}/run", "--out", "{tmp}/out/c.png"], "matplotlib",
     "make-figures curves"),
])
def test_an_option_that_needs_an_extra_says_so_before_any_work(argv, blocked, needed_by, tmp_path, clip):
    from test_evaluate import make_sets
    from polyp_live.commands import install_hint
    polyps, _ = make_sets(tmp_path)
    (tmp_path / "best.pt").write_bytes(b"a checkpoint")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "log.csv").write_text("epoch,loss\n1,0.5\n")
    proc, seconds = run_blocking(blocked, *[a.format(tmp=tmp_path, polyps=polyps, clip=clip) for a in argv])
    assert proc.returncode == 2
    command = argv[0]
    assert proc.stderr == f"polyp-live {command}: error: {install_hint(needed_by.format(tmp=tmp_path), 'train')}\n"
    assert seconds < 5 and not (tmp_path / "out").exists()  # refused at once: nothing run, nothing written


@pytest.mark.parametrize("argv, option, url", [
    (["evaluate", "--model", "{model}", "--out", "{tmp}/out"], "--data", "kvasir-seg"),
    (["evaluate", "--model", "{model}", "--data", "{polyps}", "--out", "{tmp}/out"], "--negatives", "hyper-kvasir"),
    (["make-demo", "--out", "{tmp}/out/demo.mp4"], "--data", "kvasir-seg"),
    (["make-demo", "--data", "{polyps}", "--out", "{tmp}/out/demo.mp4"], "--negatives", "hyper-kvasir"),
    (["make-figures", "grid", "--out", "{tmp}/out/grid.png"], "--data", "kvasir-seg"),
    (["build-engine", "--validate", "val", "--out", "{tmp}/out/m.engine"], "--data", "kvasir-seg"),
    (["benchmark", "--model", "{model}"], "--source", "kvasir-seg"),
])
def test_a_dataset_default_missing_in_this_clone_names_the_path_and_where_to_get_it(argv, option, url, tmp_path,
                                                                                    brightness_model, monkeypatch,
                                                                                    capsys):
    from test_evaluate import make_sets
    polyps, _ = make_sets(tmp_path)
    monkeypatch.chdir(tmp_path)  # a clone that has no ../shared/data beside it
    with pytest.raises(SystemExit) as info:
        dispatch([a.format(tmp=tmp_path, model=brightness_model, polyps=polyps) for a in argv])
    err = capsys.readouterr().err
    default = {"--negatives": "../shared/data/negatives"}.get(option, "../shared/data/kvasir-seg")
    assert info.value.code == 2 and err.count("\n") == 1, err
    assert f"{option} {default} (the default) not found" in err and f"https://datasets.simula.no/{url}/" in err
    assert "calibration" not in err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv", [
    ["train", "--data", "{tmp}/none", "--out", "{tmp}/out"],
    ["make-sequence", "--data", "{tmp}/none", "--out", "{tmp}/out"],
])
def test_a_missing_data_folder_is_refused_with_the_download_hint(argv, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        dispatch([a.format(tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1
    assert f"--data {tmp_path}/none not found; get Kvasir-SEG from https://datasets.simula.no/kvasir-seg/" in err
    assert not (tmp_path / "out").exists()


def test_export_checks_its_parity_data_before_exporting(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        dispatch(["export", "--model", str(tmp_path / "best.pt"), "--out", str(tmp_path / "m.onnx")])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1
    assert "--data ../shared/data/kvasir-seg (the default) not found" in err and "kvasir-seg/" in err
    assert list(tmp_path.iterdir()) == []


def test_benchmark_names_its_source_not_a_calibration_source(tmp_path, brightness_model):
    (tmp_path / "empty").mkdir()
    proc = python("import sys; from polyp_live.commands import dispatch; sys.exit(dispatch(sys.argv[1:]))",
                  "benchmark", "--model", f"{brightness_model}@onnxruntime:fp32", "--source", str(tmp_path / "empty"),
                  "--frames", "1", "--runs", "1", "--warmup", "0")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert f"--source {tmp_path / 'empty'} yields no decodable frames" in proc.stderr
    assert "calibration" not in proc.stderr


def test_train_help_lists_max_steps_per_epoch(capsys):
    with pytest.raises(SystemExit) as info:
        run("train", ["--help"])
    assert info.value.code == 0 and "--max-steps-per-epoch N" in capsys.readouterr().out


@pytest.mark.parametrize("argv, rate, origin", [
    ([], 1e-3, "the default from the ImageNet encoder"),
    (["--model", "engines/models/polyp-unetpp-lite0-256.onnx"], 1e-4, "the fine-tuning default"),
    (["--model", "engines/models/polyp-unetpp-lite0-256.onnx", "--lr", "3e-4"], 3e-4, "--lr"),
])
def test_a_fine_tune_starts_at_the_fine_tuning_rate_unless_lr_is_given(argv, rate, origin, tmp_path):
    from polyp_live.tools import train
    args = train.parse_args(["--data", str(tmp_path), "--out", str(tmp_path / "run"), *argv])
    assert args.lr == rate and args.lr_origin.startswith(origin)


def test_benchmark_web_names_a_stream_it_cannot_watch(capsys):
    assert dispatch(["benchmark-web", "--streams", "webrtc,rtsp"]) == 2
    assert capsys.readouterr().err.strip() == ("polyp-live benchmark-web: error: --streams takes webrtc, mjpeg "
                                               "or both, not 'webrtc,rtsp'")
