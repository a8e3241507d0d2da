"""The view model: what the templates receive, one dataclass per thing a page shows.

Everything here is already formatted text (numbers through `sitebuilder.text`), so templates only
place it. Drift markers (`catalog.drift.mark_changes`: `"changed"`/`"change"` on rows and claims,
`"changed"`/`"changes"` on a summary) arrive as `RowView.changed/.change`,
`ClaimView.changed/.change` and `RunView.changed/.changes`, and render as a "changed" badge whose
tooltip says what changed; absent markers render nothing.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sitebuilder.status import VERDICT_LABELS, Status

__all__ = [
    "AdaptiveView",
    "Bar",
    "CellEntry",
    "Chart",
    "ClaimView",
    "CompareEntry",
    "CompareRow",
    "CompareTable",
    "FigureView",
    "Headline",
    "ListRef",
    "ListView",
    "PaperView",
    "PivotRow",
    "PivotTable",
    "PublishReport",
    "ReproRef",
    "ReproView",
    "RowView",
    "RunView",
    "ScaleView",
    "Scatter",
    "ScoreRow",
    "SourceTable",
]


@dataclass
class ListRef:
    """A paper's place in a reading list, as shown on the paper page and the list page."""

    slug: str
    title: str
    page: str
    position: int
    note_html: str
    note_text: str


@dataclass
class RowView:
    """One expected row next to what a run measured."""

    id: str
    source: str
    dataset: str
    setting: list[tuple[str, str]]
    metric: str
    paper: str
    ours: str
    delta: str
    verdict: str
    verdict_label: str
    reason: str
    provenance: str
    unverified: bool
    changed: bool = False
    change: str = ""  # what changed since the previous run (catalog.drift's marker detail)
    value: float | None = None


@dataclass
class AdaptiveView:
    """An adaptive attack of ours on a published row's setting (`adaptive.<row id>.<attack>`):
    the same quantity as the row, under an attack the paper did not run."""

    row_id: str
    attack: str
    value: float
    ours: str  # formatted
    metric: str  # the free metric's name, as recorded
    paper: str = ""  # the challenged row's published number
    published: str = ""  # ours under the paper's own attack (the row's value)
    setting: str = ""  # the challenged row's setting, for lists away from the table
    anchored: bool = True  # False: the row is not in expected.csv (shown in the list only)
    scale: str = ""
    interval: str = ""  # "[low, high]": the 95 % interval of `adaptive.<row>.<attack>.ci95_*`
    details: str = ""  # the attack's other measurements (`adaptive.<row>.<attack>.<what>`)


@dataclass
class CellEntry:
    """One number of a paper table as the page prints it: the paper's, ours at the best scale
    that ran, the delta and the verdict. Rows of expected.csv with the same setting and the
    same numbers share one entry (`ids` lists them)."""

    ids: list[str]
    paper: str
    ours: str
    delta: str
    verdict: str
    verdict_label: str
    scale: str  # shown only where it differs from the table's scale
    reason: str
    unverified: bool
    detail: str = ""  # setting columns that vary inside the cell (e.g. L 200 · R 10)
    measured_on: str = ""  # "measured on mnist-test-split (paper: mnist)": why no delta
    adaptive: list[AdaptiveView] = field(default_factory=list)
    changed: bool = False
    change: str = ""


@dataclass
class PivotRow:
    """A row of a printed table: its header values (one per row dimension) and its cells."""

    headers: list[str]
    repeats: list[bool]  # header equal to the row above's (printed lighter, like a merged cell)
    note: str
    cells: list[list[CellEntry]]


@dataclass
class PivotTable:
    """One printed table (a source table, or its part for one dataset when the layout splits it).

    `rows` are the printed rows with at least one number measured; `hidden` the rows where
    nothing ran, collapsed into one line (`not_run`, `reasons`) that opens to the paper's
    numbers."""

    anchor: str
    title: str
    facet: str
    caption: str
    row_label: str  # the row header of a table without row dimensions (its metric)
    row_dims: list[str]
    columns: list[tuple[str, str]]  # (label, note) per column
    rows: list[PivotRow]
    hidden: list[PivotRow]
    n_rows: int  # expected.csv rows in this table
    not_run: int
    reasons: list[tuple[str, int]]
    scale: str
    ran: bool  # False: no run of the reproduction yet, every number is the paper's


@dataclass
class SourceTable:
    """Every number of one source table of expected.csv ("Table 4"), in the paper's shape."""

    source: str
    anchor: str
    layout: str  # "declared in repro.toml" or "inferred"
    shape: str  # "rows attack × model; columns defense"
    tables: list[PivotTable]
    n_rows: int
    provenance: list[str]  # where the paper prints these numbers (expected.csv's provenance)


@dataclass
class Headline:
    """The row the index leads with ("paper X · ours Y"), declared in repro.toml's [site]."""

    row_id: str
    source: str
    setting: str
    metric: str
    paper: str
    ours: str
    scale: str
    verdict: str
    verdict_label: str
    declared: bool


@dataclass
class ClaimView:
    """A claim of the paper and whether a run found it to hold (`label`, `css` for the mark)."""

    id: str
    text: str
    holds: bool | None
    label: str
    css: str
    detail: str
    changed: bool = False
    change: str = ""


@dataclass
class FigureView:
    """A figure copied into the site; `src` empty when the run's file is missing."""

    src: str
    alt: str
    caption: str
    width: int | None
    height: int | None


@dataclass
class RunView:
    """A run as the pages show it; `summary` is the stored summary.json record."""

    id: str
    slug: str
    scale: str
    status: str
    started: str
    date: str
    order: tuple[datetime, str]
    wall: str
    commit: str
    dirty: bool | None
    device: str
    host: str
    versions: list[tuple[str, str]]
    executor: str
    seed: Any
    parameters: list[tuple[str, str]]
    error: str
    reused_from: str
    summary: dict[str, Any]
    run_dir: Path | None = None
    notebook_page: str | None = None
    figures: list[FigureView] = field(default_factory=list)
    changed: bool = False
    changes: list[str] = field(default_factory=list)
    paper_page: str | None = None
    paper_title: str = ""

    @property
    def error_tail(self) -> str:
        """The end of the traceback, where the cause is."""
        lines = self.error.rstrip().splitlines()
        return "\n".join(lines[-25:])

    @property
    def verdict_counts(self) -> list[tuple[str, int]]:
        counts: dict[str, int] = defaultdict(int)
        for row in self.summary.get("rows", []):
            counts[row.get("verdict", "")] += 1
        return [(VERDICT_LABELS.get(v, v), counts[v]) for v in VERDICT_LABELS if counts.get(v)]

    @property
    def claim_counts(self) -> tuple[int, int, int]:
        holds = [c.get("holds") for c in self.summary.get("claims", [])]
        return holds.count(True), holds.count(False), holds.count(None)


@dataclass
class ScaleView:
    """The latest successful run of one scale (and a newer failure, if one happened since)."""

    scale: str
    run: RunView | None
    failure: RunView | None
    rows: list[RowView]
    metrics: list[tuple[str, str]]
    claims: list[ClaimView]
    open: bool = False


@dataclass
class Chart:
    """A small inline SVG line chart of one row or metric across runs."""

    title: str
    label: str
    width: int
    height: int
    points: list[tuple[float, float, str, str]]  # x, y, tooltip, scale css
    line: str
    paper_y: float | None
    y_min: str
    y_max: str
    first: str
    last: str
    paper_label: str


@dataclass
class Bar:
    """A small stacked bar of row verdicts (match / deviates / not compared / not run)."""

    width: int
    height: int
    segments: list[tuple[float, float, str, str, int]]  # x, width, css, label, count
    label: str  # the counts in words (aria-label, title)
    total: int


@dataclass
class Scatter:
    """A "paper vs ours" scatter: one point per compared row, the y = x line, the tolerance band.

    Laid out here (coordinates in the SVG's own units), drawn by the `scatter` macro; `points`
    carry a shape per verdict so colour is never the only cue, and `table` is the data behind
    the plot for a fallback table."""

    anchor: str
    title: str
    label: str  # aria-label: what the plot says, in one sentence
    desc: str
    width: int
    height: int
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 of the plot area
    ticks: list[tuple[float, float, str]]  # x position, y position, label of each tick value
    diagonal: tuple[float, float, float, float]
    band: str  # polygon points of |ours - paper| <= tolerance
    band_label: str
    points: list[tuple[str, float, float, str, str]]  # shape, x, y, verdict css, tooltip
    counts: list[tuple[str, str, int]]  # verdict css, label, count
    table: list[tuple[str, str, str, str, str]]  # row id, paper, ours, verdict, drift change
    unit: str


@dataclass
class ReproRef:
    """A link to another reproduction (uses / used by, the comparison's pending list)."""

    slug: str
    title: str
    page: str | None
    status: Status | None = None


@dataclass
class ReproView:
    """One reproduction folder on its paper's page: expected rows, scales, history, charts."""

    slug: str
    title: str
    path: str
    datasets: list[str]
    needs_gpu: bool
    has_notebook: bool
    uses: list[ReproRef]
    used_by: list[ReproRef]
    expected: list[RowView]
    scales: list[ScaleView]
    history: list[RunView]
    charts: list[Chart]
    status: Status
    tables: list[SourceTable] = field(default_factory=list)
    scatters: list[Scatter] = field(default_factory=list)
    headline: Headline | None = None
    counts: dict[str, int] = field(default_factory=dict)  # best per row: verdict -> rows
    bar: Bar | None = None
    claims_held: tuple[int, int, int] = (0, 0, 0)  # holds, fails, not evaluated (best run)
    adaptive: list[AdaptiveView] = field(default_factory=list)
    gallery: list[RunView] = field(default_factory=list)  # runs whose figures are shown
    best_scale: str = ""
    not_in_expected: list[str] = field(default_factory=list)


@dataclass
class PaperView:
    """A paper with everything its page, its index row and its search entry show."""

    key: str
    page: str
    title: str
    year: int
    venue: str
    venue_kind: str
    entry_type: str
    authors: list[str]
    arxiv_id: str
    doi: str
    url: str
    code_url: str
    abstract: str
    bibtex: str
    lists: list[ListRef]
    review_html: str
    review_meta: list[tuple[str, str]]
    review_text: str
    reproductions: list[ReproView]
    status: Status
    last_run: str
    headline: Headline | None = None
    bar: Bar | None = None
    claims_held: tuple[int, int, int] = (0, 0, 0)

    @property
    def authors_short(self) -> str:
        if len(self.authors) > 4:
            return ", ".join(self.authors[:3]) + f" and {len(self.authors) - 3} more"
        return ", ".join(self.authors)


@dataclass
class ListView:
    """A reading list in its own order; `entries` pair each entry with its rendered note."""

    slug: str
    page: str
    title: str
    description_html: str
    provenance: str
    source_file: str
    format: str
    entries: list[dict[str, Any]]


@dataclass
class CompareEntry:
    """One cell value of the comparison: ours and the paper's, in accuracy %."""

    ours: str
    paper: str
    verdict: str
    verdict_label: str
    scale: str
    detail: str
    row_id: str


@dataclass
class CompareRow:
    """A row of a comparison table: one reproduction and model, cells by defense."""

    label: str
    slug: str
    page: str
    scale: str
    run_id: str
    cells: dict[str, list[CompareEntry]]


@dataclass
class CompareTable:
    """One dataset under one attack setting; columns are the defenses."""

    dataset: str
    condition: str
    anchor: str
    defenses: list[str]
    rows: list[CompareRow]


@dataclass
class ScoreRow:
    """One reproduction on the scoreboard: how much of its paper holds up, per scale."""

    slug: str
    title: str
    page: str | None
    status: Status
    has_notebook: bool
    claims: tuple[int, int, int]  # holds, fails, not evaluated (latest run of the best scale)
    claims_scale: str
    scales: list[tuple[str, dict[str, int], Bar]]  # scale, verdict counts, bar (latest runs)
    n_expected: int
    last_run: RunView | None
    adaptive: list[AdaptiveView]


@dataclass
class PublishReport:
    """What a build wrote; `warnings` lists missing files (figures, notebooks) by run."""

    out_dir: Path
    pages: int = 0
    papers: int = 0
    lists: int = 0
    runs: int = 0
    figures: int = 0
    notebooks: int = 0
    bytes: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
