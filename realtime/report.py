"""The procedure report: one self-contained HTML page (or JSON) from a run's summary.

The page holds the run (source, duration, model, runtime, precision, operating point, software
version), a timeline of the presence score with each appearance marked (inline SVG), a table of the
appearances with their best frames (JPEGs inlined as data: URIs) and the run's figures. No script,
no external file: it opens from a USB stick on a ward PC, and its Content-Security-Policy forbids
loading anything. ``polyp-live report STATS.json --out PAGE.html`` rebuilds it from ``--stats-json``.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

from polyp_live.core.decision import score_text

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _fmt(value, digits: int = 2, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def _score(value) -> str:
    return score_text(value) if isinstance(value, (int, float)) else "–"


def _timeline_svg(timeline: dict, appearances: list[dict], start: float, width: int = 900, height: int = 140) -> str:
    t, score = timeline.get("t_s", []), timeline.get("score", [])
    duration = max([t[-1] if t else 0.0] + [a["last_time"] - start for a in appearances] + [1e-3])
    def x(v: float) -> float:
        return 40 + (width - 50) * min(1.0, max(0.0, v / duration))
    def y(v: float) -> float:
        return 10 + (height - 40) * (1 - v)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="presence score over time">',
             f'<rect x="40" y="10" width="{width - 50}" height="{height - 40}" fill="#fafafa" stroke="#ccc"/>']
    for a in appearances:
        x0, x1 = x(a["first_time"] - start), x(a["last_time"] - start)
        parts.append(f'<rect class="appearance" x="{x0:.1f}" y="10" width="{max(2.0, x1 - x0):.1f}" '
                     f'height="{height - 40}" fill="#2e7d32" fill-opacity="0.25"><title>polyp #{a["id"]}</title></rect>')
        parts.append(f'<text x="{x0:.1f}" y="{height - 18}" font-size="10">#{a["id"]}</text>')
    if t:
        points = " ".join(f"{x(a):.1f},{y(b):.1f}" for a, b in zip(t, score))
        parts.append(f'<polyline fill="none" stroke="#1565c0" stroke-width="1" points="{points}"/>')
    for v in (0.0, 0.5, 1.0):
        parts.append(f'<text x="4" y="{y(v) + 4:.1f}" font-size="10">{v:.1f}</text>')
    parts.append(f'<text x="40" y="{height - 2}" font-size="10">0 s</text>'
                 f'<text x="{width - 60}" y="{height - 2}" font-size="10">{duration:.1f} s</text></svg>')
    return "".join(parts)


def _appearance_row(a: dict, start: float) -> str:
    """One appearance's row of the report's table."""
    thumb = (f'<img alt="best frame of polyp #{a["id"]}" src="data:image/jpeg;base64,{a["thumbnail_jpeg_base64"]}">'
             if a.get("thumbnail_jpeg_base64") else "")
    return (f'<tr class="appearance-row"><td>#{a["id"]}</td><td>{_fmt(a["first_time"] - start, 2, " s")}</td>'
            f'<td>{_fmt(a["duration_s"], 2, " s")}</td><td>{a["first_frame"]}–{a["last_frame"]}</td>'
            f'<td>{a["frames_shown"]}</td><td>{_fmt(a["peak_score"], 3)}</td>'
            f'<td>{_fmt(100 * a["largest_area"], 1, " %")}</td><td>{_fmt(a["time_to_alert"], 3, " s")}</td>'
            f'<td>{html.escape(a.get("end_reason", ""))}</td><td>{thumb}</td></tr>')


def render_html(summary: dict) -> str:
    """The report page for one run's summary (what ``--stats-json`` holds)."""
    info, counters = summary.get("info", {}), summary.get("counters", {})
    tracked = summary.get("appearances") or {"appearances": [], "figures": {}, "timeline": {}}
    appearances, figures = tracked.get("appearances", []), tracked.get("figures", {})
    times = tracked.get("timeline", {}).get("t_s", [])
    start = 0.0  # appearance times and the timeline count from the run's first frame
    decision = info.get("decision", {})
    stages = summary.get("stages_ms", {})
    run_rows = [
        ("source", info.get("source", "")), ("duration", _fmt(summary.get("wall_s"), 1, " s")),
        ("frames shown", counters.get("frames_out", 0)), ("model", info.get("model", "")),
        ("runtime", info.get("backend", "")), ("precision", info.get("precision", "")),
        ("operating point", f"score ≥ {_score(decision.get('score_threshold'))}, persistence "
                            f"{decision.get('k', 1)}/{decision.get('n', 1)}, smallest region "
                            f"{_fmt(100 * decision.get('min_area_fraction', 0.0), 2)} % of the view"),
        ("software", f"polyp-live {info.get('version', '')}"),
        ("video delay p95", _fmt(stages.get("video_delay", {}).get("p95"), 1, " ms")),
        ("annotation delay p95", _fmt(stages.get("annotation_delay", {}).get("p95"), 1, " ms")),
    ]
    figure_rows = [
        ("appearances", figures.get("appearances", 0)),
        ("appearances per minute", _fmt(figures.get("appearances_per_minute"), 2)),
        ("shorter than 0.5 s", _fmt(100 * figures.get("share_shorter_than_0_5_s", 0.0), 0, " %")),
        ("median time from first candidate frame to alert", _fmt(figures.get("median_time_to_alert_s"), 3, " s")),
        ("an appearance survives a gap of", _fmt(figures.get("gap_s"), 2, " s")),
    ]
    esc = html.escape
    rows = [_appearance_row(a, start) for a in appearances]
    table = ("".join(rows) if rows else '<tr><td colspan="10">no polyp was flagged in this run</td></tr>')
    kv = lambda items: "".join(f"<tr><th>{esc(str(k))}</th><td>{esc(str(v))}</td></tr>" for k, v in items)  # noqa: E731
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<title>polyp-live report: {esc(str(info.get("source", "")))}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1.2em; }}
th, td {{ border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: middle; font-size: 14px; }}
th {{ background: #f3f3f3; }}
.note {{ color: #666; font-size: 13px; }}
</style></head><body>
<h1>polyp-live procedure report</h1>
<p class="note">Research software, not a medical device. Times are from the start of the run.</p>
<h2>Run</h2><table id="run">{kv(run_rows)}</table>
<h2>Presence score</h2>{_timeline_svg(tracked.get("timeline", {}), appearances, start)}
<p class="note">Blue: the frame's presence score (the peak of its best region); green: the appearances.
{len(times)} points.</p>
<h2>Appearances</h2>
<table id="appearances"><tr><th>polyp</th><th>first seen</th><th>duration</th><th>frames</th><th>frames shown</th>
<th>peak score</th><th>largest area</th><th>time to alert</th><th>ended by</th><th>best frame</th></tr>
{table}</table>
<h2>Figures</h2><table id="figures">{kv(figure_rows)}</table>
</body></html>
"""


def write_report(summary: dict, path: str | Path) -> Path:
    """Write the report (``.html`` page or ``.json`` data) under a partial name, renamed when whole."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        if path.suffix.lower() == ".json":
            tmp.write_text(json.dumps(summary, indent=1) + "\n")
        else:
            tmp.write_text(render_html(summary), encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
