"""The README's commands use only options the commands have (as their --help lists them)."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from functools import lru_cache
from pathlib import Path

import pytest

from polyp_live.commands import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# The README and the pages it sends readers to: their commands are checked alike.
PAGES = [README] + [ROOT / "docs" / f"{name}.md" for name in ("usage", "training", "tensorrt", "serving")]
OPTION = re.compile(r"^--[a-z0-9][a-z0-9-]*")


def shell_lines(markdown: str) -> list[str]:
    """Every command line of the README's bash blocks: continuations joined, comments dropped,
    chains (&&, ||, ;, |) split."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", markdown, flags=re.S):
        text = re.sub(r"\\\n\s*", " ", block)
        for line in text.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                lines += [part.strip() for part in re.split(r"&&|\|\||;|\|", line) if part.strip()]
    return lines


def command_of(line: str) -> tuple[tuple[str, ...], list[str]] | None:
    """((command, sub-command...), the options used) for a polyp-live or tools line, else None."""
    words = shlex.split(line)
    if not words:
        return None
    program = Path(words[0]).name
    if program == "polyp-live" and len(words) > 1 and words[1] in COMMANDS:
        name, rest = words[1], words[2:]
    elif program == "polyp-live":
        name, rest = "", words[1:]
    elif program == "polyp-live-serve":
        name, rest = "serve", words[1:]
    elif program.startswith("python") and len(words) > 1 and words[1].startswith("tools/"):
        module = "polyp_live.tools." + Path(words[1]).stem
        name = next(n for n, c in COMMANDS.items() if c.module == module)
        rest = words[2:]
    else:
        return None
    # Words before the first option name a sub-figure or sub-mode (make-figures grid); "..." elides.
    words = [w for w in rest if w != "..."]
    sub = tuple(w for w in words[:next((i for i, w in enumerate(words) if w.startswith("-")), len(words))])
    return (name, *sub), [OPTION.match(w).group(0) for w in rest if OPTION.match(w)]


@lru_cache(maxsize=None)
def help_text(command: tuple[str, ...]) -> str:
    """What ``polyp-live [NAME [SUB]] --help`` prints (skipped when the command's extra is not installed)."""
    name, sub = command[0], list(command[1:])
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        if name:
            from polyp_live.commands import run
            code = run(name, [*sub, "--help"])
            if code == 2:  # its extra is missing here: one line on stderr, no help
                pytest.skip(f"polyp-live {name} needs an extra that is not installed")
        else:
            from polyp_live.realtime.cli import main
            main(["--help"])
    return out.getvalue()


def listed(*command: str) -> set[str]:
    """The options in the help's option list (argparse indents them by two spaces; descriptions and
    examples, which may mention anything, do not count)."""
    return set(re.findall(r"^  (?:-\w, )?(--[a-z0-9][a-z0-9-]*)", help_text(command or ("",)), flags=re.M))


def readme_commands() -> list[tuple[str, list[str], str]]:
    text = "\n".join(page.read_text() for page in PAGES)
    found = [(*parsed, line) for line in shell_lines(text) if (parsed := command_of(line))]
    return found


def test_the_readme_has_commands_to_check():
    names = {command[0] for command, _, _ in readme_commands()}
    # the quick start's live command, and the tools most readers run
    assert {"", "quantize", "export", "build-engine", "train", "evaluate", "make-figures"} <= names


@pytest.mark.parametrize("command,options,line", readme_commands(), ids=lambda v: v if isinstance(v, str) else None)
def test_readme_command_uses_only_options_its_help_lists(command, options, line):
    unknown = sorted(set(options) - listed(*command))
    assert not unknown, f"README line {line!r} uses {unknown}, which `polyp-live {' '.join(command)} --help` does not list"


def test_options_table_names_only_real_options_of_polyp_live():
    text = (ROOT / "docs" / "usage.md").read_text()
    table = text[text.index("## Options"):text.index("Bad input ends")]
    rows = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `--")]
    used = {m for row in rows for m in re.findall(r"--[a-z0-9][a-z0-9-]*", row)}
    assert len(rows) > 15
    assert used <= listed(), sorted(used - listed())


def test_quick_start_is_two_commands_and_installs_torch_from_the_cpu_index():
    text = README.read_text()
    quick = text[text.index("## Quick start"):text.index("## Usage")]
    block = re.search(r"```bash\n(.*?)```", quick, flags=re.S).group(1)
    commands = [line for line in block.splitlines() if line.strip() and not line.startswith("#")]
    assert len(commands) == 2
    assert commands[0].startswith("pip install . && polyp-live --source demo")
    assert "pip install torch --index-url https://download.pytorch.org/whl/cpu" in commands[1]


def test_no_readme_command_writes_over_the_shipped_model():
    shipped = "engines/models/polyp-unetpp-lite0-256"
    for _, _, line in readme_commands():
        words = shlex.split(line)
        for flag in ("--out",):
            if flag in words:
                target = words[words.index(flag) + 1]
                assert not target.startswith(shipped), f"README line {line!r} writes {target}"


def test_the_readme_is_a_page_a_newcomer_reads_and_its_links_resolve():
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    for page in PAGES:
        body = page.read_text()
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", body):
            assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"
