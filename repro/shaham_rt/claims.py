"""Shaham, Yamada & Negahban (2018)'s claims over a run's results.

Written on 2026-12-03 before any small run of the notebook (only a 3-4 epoch timing check of the
training had run), from the paper's abstract (its tables were not retrieved: lecture-papers.md
section 19) and issue 15's brief. The thresholds are fixed here and are not tuned after seeing
results.

What the run records, per dataset `ds` (fashion_mnist; mnist where it ran), per model `m` in
baseline, linf, l2, l1 (percent, each with its per-image vector, so margins come with paired 95 %
bootstrap intervals, `repro.stats`):
- `<ds>_<m>_clean`: clean test accuracy;
- `<ds>_<m>_fixed_fgsm`: accuracy on the FIXED set of FGSM images (eps `fixed_eps` = 0.1, l_inf)
  crafted against the baseline (plain accuracy on those images, as a transferred set is scored);
- `<ds>_<m>_deepfool_l2_median`: the median l2 norm of DeepFool's minimal perturbation, and for
  each robust model `<ds>_<m>_deepfool_l2_median_gain` (its median minus the baseline's) with
  `.ci95_low` / `.ci95_high` (paired bootstrap over the same images);
- `robustness.<ds>_shaham_<m>.<attack>`: the shared battery at eps 0.1 (`worst` its worst case).

Claims:
1. "Increases the robustness of the network to existing adversarial examples" (abstract): on the
   fixed baseline-FGSM set, the l_inf-robust model is >= 10 points more accurate than the
   baseline, with the paired interval of the margin above 0, on every dataset that ran.
2. "Making it harder to generate new ones" (abstract): DeepFool's median minimal l2 perturbation
   of the l_inf-robust model is larger than the baseline's, the bootstrap interval of the
   difference excluding 0, on every dataset.
3. Clean accuracy is kept: each robust model (l_inf, l_2, l_1) is within 2 points of the baseline
   (>= baseline - 2), on every dataset.
4. "Improves the accuracy of the network also on the original test data" (abstract): the
   l_inf-robust model's clean accuracy is above the baseline's (point estimates), on every dataset.
5. Ours (the gain is not an artefact of the single-step attack): under the shared battery at eps
   0.1 (Fashion-MNIST), the l_inf-robust model's worst-case accuracy exceeds the baseline's by at
   least 5 points.
"""

from __future__ import annotations

from repro.claims import Claim, Missing, Results, per_dataset
from repro.stats import claim_interval, interval_note

TIE = 1e-6  # a value exactly at a threshold must not fail on floating-point rounding
DATASETS = ("fashion_mnist", "mnist")
FIXED_MARGIN = 10.0  # points
CLEAN_DELTA = 2.0  # points
WORST_MARGIN = 5.0  # points
ROBUST = ("linf", "l2", "l1")


def _diff(r: Results, a: str, b: str, threshold: float = 0.0) -> tuple[float | None, str]:
    """(lower end of the paired interval of a - b in points, its note)."""
    ci = claim_interval(r, [a, b], lambda m: m[:, 0] - m[:, 1])
    note = interval_note(ci, threshold / 100, scale=100.0, digits=1)
    return (None if ci is None else 100.0 * ci.low), note


def _fixed(r: Results, ds: str) -> tuple[bool, str]:
    rob, base = f"{ds}_linf_fixed_fgsm", f"{ds}_baseline_fixed_fgsm"
    a, b = r.metric(rob), r.metric(base)
    low, note = _diff(r, rob, base)
    others = ", ".join(
        f"{m} {r.metrics[f'{ds}_{m}_fixed_fgsm']:.1f}"
        for m in ("l2", "l1")
        if f"{ds}_{m}_fixed_fgsm" in r.metrics
    )
    ok = a - b >= FIXED_MARGIN - TIE and (low is None or low > 0)
    return ok, (f"fixed FGSM set: l_inf-robust {a:.1f} vs baseline {b:.1f} ({note}); {others} "
                f"(claim: margin >= {FIXED_MARGIN:g} points, interval above 0)")  # fmt: skip


def _deepfool(r: Results, ds: str) -> tuple[bool, str]:
    name = f"{ds}_linf_deepfool_l2_median_gain"
    gain, low, high = (r.metric(n) for n in (name, f"{name}.ci95_low", f"{name}.ci95_high"))
    a, b = r.metric(f"{ds}_linf_deepfool_l2_median"), r.metric(f"{ds}_baseline_deepfool_l2_median")
    return gain > 0 and low > 0, (
        f"DeepFool median l2: l_inf-robust {a:.3f} vs baseline {b:.3f}, difference {gain:+.3f} "
        f"[{low:+.3f}, {high:+.3f}] (claim: larger, interval excluding 0)"
    )


def _clean_kept(r: Results, ds: str) -> tuple[bool, str]:
    base = r.metric(f"{ds}_baseline_clean")
    ok, parts = True, []
    for m in ROBUST:
        value = r.metric(f"{ds}_{m}_clean")
        ok &= value >= base - CLEAN_DELTA - TIE
        parts.append(f"{m} {value:.2f} ({value - base:+.2f})")
    return ok, (f"clean: baseline {base:.2f}; " + ", ".join(parts)
                + f" (claim: each >= baseline - {CLEAN_DELTA:g})")  # fmt: skip


def _clean_improves(r: Results, ds: str) -> tuple[bool, str]:
    rob, base = f"{ds}_linf_clean", f"{ds}_baseline_clean"
    a, b = r.metric(rob), r.metric(base)
    _low, note = _diff(r, rob, base)
    return a > b, f"clean: l_inf-robust {a:.2f} vs baseline {b:.2f} ({note}) (claim: higher)"


def _worst(r: Results) -> tuple[bool, str]:
    base = "robustness.fashion_mnist_shaham"
    rob, nat = f"{base}_linf.worst", f"{base}_baseline.worst"
    a, b = r.metric(rob), r.metric(nat)
    _low, note = _diff(r, rob, nat, WORST_MARGIN)
    paper = r.metrics.get(f"{base}_linf.paper")
    shown = f"; l_inf-robust under the paper's one-step attack {paper:.1f}" if paper else ""
    return a - b >= WORST_MARGIN - TIE, (
        f"worst case at eps 0.1: l_inf-robust {a:.1f} vs baseline {b:.1f} ({note}){shown} "
        f"(claim: margin >= {WORST_MARGIN:g} points)"
    )


def _datasets(check):  # type: ignore[no-untyped-def]
    def run(r: Results) -> tuple[bool, str]:
        if not any(f"{ds}_baseline_clean" in r.metrics for ds in DATASETS):
            raise Missing("no dataset ran")
        return per_dataset(r, DATASETS, check)

    return run


CLAIMS = [
    Claim(
        "robust_beats_baseline_on_fixed_fgsm",
        "Robust training increases robustness to existing adversarial examples: on a fixed set of "
        "FGSM images (eps 0.1) crafted against the normally trained net, the l_inf-robust net is "
        ">= 10 points more accurate (paired interval above 0)",
        _datasets(_fixed),
    ),
    Claim(
        "robust_needs_larger_perturbation",
        "Robust training makes new adversarial examples harder to find: DeepFool's median minimal "
        "l2 perturbation is larger for the l_inf-robust net than for the baseline (bootstrap "
        "interval of the difference excludes 0)",
        _datasets(_deepfool),
    ),
    Claim(
        "clean_accuracy_kept",
        "Robust training keeps clean accuracy: the l_inf, l_2 and l_1 robust nets are each within "
        "2 points of the baseline (>= baseline - 2)",
        _datasets(_clean_kept),
    ),
    Claim(
        "clean_accuracy_improves",
        "Robust training improves accuracy on the original test data: the l_inf-robust net's "
        "clean accuracy is above the baseline's",
        _datasets(_clean_improves),
    ),
    Claim(
        "gain_survives_the_battery",
        "Ours: the robustness gain is not an artefact of the one-step attack: under the shared "
        "battery at eps 0.1 (PGD-100 with restarts, CW-loss PGD, AutoAttack), the l_inf-robust "
        "net's worst-case accuracy exceeds the baseline's by >= 5 points (Fashion-MNIST)",
        _worst,
    ),
]
