"""The rich consoles the commands print through, and tables whose headings survive a pipe.

Without a terminal rich assumes 80 columns and wraps or crops every longer line there: in a log
file or behind ``| grep`` the benchmark table cut its model names short and the run summary's
counters came out folded into a centred block. When the stream is not a terminal, :func:`console`
has no practical width limit instead, and :func:`loose_headings` puts a table's title and caption
on lines of their own, because rich wraps and centres those within the table's width whatever the
console's width is.
"""

from __future__ import annotations

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

# Columns when not a terminal: wider than anything a command prints (a long path, a sweep line).
PIPED_WIDTH = 10_000


def console(stderr: bool = False) -> Console:
    """A Console on stdout (or stderr): the terminal's own width, or :data:`PIPED_WIDTH` when redirected."""
    probe = Console(stderr=stderr)
    return probe if probe.is_terminal else Console(stderr=stderr, width=PIPED_WIDTH)


def loose_headings(table: Table) -> Group:
    """``table`` with its title above it and its caption below it as plain left-aligned lines.

    The lines wrap at the console's width only (on a terminal) and never at the table's. A title or
    caption given as a string is rich markup, as in the Table itself.
    """
    title, caption = table.title, table.caption
    table.title = table.caption = None
    as_text = [Text.from_markup(part) if isinstance(part, str) else part for part in (title, caption)]
    return Group(*([as_text[0]] if title else []), table, *([as_text[1]] if caption else []))
