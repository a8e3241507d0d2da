"""Our adaptive attacks, found among a run's free metrics and placed beside the row they challenge.

The convention (`catalog.compare.adaptive_target`): a free metric `adaptive.<row id>.<attack>`
records the row's quantity (the accuracy of that model with that defense) under an attack of
ours the paper did not run, e.g. BPDA-PGD against Defense-GAN. The site prints it in the cell of
the row it challenges and lists it on the scoreboard.

A name with more after the attack, `adaptive.<row id>.<attack>.<what>`, is a measurement *of* that
attack, not another attack: `ci95_low` / `ci95_high` give its interval, anything else (`detected`,
`seconds`, `median_l2`, ...) is listed beside it as a detail.

Older runs (Defense-GAN's run of record, before the convention) named them
`adaptive_<dataset>_<model>_<rec|orig>_<attack>_eps<digits>_accuracy`; those are read too and
anchored to Defense-GAN's white-box FGSM row of the same dataset, model and defense
(`t4_<dataset>_fgsm_<model>_defgan_<rec|orig>`, at the same eps 0.3), when expected.csv has it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from catalog.compare import adaptive_target
from sitebuilder.text import fmt_number, fmt_paper
from sitebuilder.views import AdaptiveView

__all__ = ["NOT_ATTACKS", "adaptive_findings"]

#: last name segments that are never an attack: the accuracy on the attacked images without attack,
#: and how long something took
NOT_ATTACKS = frozenset({"no_attack", "seconds"})

_LEGACY = re.compile(
    r"^adaptive_(?P<ds>[a-z0-9]+)_(?P<model>[a-z0-9]+)_(?P<kind>rec|orig)_"
    r"(?P<attack>[a-z0-9_]+?)_eps(?P<eps>\d+)_accuracy$"
)


def _legacy(name: str) -> tuple[str, str] | None:
    """`(row id, attack)` of a pre-convention Defense-GAN adaptive metric, else None."""
    m = _LEGACY.match(name)
    if m is None:
        return None
    eps = m["eps"]
    eps_text = f"{eps[0]}.{eps[1:]}".rstrip("0").rstrip(".") if len(eps) > 1 else eps
    row = f"t4_{m['ds']}_fgsm_{m['model']}_defgan_{m['kind']}"
    return row, f"{m['attack']} (ε {eps_text})"


def _setting_text(rec: Mapping[str, Any]) -> str:
    setting = rec.get("setting") or {}
    parts = [str(rec.get("source") or ""), str(rec.get("dataset") or "")]
    parts += [f"{k} {v}" for k, v in setting.items() if v not in (None, "")]
    return " · ".join(p for p in parts if p)


def _recorded(metrics: Sequence[Mapping[str, Any]]) -> set[str]:
    return {str(m.get("name") or "") for m in metrics if m.get("value") is not None}


def _measurements_of_attacks(
    metrics: Sequence[Mapping[str, Any]],
) -> dict[str, tuple[float | None, float | None, list[str]]]:
    """For each attack metric `adaptive.<row>.<attack>`: its interval and its other measurements
    (`adaptive.<row>.<attack>.<what>`: a name whose part before the last dot is itself a recorded
    metric; an attack's own name may hold dots), in the run's order."""
    out: dict[str, tuple[float | None, float | None, list[str]]] = {}
    names = _recorded(metrics)
    for metric in metrics:
        name = str(metric.get("name") or "")
        value = metric.get("value")
        base, _, what = name.rpartition(".")
        if value is None or adaptive_target(name) is None or base not in names:
            continue
        low, high, details = out.get(base, (None, None, []))
        if what == "ci95_low":
            low = float(value)
        elif what == "ci95_high":
            high = float(value)
        elif not what.startswith("ci95"):
            details = [*details, f"{what.replace('_', ' ')} {fmt_number(float(value))}"]
        out[base] = (low, high, details)
    return out


def adaptive_findings(
    metrics: Sequence[Mapping[str, Any]], best: Mapping[str, Mapping[str, Any]]
) -> tuple[dict[str, list[AdaptiveView]], list[AdaptiveView]]:
    """Our adaptive-attack results among a run's free `metrics`, by the row they challenge.

    `best` maps expected row ids to their record at the best scale (`best_per_row`). Returns
    (findings by row id, every finding in order); a finding whose row is not in expected.csv is
    in the list only (`anchored` False)."""
    by_row: dict[str, list[AdaptiveView]] = {}
    found: list[AdaptiveView] = []
    extras = _measurements_of_attacks(metrics)
    names = _recorded(metrics)
    for metric in metrics:
        name = str(metric.get("name") or "")
        value = metric.get("value")
        if value is None:
            continue
        target = adaptive_target(name)
        legacy = target is None
        target = target or _legacy(name)
        if target is None:
            continue
        row_id, attack = target
        if not legacy and name.rpartition(".")[0] in names:
            continue  # a measurement of a recorded attack (its interval, its cost): shown with it
        if not legacy and name.rpartition(".")[2] in NOT_ATTACKS:
            continue  # the clean baseline of the attacked images, or a timing: not a finding
        low, high, details = extras.get(name, (None, None, []))
        rec = best.get(row_id)
        if rec is None and legacy:
            row_id = ""  # a guessed row that does not exist: name the metric instead
        view = AdaptiveView(
            row_id=row_id,
            attack=attack,
            value=float(value),
            ours=fmt_number(float(value)),
            metric=name,
            paper=fmt_paper(rec.get("paper")) if rec else "",
            published=fmt_number(rec.get("value")) if rec and rec.get("value") is not None else "",
            setting=_setting_text(rec) if rec else "",
            anchored=rec is not None,
            interval=(
                f"[{fmt_number(low)}, {fmt_number(high)}]"
                if low is not None and high is not None
                else ""
            ),
            details=" · ".join(details),
        )
        found.append(view)
        if rec is not None:
            by_row.setdefault(row_id, []).append(view)
    return by_row, found
