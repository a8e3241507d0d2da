"""The charts of the site, laid out at build time as inline SVG (drawn by the templates' macros):

    charts(expected, history)  run history: one small line chart per row or free metric that at
                               least two successful runs measured, the paper's value dashed
    scatters(anchor, best)     "paper vs ours": one point per compared row, the y = x line, the
                               tolerance band, a shape and a colour per verdict
    bar(counts)                a small stacked bar of rows matched / deviating / not compared /
                               not run (index and scoreboard)

Inline SVG needs no script and no chart library, works from `file://` and under the pages'
Content-Security-Policy (no inline style: colours come from classes in style.css), and carries
`role="img"`, an `aria-label`, `<title>` and `<desc>`; the scatter's numbers are also a table.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from catalog.compare import VERDICTS
from catalog.schema import ExpectedRow, as_percent
from sitebuilder.status import VERDICT_LABELS
from sitebuilder.text import fmt_number, fmt_paper
from sitebuilder.views import Bar, Chart, RunView, Scatter

__all__ = ["bar", "chart", "charts", "nice_ticks", "scatters"]


def chart(
    title: str, label: str, points: list[tuple[RunView, float]], paper: float | None
) -> Chart:
    """Lay out a small chart: runs evenly spaced in time order, the paper's value dashed."""
    width, height, pad_x, pad_y = 320, 96, 8, 10
    values = [v for _, v in points] + ([paper] if paper is not None else [])
    lo, hi = min(values), max(values)
    if hi - lo < 1e-12:
        lo, hi = lo - 1, hi + 1
    span = hi - lo

    def y_of(v: float) -> float:
        return round(height - pad_y - (v - lo) / span * (height - 2 * pad_y), 2)

    n = len(points)
    step = (width - 2 * pad_x) / max(1, n - 1)
    pts = []
    for i, (run, value) in enumerate(points):
        x = round(pad_x + (i * step if n > 1 else (width - 2 * pad_x) / 2), 2)
        pts.append((x, y_of(value), f"{run.date} {run.scale}: {fmt_number(value)}", run.scale))
    return Chart(
        title=title,
        label=label,
        width=width,
        height=height,
        points=pts,
        line=" ".join(f"{x},{y}" for x, y, _, _ in pts),
        paper_y=y_of(paper) if paper is not None else None,
        y_min=fmt_number(lo),
        y_max=fmt_number(hi),
        first=points[0][0].date,
        last=points[-1][0].date,
        paper_label=fmt_paper(paper) if paper is not None else "",
    )


def charts(expected: Sequence[ExpectedRow], history: Sequence[RunView]) -> list[Chart]:
    """One chart per row or free metric measured by at least two successful runs: expected rows
    in expected.csv's order, then free metrics and unknown rows by name."""
    ok = [r for r in sorted(history, key=lambda r: r.order) if r.status == "succeeded"]
    series: dict[str, list[tuple[RunView, float]]] = defaultdict(list)
    for run in ok:
        for row in run.summary.get("rows", []):
            if row.get("value") is not None:
                series["row:" + row["id"]].append((run, float(row["value"])))
        for metric in run.summary.get("metrics", []):
            if metric.get("value") is not None:
                series["metric:" + metric["name"]].append((run, float(metric["value"])))
    out = []
    paper_of = {e.id: e for e in expected}
    order = [("row:" + e.id) for e in expected] + sorted(
        k for k in series if k.startswith("metric:") or k[4:] not in paper_of
    )
    seen = set()
    for name in order:
        if name in seen or len(series.get(name, [])) < 2:
            continue
        seen.add(name)
        kind, ident = name.split(":", 1)
        exp = paper_of.get(ident) if kind == "row" else None
        label = f"{ident} ({exp.metric})" if exp else ident
        values = ", ".join(f"{r.date} {r.scale} {fmt_number(v)}" for r, v in series[name])
        paper = exp.paper if exp else None
        aria = f"{label} across {len(series[name])} runs: {values}"
        if paper is not None:
            aria += f"; paper {fmt_paper(paper)}"
        out.append(chart(label, aria, series[name], paper))
    return out


# --------------------------------------------------------------------------- paper vs ours

#: the shape of each verdict's point, so that colour is never the only cue
SHAPES = {"match": "circle", "deviates": "diamond", "not_compared": "square"}
_PROPORTION = ("fraction", "percent")


def nice_ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    """About `n` round ticks from at or below `lo` to at or above `hi` (steps of 1, 2 or 5 times a
    power of ten), so an axis can start and end on a tick."""
    span = hi - lo
    if span <= 0:
        return [lo]
    raw = span / max(1, n - 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw - 1e-12)
    first = math.floor(lo / step + 1e-9) * step
    last = math.ceil(hi / step - 1e-9) * step
    count = round((last - first) / step)
    return [round(first + i * step, 10) for i in range(count + 1)]


def _panel_values(rec: Mapping[str, Any]) -> tuple[str, float, float, float | None] | None:
    """(panel, paper, ours, tolerance) in the panel's unit: proportions in percent share one
    panel (fractions scaled), any other unit has its own."""
    paper, value, unit = rec.get("paper"), rec.get("value"), rec.get("unit")
    if paper is None or value is None:
        return None
    tol = rec.get("tolerance")
    if unit in _PROPORTION:
        p, v = as_percent(paper, unit), as_percent(value, unit)
        t = as_percent(tol, unit) if tol is not None else None
        if p is None or v is None:
            return None
        return "%", p, v, t
    return str(unit or rec.get("metric") or "value"), float(paper), float(value), tol


def scatter(
    anchor: str, unit: str, points: Sequence[tuple[Mapping[str, Any], float, float, float | None]]
) -> Scatter:
    """Lay out one panel: paper on x, ours on y, the same scale on both axes."""
    width = height = 340
    x0, y0, x1, y1 = 56.0, 12.0, 328.0, 284.0  # a square plot area, room for the axis labels
    values = [v for _, p, o, _ in points for v in (p, o)]
    if unit == "%":
        lo, hi = 0.0, 100.0
    else:
        lo = min(0.0, *values) if values else 0.0
        hi = max(values) if values else 1.0
        if hi - lo < 1e-12:
            hi = lo + 1
    ticks_v = nice_ticks(lo, hi)
    lo, hi = ticks_v[0], ticks_v[-1]
    span = hi - lo

    def px(v: float) -> float:
        return round(x0 + (v - lo) / span * (x1 - x0), 2)

    def py(v: float) -> float:
        return round(y1 - (v - lo) / span * (y1 - y0), 2)

    tolerances = [t for _, _, _, t in points if t is not None]
    tol = statistics.median(tolerances) if tolerances else 0.0
    band = ""
    if 0 < tol < span:
        corners = [
            (lo, lo),
            (lo, lo + tol),
            (hi - tol, hi),
            (hi, hi),
            (hi, hi - tol),
            (lo + tol, lo),
        ]
        band = " ".join(f"{px(a)},{py(b)}" for a, b in corners)
    shapes, counts = [], defaultdict(int)
    table = []
    for rec, paper, ours, _ in points:
        verdict = str(rec.get("verdict"))
        counts[verdict] += 1
        label = VERDICT_LABELS.get(verdict, verdict)
        tip = f"row {rec['id']}: paper {fmt_paper(paper)}, ours {fmt_number(ours)} ({label})"
        cx, cy = px(min(max(paper, lo), hi)), py(min(max(ours, lo), hi))
        shapes.append((SHAPES.get(verdict, "circle"), cx, cy, verdict.replace("_", "-"), tip))
        change = str(rec.get("change") or "") if rec.get("changed") else ""
        table.append((str(rec["id"]), fmt_paper(paper), fmt_number(ours), label, change))
    count_list = [
        (v.replace("_", "-"), VERDICT_LABELS[v], counts[v]) for v in VERDICTS if counts.get(v)
    ]
    said = ", ".join(f"{n} {label}" for _, label, n in count_list) or "no row measured yet"
    unit_text = "accuracy, error or rate in %" if unit == "%" else unit
    band_label = (
        f"shaded band: within ± {fmt_number(tol)} of the paper (median tolerance)" if band else ""
    )
    return Scatter(
        anchor=anchor,
        title=f"Paper vs ours ({unit_text})",
        label=f"Scatter of the paper's numbers (x) against ours (y), {len(points)} rows: {said}.",
        desc=(
            "Points on the diagonal agree with the paper; points above it are higher than the "
            "paper's number, below it lower. "
            + (band_label + ". " if band_label else "")
            + "Shapes: circle match, diamond deviates, square not compared."
        ),
        width=width,
        height=height,
        box=(x0, y0, x1, y1),
        ticks=[(px(t), py(t), fmt_number(t)) for t in ticks_v],
        diagonal=(px(lo), py(lo), px(hi), py(hi)),
        band=band,
        band_label=band_label,
        points=shapes,
        counts=count_list,
        table=table,
        unit=unit_text,
    )


def scatters(anchor: str, best: Sequence[Mapping[str, Any]]) -> list[Scatter]:
    """One "paper vs ours" panel per unit group (proportions together, in %), each measured row
    with a paper number a point; always at least one panel (empty before any number)."""
    panels: dict[str, list[tuple[Mapping[str, Any], float, float, float | None]]] = {}
    for rec in best:
        if rec.get("verdict") == "not_run":
            continue
        found = _panel_values(rec)
        if found is None:
            continue
        panel, paper, ours, tol = found
        panels.setdefault(panel, []).append((rec, paper, ours, tol))
    if not panels:
        return [scatter(f"{anchor}-pct", "%", [])]
    order = sorted(panels, key=lambda u: (u != "%", u))
    return [scatter(f"{anchor}-{i}", unit, panels[unit]) for i, unit in enumerate(order)]


def bar(counts: Mapping[str, int], width: int = 120, height: int = 10) -> Bar:
    """A stacked bar of verdict counts (VERDICTS order); the words say the same as the colours."""
    total = sum(counts.get(v, 0) for v in VERDICTS)
    segments = []
    x = 0.0
    for verdict in VERDICTS:
        n = counts.get(verdict, 0)
        if not n:
            continue
        w = round(width * n / total, 2)
        segments.append((round(x, 2), w, verdict.replace("_", "-"), VERDICT_LABELS[verdict], n))
        x += w
    words = ", ".join(f"{n} {label}" for _, _, _, label, n in segments) or "no rows"
    return Bar(width, height, segments, f"{total} rows: {words}", total)
