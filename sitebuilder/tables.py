"""Expected vs measured, and the cross-paper comparison, built from catalog.compare's DataFrames.

The paper's side comes from the catalog's `ExpectedResult` rows, read as
`catalog.schema.ExpectedRow` (`status`, `unit` and `paper_std` are columns of their own, so a
setting is only a setting). A run's side is `catalog.compare.comparison_frame(expected,
[summary])`: every expected row once (measured, or `not_run`), then the rows the run recorded that
expected.csv lacks. The same frame feeds a scale's table on the paper page and the reproduction's
cells on the comparison page.

Comparison page: a row takes part when its setting names an `attack`, a `defense` or a `training`
and its metric is an accuracy or an error rate, shown as accuracy in percent. Whether a number is
a fraction or a percentage is the metric's declared unit (`catalog.schema.as_percent`), never a
guess from the value.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from catalog.compare import comparison_frame, records
from catalog.models import ExpectedResult, Reproduction
from catalog.schema import ExpectedRow, as_percent
from sitebuilder.status import PENDING, SCALE_ORDER, VERDICT_LABELS, Status
from sitebuilder.text import fmt_delta, fmt_number, fmt_paper, fmt_pct, safe_name
from sitebuilder.views import (
    ClaimView,
    CompareEntry,
    CompareRow,
    CompareTable,
    PaperView,
    ReproRef,
    RowView,
    RunView,
)

__all__ = [
    "DATASET_LABELS",
    "UNSTATED",
    "accuracy_pct",
    "build_comparison",
    "claim_views",
    "expected_row",
    "expected_view",
    "rows_of_run",
    "run_comparison",
]


# --------------------------------------------------------------------------- expected vs measured


def expected_row(exp: ExpectedResult) -> ExpectedRow:
    """The catalog's row as the schema's `ExpectedRow` (what catalog.compare takes).

    Not validated a second time: `catalog sync` validated the file on the way in, and a build must
    not stop on a row an older sync stored."""
    return ExpectedRow.model_construct(
        id=exp.row_id,
        source=exp.source,
        dataset=exp.dataset,
        metric=exp.metric,
        paper=exp.paper_value,
        tolerance=exp.tolerance,
        higher_is_better=exp.higher_is_better,
        provenance=exp.provenance,
        status=exp.status or None,
        paper_std=exp.paper_std,
        setting=dict(exp.setting or {}),
        line=0,
        unit=exp.unit,
    )


def _setting_pairs(setting: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(str(k), str(v)) for k, v in sorted(setting.items()) if v not in (None, "")]


def _paper_text(paper: float | None, std: float | None) -> str:
    """The paper's number, with the printed spread beside it (`0.896 ± 0.0017`) when it has one."""
    text = fmt_paper(paper)
    return f"{text} ± {std}" if std is not None and paper is not None else text


def expected_view(exp: ExpectedRow) -> RowView:
    """A row of the paper's numbers before any run (its `status` shown as the reason)."""
    provenance = exp.provenance or ""
    return RowView(
        id=exp.id,
        source=exp.source,
        dataset=exp.dataset,
        setting=_setting_pairs(exp.setting),
        metric=exp.metric,
        paper=_paper_text(exp.paper, exp.paper_std),
        ours="–",
        delta="–",
        verdict="pending",
        verdict_label="pending",
        reason=exp.status or "",
        provenance=provenance,
        unverified=provenance.lower().startswith("unverified"),
    )


def run_comparison(expected: Sequence[ExpectedRow], summary: Mapping[str, Any]) -> list[dict]:
    """One run's `comparison_frame` as plain dicts (NaN -> None), expected rows first, in order.

    A row id the run recorded twice counts once, its last record (as the summary reads)."""
    frame = comparison_frame(expected, [summary])
    return records(frame.drop_duplicates(["id", "run_id"], keep="last"))


def rows_of_run(compared: Sequence[Mapping[str, Any]]) -> list[RowView]:
    """A scale's table on the paper page: each expected row next to what the run measured, then
    the rows the run recorded that expected.csv no longer has (by id)."""
    rows = []
    unknown = []
    for rec in compared:
        if rec["position"] < 0:
            unknown.append(rec)
            continue
        provenance = rec["provenance"] or ""
        paper = rec["paper"] if rec["paper"] is not None else rec["recorded_paper"]
        view = RowView(
            id=rec["id"],
            source=rec["source"],
            dataset=rec["dataset"],
            setting=_setting_pairs(rec["setting"] or {}),
            metric=rec["metric"],
            paper=_paper_text(paper, rec["paper_std"] if rec["paper"] is not None else None),
            ours="–",
            delta="–",
            verdict="not_run",
            verdict_label="not run",
            reason="not recorded by this run",
            provenance=provenance,
            unverified=provenance.lower().startswith("unverified"),
        )
        if rec["run_id"] is not None:
            view.value = rec["value"]
            view.ours = fmt_number(rec["value"])
            view.delta = fmt_delta(rec["delta"])
            view.verdict = str(rec["verdict"])
            view.verdict_label = VERDICT_LABELS.get(view.verdict, view.verdict)
            view.reason = str(rec["reason"] or "")
            view.changed = bool(rec["changed"])
            view.change = str(rec["change"] or "")
        rows.append(view)
    for rec in sorted(unknown, key=lambda r: r["id"]):
        rows.append(
            RowView(
                id=rec["id"],
                source="(not in expected.csv)",
                dataset="",
                setting=[],
                metric="",
                paper=fmt_paper(rec["recorded_paper"]),
                ours=fmt_number(rec["value"]),
                delta=fmt_delta(rec["delta"]),
                verdict=str(rec["verdict"]),
                verdict_label=VERDICT_LABELS.get(str(rec["verdict"]), ""),
                reason=str(rec["reason"] or ""),
                provenance="",
                unverified=False,
                changed=bool(rec["changed"]),
                change=str(rec["change"] or ""),
                value=rec["value"],
            )
        )
    return rows


def claim_views(summary: Mapping[str, Any]) -> list[ClaimView]:
    """A run's claims checklist: holds, fails or not evaluated, with the detail."""
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
#: metric names of accuracies and of error rates (the value's unit is declared, not named)
_ACCURACY_NAMES = ("acc", "robust_accuracy")
_ERROR_NAMES = ("error", "error_rate", "error_pct", "error_rate_pct", "test_error_pct")


def _defense_of(setting: dict[str, Any]) -> str:
    """The defense a row measures: its `defense` column, else its `training` column (FGSM's
    "fgsm adversarial ..." rows), with natural/none spellings folded to "none"; pops both."""
    defense = setting.pop("defense", None)
    training = setting.pop("training", None)
    value = defense if defense is not None else training
    if value is None:
        return UNSTATED
    return "none" if str(value).strip().lower() in _NONE_VALUES else str(value)


def accuracy_pct(metric: str, value: float | None, unit: str | None) -> float | None:
    """A row's value as accuracy in percent; None when the metric is neither an accuracy nor an
    error rate, or its unit is not a proportion.

    The name says which of the two the metric is (an error rate is shown as 100 - error); the
    declared unit says fraction or percent (`as_percent`)."""
    percent = as_percent(value, unit)
    if percent is None:
        return None
    name = metric.lower()
    if name.startswith("accuracy") or name in _ACCURACY_NAMES:
        return percent
    if name in _ERROR_NAMES:
        return 100.0 - percent
    return None


def build_comparison(
    repros: Sequence[Reproduction],
    expected_of: Mapping[str, Sequence[ExpectedRow]],
    papers: Mapping[str, PaperView],
    latest_ok: Mapping[str, dict[str, RunView]],
    compared_of: Mapping[str, Sequence[Mapping[str, Any]]],
) -> tuple[list[CompareTable], list[ReproRef]]:
    """Every reproduced defense side by side, per dataset and attack setting.

    Generic over expected.csv (see the module docstring for which rows take part). Tables are
    keyed by dataset and the attack setting (every setting column except defense, model,
    classifier, substitute); columns are the defenses; rows are (reproduction, model). Values come
    from the latest successful run, preferring full over small over smoke: `compared_of[run id]`
    is that run's `run_comparison`.
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
        relevant = {"attack", "defense", "training"}
        if not any(relevant & set(e.setting) for e in expected_of.get(repro.slug, [])):
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
        for rec in compared_of[run.id]:
            if rec["position"] < 0 or rec["run_id"] is None or rec["value"] is None:
                continue  # not in expected.csv, or not measured by this run
            raw = rec["setting"] or {}
            if not relevant & set(raw):
                continue
            setting = {k: v for k, v in raw.items() if v not in (None, "")}
            ours = accuracy_pct(rec["metric"], rec["value"], rec["unit"])
            if ours is None:
                continue
            paper_pct = accuracy_pct(rec["metric"], rec["paper"], rec["unit"])
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
            table_key = (rec["dataset"], condition)
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
                verdict=str(rec["verdict"]),
                verdict_label=VERDICT_LABELS.get(str(rec["verdict"]), ""),
                scale=run.scale,
                detail=extra,
                row_id=rec["id"],
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
