"""Each source table of a paper in the shape the paper printed it, with ours in every cell.

Input: the paper's rows at the best scale that ran (`catalog.compare.best_per_row` of the
reproduction's latest successful run per scale, as plain records) and the reproduction's layouts
(repro.toml's `[site.tables."<source>"]`: setting columns forming the rows and the columns).

Layout of one source table (`layout_of`): its *dimensions* are `dataset`, `metric` and the setting
columns whose value varies among its rows.
- Declared: rows and columns as repro.toml says. A varying dimension the declaration leaves out
  that is not determined by the others would put two numbers in one cell: `dataset` splits the
  table into one printed table per dataset (a *facet*, like the paper's MNIST and F-MNIST
  halves), any other is added to the rows.
- Inferred (no declaration): the column dimension is the first of `COLUMN_PRIORITY` (defense,
  target model, metric, dataset, ...) whose pivot fills at least half of its cells, else any
  dimension filling 75 %, else none (one column of numbers, every dimension a row, as papers
  print a list of attacks). At most `MAX_COLUMNS` columns.
- A dimension determined by the others (Defense-GAN's `L`/`R` by its defense, `eps` by its
  attack) is not an axis: it is printed once, in the column header, the row header or the cell.

Rows (and columns) are grouped by the first dimension's values in order of first appearance, then
follow expected.csv's order, which is the paper's (Madry's Table 1 reads white-box A, black-box
A', then B; Defense-GAN's Table 4 lists the no-attack rows first, then FGSM, RAND+FGSM, CW).

Collapsing: a printed row where no number was measured is not shown; per printed table one line
counts the rows not run and states each reason once with its count, and opens (a `<details>`)
to the paper's numbers of those rows. Before any run, every row is shown with the paper's
numbers.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sitebuilder.status import VERDICT_LABELS
from sitebuilder.tables import DATASET_LABELS
from sitebuilder.text import fmt_delta, fmt_number, fmt_paper, safe_name
from sitebuilder.views import AdaptiveView, CellEntry, PivotRow, PivotTable, SourceTable

__all__ = ["COLUMN_PRIORITY", "MAX_COLUMNS", "Layout", "layout_of", "source_tables"]

#: setting columns a paper usually prints across, most likely first (inference only)
COLUMN_PRIORITY = (
    "defense",
    "target",
    "target_model",
    "target_net",
    "metric",
    "dataset",
    "training",
    "method",
    "attack",
)
MAX_COLUMNS = 8
_LABELS = {"eps": "ε", "epsilon": "ε", "alpha": "α"}


def dim_label(dim: str) -> str:
    """A dimension's printed name (`eps` -> `ε`)."""
    return _LABELS.get(dim, dim)


def _value(rec: Mapping[str, Any], dim: str) -> str:
    """A record's value of a dimension as text ("" when the row leaves it empty)."""
    source = rec if dim in ("dataset", "metric") else (rec.get("setting") or {})
    value = source.get(dim)
    return "" if value is None else str(value)


def _dims(recs: Sequence[Mapping[str, Any]]) -> list[str]:
    """`dataset`, `metric`, then the setting columns in order of first appearance."""
    dims = ["dataset", "metric"]
    seen = set(dims)
    for rec in recs:
        for key in rec.get("setting") or {}:
            if key not in seen:
                seen.add(key)
                dims.append(str(key))
    return dims


def _key(rec: Mapping[str, Any], dims: Sequence[str]) -> tuple[str, ...]:
    return tuple(_value(rec, d) for d in dims)


def _determined(recs: Sequence[Mapping[str, Any]], by: Sequence[str], dim: str) -> bool:
    """Whether `dim`'s value follows from the values of `by` (a function of them)."""
    seen: dict[tuple[str, ...], str] = {}
    for rec in recs:
        key = _key(rec, by)
        value = _value(rec, dim)
        if seen.setdefault(key, value) != value:
            return False
    return True


@dataclass(frozen=True)
class Layout:
    """Which dimensions form the rows, the columns and the facets (one printed table each), and
    where the determined ones are printed."""

    rows: tuple[str, ...]
    columns: tuple[str, ...]
    facets: tuple[str, ...]
    column_notes: tuple[str, ...]  # determined by the columns: printed in the column header
    row_notes: tuple[str, ...]  # determined by the rows: printed in the row header
    cell_notes: tuple[str, ...]  # neither: printed in the cell
    table_notes: tuple[str, ...]  # constant within a facet: printed in the caption
    declared: bool


def _greedy(
    recs: Sequence[Mapping[str, Any]], base: Sequence[str], candidates: Sequence[str]
) -> tuple[list[str], list[str]]:
    """Split `candidates` into extra row dimensions and notes (determined by what precedes)."""
    extra: list[str] = []
    notes: list[str] = []
    for dim in candidates:
        if _determined(recs, [*base, *extra], dim):
            notes.append(dim)
        else:
            extra.append(dim)
    return extra, notes


def _complete(
    recs: Sequence[Mapping[str, Any]],
    varying: Sequence[str],
    rows: Sequence[str],
    columns: Sequence[str],
    declared: bool,
) -> Layout:
    rows, columns = list(rows), list(columns)
    rest = [d for d in varying if d not in rows and d not in columns]
    others = [d for d in rest if d != "dataset"]
    facets: list[str] = []
    extra, notes = _greedy(recs, rows + columns, others)
    if "dataset" in rest:
        split_extra, split_notes = _greedy(recs, [*rows, *columns, "dataset"], others)
        if len(extra) <= len(split_extra) and _determined(recs, rows + columns + extra, "dataset"):
            notes.append("dataset")  # e.g. FGSM's CIFAR-10 row: its model says the dataset
        else:
            # one printed table per dataset, as papers split them (fewer row dimensions)
            facets, extra, notes = ["dataset"], split_extra, split_notes
    rows += extra
    table_notes, column_notes, row_notes, cell_notes = [], [], [], []
    for dim in notes:
        if _determined(recs, facets, dim):
            table_notes.append(dim)
        elif columns and _determined(recs, facets + columns, dim):
            column_notes.append(dim)
        elif rows and _determined(recs, facets + rows, dim):
            row_notes.append(dim)
        else:
            cell_notes.append(dim)
    return Layout(
        tuple(rows),
        tuple(columns),
        tuple(facets),
        tuple(column_notes),
        tuple(row_notes),
        tuple(cell_notes),
        tuple(table_notes),
        declared,
    )


def _fill(recs: Sequence[Mapping[str, Any]], layout: Layout) -> float:
    """Share of the pivot's cells that hold a number (distinct settings / rows x columns)."""
    row_keys = {_key(r, layout.facets + layout.rows) for r in recs}
    col_keys = {_key(r, layout.columns) for r in recs}
    cells = {_key(r, layout.facets + layout.rows + layout.columns) for r in recs}
    return len(cells) / max(1, len(row_keys) * len(col_keys))


def layout_of(
    recs: Sequence[Mapping[str, Any]], declared: Mapping[str, Any] | None = None
) -> Layout:
    """The layout of one source table's rows: repro.toml's declaration completed so that no two
    settings share a cell, or an inferred one (see the module docstring)."""
    dims = _dims(recs)
    varying = [d for d in dims if len({_value(r, d) for r in recs}) > 1]
    if declared is not None:
        rows = [str(d) for d in declared.get("rows") or []]
        columns = [str(d) for d in declared.get("columns") or []]
        return _complete(recs, varying, rows, columns, True)
    candidates = []
    for order, dim in enumerate(varying):
        n = len({_value(r, dim) for r in recs})
        if not 2 <= n <= MAX_COLUMNS:
            continue
        layout = _complete(recs, varying, [], [dim], False)
        priority = COLUMN_PRIORITY.index(dim) if dim in COLUMN_PRIORITY else len(COLUMN_PRIORITY)
        candidates.append((priority, _fill(recs, layout), n, order, layout))
    for priority, fill, _, _, layout in sorted(candidates, key=lambda c: (c[0], c[3])):
        if priority < len(COLUMN_PRIORITY) and fill >= 0.5:
            return layout
    ranked = sorted(candidates, key=lambda c: (-c[1], c[2], c[3]))
    if ranked and ranked[0][1] >= 0.75:
        return ranked[0][4]
    return _complete(recs, varying, [], [], False)


def _ordered_keys(recs: Sequence[Mapping[str, Any]], dims: Sequence[str]) -> list[tuple[str, ...]]:
    """The distinct keys of `dims`, grouped by the first dimension's values in order of first
    appearance, then in expected.csv's order (the order the paper printed them, which
    expected.csv keeps: Madry's PGD 40x1, 100x1, 40x20, 100x20)."""
    first_rank: dict[str, int] = {}
    seen: dict[tuple[str, ...], int] = {}
    for rec in recs:
        key = _key(rec, dims)
        if dims:
            first_rank.setdefault(key[0], len(first_rank))
        seen.setdefault(key, len(seen))
    return sorted(seen, key=lambda k: (first_rank.get(k[0], 0) if k else 0, seen[k]))


def _pairs(rec: Mapping[str, Any], dims: Sequence[str]) -> str:
    """`L 200 · R 10`: the named dimensions of a record that have a value."""
    return " · ".join(f"{dim_label(d)} {_value(rec, d)}" for d in dims if _value(rec, d))


def _shown(value: str, dim: str) -> str:
    if not value:
        return "–"
    return DATASET_LABELS.get(value, value) if dim == "dataset" else value


def _paper_text(rec: Mapping[str, Any]) -> str:
    paper = rec.get("paper")
    std = rec.get("paper_std")
    text = fmt_paper(paper)
    return f"{text} ± {fmt_paper(std)}" if std is not None and paper is not None else text


def _reason(text: Any) -> str:
    """A not-run reason on one line (reasons may hold a traceback's worth of lines)."""
    return re.sub(r"\s+", " ", str(text or "not recorded")).strip()


def _entry(
    rec: Mapping[str, Any],
    layout: Layout,
    ran: bool,
    adaptive: Mapping[str, list[AdaptiveView]],
) -> CellEntry:
    value = rec.get("value")
    verdict = str(rec.get("verdict") or "not_run") if ran else "pending"
    provenance = str(rec.get("provenance") or "")
    delta = rec.get("delta")
    reason = _reason(rec.get("reason")) if ran else str(rec.get("status") or "")
    return CellEntry(
        ids=[str(rec["id"])],
        paper=_paper_text(rec),
        ours=fmt_number(value) if value is not None else "–",
        delta=fmt_delta(delta) if value is not None and delta is not None else "",
        verdict=verdict,
        verdict_label=VERDICT_LABELS.get(verdict, verdict.replace("_", " ")),
        scale=str(rec.get("scale") or "") if value is not None else "",
        reason=reason,
        unverified=provenance.lower().startswith("unverified"),
        detail=_pairs(rec, layout.cell_notes),
        # another dataset than the paper's: why there is no delta
        measured_on=reason if value is not None and reason.startswith("measured on") else "",
        adaptive=list(adaptive.get(str(rec["id"]), [])),
        changed=bool(rec.get("changed")),
        change=str(rec.get("change") or ""),
    )


def _merge(entries: list[CellEntry]) -> list[CellEntry]:
    """Rows with the same setting and the same numbers (Defense-GAN repeats its no-attack
    accuracy under every attack) print once; their ids are kept together."""
    out: list[CellEntry] = []
    index: dict[tuple[str, ...], CellEntry] = {}
    for entry in entries:
        key = (entry.paper, entry.ours, entry.verdict, entry.detail, entry.scale)
        if key in index and not entry.adaptive and not index[key].adaptive:
            index[key].ids.append(entry.ids[0])
            continue
        index[key] = entry
        out.append(entry)
    return out


def _pivot_rows(
    recs: Sequence[Mapping[str, Any]],
    layout: Layout,
    row_keys: list[tuple[str, ...]],
    col_keys: list[tuple[str, ...]],
    ran: bool,
    adaptive: Mapping[str, list[AdaptiveView]],
) -> tuple[list[PivotRow], list[PivotRow]]:
    cells: dict[tuple[tuple[str, ...], tuple[str, ...]], list[CellEntry]] = defaultdict(list)
    first: dict[tuple[str, ...], Mapping[str, Any]] = {}
    for rec in recs:
        rk, ck = _key(rec, layout.rows), _key(rec, layout.columns)
        cells[(rk, ck)].append(_entry(rec, layout, ran, adaptive))
        first.setdefault(rk, rec)
    shown: list[PivotRow] = []
    hidden: list[PivotRow] = []
    for rk in row_keys:
        row_cells = [_merge(cells.get((rk, ck), [])) for ck in col_keys]
        measured = any(e.ours != "–" for cell in row_cells for e in cell)
        target = shown if measured or not ran else hidden
        previous = target[-1].headers if target else None
        headers = [_shown(v, d) for d, v in zip(layout.rows, rk, strict=True)]
        repeats = [
            previous is not None and previous[: i + 1] == headers[: i + 1]
            for i in range(len(headers))
        ]
        target.append(PivotRow(headers, repeats, _pairs(first[rk], layout.row_notes), row_cells))
    return shown, hidden


def _caption(layout: Layout, recs: Sequence[Mapping[str, Any]]) -> str:
    metrics = sorted({str(r.get("metric")) for r in recs})
    parts = []
    if "metric" not in layout.rows + layout.columns:
        parts.append(", ".join(metrics))
    constant = _pairs(recs[0], layout.table_notes) if recs else ""
    if constant:
        parts.append(constant)
    return "; ".join(parts)


def _table(
    slug: str,
    source: str,
    facet: str,
    recs: Sequence[Mapping[str, Any]],
    layout: Layout,
    ran: bool,
    adaptive: Mapping[str, list[AdaptiveView]],
) -> PivotTable:
    row_keys = _ordered_keys(recs, layout.rows)
    col_keys = _ordered_keys(recs, layout.columns)
    shown, hidden = _pivot_rows(recs, layout, row_keys, col_keys, ran, adaptive)
    first_of_col: dict[tuple[str, ...], Mapping[str, Any]] = {}
    for rec in recs:
        first_of_col.setdefault(_key(rec, layout.columns), rec)
    columns = []
    for ck in col_keys:
        label = " · ".join(_shown(v, d) for d, v in zip(layout.columns, ck, strict=True))
        columns.append((label or "paper · ours", _pairs(first_of_col[ck], layout.column_notes)))
    reasons = Counter(
        _reason(r.get("reason")) for r in recs if ran and r.get("value") is None
    ).most_common()
    scales = Counter(str(r.get("scale")) for r in recs if r.get("value") is not None)
    scale = scales.most_common(1)[0][0] if scales else ""
    entries = [e for row in shown for cell in row.cells for e in cell if e.ours != "–"]
    measured_on = {e.measured_on for e in entries}
    shared = measured_on.pop() if len(measured_on) == 1 else ""
    for entry in entries:
        if entry.scale == scale:
            entry.scale = ""  # the caption says it once
        if shared:
            entry.measured_on = ""
    title = source + (f" · {_shown(facet, 'dataset')}" if facet else "")
    return PivotTable(
        anchor="t-" + safe_name(f"{slug}-{source}-{facet}".rstrip("-")).lower(),
        title=title,
        facet=_shown(facet, "dataset") if facet else "",
        caption="; ".join(c for c in (_caption(layout, recs), shared) if c),
        row_label=", ".join(sorted({str(r.get("metric")) for r in recs})),
        row_dims=[dim_label(d) for d in layout.rows],
        columns=columns,
        rows=shown,
        hidden=hidden,
        n_rows=len(recs),
        not_run=sum(n for _, n in reasons),
        reasons=reasons,
        scale=scale,
        ran=ran,
    )


def source_tables(
    slug: str,
    best: Sequence[Mapping[str, Any]],
    layouts: Mapping[str, Mapping[str, Any]],
    *,
    ran: bool,
    adaptive: Mapping[str, list[AdaptiveView]] | None = None,
) -> list[SourceTable]:
    """Every source table of a reproduction in its printed shape, in expected.csv's order.

    `best` holds the expected rows at the best scale that ran (records of
    `catalog.compare.best_per_row`, expected rows only); `layouts` is repro.toml's
    `[site.tables]`; `ran` whether any successful run exists (else every row is shown with the
    paper's number, nothing collapses); `adaptive` our adaptive attacks by the row they
    challenge.
    """
    adaptive = adaptive or {}
    by_source: dict[str, list[Mapping[str, Any]]] = {}
    for rec in best:
        by_source.setdefault(str(rec.get("source") or "(no source)"), []).append(rec)
    out = []
    for source, recs in by_source.items():
        declared = layouts.get(source)
        layout = layout_of(recs, declared)
        facets: dict[str, list[Mapping[str, Any]]] = {}
        for rec in recs:
            facets.setdefault(_value(rec, "dataset") if layout.facets else "", []).append(rec)
        tables = [
            _table(slug, source, facet, facet_recs, layout, ran, adaptive)
            for facet, facet_recs in facets.items()
        ]
        rows = " × ".join(dim_label(d) for d in layout.rows)
        columns = " × ".join(dim_label(d) for d in layout.columns)
        if rows and columns:
            shape = f"rows {rows}; columns {columns}"
        elif rows or columns:
            shape = f"one number per {rows or columns}"
        else:
            shape = "a single setting"
        if layout.facets:
            shape += "; one table per dataset"
        out.append(
            SourceTable(
                source=source,
                anchor="src-" + safe_name(f"{slug}-{source}").lower(),
                layout="declared in repro.toml" if layout.declared else "inferred",
                shape=shape,
                tables=tables,
                n_rows=len(recs),
                provenance=list(
                    dict.fromkeys(str(r.get("provenance")) for r in recs if r.get("provenance"))
                ),
            )
        )
    return out
