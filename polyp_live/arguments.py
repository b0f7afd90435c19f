"""The one command-line style every polyp-live command shares.

Vocabulary: ``--model PATH`` is a model file that is read, ``--data DIR`` a dataset, ``--out`` what
is written. Metavars say what a value is: PATH (a file), DIR (a folder), N (a count), S (seconds),
MS (milliseconds), P (a probability), URL, NAME. Every command has ``--version``. Old option names
stay accepted, hidden from ``--help``, with a one-line deprecation warning.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from polyp_live.core.errors import UsageError, printable  # printable: the tools import it from here

# Where the data sits beside a checkout of this project; in any other clone these do not exist, and
# check_dataset says where to get them.
DEFAULT_DATA = "../shared/data/kvasir-seg"
DEFAULT_NEGATIVES = "../shared/data/negatives"
# kind -> (the subfolders a command reads, what to get and pass: {option} is the option's name)
DATASETS = {
    "polyps": (("images", "masks"), "get Kvasir-SEG from https://datasets.simula.no/kvasir-seg/ and pass its folder "
               "(images/, masks/ of the same names, splits/train.txt, val.txt, test.txt) with {option} DIR"),
    "negatives": (("images",), "get polyp-free colonoscopy frames (HyperKvasir's, "
                  "https://datasets.simula.no/hyper-kvasir/) and pass their folder (images/, splits/train.txt, "
                  "val.txt, test.txt) with {option} DIR, or {option} '' to go without"),
    "frames": ((), "get Kvasir-SEG from https://datasets.simula.no/kvasir-seg/ and pass its images/ folder (or any "
               "folder of frames) with {option} DIR"),
}


class OneLineErrorParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line: the problem, and where the options are.

    argparse prints the whole usage block (up to a dozen lines) before the error; in a log or a
    terminal the one line that matters is then easy to miss.
    """

    def error(self, message: str):
        if message.endswith("expected one argument"):
            # argparse takes a value that starts with '-' (a negative number, "-10,0,...") for an option.
            message += "; a value that starts with '-' is written --option=VALUE"
        self.exit(2, f"{self.prog}: error: {printable(message)} (options: {self.prog} --help)\n")


def command_parser(command: str, description: str | None) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` for ``polyp-live COMMAND`` with the shared formatting and ``--version``."""
    from polyp_live import __version__
    # Here, not in one entry point: `polyp-live X` and `python tools/X.py` both build this parser. FFmpeg's
    # and OpenCV's own lines ("moov atom not found") would otherwise precede the command's one-line
    # error about the same file; polyp-live --verbose turns them back on after parsing.
    quiet_native_logs(verbose=False)
    prog = f"polyp-live {command}" if command else "polyp-live"
    parser = OneLineErrorParser(prog=prog, description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


class _Deprecated(argparse.Action):
    """Stores into the new option's destination and warns once that the old spelling is deprecated."""

    def __init__(self, option_strings, dest, new: str, **kwargs):
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        sys.stderr.write(f"{parser.prog}: warning: {option_string} is deprecated; use {self.new}\n")
        setattr(namespace, self.dest, values)


def deprecated_alias(parser: argparse.ArgumentParser, old: str, new: str, nargs=None) -> None:
    """Accept ``old`` as a hidden spelling of the option ``new`` (same destination)."""
    dest = new.lstrip("-").replace("-", "_")
    parser.add_argument(old, dest=dest, action=_Deprecated, new=new, nargs=nargs, help=argparse.SUPPRESS)


def add_calibration_options(parser: argparse.ArgumentParser, note: str = "") -> None:
    """``--calib``, ``--calib-count`` and ``--save-calib``, the inputs of ``calibration_for``.

    One definition for every command that calibrates (quantize, build-engine), so their defaults
    and the meaning of a bare ``--save-calib`` cannot drift apart. ``note`` prefixes each help
    line (e.g. ``"int8 only: "``).
    """
    parser.add_argument("--calib", default=None, metavar="SOURCE",
                        help=f"{note}calibration frames from a video, an image folder, a dataset folder (its train "
                             "split) or a calibration set saved with --save-calib (.npy)")
    parser.add_argument("--calib-count", type=int, default=500, metavar="N",
                        help=f"{note}frames drawn, spread evenly over the source (default 500)")
    parser.add_argument("--save-calib", nargs="?", const="", default=None, metavar="PATH",
                        help=f"{note}also keep the calibration set (.npy) for reuse with --calib; without PATH "
                             "it goes into the model's cache folder")


def refuse_overwriting_inputs(outputs: dict[str, object], source_paths: list, protected: list = (),
                              parser: argparse.ArgumentParser | None = None) -> None:
    """Refuse an output that is, or would write into, something this run reads (exit 2).

    The one rule of every command, ``polyp-live`` and the tools: a run never replaces what it reads,
    never adds its results to a folder it reads from, and never writes two outputs to one path.
    With ``parser`` the refusal is its one-line usage error; without, a :class:`UsageError`.

    Args:
        outputs: option name -> the path given, None or "" when unused (``--save-masks`` is a folder,
            the others files).
        source_paths: the files and folders the run reads (see ``FrameSource.input_paths``).
        protected: other files that must survive (the model and its sidecar).
    """
    try:
        _refuse(outputs, source_paths, protected)
    except UsageError as exc:
        if parser is None:
            raise
        parser.error(str(exc))


def _refuse(outputs: dict[str, object], source_paths: list, protected) -> None:
    names: dict[Path, str] = {}
    for path in map(Path, protected):
        if path.is_file():
            names[path.resolve()] = f"the model file {path}"
    folders = set()
    for path in (Path(str(p)) for p in source_paths if p):
        if path.is_dir():
            folders.add(path.resolve())
        elif path.exists():
            names[path.resolve()] = f"the source {path}"
    seen: dict[Path, str] = {}
    for option, value in outputs.items():
        if not value:
            continue
        target = Path(str(value)).expanduser().resolve()  # follows symlinks, also through missing tails
        if target in seen:
            # Written one after the other, the second would replace the first (a recording by the stats).
            raise UsageError(f"{option} {value} is also {seen[target]}; give each output its own path")
        seen[target] = option
        if target in names:
            raise UsageError(f"{option} {value} would write over {names[target]}, which this run reads; "
                             "write the output somewhere else")
        folder = target if option == "--save-masks" else target.parent
        inside = next((f for f in folders if f == folder or f in folder.parents), None)
        if inside is not None:
            raise UsageError(f"{option} {value} would write into the source image folder {inside}; "
                             "choose a folder outside it")


def check_output_folder(parser: argparse.ArgumentParser, option: str, value: object) -> None:
    """Stop with a one-line usage error when a folder option names an existing file."""
    if value and Path(str(value)).exists() and not Path(str(value)).is_dir():
        parser.error(f"{option} {value} is a file; give a folder")


def check_output_file(parser: argparse.ArgumentParser, option: str, value: object, suffixes: tuple[str, ...]) -> None:
    """Stop with a one-line usage error when a file option names a folder or has the wrong extension."""
    if not value:
        return
    path = Path(str(value))
    if path.is_dir():
        parser.error(f"{option} {value} is a folder; give a file name")
    if path.suffix.lower() not in suffixes:
        parser.error(f"{option} {value} must end in {' or '.join(suffixes)}")


def check_dataset(parser: argparse.ArgumentParser, option: str, value: object, kind: str = "polyps") -> None:
    """Stop with a one-line usage error when a dataset option names no usable folder.

    ``kind`` is ``polyps`` (images/ and masks/), ``negatives`` (images/) or ``frames`` (any folder).
    The line names the path and, as the defaults exist only beside this project's own checkout,
    where to download the data and the layout expected. An empty value (a set not used) passes.
    """
    if not value:
        return
    path = Path(str(value))
    subfolders, fix = DATASETS[kind]
    if not path.is_dir():
        problem = "is a file, not a folder" if path.exists() else "not found"
    elif missing := [f"{sub}/" for sub in subfolders if not (path / sub).is_dir()]:
        problem = f"has no {' and no '.join(missing)} folder"
    else:
        return
    # (make-figures' defaults live in its sub-parsers, which `parser` does not see: hence the two constants)
    defaults = (parser.get_default(option.lstrip("-").replace("-", "_")), DEFAULT_DATA, DEFAULT_NEGATIVES)
    default = " (the default)" if str(value) in defaults else ""
    parser.error(f"{option} {printable(value)}{default} {problem}; {fix.format(option=option)}")


def quiet_native_logs(verbose: bool) -> None:
    """Silence OpenCV's and FFmpeg's own log lines around our one-line messages, unless ``verbose``.

    The environment is read when OpenCV first logs or opens an FFmpeg capture, so this runs
    before any source opens; OpenCV's level is also set directly for an already imported cv2.
    """
    if verbose:
        os.environ["OPENCV_LOG_LEVEL"] = "INFO"
        os.environ["OPENCV_FFMPEG_LOGLEVEL"] = "32"  # AV_LOG_INFO
    else:
        os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    cv2 = sys.modules.get("cv2")
    if cv2 is not None:
        # OpenCV 5 has cv2.utils.logging; OpenCV 4.x wheels have only cv2.setLogLevel (0 silent, 4 info).
        logging = getattr(getattr(cv2, "utils", None), "logging", None)
        if logging is not None:
            logging.setLogLevel(logging.LOG_LEVEL_INFO if verbose else logging.LOG_LEVEL_SILENT)
        elif hasattr(cv2, "setLogLevel"):
            cv2.setLogLevel(4 if verbose else 0)
    if verbose:  # PyAV keeps FFmpeg quiet unless asked
        try:
            import av.logging  # noqa: PLC0415
        except ImportError:
            return
        av.logging.set_level(av.logging.WARNING)
