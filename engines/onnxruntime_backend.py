"""ONNX Runtime backend: the CPU path, and CUDA when onnxruntime-gpu is installed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from polyp_live.core.backend import Backend
from polyp_live.core.errors import BackendUnavailableError, ModelLoadError
from polyp_live.core.spec import ModelSpec


class OnnxRuntimeBackend(Backend):
    """Runs an ``.onnx`` model with ONNX Runtime.

    Args:
        model_path: the ONNX file; its sidecar ``.json`` must sit next to it.
        spec: overrides the sidecar (tests, calibration).
        providers: ONNX Runtime execution providers; by default CUDA when available, then CPU.
        threads: intra-op threads (0 = ONNX Runtime's default, one per physical core).
        allow_spinning: let idle intra-op threads spin for work. Off by default: in the live
            pipeline the spinning threads take the cores the capture, render and encoder threads
            need between inferences (measured in docs/PERFORMANCE.md); a bare inference loop may
            gain a little with it on.
    """

    def __init__(self, model_path: str | Path, spec: ModelSpec | None = None,
                 providers: list[str] | None = None, threads: int = 0, allow_spinning: bool = False):
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendUnavailableError("onnxruntime is not installed: pip install onnxruntime") from None
        path = Path(model_path)
        if not path.is_file():
            raise ModelLoadError(f"model file {path} not found; pass --model with an existing .onnx file")
        self.spec = spec or ModelSpec.load(path)
        self.model_path = path
        available = ort.get_available_providers()
        wanted = providers or [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        # One model, one input at a time: no inter-op parallelism, and no busy-waiting workers.
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=wanted)
        except Exception as exc:  # ORT raises its own exception types per failure
            first = str(exc).strip().splitlines()[0][:200]
            if isinstance(exc, MemoryError) or any(w in str(exc) for w in ("bad_alloc", "Failed to allocate",
                                                                            "out of memory")):
                raise ModelLoadError(f"not enough memory to load model {path} ({first}); close other programs or "
                                     "raise the memory limit (ulimit -v)") from None
            raise ModelLoadError(f"model file {path} is not a loadable ONNX model ({first}); "
                                 "export it with polyp-live export") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ModelLoadError(f"model {path} has {len(inputs)} inputs; polyp-live needs one image input")
        self.input_name = inputs[0].name
        if inputs[0].type != "tensor(float)":
            raise ModelLoadError(f"model {path} takes a {inputs[0].type} input; polyp-live feeds float32 images "
                                 "(tensor(float)): re-export the model with polyp-live export")
        expected = [1, 3, self.spec.input_height, self.spec.input_width]
        shape = inputs[0].shape
        fixed = [d if isinstance(d, int) else None for d in shape]
        if len(shape) != 4 or any(f is not None and f != e for f, e in zip(fixed, expected)):
            raise ModelLoadError(f"model {path} takes input shape {shape} but its sidecar {ModelSpec.sidecar_path(path)} "
                                 f"describes {expected}; re-export the model or fix the sidecar")
        self.output_name = self._pick_output(path)
        self.name = f"onnxruntime:{self.session.get_providers()[0].replace('ExecutionProvider', '')}"
        # tools/quantize.py writes MODEL.int8.onnx; a Q/DQ graph runs integer kernels.
        info = self.spec.info if isinstance(self.spec.info, dict) else {}
        self.precision = "int8" if ".int8" in path.suffixes or info.get("precision") == "int8" else "fp32"

    def _pick_output(self, path: Path) -> str:
        """The one output (or the one the sidecar names in ``info.output_name``), checked to be N x 1 x H x W."""
        outputs = self.session.get_outputs()
        wanted = self.spec.info.get("output_name") if isinstance(self.spec.info, dict) else None
        if wanted is not None:
            named = [o for o in outputs if o.name == wanted]
            if not named:
                raise ModelLoadError(f"model {path} has no output {wanted!r} (its sidecar's info.output_name); "
                                     f"it has {', '.join(o.name for o in outputs)}")
            output = named[0]
        elif len(outputs) != 1:
            raise ModelLoadError(f"model {path} has {len(outputs)} outputs ({', '.join(o.name for o in outputs)}); "
                                 "polyp-live needs one probability map, or info.output_name in the sidecar naming it")
        else:
            output = outputs[0]
        expected = [None, 1, self.spec.input_height, self.spec.input_width]
        shape = [d if isinstance(d, int) else None for d in output.shape]
        if len(shape) != 4 or any(s is not None and e is not None and s != e for s, e in zip(shape, expected)):
            raise ModelLoadError(f"model {path} gives output {output.name!r} of shape {output.shape}; polyp-live needs "
                                 f"N x 1 x {self.spec.input_height} x {self.spec.input_width} (one probability map "
                                 "at the input size)")
        if output.type not in ("tensor(float)", "tensor(float16)"):
            raise ModelLoadError(f"model {path} gives a {output.type} output; polyp-live needs float probabilities")
        return output.name

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: batch})[0]

    def close(self) -> None:
        self.session = None
