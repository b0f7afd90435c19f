#!/usr/bin/env python3
"""Rebuild the procedure report page from a run's saved --stats-json.

Examples:
    polyp-live --source clip.mp4 --headless --stats-json runs/stats.json
    polyp-live report runs/stats.json --out runs/report.html
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from polyp_live.arguments import printable


def main(argv=None) -> int:
    from polyp_live.arguments import command_parser
    from polyp_live.realtime.report import write_report
    p = command_parser("report", __doc__)
    p.add_argument("stats", metavar="STATS.json", help="the --stats-json file of a run")
    p.add_argument("--out", required=True, metavar="PATH", help="the page to write (.html), or .json for the data")
    args = p.parse_args(argv)
    stats, out = Path(args.stats), Path(args.out)
    if out.suffix.lower() not in (".html", ".htm", ".json"):
        p.error(f"--out {out} must end in .html or .json")
    if out.exists() and out.resolve() == stats.resolve():
        p.error(f"--out {out} is the stats file itself; choose another path")
    if out.is_dir():
        p.error(f"--out {out} is a folder; give a file name such as {out / 'report.html'}")
    try:
        summary = json.loads(stats.read_text())
    except FileNotFoundError:
        print(f"polyp-live report: error: {printable(stats)} not found; pass the --stats-json file of a run",
              file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"polyp-live report: error: {printable(stats)} is not a stats file ({printable(exc)})", file=sys.stderr)
        return 1
    if not isinstance(summary, dict) or "appearances" not in summary:
        print(f"polyp-live report: error: {printable(stats)} holds no appearances; it was written by another "
              "version of polyp-live, or is not a --stats-json file", file=sys.stderr)
        return 1
    try:
        write_report(summary, out)
    except OSError as exc:
        print(f"polyp-live report: error: cannot write {printable(out)} ({exc.strerror}); choose another path",
              file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
