"""Drift: what changed between a run and the previous run of the same reproduction and scale.

A number re-measured every night is only worth trusting if someone notices when it moves. For each
expected row and each claim, a run is compared with its *base*: the newest earlier **successful**
run of the same slug and scale (a failed run has nothing to compare values with; comparing with it
would hide a regression behind the crash, e.g. held → crash → fails). Earlier means started before
(then recorded before, then a smaller id), so runs ingested late from the GPU runners still compare
in the order they ran.

A **change** is:
- a row whose verdict flipped (`not_compared` → `not_run`, `match` → `deviates`, ...);
- a row whose value moved by more than its tolerance (the row's absolute `tolerance` from
  expected.csv); rows without a tolerance use `DEFAULT_RELATIVE_TOLERANCE` (5 %) of the larger
  magnitude of the two values; a value that appeared or vanished is a change too;
- a claim whose `holds` changed (true/false/not evaluated), or that appeared or vanished;
- the run's status, when it differs from the immediately previous run's (failed → succeeded too).

A **regression** is a claim that held in the base run and fails (`holds` false) in the new one:
the one kind of change that makes `nox -s nightly` exit non-zero. A claim that can no longer be
evaluated (a crash, a missing row) is a change, not a regression.

Used by `catalog runs --changed`, by the nightly summary (`repro.nightly`) and by the site's change
markers (`change_markers`). Pure functions over summaries (`compare_summaries`) plus thin queries.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, select

from catalog.models import Run

DEFAULT_RELATIVE_TOLERANCE = 0.05


@dataclass(frozen=True)
class Change:
    """One difference between a run and its base.

    `kind`: row | claim | status; `id`: the row id, claim id, or "status"; `what`: verdict | value |
    holds | added | removed | status; `before`/`after`: the compared values.
    """

    kind: str
    id: str
    what: str
    before: Any
    after: Any
    detail: str
    regression: bool = False

    @property
    def marker(self) -> str:
        """The key the site uses to put a change marker on a table row: `row:<id>`, `claim:<id>`."""
        return f"{self.kind}:{self.id}"


@dataclass
class Drift:
    """The changes of one run (`run_id`) against its base run (`base_run_id`, None: first run)."""

    run_id: str
    slug: str
    scale: str
    base_run_id: str | None
    changes: list[Change] = field(default_factory=list)

    @property
    def regressions(self) -> list[Change]:
        """Claims that held in the base run and fail now."""
        return [c for c in self.changes if c.regression]

    @property
    def changed(self) -> bool:
        """Whether anything changed."""
        return bool(self.changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (for `catalog runs --json` and the nightly's summary)."""
        return {
            "run_id": self.run_id,
            "slug": self.slug,
            "scale": self.scale,
            "base_run_id": self.base_run_id,
            "changes": [asdict(c) for c in self.changes],
            "regressions": len(self.regressions),
        }


def _fmt(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _holds(value: bool | None) -> str:
    return {True: "holds", False: "fails", None: "not evaluated"}[value]


def row_tolerance(row: dict[str, Any], before: float, after: float) -> tuple[float, str]:
    """The allowed movement of a row's value and how it was chosen (for the change's detail)."""
    tolerance = row.get("tolerance")
    if isinstance(tolerance, int | float) and not isinstance(tolerance, bool):
        return float(tolerance), f"tolerance {_fmt(float(tolerance))}"
    scale = max(abs(before), abs(after))
    return DEFAULT_RELATIVE_TOLERANCE * scale, f"default {DEFAULT_RELATIVE_TOLERANCE:.0%} relative"


def _row_changes(new: dict[str, Any], old: dict[str, Any]) -> list[Change]:
    before = {r["id"]: r for r in old.get("rows", [])}
    after = {r["id"]: r for r in new.get("rows", [])}
    changes: list[Change] = []
    for row_id in [*after, *(r for r in before if r not in after)]:
        a, b = after.get(row_id), before.get(row_id)
        if a is None or b is None:
            what = "added" if b is None else "removed"
            row = a if a is not None else b
            assert row is not None
            changes.append(
                Change(
                    "row",
                    row_id,
                    what,
                    None if b is None else b.get("value"),
                    None if a is None else a.get("value"),
                    f"row {what} ({row.get('verdict')}, value {_fmt(row.get('value'))})",
                )
            )
            continue
        if a.get("verdict") != b.get("verdict"):
            changes.append(
                Change(
                    "row",
                    row_id,
                    "verdict",
                    b.get("verdict"),
                    a.get("verdict"),
                    f"verdict {b.get('verdict')} → {a.get('verdict')}"
                    f" (value {_fmt(b.get('value'))} → {_fmt(a.get('value'))})",
                )
            )
            continue
        va, vb = a.get("value"), b.get("value")
        if va is None and vb is None:
            continue
        if va is None or vb is None:
            changes.append(Change("row", row_id, "value", vb, va, f"value {_fmt(vb)} → {_fmt(va)}"))
            continue
        allowed, how = row_tolerance(a, float(vb), float(va))
        moved = float(va) - float(vb)
        if abs(moved) > allowed and not math.isclose(abs(moved), allowed):
            changes.append(
                Change(
                    "row",
                    row_id,
                    "value",
                    vb,
                    va,
                    f"value {_fmt(vb)} → {_fmt(va)} ({moved:+.4g}, more than {how})",
                )
            )
    return changes


def _claim_changes(new: dict[str, Any], old: dict[str, Any]) -> list[Change]:
    before = {c["id"]: c for c in old.get("claims", [])}
    after = {c["id"]: c for c in new.get("claims", [])}
    changes: list[Change] = []
    for claim_id in [*after, *(c for c in before if c not in after)]:
        a, b = after.get(claim_id), before.get(claim_id)
        if a is None or b is None:
            what = "added" if b is None else "removed"
            claim = a if a is not None else b
            assert claim is not None
            changes.append(
                Change(
                    "claim",
                    claim_id,
                    what,
                    None if b is None else b.get("holds"),
                    None if a is None else a.get("holds"),
                    f"claim {what} ({_holds(claim.get('holds'))})",
                )
            )
            continue
        if a.get("holds") is b.get("holds"):
            continue
        regression = b.get("holds") is True and a.get("holds") is False
        detail = f"{_holds(b.get('holds'))} → {_holds(a.get('holds'))}"
        if a.get("detail"):
            detail += f": {a['detail']}"
        changes.append(
            Change(
                "claim",
                claim_id,
                "holds",
                b.get("holds"),
                a.get("holds"),
                ("REGRESSION: " if regression else "") + detail,
                regression=regression,
            )
        )
    return changes


def compare_summaries(new: dict[str, Any], old: dict[str, Any]) -> list[Change]:
    """Row and claim changes of summary `new` against summary `old` (both schema 1)."""
    return _row_changes(new, old) + _claim_changes(new, old)


# --------------------------------------------------------------------------- queries


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _aware(value: datetime | None) -> datetime:
    if value is None:
        return _EPOCH
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def run_order(run: Run) -> tuple[datetime, datetime, str]:
    """Sort key: when the run started, then when it was recorded, then its id."""
    return (_aware(run.started_at or run.recorded_at), _aware(run.recorded_at), run.id)


def history_drift(runs: Iterable[Run]) -> dict[str, Drift]:
    """{run id: Drift} for every run, each compared within its (slug, scale) in `run_order`:
    against the newest earlier successful run, with a status change against the run just before."""
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.slug, run.scale), []).append(run)
    drifts: dict[str, Drift] = {}
    for group in groups.values():
        base: Run | None = None
        previous: Run | None = None
        for run in sorted(group, key=run_order):
            drift = Drift(run.id, run.slug, run.scale, base.id if base else None)
            if previous is not None and previous.status != run.status:
                drift.changes.append(_status_change(previous, run))
            if base is not None:
                drift.changes.extend(compare_summaries(run.summary or {}, base.summary or {}))
            drifts[run.id] = drift
            previous = run
            if run.status == "succeeded":
                base = run
    return drifts


def _group(session: Session, slug: str, scale: str) -> list[Run]:
    return list(session.exec(select(Run).where(Run.slug == slug, Run.scale == scale)))


def base_run(session: Session, run: Run) -> Run | None:
    """The run `run` is compared with: the newest earlier successful run of its slug and scale."""
    base_id = drift_for_run(session, run).base_run_id
    return session.get(Run, base_id) if base_id else None


def drift_for_run(session: Session, run: Run) -> Drift:
    """The changes of `run` against its base run (no changes when there is no earlier run)."""
    runs = {r.id: r for r in _group(session, run.slug, run.scale)}
    runs[run.id] = run
    return history_drift(runs.values())[run.id]


def _status_change(previous: Run, run: Run) -> Change:
    detail = f"run {previous.status} → {run.status}"
    if run.status == "failed" and run.error:
        detail += f": {_last_line(run.error)}"
    return Change("status", "status", "status", previous.status, run.status, detail)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def latest_runs_by_key(
    session: Session, slug: str | None = None, scale: str | None = None
) -> list[Run]:
    """The newest run of each (slug, scale), ordered by slug then scale."""
    query = select(Run)
    if slug is not None:
        query = query.where(Run.slug == slug)
    if scale is not None:
        query = query.where(Run.scale == scale)
    newest: dict[tuple[str, str], Run] = {}
    for run in session.exec(query):
        key = (run.slug, run.scale)
        if key not in newest or run_order(run) > run_order(newest[key]):
            newest[key] = run
    return [newest[k] for k in sorted(newest)]


def latest_drift(
    session: Session, slug: str | None = None, scale: str | None = None
) -> list[Drift]:
    """Drift of the newest run of each (slug, scale): what tonight's runs changed."""
    return [drift_for_run(session, run) for run in latest_runs_by_key(session, slug, scale)]


def run_listing(
    session: Session, *, slug: str | None = None, changed: bool = False, limit: int = 30
) -> list[dict[str, Any]]:
    """What `catalog runs` shows: the newest `limit` runs (of `slug`), newest first, each with its
    drift; with `changed`, the newest run of each reproduction and scale that changed something."""
    query = select(Run)
    if slug is not None:
        query = query.where(Run.slug == slug)
    runs = list(session.exec(query))
    drifts = history_drift(runs)
    if changed:
        picked = [r for r in latest_runs_by_key(session, slug) if drifts[r.id].changed]
    else:
        picked = sorted(runs, key=run_order, reverse=True)[:limit]
    listing = []
    for run in picked:
        summary = run.summary or {}
        holds = [c.get("holds") for c in summary.get("claims", [])]
        listing.append(
            {
                "run_id": run.id,
                "slug": run.slug,
                "scale": run.scale,
                "status": run.status,
                "started_at": run.started_at.isoformat() if run.started_at else None,
                "wall_seconds": run.wall_seconds,
                "device": run.device,
                "executor": run.executor,
                "reused_from": run.reused_from,
                "claims": {
                    "holds": holds.count(True),
                    "fails": holds.count(False),
                    "not_evaluated": holds.count(None),
                },
                "drift": drifts[run.id].to_dict(),
            }
        )
    return listing


def change_markers(session: Session, run: Run) -> dict[str, Change]:
    """For the site: {"row:<id>" | "claim:<id>" | "status:status": Change} of `run`'s changes,
    so a table row can carry a "changed since the previous run" marker with the change's detail."""
    return {change.marker: change for change in drift_for_run(session, run).changes}


# --------------------------------------------------------------------------- markers for the site


MARKER_KEYS = ("changed", "changes", "drift_base")
ITEM_MARKER_KEYS = ("changed", "change")


def strip_markers(summary: dict[str, Any]) -> dict[str, Any]:
    """A copy of a stored summary without the drift markers `mark_changes` added: the summary as
    the run wrote it (for reuse, and to recognise a re-ingested run)."""
    out = {k: v for k, v in summary.items() if k not in MARKER_KEYS}
    for name in ("rows", "claims"):
        if isinstance(out.get(name), list):
            out[name] = [
                {k: v for k, v in item.items() if k not in ITEM_MARKER_KEYS}
                if isinstance(item, dict)
                else item
                for item in out[name]
            ]
    return out


def _annotated(summary: dict[str, Any], drift: Drift) -> dict[str, Any]:
    """A copy of `summary` with the site's drift slots filled: `changed` (+ `change`, the detail) on
    each changed row and claim, and on the summary `changed`, `changes` (details), `drift_base`."""
    summary = strip_markers(summary)
    out = dict(summary)
    by_marker: dict[str, list[Change]] = {}
    for change in drift.changes:
        by_marker.setdefault(change.marker, []).append(change)
    for field_name, kind in (("rows", "row"), ("claims", "claim")):
        items = []
        for item in summary.get(field_name, []):
            item = dict(item)
            found = by_marker.get(f"{kind}:{item.get('id')}")
            if found:
                item["changed"] = True
                item["change"] = "; ".join(c.detail for c in found)
            items.append(item)
        if field_name in summary:
            out[field_name] = items
    out["changed"] = drift.changed
    out["changes"] = [f"{c.kind} {c.id}: {c.detail}" for c in drift.changes]
    out["drift_base"] = drift.base_run_id
    return out


def mark_changes(session: Session, pairs: set[tuple[str, str]] | None = None) -> list[Drift]:
    """Recompute drift for every run of the given (slug, scale) pairs (all when None) and store
    the site's markers in each run's stored summary (`Run.summary`; the run directory's
    summary.json is left as measured). Recomputing the whole history of a pair keeps markers right
    when a run is ingested late, out of order. Returns the drift of each run touched."""
    if pairs is None:
        runs = list(session.exec(select(Run)))
    else:
        runs = [r for slug, scale in sorted(pairs) for r in _group(session, slug, scale)]
    drifts = history_drift(runs)
    for run in sorted(runs, key=run_order):  # one order in every writer: no lock-order deadlock
        annotated = _annotated(run.summary or {}, drifts[run.id])
        if annotated != run.summary:
            run.summary = annotated
            session.add(run)
    session.flush()
    return [drifts[r.id] for r in sorted(runs, key=run_order)]


def print_listing(listing: list[dict[str, Any]], console: Any, *, changed: bool = False) -> None:
    """`catalog runs` as a table (and, with `changed`, every change under it)."""
    from rich.table import Table
    from rich.text import Text

    if not listing:
        console.print("no run changed anything" if changed else "no runs recorded", markup=False)
        return
    table = Table(title="changed runs" if changed else "runs", title_justify="left")
    for column in ("run", "slug", "scale", "status", "claims", "changes", "reused from"):
        table.add_column(column, overflow="fold")
    for item in listing:
        claims = item["claims"]
        drift = item["drift"]
        changes = str(len(drift["changes"])) if drift["base_run_id"] else "first run"
        if drift["regressions"]:
            changes += f" ({drift['regressions']} regression)"
        table.add_row(
            item["run_id"],
            item["slug"],
            item["scale"],
            item["status"],
            f"{claims['holds']} hold, {claims['fails']} fail, {claims['not_evaluated']} n/a",
            changes,
            item["reused_from"] or "",
        )
    console.print(table)
    if not changed:
        return
    for item in listing:
        console.print(
            Text(f"{item['slug']} ({item['scale']}) {item['run_id']}", style="bold")
            + Text(f" against {item['drift']['base_run_id'] or '-'}")
        )
        for change in item["drift"]["changes"]:
            style = "bold red" if change["regression"] else ""
            console.print(
                Text(f"  {change['kind']} {change['id']}: ") + Text(change["detail"], style=style),
                soft_wrap=True,
            )
