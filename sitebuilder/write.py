"""Writing the pages: Jinja templates, copied figures, rendered notebooks, the search index, and
the swap of the finished build into place (`publish`).

Pages (all links relative, no request leaves the page):
    index.html                      every paper, status badges, client-side search and filters
    papers/<key>.html               facts, BibTeX, list notes, our review, the reproduction
    lists/<slug>.html               a reading list in its own order, with its notes
    runs.html                       recent runs and failures with their error
    robustness.html                 every robust model under the same attacks (repro.robust_eval)
    scoreboard.html                 every reproduction: status, claims, verdicts per scale,
                                    last run, adaptive attacks
    comparison.html                 every reproduced defense under the same attack and dataset
    runs/<slug>/<run>/notebook.html the executed notebook (nbconvert, sanitized)
    runs/<slug>/<run>/figures/...   figures copied from the run directory
    search-index.json / .js         the search index (the .js assigns `window.ADVREPRO_INDEX`,
                                    because `fetch()` of a local JSON file is blocked on file://)

Determinism: same catalog, same bytes. Iteration is sorted, JSON is written with `sort_keys`, and
the only times printed are the runs' own (`started_at` from the run's summary). The output folder
is replaced as a whole, so pages of papers that left the catalog disappear.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import jinja2
from sqlmodel import Session

from catalog import CatalogError
from catalog.config import PACKAGE_ROOT, project_root
from sitebuilder.images import png_size
from sitebuilder.load import SiteData, load
from sitebuilder.markdown import normalize_headings, sanitize_notebook_html
from sitebuilder.robustness import COLUMNS as ROBUST_COLUMNS
from sitebuilder.robustness import GAP_FLAG
from sitebuilder.status import STATUSES, status_css
from sitebuilder.tables import UNSTATED
from sitebuilder.text import safe_name, search_text, wbr
from sitebuilder.views import FigureView, PublishReport

__all__ = ["MARKER", "SITE_DIR", "publish"]

SITE_DIR = PACKAGE_ROOT / "site"
MARKER = ".advrepro-site"


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
    catalog: SiteData, writer: _Writer, env: jinja2.Environment, report: PublishReport
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
            if _linked(run.run_dir, rel):
                report.warnings.append(
                    f"run {run.id}: figure {rel} is a symbolic link; left out (only files inside"
                    " the run folder are published)"
                )
                continue
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
        if _linked(run.run_dir, rel):
            report.warnings.append(
                f"run {run.id}: notebook {rel} is a symbolic link; left out (only files inside"
                " the run folder are published)"
            )
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


def _linked(base: Path, rel: PurePosixPath) -> bool:
    """Whether `base / rel` passes through a symbolic link (the file or any folder below
    `base`): the site copies run files, and a link could copy any file the builder can read."""
    path = base
    for part in rel.parts:
        path = path / part
        if path.is_symlink():
            return True
    return False


def _search_index(catalog: SiteData) -> dict[str, Any]:
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
                "text": search_text(
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


def _totals(catalog: SiteData) -> dict[str, int]:
    """The scoreboard's headline numbers, summed over every reproduction."""
    totals = dict.fromkeys(
        ("reproductions", "ran", "claims", "claims_held", "claims_failed", "match", "deviates",
         "compared", "measured", "rows", "adaptive"),
        0,
    )  # fmt: skip
    for row in catalog.scoreboard:
        totals["reproductions"] += 1
        totals["ran"] += bool(row.scales)
        totals["claims"] += sum(row.claims)
        totals["claims_held"] += row.claims[0]
        totals["claims_failed"] += row.claims[1]
        totals["adaptive"] += len(row.adaptive)
    for paper in catalog.papers:
        for repro in paper.reproductions:
            counts = repro.counts
            totals["rows"] += len(repro.expected)
            totals["match"] += counts.get("match", 0)
            totals["deviates"] += counts.get("deviates", 0)
            totals["compared"] += counts.get("match", 0) + counts.get("deviates", 0)
            totals["measured"] += sum(n for v, n in counts.items() if v != "not_run")
    return totals


def _build(session: Session, out: Path, runs_dir: Path, root: Path, report: PublishReport) -> None:
    catalog = load(session, runs_dir, root)
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
        leaders=sorted(
            (p for p in catalog.papers if p.bar is not None),
            key=lambda p: (p.status.rank, p.title.casefold()),
        ),
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
        "scoreboard.html",
        "scoreboard.html",
        "scoreboard",
        rows=catalog.scoreboard,
        totals=_totals(catalog),
    )
    page(
        "robustness.html",
        "robustness.html",
        "robustness",
        rows=catalog.robustness,
        columns=ROBUST_COLUMNS,
        gap_flag=GAP_FLAG,
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


def _swap_in(build: Path, out_dir: Path) -> None:
    """Replace `out_dir` by the finished `build` (two renames in one folder); if the swap fails,
    the previous site is put back and the failure is one `CatalogError`."""
    old = None
    try:
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-old-", dir=out_dir.parent))
            old.rmdir()
            out_dir.rename(old)
        build.rename(out_dir)
    except OSError as exc:
        if old is not None and old.exists() and not out_dir.exists():
            old.rename(out_dir)
        raise CatalogError(f"--out {out_dir}: cannot replace it: {exc.strerror or exc}") from exc
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


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
    report = PublishReport(out_dir=out_dir)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        build = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-build-", dir=out_dir.parent))
    except OSError as exc:  # a file where a folder should be, read-only, /proc, disk full
        raise CatalogError(f"--out {out_dir}: cannot write there: {exc.strerror or exc}") from exc
    try:
        _build(session, build, runs_dir, root, report)
        build.chmod(0o755)
        _swap_in(build, out_dir)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    report.warnings.sort()
    report.seconds = time.perf_counter() - started
    return report
