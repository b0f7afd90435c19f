"""TensorRT builder and backend against stand-in ``tensorrt`` and ``cuda`` modules (no GPU needed).

Tests marked ``tensorrt`` at the end run only where real TensorRT and a GPU exist.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import FakeBackend, TEST_SPEC, moving_disc_frames
from polyp_live.core.errors import BackendUnavailableError, ModelLoadError
from polyp_live.core.preprocess import preprocess
from polyp_live.core.spec import ModelSpec
from fake_gpu import FakeCudart, install, make_fake_tensorrt

pytest.importorskip("onnx")


@pytest.fixture
def fake_gpu(monkeypatch):
    cudart = FakeCudart()
    trt = make_fake_tensorrt(cudart, version="11.0.0")
    install(monkeypatch, cudart, trt)
    return cudart, trt


@pytest.mark.parametrize("version", ["10.8.0", "11.0.0"])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_builder_is_strongly_typed_and_writes_engine_metadata(monkeypatch, tmp_path, brightness_model, version, precision):
    from polyp_live.engines.tensorrt_builder import build_engine
    cudart = FakeCudart()
    trt = make_fake_tensorrt(cudart, version=version)
    install(monkeypatch, cudart, trt)
    out = tmp_path / "m.engine"
    meta = build_engine(brightness_model, out, precision, workspace_mb=256, timing_cache=tmp_path / "t.cache", log=lambda m: None)
    assert ("create_network", 1 << 1) in trt.calls  # STRONGLY_TYPED, no builder precision flags
    assert out.read_bytes().startswith(b"{")
    assert (tmp_path / "t.cache").read_bytes() == b"cache"
    sidecar = ModelSpec.load(out)
    assert sidecar.input_height == 32 and sidecar.info["engine"] == meta
    assert meta["tensorrt_version"] == version and meta["gpu"] == "NVIDIA Fake GPU"
    assert meta["compute_capability"] == "8.9" and meta["precision"] == precision
    assert meta["input_shape"] == [1, 3, 32, 32] and len(meta["source_onnx_sha256"]) == 64
    if precision == "fp16":  # TensorRT parsed the converted graph, not the FP32 one
        assert trt.built_from[-1].endswith("fp16.onnx")


def test_int8_build_parses_a_qdq_graph(fake_gpu, tmp_path):
    from test_precision import make_conv_model
    from polyp_live.engines.tensorrt_builder import build_engine
    model = make_conv_model(tmp_path / "conv.onnx")
    calib = np.concatenate([preprocess(f, TEST_SPEC) for f in moving_disc_frames(8)])
    build_engine(model, tmp_path / "q.engine", "int8", calib, log=lambda m: None)
    assert fake_gpu[1].built_from[-1].endswith("int8.onnx")
    with pytest.raises(ValueError, match="needs --calib"):
        build_engine(model, tmp_path / "q2.engine", "int8", None, log=lambda m: None)


def test_parse_errors_are_each_listed(monkeypatch, tmp_path, brightness_model):
    from polyp_live.engines.tensorrt_builder import EngineBuildError, build_engine
    cudart = FakeCudart()
    install(monkeypatch, cudart, make_fake_tensorrt(cudart, parse_ok=False))
    with pytest.raises(EngineBuildError) as info:
        build_engine(brightness_model, tmp_path / "m.engine", "fp32", log=lambda m: None)
    text = str(info.value)
    assert "cannot parse" in text and "fake parser error 0" in text and "fake parser error 1" in text
    assert not (tmp_path / "m.engine").exists()


def test_backend_runs_execute_async_v3_with_right_buffers_and_replays_a_cuda_graph(fake_gpu, tmp_path, brightness_model):
    from polyp_live.engines.tensorrt_backend import TensorRTBackend
    from polyp_live.engines.tensorrt_builder import build_engine
    cudart, trt = fake_gpu
    build_engine(brightness_model, tmp_path / "m.engine", "fp32", log=lambda m: None)
    backend = TensorRTBackend(tmp_path / "m.engine")
    assert ("cudaMalloc", 3 * 32 * 32 * 4) in cudart.calls and ("cudaMalloc", 32 * 32 * 4) in cudart.calls
    assert ("cudaMallocHost", 3 * 32 * 32 * 4) in cudart.calls
    assert {c[1] for c in trt.calls if c[0] == "set_tensor_address"} == {"image", "prob"}
    reference = FakeBackend()
    outputs = []
    for frame in list(moving_disc_frames(4)):
        x = preprocess(frame, backend.spec)
        got = backend.infer(x)
        np.testing.assert_allclose(got, reference.infer(x), atol=1e-6)
        outputs.append(got)
    copies = [c for c in cudart.calls if c[0] == "cudaMemcpyAsync"]
    assert copies[:2] == [("cudaMemcpyAsync", "cudaMemcpyHostToDevice", 3 * 32 * 32 * 4),
                          ("cudaMemcpyAsync", "cudaMemcpyDeviceToHost", 32 * 32 * 4)]
    assert ("cudaStreamBeginCapture",) in cudart.calls  # captured after the first run ...
    assert cudart.calls.count(("cudaGraphLaunch",)) == 2  # ... and replayed for runs 3 and 4
    assert backend.name == "tensorrt:fp32"
    backend.close()
    assert len(cudart.freed) == 4 and ("cudaStreamDestroy",) in cudart.calls


def test_onnx_with_tensorrt_backend_builds_once_and_caches_beside_it(fake_gpu, brightness_model):
    from polyp_live.engines.registry import load_backend
    cudart, trt = fake_gpu
    first = load_backend(brightness_model, "tensorrt")
    cached = list(brightness_model.parent.glob("*.engine"))
    assert [p.name for p in cached] == ["bright.nvidia-fake-gpu-sm89-trt11.0.0-fp16-g2.engine"]
    builds = sum(1 for c in trt.calls if c[0] == "build_serialized_network")
    first.close()
    load_backend(brightness_model, "tensorrt").close()
    assert sum(1 for c in trt.calls if c[0] == "build_serialized_network") == builds == 1


def test_engine_for_another_tensorrt_or_gpu_is_refused_with_the_rebuild_command(monkeypatch, tmp_path, brightness_model):
    from polyp_live.engines.tensorrt_backend import TensorRTBackend
    from polyp_live.engines.tensorrt_builder import build_engine
    cudart = FakeCudart()
    install(monkeypatch, cudart, make_fake_tensorrt(cudart, version="10.8.0"))
    build_engine(brightness_model, tmp_path / "m.engine", "fp16", log=lambda m: None)
    newer = FakeCudart(name=b"NVIDIA H100", cc=(9, 0))
    install(monkeypatch, newer, make_fake_tensorrt(newer, version="11.0.0"))
    with pytest.raises(ModelLoadError) as info:
        TensorRTBackend(tmp_path / "m.engine")
    text = str(info.value)
    assert "TensorRT 10.8.0 (running 11.0.0)" in text and "running NVIDIA H100 sm_9.0" in text
    assert f"polyp-live build-engine --model {brightness_model} --precision fp16 --out {tmp_path / 'm.engine'}" in text


def test_missing_tensorrt_gives_the_install_hint(monkeypatch, brightness_model, tmp_path, capsys):
    install(monkeypatch, FakeCudart(), trt=None)
    from polyp_live.tools import build_engine
    assert build_engine.main(["--model", str(brightness_model), "--out", str(tmp_path / "m.engine")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1  # one line, not wrapped at 80 columns
    assert "TensorRT is not installed" in err and "pip install 'polyp-live[tensorrt]'" in err and "pypi.nvidia.com" in err


def test_old_onnx_option_still_works_with_a_deprecation_warning(fake_gpu, brightness_model, tmp_path, capsys):
    from polyp_live.tools import build_engine
    assert build_engine.main(["--onnx", str(brightness_model), "--precision", "fp32",
                              "--out", str(tmp_path / "m.engine")]) == 0
    assert ModelSpec.load(tmp_path / "m.engine").info["engine"]["precision"] == "fp32"
    assert "--onnx is deprecated; use --model" in capsys.readouterr().err


def test_build_engine_without_out_writes_where_the_backend_looks(fake_gpu, brightness_model):
    from polyp_live.engines.registry import load_backend
    from polyp_live.tools import build_engine
    cudart, trt = fake_gpu
    assert build_engine.main(["--model", str(brightness_model), "--precision", "fp16"]) == 0
    assert [p.name for p in brightness_model.parent.glob("*.engine")] == ["bright.nvidia-fake-gpu-sm89-trt11.0.0-fp16-g2.engine"]
    load_backend(brightness_model, "tensorrt").close()  # found, not built again
    assert sum(1 for c in trt.calls if c[0] == "build_serialized_network") == 1


def test_engine_of_a_model_in_a_read_only_folder_is_cached_by_the_models_hash(fake_gpu, brightness_model, tmp_path,
                                                                              monkeypatch):
    import os
    import shutil
    from polyp_live.cache import file_sha256
    from polyp_live.engines.registry import load_backend
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    shared = tmp_path / "shared"
    shared.mkdir()
    model = shutil.copy(brightness_model, shared / "bright.onnx")
    shutil.copy(brightness_model.with_suffix(".json"), shared / "bright.json")
    monkeypatch.setattr(os, "access", lambda path, mode: not str(path).startswith(str(shared)))
    load_backend(model, "tensorrt").close()
    folder = tmp_path / "xdg" / "polyp-live" / "models" / f"bright-{file_sha256(model)[:12]}"
    assert [p.name for p in folder.glob("*.engine")] == ["bright.nvidia-fake-gpu-sm89-trt11.0.0-fp16-g2.engine"]
    assert not list(shared.glob("*.engine"))


def test_no_gpu_and_unsupported_precision(monkeypatch, brightness_model, tmp_path):
    from polyp_live.engines.tensorrt_builder import EngineBuildError, build_engine
    none = FakeCudart(devices=0)
    install(monkeypatch, none, make_fake_tensorrt(none))
    with pytest.raises(BackendUnavailableError, match="no NVIDIA GPU"):
        build_engine(brightness_model, tmp_path / "m.engine", "fp16", log=lambda m: None)
    old = FakeCudart(name=b"Tesla K80", cc=(3, 7))
    install(monkeypatch, old, make_fake_tensorrt(old))
    with pytest.raises(EngineBuildError, match="fp16 needs compute capability 5.3"):
        build_engine(brightness_model, tmp_path / "m.engine", "fp16", log=lambda m: None)


def test_build_engine_help_documents_every_option(capsys):
    from polyp_live.tools import build_engine
    with pytest.raises(SystemExit):
        build_engine.parse_args(["--help"])
    text = capsys.readouterr().out
    for option in ("--model", "--precision", "--calib", "--calib-count", "--out", "--workspace", "--timing-cache",
                   "--validate", "--data", "--version"):
        assert option in text
    assert "--onnx" not in text  # the deprecated spelling is accepted but not advertised


# --- real hardware (skipped here) ----------------------------------------------------------------

def _real_tensorrt():
    try:
        import tensorrt  # noqa: F401
        from polyp_live.engines.cuda_memory import gpu_info
        gpu_info()
    except Exception:
        return False
    return True


@pytest.mark.gpu
@pytest.mark.tensorrt
def test_real_tensorrt_fp16_engine_matches_onnxruntime(tmp_path, brightness_model):
    if not _real_tensorrt():
        pytest.skip("needs TensorRT and an NVIDIA GPU")
    from polyp_live.engines.tensorrt_backend import TensorRTBackend
    from polyp_live.engines.tensorrt_builder import build_engine
    build_engine(brightness_model, tmp_path / "m.engine", "fp16", log=lambda m: None)
    backend = TensorRTBackend(tmp_path / "m.engine")
    x = preprocess(next(moving_disc_frames(1)), backend.spec)
    np.testing.assert_allclose(backend.infer(x), FakeBackend().infer(x), atol=5e-3)
    backend.close()
    assert json.loads((tmp_path / "m.engine.json").read_text())["info"]["engine"]["precision"] == "fp16"


def test_int8_calibration_set_is_kept_in_the_model_cache_and_reused(fake_gpu, tmp_path, monkeypatch, capsys):
    from conftest import write_video
    from test_precision import make_conv_model
    from polyp_live.cache import model_cache_dir
    from polyp_live.tools import build_engine
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    model = make_conv_model(tmp_path / "conv.onnx")
    clip = write_video(tmp_path / "calib.mp4", 10)
    assert build_engine.main(["--model", str(model), "--precision", "int8", "--calib", str(clip), "--calib-count", "6",
                              "--save-calib", "--out", str(tmp_path / "a.engine")]) == 0
    saved = model_cache_dir(model) / "calib-calib.mp4-6.npy"
    assert np.load(saved).shape == (6, 3, 32, 32) and str(tmp_path / "xdg") in str(saved)
    assert build_engine.main(["--model", str(model), "--precision", "int8", "--calib", str(saved),
                              "--out", str(tmp_path / "b.engine")]) == 0
    assert build_engine.main(["--model", str(model), "--precision", "int8", "--calib", str(tmp_path / "none.npy"),
                              "--out", str(tmp_path / "c.engine")]) == 1
    assert "calibration set" in capsys.readouterr().err and not (tmp_path / "c.engine").exists()


def test_a_failed_constructor_frees_its_pinned_and_device_buffers_and_stream(fake_gpu, tmp_path, brightness_model,
                                                                            monkeypatch):
    from polyp_live.engines import tensorrt_backend
    from polyp_live.engines.tensorrt_builder import build_engine
    cudart, _ = fake_gpu
    build_engine(brightness_model, tmp_path / "m.engine", "fp32", log=lambda m: None)
    made, real = [], tensorrt_backend.HostDeviceBuffer

    def out_of_memory_on_the_second(shape, dtype):
        if made:
            raise MemoryError("simulated cudaMalloc failure")
        made.append(real(shape, dtype))
        return made[-1]

    monkeypatch.setattr(tensorrt_backend, "HostDeviceBuffer", out_of_memory_on_the_second)
    with pytest.raises(MemoryError):
        tensorrt_backend.TensorRTBackend(tmp_path / "m.engine")
    assert len(made) == 1 and made[0].device is None                 # the first buffer was freed ...
    assert len(cudart.freed) == 2 and ("cudaStreamDestroy",) in cudart.calls   # ... host and device, and the stream
