"""The robustness page: every robust model of every reproduction under the same attacks.

`repro.robust_eval` records `robustness.<model>.<attack>` (accuracy in percent, with
`.ci95_low` / `.ci95_high` beside it), `robustness.<model>.eps` and, when the paper's own attack
ran too, `robustness.<model>.gap` (its accuracy minus the worst case). This module gathers them from
each reproduction's latest successful run at every scale into one table, in the battery's order,
and marks a gap above `repro.robust_eval.GAP_FLAG` points as RobustBench does: the paper's
evaluation overestimated the model.

Issue 17 also asks what the robustness costs: a run that timed a model's training records
`cost.<model>.epoch_seconds_same_batches` (every method of the run timed on the same batches in
one process: comparable within the run) or `cost.<model>.epoch_seconds` (the epoch's time when
the model was trained, e.g. a cached shared baseline's); the page shows the first that exists,
and says which. A robustness name that prefixes the timed one (`fashion_mnist_pcl_at` for
`cost.pcl_at`) takes its time, the longest such name when several fit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sitebuilder.text import fmt_number

__all__ = ["COLUMNS", "RobustRow", "robustness_rows"]

#: (recorded attack name, column heading), the battery's order (repro.robust_eval.ATTACKS).
COLUMNS = (
    ("clean", "Clean"),
    ("paper", "Paper's attack"),
    ("fgsm", "FGSM"),
    ("pgd20", "PGD-20"),
    ("pgd100", "PGD-100"),
    ("cw_pgd", "CW∞"),
    ("autoattack", "AutoAttack"),
    ("apgd_ce_t", "APGD-CE+T"),
    ("apgd_ce", "APGD-CE"),
    ("worst", "Worst case"),
)
GAP_FLAG = 5.0  # repro.robust_eval.GAP_FLAG (the site does not import torch)


@dataclass
class RobustRow:
    """One model of one run: its cells (text with interval), eps, gap and whether it is flagged."""

    slug: str
    title: str
    page: str | None
    scale: str
    run_id: str
    model: str
    eps: str
    cells: dict[str, str] = field(default_factory=dict)
    gap: str = ""
    flagged: bool = False
    cost: str = ""


def _cell(value: float, low: float | None, high: float | None) -> str:
    text = fmt_number(value, 3)
    if low is not None and high is not None:
        text += f" [{fmt_number(low, 3)}, {fmt_number(high, 3)}]"
    return text


def _cost_model(model: str, timed: set[str]) -> str:
    """The `cost.<name>` that times `model`: its own name, else the longest recorded name that
    ends its name after an underscore (a run that prefixes its robustness names with the dataset,
    `fashion_mnist_pcl_at`, times the training as `pcl_at`)."""
    if model in timed:
        return model
    ends = [t for t in timed if model.endswith("_" + t)]
    return max(ends, key=len) if ends else model


def robustness_rows(
    runs: Iterable[Any], titles: Mapping[str, tuple[str, str | None]]
) -> list[RobustRow]:
    """Rows for every `robustness.*` model in `runs` (RunViews with `.summary["metrics"]`);
    `titles` maps a slug to (paper title, paper page)."""
    out: list[RobustRow] = []
    for run in runs:
        values: dict[str, float] = {}
        for m in run.summary.get("metrics") or []:
            name, value = str(m.get("name") or ""), m.get("value")
            if name.startswith(("robustness.", "cost.")) and isinstance(value, int | float):
                values[name] = float(value)
        models = sorted({n.split(".")[1] for n in values
                         if n.startswith("robustness.") and n.count(".") >= 2})  # fmt: skip
        timed = {n.split(".")[1] for n in values if n.startswith("cost.") and n.count(".") >= 2}
        for model in models:
            base = f"robustness.{model}"
            cells = {
                attack: _cell(values[f"{base}.{attack}"], values.get(f"{base}.{attack}.ci95_low"),
                              values.get(f"{base}.{attack}.ci95_high"))
                for attack, _ in COLUMNS if f"{base}.{attack}" in values
            }  # fmt: skip
            if not cells:
                continue
            gap = values.get(f"{base}.gap")
            cost_name = _cost_model(model, timed)
            same = values.get(f"cost.{cost_name}.epoch_seconds_same_batches")
            alone = values.get(f"cost.{cost_name}.epoch_seconds")
            cost = (f"{fmt_number(same, 3)} (same batches)" if same is not None
                    else f"{fmt_number(alone, 3)} (when trained)" if alone is not None else "")  # fmt: skip
            title, page = titles.get(run.slug, (run.slug, None))
            out.append(RobustRow(
                slug=run.slug, title=title, page=page, scale=run.scale, run_id=run.id,
                model=model, eps=fmt_number(values.get(f"{base}.eps"), 3), cells=cells,
                gap="" if gap is None else f"{gap:+.1f}", flagged=gap is not None and gap > GAP_FLAG,
                cost=cost,
            ))  # fmt: skip
    out.sort(key=lambda r: (r.title.casefold(), r.slug, r.scale, r.model))
    return out
