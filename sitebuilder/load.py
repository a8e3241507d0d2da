"""Loading from the database: everything the pages show, read once and turned into views.

Everything comes from the catalog (papers, lists, reviews, reproductions, expected rows, runs);
files are read only for what a run produced (figures, the executed notebook), found under
`runs_dir/<slug>/<run-id>/` or the run's stored `run_dir`. Which runs are shown in full (figures,
notebook): per reproduction and scale, the latest successful run and a newer failure if there is
one, so the work is bounded by slugs x scales, not by the length of the history.

What a paper's results show is each expected row at the best scale that ran
(`catalog.compare.best_per_row` over the latest successful run of each scale): the paper's
tables in their printed shape (`sitebuilder.pivot`), the "paper vs ours" scatter, the headline
row of the index (repro.toml's `[site] headline`, else the first row measured), the verdict
counts of the index's bar and of the scoreboard.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import selectinload
from sqlmodel import Session, select

from catalog.compare import VERDICTS, best_per_row, comparison_frame, records, run_order_key
from catalog.models import Paper, PaperAuthor, ReadingList, Reproduction, Run
from catalog.schema import ExpectedRow
from sitebuilder.adaptive import adaptive_findings
from sitebuilder.charts import bar, charts, scatters
from sitebuilder.markdown import render_markdown
from sitebuilder.pivot import source_tables
from sitebuilder.robustness import RobustRow, robustness_rows
from sitebuilder.status import PENDING, SCALE_ORDER, VERDICT_LABELS, Status, paper_status
from sitebuilder.tables import (
    DATASET_LABELS,
    build_comparison,
    claim_views,
    expected_row,
    expected_view,
    rows_of_run,
    run_comparison,
)
from sitebuilder.text import fmt_date, fmt_number, fmt_paper, fmt_seconds, fmt_time, safe_name
from sitebuilder.views import (
    AdaptiveView,
    CompareTable,
    Headline,
    ListRef,
    ListView,
    PaperView,
    ReproRef,
    ReproView,
    RunView,
    ScaleView,
    ScoreRow,
)

__all__ = ["SiteData", "load"]


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


@dataclass
class SiteData:
    """Everything the templates need, loaded once from the database."""

    papers: list[PaperView]
    lists: list[ListView]
    runs: list[RunView]
    comparison: list[CompareTable]
    comparison_pending: list[ReproRef]
    shown_runs: list[RunView]  # runs whose figures and notebook are published
    scoreboard: list[ScoreRow]
    robustness: list[RobustRow] = field(default_factory=list)  # every robust model, same attacks


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


def _by_scale(runs: Mapping[str, RunView]) -> list[RunView]:
    """A reproduction's latest successful runs, best scale first (full, small, smoke)."""
    return [runs[s] for s in sorted(runs, key=lambda s: (SCALE_ORDER.get(s, 9), s))]


def _best_rows(
    expected: list[ExpectedRow], ok_runs: list[RunView]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Each expected row at the best scale that ran (plain records, expected.csv's order), and
    the ids the runs recorded that expected.csv lacks."""
    frame = comparison_frame(expected, [run.summary for run in ok_runs])
    frame = frame.drop_duplicates(["id", "run_id"], keep="last")
    best = records(best_per_row(frame))
    for rec in best:
        if ok_runs and rec["run_id"] is None and rec["reason"] == "no run yet":
            rec["reason"] = "not recorded by the latest run of any scale"
    known = [r for r in best if r["position"] >= 0]
    unknown = sorted(str(r["id"]) for r in best if r["position"] < 0)
    return known, unknown


def _counts(recs: list[dict[str, Any]]) -> dict[str, int]:
    counts = dict.fromkeys(VERDICTS, 0)
    for rec in recs:
        verdict = str(rec.get("verdict"))
        counts[verdict] = counts.get(verdict, 0) + 1
    return counts


def _setting_line(rec: Mapping[str, Any]) -> str:
    dataset = str(rec.get("dataset") or "")
    parts = [DATASET_LABELS.get(dataset, dataset)]
    parts += [f"{k} {v}" for k, v in (rec.get("setting") or {}).items() if v not in (None, "")]
    return " · ".join(p for p in parts if p)


def _headline(config: Mapping[str, Any], best: list[dict[str, Any]], ran: bool) -> Headline | None:
    """The declared headline row (repro.toml `[site] headline`), else the first row measured."""
    declared_id = ((config or {}).get("site") or {}).get("headline")
    rec = next((r for r in best if r["id"] == declared_id), None) if declared_id else None
    declared = rec is not None
    if rec is None:
        rec = next((r for r in best if r.get("value") is not None), None)
    if rec is None:
        return None
    verdict = str(rec.get("verdict") or "not_run") if ran else "pending"
    return Headline(
        row_id=str(rec["id"]),
        source=str(rec.get("source") or ""),
        setting=_setting_line(rec),
        metric=str(rec.get("metric") or ""),
        paper=fmt_paper(rec.get("paper")),
        ours=fmt_number(rec.get("value")),
        scale=str(rec.get("scale") or "") if rec.get("value") is not None else "",
        verdict=verdict,
        verdict_label=VERDICT_LABELS.get(verdict, verdict),
        declared=declared,
    )


def _adaptive(
    ok_runs: list[RunView], best: list[dict[str, Any]]
) -> tuple[dict[str, list[AdaptiveView]], list[AdaptiveView]]:
    """Adaptive-attack findings of the latest runs, best scale first; one per metric name."""
    by_id = {str(r["id"]): r for r in best}
    by_row: dict[str, list[AdaptiveView]] = {}
    found: list[AdaptiveView] = []
    seen: set[str] = set()
    for run in ok_runs:
        _, views = adaptive_findings(run.summary.get("metrics") or [], by_id)
        for view in views:
            if view.metric in seen:
                continue
            seen.add(view.metric)
            view.scale = run.scale
            found.append(view)
            if view.anchored:
                by_row.setdefault(view.row_id, []).append(view)
    return by_row, found


def load(session: Session, runs_dir: Path, root: Path) -> SiteData:
    """Read the catalog and build every view; run directories are looked up, not yet copied."""
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
    expected_of: dict[str, list[ExpectedRow]] = {
        r.slug: [expected_row(e) for e in r.expected] for r in repros
    }
    compared_of: dict[str, list[dict[str, Any]]] = {}  # run id -> its run_comparison

    def compared(slug: str, run: RunView) -> list[dict[str, Any]]:
        if run.id not in compared_of:
            compared_of[run.id] = run_comparison(expected_of[slug], run.summary)
        return compared_of[run.id]

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
                        rows=rows_of_run(compared(repro.slug, ok)) if ok else [],
                        metrics=metrics,
                        claims=claim_views(ok.summary) if ok else [],
                    )
                )
            for sv in scales:  # open the best scale that has a successful run
                if sv.run is not None:
                    sv.open = True
                    break
            else:
                if scales:
                    scales[0].open = True
            ok_runs = _by_scale(latest_ok.get(repro.slug, {}))
            ran = bool(ok_runs)
            best, unknown = _best_rows(expected_of[repro.slug], ok_runs)
            adaptive_by_row, adaptive = _adaptive(ok_runs, best) if ran else ({}, [])
            config = dict(repro.config or {})
            counts = _counts(best) if ran else {}
            claims_run = next((r for r in ok_runs if r.summary.get("claims")), None)
            anchor = safe_name(repro.slug).lower()
            gallery = [sv.run for sv in scales if sv.run is not None]
            gallery += [sv.failure for sv in scales if sv.failure is not None]
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
                    expected=[expected_view(e) for e in expected_of[repro.slug]],
                    scales=scales,
                    history=sorted(history, key=lambda r: r.order, reverse=True),
                    charts=charts(expected_of[repro.slug], history),
                    status=paper_status([r.summary for r in history], reproductions=[repro.slug]),
                    tables=source_tables(
                        repro.slug,
                        best,
                        (config.get("site") or {}).get("tables") or {},
                        ran=ran,
                        adaptive=adaptive_by_row,
                    ),
                    scatters=scatters(f"sc-{anchor}", best) if ran else [],
                    headline=_headline(config, best, ran),
                    counts=counts,
                    bar=bar(counts) if ran else None,
                    claims_held=claims_run.claim_counts if claims_run else (0, 0, 0),
                    adaptive=adaptive,
                    gallery=gallery,
                    best_scale=ok_runs[0].scale if ok_runs else "",
                    not_in_expected=unknown,
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
        ran_views = [rv for rv in repro_views if rv.bar is not None]
        headlines = [rv.headline for rv in repro_views if rv.headline is not None]
        headline = next((h for h in headlines if h.scale), headlines[0] if headlines else None)
        paper_counts: dict[str, int] = {}
        for rv in ran_views:
            for verdict, n in rv.counts.items():
                paper_counts[verdict] = paper_counts.get(verdict, 0) + n
        held = tuple(sum(rv.claims_held[i] for rv in ran_views) for i in range(3))
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
                headline=headline,
                bar=bar(paper_counts) if ran_views else None,
                claims_held=(held[0], held[1], held[2]),
            )
        )
    papers.sort(key=lambda p: (-p.year, p.title.casefold(), p.key))
    by_key = {p.key: p for p in papers}
    for run in runs:
        repro = repro_by_slug.get(run.slug)
        if repro is not None and repro.paper_key in by_key:
            run.paper_title = by_key[repro.paper_key].title
    for repro in repros:  # every latest successful run compared (the paper pages did most)
        for run in latest_ok.get(repro.slug, {}).values():
            compared(repro.slug, run)
    comparison, pending = build_comparison(repros, expected_of, by_key, latest_ok, compared_of)
    board = _scoreboard(papers, runs_of, latest_ok, compared_of)
    titles = {
        repro.slug: (by_key[repro.paper_key].title, by_key[repro.paper_key].page)
        for repro in repros
        if repro.paper_key in by_key
    }
    latest = [run for scales in latest_ok.values() for run in scales.values()]
    robust = robustness_rows(latest, titles)
    return SiteData(papers, list_views, runs, comparison, pending, shown_runs, board, robust)


def _scoreboard(
    papers: list[PaperView],
    runs_of: Mapping[str, list[RunView]],
    latest_ok: Mapping[str, dict[str, RunView]],
    compared_of: Mapping[str, list[dict[str, Any]]],
) -> list[ScoreRow]:
    """Every reproduction: status, claims, verdicts per scale (latest run of each), last run,
    adaptive findings; reproductions with runs first, then by paper title."""
    out = []
    for paper in papers:
        for rv in paper.reproductions:
            scales = []
            for run in _by_scale(latest_ok.get(rv.slug, {})):
                counts = _counts([r for r in compared_of.get(run.id, []) if r["position"] >= 0])
                scales.append((run.scale, counts, bar(counts)))
            history = runs_of.get(rv.slug, [])
            claims_run = next(
                (r for r in _by_scale(latest_ok.get(rv.slug, {})) if r.summary.get("claims")),
                None,
            )
            out.append(
                ScoreRow(
                    slug=rv.slug,
                    title=paper.title,
                    page=paper.page,
                    status=rv.status,
                    has_notebook=rv.has_notebook,
                    claims=claims_run.claim_counts if claims_run else (0, 0, 0),
                    claims_scale=claims_run.scale if claims_run else "",
                    scales=scales,
                    n_expected=len(rv.expected),
                    last_run=max(history, key=lambda r: r.order) if history else None,
                    adaptive=rv.adaptive,
                )
            )
    out.sort(key=lambda r: (r.last_run is None, r.status.rank, r.title.casefold(), r.slug))
    return out
