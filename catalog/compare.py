"""The comparison of runs with their paper, as pandas DataFrames: one place for deltas and verdicts.

    compare_run(expected, results, scale)   -> DataFrame   one run: a row per expected.csv row
                                                            (the runner writes it to summary.json)
    comparison_frame(expected, summaries)   -> DataFrame   several runs (long: a row per row x run),
                                                            the paper's numbers and settings merged in
    best_per_row(frame)                     -> DataFrame   each row at the best scale that ran
                                                            (what the site and `repro show` print)
    paper_status(summaries, reproductions)  -> Status      a paper's status from its runs
                                                            (the site, the nightly's report)
    adaptive_target(metric name)            -> (row, attack) which published row an adaptive
                                                            attack of ours challenges

Verdict rules (per expected.csv row, `verdict_of`): at `full`, `match` when |value - paper| <=
tolerance, else `deviates`; at `smoke`/`small`, or when the row was measured on another dataset than
the paper's (`rec.row(..., dataset="mnist-test-split")`), or when the paper's number is `unverified`,
or when the row has no paper number or tolerance: `not_compared` (with the reason). Rows recorded
with `rec.not_run`, rows marked `not_run` in expected.csv and not measured, and rows never recorded:
`not_run` with the reason. `delta` (value - paper) is given whenever both exist and the dataset is the
paper's, at every scale, so reduced-scale runs still show how far off they are.

Paper status (`paper_status`, the vocabulary `STATUSES` of ARCHITECTURE.md): from the verdicts and
claims of each reproduction's latest successful run per scale; see its docstring.

pandas is imported inside the functions: `catalog list` never pays for it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from catalog.schema import ExpectedRow

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ADAPTIVE_PREFIX",
    "RUN_COLUMNS",
    "SCALE_RANK",
    "STATUSES",
    "VERDICTS",
    "Status",
    "adaptive_target",
    "best_per_row",
    "compare_run",
    "comparison_frame",
    "paper_status",
    "parse_time",
    "records",
    "run_order_key",
    "verdict_counts",
    "verdict_of",
]

VERDICTS = ("match", "deviates", "not_compared", "not_run")
#: lower is better: a row is shown at the best scale that ran
SCALE_RANK = {"full": 0, "small": 1, "smoke": 2}
#: the columns of a run's comparison, in summary.json's order
RUN_COLUMNS = ("id", "value", "paper", "tolerance", "delta", "verdict", "reason", "metric",
               "dataset", "source")  # fmt: skip


def verdict_of(
    exp: ExpectedRow, value: float, measured_on: str | None, scale: str
) -> tuple[float | None, str, str | None]:
    """`(delta, verdict, reason)` of one measured row (the rules in the module docstring)."""
    if measured_on is not None and str(measured_on) != exp.dataset:
        return None, "not_compared", f"measured on {measured_on} (paper: {exp.dataset})"
    delta = round(value - exp.paper, 10) if exp.paper is not None else None
    if scale != "full":
        return delta, "not_compared", f"{scale} scale (compared at full only)"
    if exp.unverified:
        return delta, "not_compared", "paper number unverified"
    if exp.paper is None or exp.tolerance is None or delta is None:
        reason = "no paper number" if exp.paper is None else "no tolerance in expected.csv"
        return delta, "not_compared", reason
    return delta, ("match" if abs(delta) <= exp.tolerance + 1e-9 else "deviates"), None


def _row(
    exp: ExpectedRow | None,
    row_id: str,
    value: float | None,
    verdict: str,
    reason: str | None,
    delta: float | None = None,
) -> dict[str, Any]:
    return {
        "id": row_id,
        "value": value,
        "paper": exp.paper if exp else None,
        "tolerance": exp.tolerance if exp else None,
        "delta": delta,
        "verdict": verdict,
        "reason": reason,
        "metric": exp.metric if exp else None,
        "dataset": exp.dataset if exp else None,
        "source": exp.source if exp else None,
    }


def compare_run(
    expected: Sequence[ExpectedRow],
    results: Mapping[str, Any],
    scale: str,
    *,
    failed: bool = False,
) -> pd.DataFrame:
    """One run's comparison with the paper: a row per expected.csv row, in its order.

    `results` is a notebook's `results.json` (catalog.schema.validate_results). Rows recorded but
    absent from expected.csv follow as `not_compared` (a typo in a row id shows up instead of
    vanishing); rows skipped but unknown follow as `not_run`.
    """
    import pandas as pd

    measured = {r["id"]: r for r in results.get("rows", [])}
    skipped = {r["id"]: r.get("reason") or "not run" for r in results.get("not_run", [])}
    never = "not recorded by the notebook" + (" (the run failed before it)" if failed else "")
    rows = []
    for exp in expected:
        if exp.id in measured:
            rec = measured[exp.id]
            value = float(rec["value"])
            delta, verdict, reason = verdict_of(
                exp, value, (rec.get("info") or {}).get("dataset"), scale
            )
            rows.append(_row(exp, exp.id, value, verdict, reason, delta))
        elif exp.id in skipped:
            rows.append(_row(exp, exp.id, None, "not_run", skipped[exp.id]))
        elif exp.not_run_reason:
            rows.append(_row(exp, exp.id, None, "not_run", exp.not_run_reason))
        else:
            rows.append(_row(exp, exp.id, None, "not_run", never))
    known = {exp.id for exp in expected}
    for row_id, rec in measured.items():
        if row_id not in known:
            rows.append(_row(None, row_id, rec["value"], "not_compared", "not in expected.csv"))
    for row_id, reason in skipped.items():
        if row_id not in known:
            rows.append(_row(None, row_id, None, "not_run", f"{reason} (not in expected.csv)"))
    return pd.DataFrame(rows, columns=list(RUN_COLUMNS)).astype(
        {"value": "float64", "paper": "float64", "tolerance": "float64", "delta": "float64"}
    )


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A frame as JSON-ready dicts: NaN and pandas' missing values become None, numbers floats."""
    out = []
    for rec in frame.to_dict("records"):
        out.append({k: _plain(v) for k, v in rec.items()})
    return out


def _plain(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if hasattr(value, "item"):  # NumPy scalars
        return _plain(value.item())
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value


def _expected_frame(expected: Sequence[ExpectedRow]) -> pd.DataFrame:
    """The paper's side: one row per expected row (position kept), setting columns expanded."""
    import pandas as pd

    rows = []
    for position, exp in enumerate(expected):
        rows.append(
            {
                "id": exp.id,
                "position": position,
                "source": exp.source,
                "dataset": exp.dataset,
                "metric": exp.metric,
                "unit": exp.unit,
                "paper": exp.paper,
                "paper_std": exp.paper_std,
                "tolerance": exp.tolerance,
                "higher_is_better": exp.higher_is_better,
                "provenance": exp.provenance,
                "status": exp.status,
                "setting": dict(exp.setting),
            }
        )
    return pd.DataFrame(rows)


def comparison_frame(
    expected: Sequence[ExpectedRow], summaries: Iterable[Mapping[str, Any]]
) -> pd.DataFrame:
    """Every run's rows merged with the paper's (long form: one row per expected row x run).

    Columns: the expected row (`id`, `position`, `source`, `dataset`, `metric`, `unit`, `paper`,
    `paper_std`, `tolerance`, `higher_is_better`, `provenance`, `status`, `setting` (a dict)), then
    the run (`run_id`, `scale`, `started_at`, `value`, `delta`, `verdict`, `reason`; `changed` and
    `change`, catalog.drift's markers of a row that moved since the previous run; `recorded_paper`,
    the paper's number as the run recorded it, which outlives a row removed from expected.csv).
    An expected row
    no run reports appears once with `run_id` None and verdict `not_run` (its reason: the row's
    `not_run` status, or "no run yet"). Rows a run recorded that expected.csv lacks are kept, with
    the paper's columns empty.
    """
    import pandas as pd

    exp = _expected_frame(expected)
    run_rows = []
    for summary in summaries:
        for row in summary.get("rows", []):
            run_rows.append(
                {
                    "id": row["id"],
                    "run_id": summary.get("run_id"),
                    "scale": summary.get("scale"),
                    "started_at": summary.get("started_at"),
                    "value": row.get("value"),
                    "delta": row.get("delta"),
                    "verdict": row.get("verdict"),
                    "reason": row.get("reason"),
                    "changed": bool(row.get("changed")),
                    "change": row.get("change"),
                    "recorded_paper": row.get("paper"),
                }
            )
    runs = pd.DataFrame(
        run_rows,
        columns=["id", "run_id", "scale", "started_at", "value", "delta", "verdict", "reason",
                 "changed", "change", "recorded_paper"],
    )  # fmt: skip
    if exp.empty:
        exp = pd.DataFrame(columns=["id", "position"])
    frame = exp.merge(runs, on="id", how="outer", sort=False)
    missing = frame["run_id"].isna()
    if "status" in frame:
        frame.loc[missing, "reason"] = [
            (s.removeprefix("not_run").lstrip(" :") or "marked not_run")
            if isinstance(s, str) and s
            else "no run yet"
            for s in frame.loc[missing, "status"]
        ]
    frame.loc[missing, "verdict"] = "not_run"
    unknown = frame["position"].isna()
    frame["position"] = frame["position"].fillna(len(expected)).astype(int)
    frame["rank"] = frame["scale"].map(SCALE_RANK).fillna(len(SCALE_RANK)).astype(int)
    frame = frame.sort_values(["position", "rank", "started_at"], ascending=[True, True, False])
    frame.loc[unknown, "position"] = -1
    return frame.drop(columns="rank").reset_index(drop=True)


def best_per_row(frame: pd.DataFrame) -> pd.DataFrame:
    """Each expected row once, at the best scale that measured it (full > small > smoke; the
    newest run of that scale), else its best `not_run` line; in expected.csv's order."""
    if frame.empty:
        return frame
    ranked = frame.assign(
        _ran=frame["value"].notna().map({True: 0, False: 1}),
        _rank=frame["scale"].map(SCALE_RANK).fillna(len(SCALE_RANK)),
    )
    ranked = ranked.sort_values(
        ["_ran", "_rank", "started_at"], ascending=[True, True, False], na_position="last"
    )
    best = ranked.drop_duplicates("id", keep="first")
    order = best["position"].where(best["position"] >= 0, len(frame))
    return (
        best.assign(_order=order)
        .sort_values(["_order"], kind="stable")
        .drop(columns=["_ran", "_rank", "_order"])
        .reset_index(drop=True)
    )


#: free metrics named `adaptive.<expected row id>.<attack>` are our adaptive attacks on a row's setting
ADAPTIVE_PREFIX = "adaptive."


def adaptive_target(name: str) -> tuple[str, str] | None:
    """`(row id, attack)` of a free metric recording an adaptive attack of ours, else None.

    Convention (notebooks write it, the site reads it): `adaptive.<expected_row_id>.<attack>`, e.g.
    `adaptive.t4_fmnist_fgsm_a_defgan_rec.bpda_eot_pgd`, the same quantity as the row (accuracy
    of that model and defense) under an attack the paper did not run. Why a name and not a
    column: the paper's table stays the paper's, and the finding sits beside the row it challenges.
    """
    if not name.startswith(ADAPTIVE_PREFIX):
        return None
    row_id, _, attack = name[len(ADAPTIVE_PREFIX) :].partition(".")
    if not row_id or not attack:
        return None
    return row_id, attack


def verdict_counts(frame: pd.DataFrame) -> dict[str, int]:
    """How many rows of a (best-per-row) frame have each verdict, in `VERDICTS` order."""
    counts = frame["verdict"].value_counts() if not frame.empty else {}
    return {v: int(counts.get(v, 0)) for v in VERDICTS}


# --------------------------------------------------------------------------- paper status

REPRODUCED = "reproduced"
REDUCED = "reproduced at reduced scale"
PARTIAL = "partial"
NOT_REPRODUCED = "not reproduced"
PENDING = "pending"
#: The paper-status vocabulary of ARCHITECTURE.md, best first; the site uses nothing else.
STATUSES: tuple[str, ...] = (REPRODUCED, REDUCED, PARTIAL, NOT_REPRODUCED, PENDING)


@dataclass(frozen=True)
class Status:
    """A paper's reproduction status: one label of `STATUSES` and the one-line reason for it."""

    label: str
    reason: str

    @property
    def rank(self) -> int:
        """Its place in `STATUSES` (0 is best): a paper takes its best reproduction's status."""
        return STATUSES.index(self.label)


def parse_time(value: Any) -> datetime | None:
    """A run's time (ISO 8601 text or a datetime) in UTC; None when absent or unreadable.

    Naive times are taken as UTC (SQLite hands back naive datetimes)."""
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
    return (parse_time(summary.get("started_at")) or _EPOCH, str(summary.get("run_id", "")))


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
    """The one definition of a paper's status, used by every page, the search index and the
    nightly's report.

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
