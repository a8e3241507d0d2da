"""Publish the catalog as a static website (`catalog publish --out DIR`).

Why a static site: it is how most people meet the project, it must open from `file://` and from
GitHub Pages, and it must be diffable. Everything on it comes from the catalog database (papers,
lists, reviews, reproductions, expected rows, runs); files are read only for what a run produced
(figures, the executed notebook), found under `runs_dir/<slug>/<run-id>/` or the run's stored
`run_dir`.

Pages (all links relative, no request leaves the page):
    index.html                      every paper, status badges, client-side search and filters
    papers/<key>.html               facts, BibTeX, list notes, our review, the reproduction
    lists/<slug>.html               a reading list in its own order, with its notes
    runs.html                       recent runs and failures with their error
    comparison.html                 every reproduced defense under the same attack and dataset
    runs/<slug>/<run>/notebook.html the executed notebook (nbconvert, sanitized)
    runs/<slug>/<run>/figures/...   figures copied from the run directory
    search-index.json / .js         the search index (the .js assigns `window.ADVREPRO_INDEX`,
                                    because `fetch()` of a local JSON file is blocked on file://)

Safety: Jinja autoescape is on; every piece of markdown (list notes, reviews) goes through
markdown-it-py with raw HTML disabled (so `<script>` shows as text) and then nh3; notebook HTML goes
through nh3 with an allowlist. Pages carry a Content-Security-Policy that forbids inline scripts
and remote loads, a second wall behind the escaping.

Determinism: same catalog, same bytes. Iteration is sorted, JSON is written with `sort_keys`, and
the only times printed are the runs' own (`started_at` from the run's summary). The output folder
is replaced as a whole, so pages of papers that left the catalog disappear.

Drift markers: `catalog.drift.mark_changes` annotates stored summaries: rows and claims may carry
`"changed": true` with `"change"` (what moved), the summary `"changed"` and `"changes"`. They reach
the templates as `RowView.changed/.change`, `ClaimView.changed/.change`, `RunView.changed/.changes`
and render as a "changed" badge whose tooltip says what changed; absent markers render nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import struct
import tempfile
import time
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import jinja2
import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup, escape
from sqlalchemy.orm import selectinload
from sqlmodel import Session, select

from catalog import CatalogError
from catalog.config import PACKAGE_ROOT, project_root
from catalog.models import (
    ExpectedResult,
    Paper,
    PaperAuthor,
    ReadingList,
    Reproduction,
    Run,
)

SITE_DIR = PACKAGE_ROOT / "site"
MARKER = ".advrepro-site"

# --------------------------------------------------------------------------- status vocabulary

REPRODUCED = "reproduced"
REDUCED = "reproduced at reduced scale"
PARTIAL = "partial"
NOT_REPRODUCED = "not reproduced"
PENDING = "pending"
#: The paper-status vocabulary of ARCHITECTURE.md, best first; the site uses nothing else.
STATUSES: tuple[str, ...] = (REPRODUCED, REDUCED, PARTIAL, NOT_REPRODUCED, PENDING)

VERDICT_LABELS = {
    "match": "match",
    "deviates": "deviates",
    "not_compared": "not compared",
    "not_run": "not run",
    "measured": "measured",
}
SCALE_ORDER = {"full": 0, "small": 1, "smoke": 2}


@dataclass(frozen=True)
class Status:
    """A paper's reproduction status: one label of `STATUSES` and the one-line reason for it."""

    label: str
    reason: str

    @property
    def css(self) -> str:
        """The CSS class of the badge (`status-reproduced-at-reduced-scale`)."""
        return status_css(self.label)

    @property
    def rank(self) -> int:
        return STATUSES.index(self.label)


def status_css(label: str) -> str:
    """CSS class for a status label; the one place colours are tied to the vocabulary."""
    return "status-" + re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str) and value:
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def run_order_key(summary: Mapping[str, Any]) -> tuple[datetime, str]:
    """Chronological order of runs: the run's own start time, then its id (ties, missing times)."""
    return (_parse_time(summary.get("started_at")) or _EPOCH, str(summary.get("run_id", "")))


def _claims_text(n: int) -> str:
    return f"{n} claim" if n == 1 else f"{n} claims"


def _reproduction_status(summaries: Sequence[Mapping[str, Any]]) -> Status:
    """Status of one reproduction from its runs' summaries (see `paper_status`)."""
    if not summaries:
        return Status(PENDING, "no run yet")
    ok = [s for s in summaries if s.get("status") == "succeeded"]
    if not ok:
        return Status(NOT_REPRODUCED, "every run so far failed; see the runs page")
    latest: dict[str, Mapping[str, Any]] = {}
    for s in sorted(ok, key=run_order_key):
        latest[str(s.get("scale"))] = s

    full = latest.get("full")
    if full is not None:
        verdicts = [r.get("verdict") for r in full.get("rows", [])]
        holds = [c.get("holds") for c in full.get("claims", [])]
        good = verdicts.count("match") + holds.count(True)
        bad = verdicts.count("deviates") + holds.count(False)
        if good and not bad:
            return Status(REPRODUCED, "full scale: every compared row matches, every claim holds")
        if bad and not good:
            return Status(NOT_REPRODUCED, "full scale: rows deviate or claims fail, none hold")
        if good and bad:
            return Status(
                PARTIAL,
                f"full scale: {verdicts.count('match')} rows match, {verdicts.count('deviates')}"
                f" deviate; {holds.count(True)} claims hold, {holds.count(False)} fail",
            )
        # nothing could be compared at full: fall back to the claims at small

    small = latest.get("small")
    if small is not None:
        holds = [c.get("holds") for c in small.get("claims", [])]
        n_hold, n_fail = holds.count(True), holds.count(False)
        if n_hold and not n_fail:
            return Status(REDUCED, f"small scale: {_claims_text(n_hold)} evaluated, all hold")
        if n_fail and not n_hold:
            return Status(
                NOT_REPRODUCED, f"small scale: {_claims_text(n_fail)} evaluated, all fail"
            )
        if n_hold and n_fail:
            return Status(PARTIAL, f"small scale: {n_hold} claims hold, {n_fail} fail")
        return Status(PENDING, "small scale: no claim could be evaluated")
    if full is not None:
        return Status(PENDING, "full scale: nothing could be compared or evaluated")
    return Status(
        PENDING, "smoke runs only: they check the pipeline, not the paper's claims or numbers"
    )


def paper_status(
    summaries: Iterable[Mapping[str, Any]], *, reproductions: Sequence[str] = ()
) -> Status:
    """The one definition of a paper's status, used by every page and the search index.

    `summaries` are run summaries (the `summary.json` contract) of the paper's reproductions;
    `reproductions` the slugs of its reproduction folders. Per reproduction: `reproduced` when the
    latest successful `full` run has rows matching (or claims holding) and nothing deviating or
    failing; `not reproduced` when it has only deviations/failures, or every run failed;
    `partial` when mixed; `reproduced at reduced scale` when, without a conclusive full run, all
    evaluated claims of the latest `small` run hold; `pending` when there is no run, only smoke
    runs (which prove the pipeline, not the paper), or nothing could be evaluated. A paper with
    several reproductions takes the best of them.
    """
    by_slug: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for summary in summaries:
        by_slug[str(summary.get("slug"))].append(summary)
    slugs = sorted(set(reproductions) | set(by_slug))
    if not slugs:
        return Status(PENDING, "no reproduction yet")
    statuses = [_reproduction_status(by_slug.get(slug, [])) for slug in slugs]
    return min(statuses, key=lambda s: s.rank)


# --------------------------------------------------------------------------- formatting helpers


def fmt_number(value: float | None, digits: int = 4) -> str:
    """A measured number with `digits` significant digits; an en dash for nothing."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if value == 0:
        return "0"
    text = f"{value:.{digits}g}"
    if "e" in text:
        text = f"{value:.{digits}e}"
    return text


def fmt_paper(value: float | None) -> str:
    """A paper's number as it was transcribed (up to 6 significant digits, no rounding noise)."""
    return fmt_number(value, 6)


def fmt_delta(value: float | None) -> str:
    if value is None:
        return "–"
    text = fmt_number(abs(value))
    return "+" + text if value > 0 else ("−" + text if value < 0 else text)


def fmt_seconds(value: float | None) -> str:
    """Wall time for people: 42 s, 3 min 20 s, 2 h 05 min."""
    if value is None:
        return "–"
    seconds = round(value)
    if seconds < 60:
        return f"{value:.1f} s" if value < 10 else f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def fmt_time(value: Any) -> str:
    dt = _parse_time(value)
    return dt.strftime("%Y-%m-%d %H:%M UTC") if dt else "–"


def fmt_date(value: Any) -> str:
    dt = _parse_time(value)
    return dt.strftime("%Y-%m-%d") if dt else ""


def safe_name(text: str) -> str:
    """A file name for a key/slug/run id: itself when already safe, else a cleaned form + hash."""
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,150}", text) and ".." not in text:
        return text
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")[:80] or "x"
    return f"{cleaned}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def _search_text(*parts: str | None) -> str:
    """Lower-case, accent-free text for the client-side search (search.js folds the same way)."""
    text = " ".join(p for p in parts if p)
    if not text.isascii():
        text = unicodedata.normalize("NFD", text)
        text = re.sub("[\u0300-\u036f]", "", text)  # the range search.js strips
    return re.sub(r"\s+", " ", text.lower()).strip()


# --------------------------------------------------------------------------- markdown, sanitizing

_MD = MarkdownIt("commonmark", {"html": False, "typographer": False}).enable(
    ["table", "strikethrough"]
)
_MD_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5",
    "h6", "hr", "i", "img", "li", "ol", "p", "pre", "s", "strong", "sub", "sup", "table",
    "tbody", "td", "th", "thead", "tr", "ul",
}  # fmt: skip
_MD_ATTRS = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},
    "th": {"align"},
    "td": {"align"},
}


def _md_attribute_filter(tag: str, attr: str, value: str) -> str | None:
    """Keep outbound links and in-page anchors; drop anything that would load a resource or point
    to a file the site does not have (relative links of a review are relative to papers/)."""
    if tag == "a" and attr == "href":
        return value if re.match(r"(?i)(https?:|mailto:|#)", value) else None
    if tag == "img" and attr == "src":
        return None  # a review image would be a remote load or a missing file
    return value


_HEADING = re.compile(r"<(/?)h([1-6])(?=[\s>])")


def normalize_headings(html: str, top: int) -> str:
    """Renumber headings so the highest becomes `top` and levels are consecutive.

    A page has one h1 and headings in order; a review's `#` sits under the page's `h2`, and a
    note that jumps from `#` to `###` must not skip a level on the page.
    """
    levels = sorted({int(m.group(2)) for m in _HEADING.finditer(html)})
    if not levels:
        return html
    mapping = {level: min(6, top + rank) for rank, level in enumerate(levels)}
    return _HEADING.sub(lambda m: f"<{m.group(1)}h{mapping[int(m.group(2))]}", html)


# nh3's output double-quotes every attribute value and escapes `"` inside, so `"[^"]*"` spans a
# whole value even when it contains `>`.
_IMG_TAG = re.compile(r'<img\b((?:\s+[\w:-]+(?:="[^"]*")?)*)\s*/?>')


def _drop_unloadable_images(html: str) -> str:
    """An image whose source the sanitizer removed (remote, or not a file of the site) becomes
    a short text naming it, instead of a broken-image icon."""

    def replace(match: re.Match[str]) -> str:
        attributes = match.group(1)
        if re.search(r'\ssrc="', attributes):
            return match.group(0)
        alt = re.search(r'\salt="([^"]*)"', attributes)
        label = alt.group(1) if alt and alt.group(1) else "image"
        return f'<span class="img-dropped">[{label}: not shown]</span>'

    return _IMG_TAG.sub(replace, html)


_CITATION = re.compile(r"\[@([A-Za-z0-9][\w.:-]*)\]")


def link_citations(text: str, citations: Mapping[str, tuple[str, str]]) -> str:
    """`[@KEY]` (the lists' and reviews' citation syntax) -> a markdown link to the cited paper's
    page, labelled "Lastname Year"; unknown keys stay as written."""

    def replace(match: re.Match[str]) -> str:
        found = citations.get(match.group(1))
        if found is None:
            return match.group(0)
        label, href = found
        label = label.replace("[", "").replace("]", "")
        return f"[{label}]({href})"

    return _CITATION.sub(replace, text)


def render_markdown(
    text: str | None,
    *,
    top_heading: int = 3,
    citations: Mapping[str, tuple[str, str]] | None = None,
) -> str:
    """Markdown to safe HTML: raw HTML shows as text; the result is sanitized by nh3.

    Headings are renumbered from `top_heading` (see `normalize_headings`). `citations` maps paper
    keys to (label, relative href) for `[@KEY]`; those hrefs are the only relative links kept.
    """
    if not text or not text.strip():
        return ""
    allowed: set[str] = set()
    if citations:
        text = link_citations(text, citations)
        allowed = {href for _, href in citations.values()}

    def attribute_filter(tag: str, attr: str, value: str) -> str | None:
        if tag == "a" and attr == "href" and value in allowed:
            return value
        return _md_attribute_filter(tag, attr, value)

    html = normalize_headings(_MD.render(text), top_heading)
    html = nh3.clean(
        html,
        tags=_MD_TAGS,
        attributes=_MD_ATTRS,
        url_schemes={"http", "https", "mailto"},
        attribute_filter=attribute_filter,
        link_rel="noopener noreferrer",
    )
    # the second pass keeps the guarantee whatever the rewrite did
    return nh3.clean(
        _drop_unloadable_images(html),
        tags=_MD_TAGS | {"span"},
        attributes={**_MD_ATTRS, "span": {"class"}},
        url_schemes={"http", "https", "mailto"},
        attribute_filter=attribute_filter,
        link_rel="noopener noreferrer",
    )


_NB_TAGS = _MD_TAGS | {
    "div", "span", "table", "caption", "colgroup", "col", "tfoot", "dl", "dt", "dd", "details",
    "summary", "figure", "figcaption", "kbd", "samp", "var", "small", "mark", "u", "q", "cite",
}  # fmt: skip


def _nb_attribute_filter(tag: str, attr: str, value: str) -> str | None:
    if attr == "src":
        return value if value.startswith("data:image/") else None  # embedded outputs only
    if tag == "a" and attr == "href":
        return value if re.match(r"(?i)(https?:|mailto:|#)", value) else None
    return value


def _clean_notebook(html: str) -> str:
    return nh3.clean(
        html,
        tags=_NB_TAGS,
        attributes={
            "*": {"class", "id", "title", "lang"},
            "a": {"href"},
            "img": {"src", "alt", "width", "height"},
            "td": {"colspan", "rowspan", "align"},
            "th": {"colspan", "rowspan", "align", "scope"},
        },
        url_schemes={"http", "https", "mailto", "data"},
        attribute_filter=_nb_attribute_filter,
        link_rel="noopener noreferrer",
        strip_comments=True,
    )


def sanitize_notebook_html(html: str) -> str:
    """nbconvert's HTML of an executed notebook, with scripts, handlers, styles and remote loads
    removed: images survive only as embedded `data:` outputs, links only as outbound anchors.
    Cleaned twice: images that lost their source become text in between (see
    `_drop_unloadable_images`), and the second pass keeps the guarantee whatever that did."""
    return _clean_notebook(_drop_unloadable_images(_clean_notebook(html)))


def png_size(path: Path) -> tuple[int, int] | None:
    """Width and height from a PNG header (lets the page reserve the space: no layout jumps)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(24)
    except OSError:
        return None
    if len(head) == 24 and head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
        return width, height
    return None


# --------------------------------------------------------------------------- view model


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
class ClaimView:
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
class ReproRef:
    slug: str
    title: str
    page: str | None
    status: Status | None = None


@dataclass
class ReproView:
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


@dataclass
class PaperView:
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

    @property
    def authors_short(self) -> str:
        if len(self.authors) > 4:
            return ", ".join(self.authors[:3]) + f" and {len(self.authors) - 3} more"
        return ", ".join(self.authors)


@dataclass
class ListView:
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
    ours: str
    paper: str
    verdict: str
    verdict_label: str
    scale: str
    detail: str
    row_id: str


@dataclass
class CompareRow:
    label: str
    slug: str
    page: str
    scale: str
    run_id: str
    cells: dict[str, list[CompareEntry]]


@dataclass
class CompareTable:
    dataset: str
    condition: str
    anchor: str
    defenses: list[str]
    rows: list[CompareRow]


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


# --------------------------------------------------------------------------- loading


def _versions(run: Run, prov: Mapping[str, Any]) -> list[tuple[str, str]]:
    pairs = [
        ("Python", run.python_version or prov.get("python")),
        ("torch", run.torch_version or prov.get("torch")),
        ("torchvision", run.torchvision_version or prov.get("torchvision")),
        ("CUDA", run.cuda_version or prov.get("cuda")),
    ]
    return [(name, str(value)) for name, value in pairs if value]


def _summary_of(run: Run) -> dict[str, Any]:
    """The run's summary.json record; rebuilt from the normalized rows if it was not stored."""
    summary = dict(run.summary or {})
    if "rows" not in summary and run.measurements:
        summary["rows"] = [
            {
                "id": m.row_id,
                "value": m.value,
                "paper": m.paper_value,
                "tolerance": m.tolerance,
                "delta": m.delta,
                "verdict": m.verdict,
                "reason": m.reason,
            }
            for m in sorted(run.measurements, key=lambda m: m.id or 0)
            if m.row_id
        ]
        summary["metrics"] = [
            {"name": m.name, "value": m.value}
            for m in sorted(run.measurements, key=lambda m: m.id or 0)
            if m.name and not m.row_id
        ]
    if "claims" not in summary and run.claims:
        summary["claims"] = [
            {"id": c.claim_id, "text": c.text, "holds": c.holds, "detail": c.detail}
            for c in sorted(run.claims, key=lambda c: c.id or 0)
        ]
    if "figures" not in summary and run.artifacts:
        summary["figures"] = [
            {"path": a.path, "caption": a.caption}
            for a in sorted(run.artifacts, key=lambda a: a.id or 0)
            if a.kind == "figure"
        ]
    summary.setdefault("run_id", run.id)
    summary.setdefault("slug", run.slug)
    summary.setdefault("scale", run.scale)
    summary.setdefault("status", run.status)
    if not summary.get("started_at") and run.started_at:
        summary["started_at"] = run.started_at.isoformat()
    return summary


def _run_view(run: Run, runs_dir: Path, root: Path) -> RunView:
    summary = _summary_of(run)
    prov = summary.get("provenance") or {}
    params = summary.get("parameters") or run.parameters or {}
    run_dir = None
    candidates = [runs_dir / run.slug / run.id]
    if run.run_dir:
        stored = Path(run.run_dir)
        candidates.append(stored if stored.is_absolute() else root / stored)
    for candidate in candidates:
        if candidate.is_dir():
            run_dir = candidate
            break
    commit = run.git_commit or prov.get("git_commit") or ""
    return RunView(
        id=run.id,
        slug=run.slug,
        scale=run.scale,
        status=run.status,
        started=fmt_time(summary.get("started_at")),
        date=fmt_date(summary.get("started_at")),
        order=run_order_key(summary),
        wall=fmt_seconds(summary.get("wall_seconds", run.wall_seconds)),
        commit=str(commit),
        dirty=run.git_dirty if run.git_dirty is not None else prov.get("git_dirty"),
        device=str(run.device or prov.get("device") or ""),
        host=str(run.host or prov.get("host") or ""),
        versions=_versions(run, prov),
        executor=str(run.executor or prov.get("executor") or ""),
        seed=summary.get("seed", run.seed),
        parameters=[
            (str(k), json.dumps(v, sort_keys=True) if not isinstance(v, str) else v)
            for k, v in sorted(params.items())
        ],
        error=str(summary.get("error") or run.error or ""),
        reused_from=str(summary.get("reused_from") or run.reused_from or ""),
        summary=summary,
        run_dir=run_dir,
        changed=bool(summary.get("changed")),
        changes=[str(c) for c in summary.get("changes") or [] if c],
    )


#: expected.csv columns that land in `ExpectedResult.setting` but describe the number, not the
#: setting: `status` (`not_run: reason`, shown as the row's reason) and the printed std (shown
#: as `± std` beside the paper's value).
NOT_SETTING = {"status", "paper_std", "std"}


def _setting_pairs(setting: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [
        (str(k), str(v))
        for k, v in sorted(setting.items())
        if v not in (None, "") and k not in NOT_SETTING
    ]


def _paper_text(exp: ExpectedResult) -> str:
    std = next((exp.setting[k] for k in ("paper_std", "std") if (exp.setting or {}).get(k)), None)
    text = fmt_paper(exp.paper_value)
    return f"{text} ± {std}" if std not in (None, "") and exp.paper_value is not None else text


def _expected_view(exp: ExpectedResult) -> RowView:
    provenance = exp.provenance or ""
    return RowView(
        id=exp.row_id,
        source=exp.source,
        dataset=exp.dataset,
        setting=_setting_pairs(exp.setting or {}),
        metric=exp.metric,
        paper=_paper_text(exp),
        ours="–",
        delta="–",
        verdict="pending",
        verdict_label="pending",
        reason=str((exp.setting or {}).get("status") or ""),
        provenance=provenance,
        unverified=provenance.lower().startswith("unverified"),
    )


def _rows_for_run(expected: Sequence[ExpectedResult], run: RunView) -> list[RowView]:
    measured = {r["id"]: r for r in run.summary.get("rows", []) if isinstance(r, Mapping)}
    rows = []
    for exp in expected:
        view = _expected_view(exp)
        got = measured.pop(exp.row_id, None)
        if got is not None:
            view.value = got.get("value")
            view.ours = fmt_number(got.get("value"))
            view.delta = fmt_delta(got.get("delta"))
            view.verdict = str(got.get("verdict"))
            view.verdict_label = VERDICT_LABELS.get(view.verdict, view.verdict)
            view.reason = str(got.get("reason") or "")
            view.changed = bool(got.get("changed"))
            view.change = str(got.get("change") or "")
            if got.get("paper") is not None and exp.paper_value is None:
                view.paper = fmt_paper(got.get("paper"))
        else:
            view.verdict, view.verdict_label = "not_run", "not run"
            view.reason = "not recorded by this run"
        rows.append(view)
    for row_id in sorted(measured):  # recorded but no longer in expected.csv
        got = measured[row_id]
        rows.append(
            RowView(
                id=row_id,
                source="(not in expected.csv)",
                dataset="",
                setting=[],
                metric="",
                paper=fmt_paper(got.get("paper")),
                ours=fmt_number(got.get("value")),
                delta=fmt_delta(got.get("delta")),
                verdict=str(got.get("verdict")),
                verdict_label=VERDICT_LABELS.get(str(got.get("verdict")), ""),
                reason=str(got.get("reason") or ""),
                provenance="",
                unverified=False,
                changed=bool(got.get("changed")),
                change=str(got.get("change") or ""),
                value=got.get("value"),
            )
        )
    return rows


def _claims(summary: Mapping[str, Any]) -> list[ClaimView]:
    out = []
    for claim in summary.get("claims", []):
        holds = claim.get("holds")
        label = {True: "holds", False: "fails", None: "not evaluated"}[holds]
        css = {True: "holds", False: "fails", None: "not-evaluated"}[holds]
        out.append(
            ClaimView(
                id=str(claim.get("id")),
                text=str(claim.get("text") or claim.get("id")),
                holds=holds,
                label=label,
                css=css,
                detail=str(claim.get("detail") or ""),
                changed=bool(claim.get("changed")),
                change=str(claim.get("change") or ""),
            )
        )
    return out


def _chart(
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


def _charts(expected: Sequence[ExpectedResult], history: Sequence[RunView]) -> list[Chart]:
    """One chart per row or free metric measured by at least two successful runs."""
    ok = [r for r in sorted(history, key=lambda r: r.order) if r.status == "succeeded"]
    series: dict[str, list[tuple[RunView, float]]] = defaultdict(list)
    for run in ok:
        for row in run.summary.get("rows", []):
            if row.get("value") is not None:
                series["row:" + row["id"]].append((run, float(row["value"])))
        for metric in run.summary.get("metrics", []):
            if metric.get("value") is not None:
                series["metric:" + metric["name"]].append((run, float(metric["value"])))
    charts = []
    paper_of = {e.row_id: e for e in expected}
    order = [("row:" + e.row_id) for e in expected] + sorted(
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
        paper = exp.paper_value if exp else None
        aria = f"{label} across {len(series[name])} runs: {values}"
        if paper is not None:
            aria += f"; paper {fmt_paper(paper)}"
        charts.append(_chart(label, aria, series[name], paper))
    return charts


# --------------------------------------------------------------------------- comparison

_ROW_KEYS = ("model", "classifier", "substitute")
DATASET_LABELS = {
    "mnist": "MNIST",
    "fashion_mnist": "Fashion-MNIST",
    "mnist-test-split": "MNIST (test-split substitute)",
    "cifar10": "CIFAR-10",
    "celeba": "CelebA",
}
_SETTING_LABELS = {"eps": "ε", "epsilon": "ε", "alpha": "α"}


def _pretty_condition(condition: str) -> str:
    """`attack fgsm · eps 0.3` -> `attack fgsm · ε 0.3` (for headings; anchors keep the raw)."""
    parts = []
    for part in condition.split(" · "):
        key, _, value = part.partition(" ")
        parts.append(f"{_SETTING_LABELS.get(key, key)} {value}".strip())
    return " · ".join(parts)


_NONE_VALUES = {"", "none", "no", "no_defense", "no defense", "-", "null", "natural", "standard"}
_ATTACK_KEYS = {
    "attack",
    "eps",
    "epsilon",
    "alpha",
    "norm",
    "threat",
    "threat_model",
    "box",
    "steps",
}
#: The column of a row when its setting has neither `defense` nor `training`.
UNSTATED = "defense not stated"


def _defense_of(setting: dict[str, Any]) -> str:
    """The defense a row measures: its `defense` column, else its `training` column (FGSM's
    "fgsm adversarial ..." rows), with natural/none spellings folded to "none"; pops both."""
    defense = setting.pop("defense", None)
    training = setting.pop("training", None)
    value = defense if defense is not None else training
    if value is None:
        return UNSTATED
    return "none" if str(value).strip().lower() in _NONE_VALUES else str(value)


def fmt_pct(value: float | None) -> str:
    """Accuracy in percent for the comparison: one decimal, two when the paper printed two."""
    if value is None:
        return "–"
    text = f"{value:.2f}"
    return text[:-1] if text.endswith("0") else text


def _accuracy_pct(metric: str, value: float | None, paper: float | None) -> float | None:
    """Convert a row's value to accuracy in percent, or None when the metric is not an accuracy."""
    if value is None:
        return None
    metric = metric.lower()
    if metric in ("error_pct", "error_rate_pct", "test_error_pct"):
        return 100.0 - value
    if metric.startswith("accuracy") or metric in ("acc", "robust_accuracy"):
        if metric.endswith("_pct") or metric.endswith("percent"):
            return value
        reference = paper if paper is not None else value
        return value * 100.0 if reference <= 1.0 else value
    if metric in ("error", "error_rate"):
        return (1.0 - value) * 100.0 if value <= 1.0 else 100.0 - value
    return None


def _build_comparison(
    repros: Sequence[Reproduction],
    papers: Mapping[str, PaperView],
    latest_ok: Mapping[str, dict[str, RunView]],
) -> tuple[list[CompareTable], list[ReproRef]]:
    """Every reproduced defense side by side, per dataset and attack setting.

    Generic over expected.csv: a row takes part when its setting names an `attack` or a
    `defense` and its metric is an accuracy or error (shown as accuracy %). Tables are keyed by
    dataset and the attack setting (every setting column except defense, model, classifier,
    substitute); columns are the defenses; rows are (reproduction, model). Values come from the
    latest successful run, preferring full over small over smoke.
    """
    cells: dict[tuple[str, str], dict[tuple[str, str], dict[str, list[CompareEntry]]]] = {}
    row_meta: dict[tuple[str, str], tuple[str, str, str]] = {}
    defenses: dict[tuple[str, str], set[str]] = defaultdict(set)
    pending: list[ReproRef] = []
    for repro in sorted(repros, key=lambda r: r.slug):
        paper = papers.get(repro.paper_key)
        scales = latest_ok.get(repro.slug, {})
        run = None
        for scale in sorted(scales, key=lambda s: (SCALE_ORDER.get(s, 9), s)):
            run = scales[scale]
            break
        rows = [
            e for e in repro.expected if {"attack", "defense", "training"} & set(e.setting or {})
        ]
        if not rows:
            continue
        if run is None:
            pending.append(
                ReproRef(
                    repro.slug,
                    paper.title if paper else repro.slug,
                    paper.page if paper else None,
                    paper.status if paper else Status(PENDING, "no run yet"),
                )
            )
            continue
        measured = {r["id"]: r for r in run.summary.get("rows", [])}
        for exp in rows:
            setting = {
                k: v
                for k, v in (exp.setting or {}).items()
                if v not in (None, "") and k not in NOT_SETTING
            }
            got = measured.get(exp.row_id)
            if got is None or got.get("value") is None:
                continue
            ours = _accuracy_pct(exp.metric, got.get("value"), exp.paper_value)
            if ours is None:
                continue
            paper_pct = _accuracy_pct(exp.metric, exp.paper_value, exp.paper_value)
            defense = _defense_of(setting)
            if "attack" not in setting or str(setting["attack"]).lower() in _NONE_VALUES:
                # clean accuracy: attack parameters (a training eps) do not split the table
                setting = {k: v for k, v in setting.items() if k not in _ATTACK_KEYS}
                setting["attack"] = "none"
            model = " / ".join(str(setting.pop(k)) for k in _ROW_KEYS if k in setting)
            condition = " · ".join(
                f"{k} {setting[k]}" for k in sorted(setting) if k in _ATTACK_KEYS
            )
            extra = " · ".join(
                f"{k} {setting[k]}" for k in sorted(setting) if k not in _ATTACK_KEYS
            )
            table_key = (exp.dataset, condition)
            row_key = (repro.slug, model)
            title = paper.title if paper else repro.slug
            row_meta[row_key] = (
                title + (f" · model {model}" if model else ""),
                paper.page if paper else "",
                run.scale + "|" + run.id,
            )
            defenses[table_key].add(defense)
            entry = CompareEntry(
                ours=fmt_pct(ours),
                paper=fmt_pct(paper_pct),
                verdict=str(got.get("verdict")),
                verdict_label=VERDICT_LABELS.get(str(got.get("verdict")), ""),
                scale=run.scale,
                detail=extra,
                row_id=exp.row_id,
            )
            cells.setdefault(table_key, {}).setdefault(row_key, defaultdict(list))[defense].append(
                entry
            )
    tables = []
    for table_key in sorted(cells):
        dataset, condition = table_key
        cols = sorted(defenses[table_key], key=lambda d: (d != "none", d == UNSTATED, d.lower()))
        rows = []
        for row_key in sorted(cells[table_key]):
            label, page, scale_run = row_meta[row_key]
            scale, run_id = scale_run.split("|", 1)
            cell_map = cells[table_key][row_key]
            rows.append(
                CompareRow(
                    label=label,
                    slug=row_key[0],
                    page=page,
                    scale=scale,
                    run_id=run_id,
                    cells={
                        d: sorted(cell_map.get(d, []), key=lambda e: (e.detail, e.row_id))
                        for d in cols
                    },
                )
            )
        anchor = "cmp-" + safe_name(f"{dataset}-{condition}").lower()
        tables.append(
            CompareTable(
                DATASET_LABELS.get(dataset, dataset),
                _pretty_condition(condition or "attack none"),
                anchor,
                cols,
                rows,
            )
        )
    return tables, pending


# --------------------------------------------------------------------------- the build


@dataclass
class _Catalog:
    """Everything the templates need, loaded once from the database."""

    papers: list[PaperView]
    lists: list[ListView]
    runs: list[RunView]
    comparison: list[CompareTable]
    comparison_pending: list[ReproRef]
    shown_runs: list[RunView]  # runs whose figures and notebook are published


def _review_meta(front_matter: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    meta = []
    for key, value in sorted((front_matter or {}).items()):
        if key in ("title", "key"):
            continue  # already the page's title and file name
        if isinstance(value, list):
            text = ", ".join(str(v) for v in value)
        elif isinstance(value, dict):
            text = json.dumps(value, sort_keys=True, default=str)
        else:
            text = str(value)
        meta.append((str(key), text))
    return meta


def _load(session: Session, runs_dir: Path, root: Path) -> _Catalog:
    papers_orm = list(
        session.exec(
            select(Paper).options(
                selectinload(Paper.author_links).selectinload(PaperAuthor.author),
                selectinload(Paper.review),
            )
        )
    )
    lists_orm = list(session.exec(select(ReadingList).options(selectinload(ReadingList.entries))))
    repros = list(session.exec(select(Reproduction).options(selectinload(Reproduction.expected))))
    runs = sorted(
        (_run_view(run, runs_dir, root) for run in session.exec(select(Run))),
        key=lambda r: r.order,
    )

    paper_page = {p.key: f"papers/{safe_name(p.key)}.html" for p in papers_orm}
    # `[@KEY]` in notes and reviews links to the paper; these render on pages one folder deep
    # (papers/, lists/), hence "../".
    citations = {
        p.key: (f"{p.authors[0].last_name if p.authors else p.title[:30]} {p.year}", "../" + page)
        for p in papers_orm
        for page in [paper_page[p.key]]
    }
    repro_by_slug = {r.slug: r for r in repros}
    repros_of: dict[str, list[Reproduction]] = defaultdict(list)
    for repro in repros:
        repros_of[repro.paper_key].append(repro)
    runs_of: dict[str, list[RunView]] = defaultdict(list)
    for run in runs:
        runs_of[run.slug].append(run)
        repro = repro_by_slug.get(run.slug)
        if repro is not None:
            run.paper_page = paper_page.get(repro.paper_key)

    # Which runs are shown in full (figures, notebook): per slug and scale, the latest successful
    # run and a newer failure if there is one. Bounded by slugs × scales, not by history length.
    latest_ok: dict[str, dict[str, RunView]] = defaultdict(dict)
    newer_failure: dict[tuple[str, str], RunView] = {}
    for run in runs:  # chronological
        if run.status == "succeeded":
            latest_ok[run.slug][run.scale] = run
            newer_failure.pop((run.slug, run.scale), None)
        else:
            newer_failure[(run.slug, run.scale)] = run
    shown: dict[str, RunView] = {}
    for scales in latest_ok.values():
        for run in scales.values():
            shown[run.id] = run
    for run in newer_failure.values():
        shown[run.id] = run
    for run in shown.values():
        run.notebook_page = None  # decided when the notebook is rendered
    shown_runs = sorted(shown.values(), key=lambda r: (r.slug, r.scale, r.id))

    def ref(slug: str) -> ReproRef:
        repro = repro_by_slug.get(slug)
        if repro is None:
            return ReproRef(slug, slug, None)
        return ReproRef(slug, repro.title or slug, paper_page.get(repro.paper_key))

    used_by: dict[str, list[str]] = defaultdict(list)
    for repro in repros:
        for used in repro.uses or []:
            used_by[str(used)].append(repro.slug)

    list_refs: dict[str, list[ListRef]] = defaultdict(list)
    list_views = []
    for rl in sorted(lists_orm, key=lambda r: r.slug):
        page = f"lists/{safe_name(rl.slug)}.html"
        entries = []
        for entry in sorted(rl.entries, key=lambda e: (e.position, e.id or 0)):
            note_html = render_markdown(entry.note, top_heading=3, citations=citations)
            if entry.paper_key and entry.paper_key in paper_page:
                list_refs[entry.paper_key].append(
                    ListRef(rl.slug, rl.title, page, entry.position, note_html, entry.note or "")
                )
            entries.append({"entry": entry, "note_html": note_html})
        list_views.append(
            ListView(
                slug=rl.slug,
                page=page,
                title=rl.title,
                description_html=render_markdown(
                    rl.description, top_heading=2, citations=citations
                ),
                provenance=rl.provenance or "",
                source_file=rl.source_file,
                format=rl.format,
                entries=entries,
            )
        )

    papers: list[PaperView] = []
    for p in papers_orm:
        repro_views = []
        for repro in sorted(repros_of.get(p.key, []), key=lambda r: r.slug):
            history = runs_of.get(repro.slug, [])
            scales = []
            scale_names = sorted(
                {r.scale for r in history}, key=lambda s: (SCALE_ORDER.get(s, 9), s)
            )
            for scale in scale_names:
                ok = latest_ok.get(repro.slug, {}).get(scale)
                failure = newer_failure.get((repro.slug, scale))
                metrics = []
                if ok is not None:
                    metrics = [
                        (str(m.get("name")), fmt_number(m.get("value")))
                        for m in ok.summary.get("metrics", [])
                    ]
                scales.append(
                    ScaleView(
                        scale=scale,
                        run=ok,
                        failure=failure,
                        rows=_rows_for_run(repro.expected, ok) if ok else [],
                        metrics=metrics,
                        claims=_claims(ok.summary) if ok else [],
                    )
                )
            for sv in scales:  # open the best scale that has a successful run
                if sv.run is not None:
                    sv.open = True
                    break
            else:
                if scales:
                    scales[0].open = True
            repro_views.append(
                ReproView(
                    slug=repro.slug,
                    title=repro.title or repro.slug,
                    path=repro.path,
                    datasets=list(repro.datasets or []),
                    needs_gpu=bool(repro.needs_gpu),
                    has_notebook=bool(repro.has_notebook),
                    uses=[ref(s) for s in sorted(repro.uses or [])],
                    used_by=[ref(s) for s in sorted(used_by.get(repro.slug, []))],
                    expected=[_expected_view(e) for e in repro.expected],
                    scales=scales,
                    history=sorted(history, key=lambda r: r.order, reverse=True),
                    charts=_charts(repro.expected, history),
                    status=paper_status([r.summary for r in history], reproductions=[repro.slug]),
                )
            )
        all_runs = [r for repro in repros_of.get(p.key, []) for r in runs_of.get(repro.slug, [])]
        status = paper_status(
            [r.summary for r in all_runs], reproductions=[r.slug for r in repros_of.get(p.key, [])]
        )
        if (
            repros_of.get(p.key)
            and not any(r.has_notebook for r in repros_of[p.key])
            and not all_runs
        ):
            status = Status(
                PENDING, "method-only folder: used by other reproductions, no experiment of its own"
            )
        last = max(all_runs, key=lambda r: r.order).date if all_runs else ""
        review = p.review
        papers.append(
            PaperView(
                key=p.key,
                page=paper_page[p.key],
                title=p.title,
                year=p.year,
                venue=p.venue or "",
                venue_kind=p.venue_kind or "",
                entry_type=p.entry_type or "",
                authors=[a.name for a in p.authors],
                arxiv_id=p.arxiv_id or "",
                doi=p.doi or "",
                url=p.url or "",
                code_url=p.code_url or "",
                abstract=p.abstract or "",
                bibtex=(p.bibtex or "").strip(),
                lists=sorted(list_refs.get(p.key, []), key=lambda r: (r.title.lower(), r.slug)),
                review_html=(
                    render_markdown(review.body, top_heading=3, citations=citations)
                    if review
                    else ""
                ),
                review_meta=_review_meta(review.front_matter) if review else [],
                review_text=review.body if review else "",
                reproductions=repro_views,
                status=status,
                last_run=last,
            )
        )
    papers.sort(key=lambda p: (-p.year, p.title.casefold(), p.key))
    by_key = {p.key: p for p in papers}
    for run in runs:
        repro = repro_by_slug.get(run.slug)
        if repro is not None and repro.paper_key in by_key:
            run.paper_title = by_key[repro.paper_key].title
    comparison, pending = _build_comparison(repros, by_key, latest_ok)
    return _Catalog(papers, list_views, runs, comparison, pending, shown_runs)


class _Writer:
    """Writes files under the build folder and keeps the tallies of the report."""

    def __init__(self, out: Path, report: PublishReport) -> None:
        self.out = out
        self.report = report

    def text(self, rel: str, content: str) -> None:
        path = self.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        data = content.encode("utf-8")
        path.write_bytes(data)
        self.report.bytes += len(data)
        if rel.endswith(".html"):
            self.report.pages += 1

    def copy(self, src: Path, rel: str) -> None:
        path = self.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, path)
        self.report.bytes += path.stat().st_size


def wbr(text: Any) -> Markup:
    """Escape `text` and allow line breaks after `_`, `-` and `.` (long row ids and run ids)."""
    escaped = str(escape(str(text)))
    return Markup(re.sub(r"([_.-])", r"\1<wbr>", escaped))


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(SITE_DIR / "templates")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.globals.update(STATUSES=STATUSES, status_css=status_css)
    env.filters["wbr"] = wbr
    return env


def _relative_root(rel: str) -> str:
    depth = len(PurePosixPath(rel).parts) - 1
    return "../" * depth


def _notebook_exporter() -> Any:
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="basic")
    exporter.exclude_anchor_links = True
    return exporter


def _render_notebook(exporter: Any, path: Path) -> str:
    import nbformat

    notebook = nbformat.read(str(path), as_version=4)
    body, _ = exporter.from_notebook_node(notebook)
    body = body.replace(
        'alt="No description has been provided for this image"', 'alt="Output of a notebook cell"'
    )
    return sanitize_notebook_html(normalize_headings(body, 2))


def _notebook_css() -> str:
    """Syntax colours for notebook code (Pygments, which nbconvert already depends on)."""
    from pygments.formatters import HtmlFormatter

    return HtmlFormatter(style="default").get_style_defs(".highlight") + "\n"


def _publish_run_files(
    catalog: _Catalog, writer: _Writer, env: jinja2.Environment, report: PublishReport
) -> None:
    """Copy figures and render notebooks of the runs the pages show in full."""
    exporter = None
    for run in catalog.shown_runs:
        base = f"runs/{safe_name(run.slug)}/{safe_name(run.id)}"
        figures = [f for f in run.summary.get("figures", []) if isinstance(f, Mapping)]
        if run.run_dir is None:
            if figures or run.summary.get("notebook"):
                report.warnings.append(
                    f"run {run.id}: run directory not found; figures and notebook left out"
                )
            continue
        for fig in figures:
            rel = PurePosixPath(str(fig.get("path", "")))
            caption = str(fig.get("caption") or "")
            alt = caption or f"Figure {rel.stem} of run {run.id}"
            if rel.is_absolute() or ".." in rel.parts or not rel.parts:
                report.warnings.append(
                    f"run {run.id}: figure path {str(rel)!r} leaves the run folder"
                )
                continue
            src = run.run_dir / rel
            if not src.is_file():
                report.warnings.append(f"run {run.id}: figure {rel} missing")
                run.figures.append(FigureView("", alt, caption, None, None))
                continue
            dest = base + "/" + "/".join(safe_name(part) for part in rel.parts)
            writer.copy(src, dest)
            size = png_size(src)
            run.figures.append(
                FigureView(dest, alt, caption, size[0] if size else None, size[1] if size else None)
            )
            report.figures += 1
        notebook = run.summary.get("notebook")
        if not notebook:
            continue
        rel = PurePosixPath(str(notebook))
        path = run.run_dir / rel
        if rel.is_absolute() or ".." in rel.parts or not path.is_file():
            report.warnings.append(f"run {run.id}: notebook {rel} missing")
            continue
        if exporter is None:
            exporter = _notebook_exporter()
        try:
            body = _render_notebook(exporter, path)
        except Exception as exc:  # a corrupt notebook must not stop the site
            report.warnings.append(f"run {run.id}: notebook {rel} could not be rendered: {exc}")
            continue
        page = f"{base}/notebook.html"
        run.notebook_page = page
        writer.text(
            page,
            env.get_template("notebook.html").render(
                root=_relative_root(page), nav="runs", run=run, body=body
            ),
        )
        report.notebooks += 1


def _search_index(catalog: _Catalog) -> dict[str, Any]:
    return {
        "version": 1,
        "statuses": list(STATUSES),
        "lists": [{"slug": rl.slug, "title": rl.title} for rl in catalog.lists],
        "papers": [
            {
                "key": p.key,
                "page": p.page,
                "title": p.title,
                "authors": p.authors,
                "year": p.year,
                "venue": p.venue,
                "lists": sorted({ref.slug for ref in p.lists}),
                "status": p.status.label,
                "last_run": p.last_run,
                "text": _search_text(
                    p.title,
                    " ".join(p.authors),
                    p.abstract,
                    p.key,
                    p.venue,
                    str(p.year),
                    " ".join(ref.note_text for ref in p.lists),
                    p.review_text,
                ),
            }
            for p in catalog.papers
        ],
    }


def _build(session: Session, out: Path, runs_dir: Path, root: Path, report: PublishReport) -> None:
    catalog = _load(session, runs_dir, root)
    env = _environment()
    writer = _Writer(out, report)

    for src in sorted((SITE_DIR / "static").iterdir()):
        if src.is_file():
            writer.copy(src, f"static/{src.name}")
    writer.text("static/notebook.css", _notebook_css())
    writer.text(
        MARKER, "A site built by `catalog publish`; the folder is replaced on each build.\n"
    )

    _publish_run_files(catalog, writer, env, report)

    index = _search_index(catalog)
    index_json = json.dumps(index, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    writer.text("search-index.json", index_json + "\n")
    writer.text("search-index.js", f"window.ADVREPRO_INDEX = {index_json};\n")

    years = sorted({p.year for p in catalog.papers}, reverse=True)
    venues = sorted({p.venue for p in catalog.papers if p.venue}, key=str.casefold)
    counts = {s: sum(1 for p in catalog.papers if p.status.label == s) for s in STATUSES}
    latest_run = catalog.runs[-1] if catalog.runs else None
    common = {"n_papers": len(catalog.papers), "n_runs": len(catalog.runs)}

    def page(rel: str, template: str, nav: str, **context: Any) -> None:
        html = env.get_template(template).render(
            root=_relative_root(rel), nav=nav, **common, **context
        )
        writer.text(rel, html)

    page(
        "index.html",
        "index.html",
        "papers",
        papers=catalog.papers,
        lists=catalog.lists,
        years=years,
        venues=venues,
        counts=counts,
        latest_run=latest_run,
    )
    for paper in catalog.papers:
        page(paper.page, "paper.html", "papers", paper=paper)
    for rl in catalog.lists:
        page(rl.page, "list.html", "papers", rl=rl, papers={p.key: p for p in catalog.papers})
    recent = list(reversed(catalog.runs))
    failures = [r for r in recent if r.status != "succeeded"]
    page(
        "runs.html",
        "runs.html",
        "runs",
        recent=recent[:200],
        failures=failures[:50],
        n_failures=len(failures),
    )
    page(
        "comparison.html",
        "comparison.html",
        "comparison",
        tables=catalog.comparison,
        pending=catalog.comparison_pending,
        unstated=UNSTATED,
        has_unstated=any(UNSTATED in t.defenses for t in catalog.comparison),
    )
    report.papers = len(catalog.papers)
    report.lists = len(catalog.lists)
    report.runs = len(catalog.runs)


def _check_out_dir(out_dir: Path) -> None:
    """Refuse to replace a folder that is not a site this function built (e.g. `--out ~`)."""
    if out_dir.exists():
        if not out_dir.is_dir():
            raise CatalogError(f"{out_dir}: exists and is not a folder")
        if any(out_dir.iterdir()) and not (out_dir / MARKER).is_file():
            raise CatalogError(
                f"{out_dir}: folder is not empty and was not built by `catalog publish`; "
                "choose an empty or new folder"
            )


def publish(
    session: Session,
    out_dir: Path | str,
    *,
    runs_dir: Path | str | None = None,
    root: Path | str | None = None,
) -> PublishReport:
    """Build the static site from the catalog into `out_dir`, replacing what a previous build left.

    `root` is the project root (default `project_root()`), against which relative `run_dir`s are
    resolved; `runs_dir` (default `<root>/runs`) is searched first for `<slug>/<run-id>/`. The
    site is built in a sibling temporary folder and swapped in at the end, so a failed build
    leaves the previous site intact.
    """
    started = time.perf_counter()
    root = Path(root) if root is not None else project_root()
    runs_dir = Path(runs_dir) if runs_dir is not None else root / "runs"
    if not runs_dir.is_absolute():
        runs_dir = root / runs_dir
    out_dir = Path(out_dir).resolve()
    _check_out_dir(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    report = PublishReport(out_dir=out_dir)
    build = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-build-", dir=out_dir.parent))
    try:
        _build(session, build, runs_dir, root, report)
        build.chmod(0o755)
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-old-", dir=out_dir.parent))
            old.rmdir()
            out_dir.rename(old)
            build.rename(out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            build.rename(out_dir)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    report.warnings.sort()
    report.seconds = time.perf_counter() - started
    return report
