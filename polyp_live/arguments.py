"""The one command-line style every polyp-live command shares.

Vocabulary: ``--model PATH`` is a model file that is read, ``--data DIR`` a dataset, ``--out`` what
is written. Metavars say what a value is: PATH (a file), DIR (a folder), N (a count), S (seconds),
MS (milliseconds), P (a probability), URL, NAME. Every command has ``--version``. Old option names
stay accepted, hidden from ``--help``, with a one-line deprecation warning.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from polyp_live.core.errors import printable  # noqa: F401 - the tools import it from here

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
    from polyp_live.realtime.options import quiet_native_logs
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


def refuse_overwriting_inputs(parser: argparse.ArgumentParser, outputs: dict[str, object],
                              inputs: list[object]) -> None:
    """Stop with a one-line usage error (exit 2) when an output would be written over, or into, an input:
    the rule of :func:`polyp_live.realtime.options.refuse_overwriting_inputs`, for a tool's parser."""
    from polyp_live.core.errors import UsageError
    from polyp_live.realtime.options import refuse_overwriting_inputs as refuse
    try:
        refuse(outputs, inputs)
    except UsageError as exc:
        parser.error(str(exc))


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
