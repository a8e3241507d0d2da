"""Athalye et al. (2018)'s claims, checked on the Fashion-MNIST analogue of the 2D experiment.

Every paper number is ImageNet/InceptionV3 (2D), 3D renderings or photographs of 3D-printed
objects (not here); the claims are checked on the same protocol run on Fashion-MNIST, from the
analogue's rows of `expected.csv` (`fm_*`, in percent; distances in [0, 1] pixel units) and free
metrics of the notebook (`fm_*_max`, `fm_*_transformed_distance`, `eps`, `rerun_*`, and the
bootstrap intervals `<name>.ci95_low` / `<name>.ci95_high` over the evaluation images). The
adversariality of an image is the fraction of its 1,000 held-out transformations under which the
classifier outputs the target; accuracy, the fraction that gives the true class.

The claims and their thresholds were written on 2026-12-02, before the first `small` run. A
feasibility check on other test images (5000-5049, not the evaluation images) came first and set
the budget eps = 5.0 (at 4.0 the single-view attack reaches its target on 96 % of the
untransformed images only); the thresholds come from the paper's numbers, quoted in each claim,
except the single-view margin, for which the paper prints no 2D number (ours, fixed here):

- EOT examples stay adversarial: mean adversariality >= 80 % (the paper: 96.4 % in 2D, Section
  3.2; 83.4 % in 3D, Table 2; the ICLR version's 2D minimum per image is 80.1 %).
- Far above the single-view attack at the same budget: at least 20 points more (the paper's
  motivation, Section 1: standard adversarial examples fail to stay adversarial under
  transformation; no 2D single-view number is printed, so 20 points is ours).
- The originals are classified correctly under T most of the time (>= 50 %; the paper: 70.0 %
  2D, 68.8 % 3D) and the EOT examples almost never (<= 10 %; the paper: 0.9 % 2D, 1.1 % 3D).
- The distance constraint: every x' of both attacks within ||x' - x||_2 <= eps, the mean over
  the held-out transformations of ||t(x') - t(x)||_2 <= eps for both (the paper's E_t[d] < eps),
  and the budget matched: the two attacks' mean distances within 5 % of eps of each other.
- Determinism: the attack and the evaluation rerun with the same seeds give the same bits.
"""

from __future__ import annotations

from repro.claims import Claim, Missing, Results

MIN_ADVERSARIALITY = 80.0  # percent
SINGLE_VIEW_MARGIN = 20.0  # points
MIN_ORIGINAL_ACCURACY = 50.0  # percent
MAX_ADVERSARIAL_ACCURACY = 10.0  # percent
MATCHED_BUDGET = 0.05  # of eps
#: distances are float32 norms: a projection exactly onto the sphere may read eps (1 + 1e-7)
RTOL = 1e-5


def _v(r: Results, name: str) -> float:
    """A recorded row of the analogue, or a free metric of that name."""
    return r[name] if name in r else r.metric(name)


def _ci(r: Results, name: str) -> str:
    try:
        return f"95% CI [{r.metric(f'{name}.ci95_low'):.1f}, {r.metric(f'{name}.ci95_high'):.1f}]"
    except Missing:
        return "no interval"


def _stay_adversarial(r: Results) -> tuple[bool, str]:
    adv = _v(r, "fm_eot_adversariality")
    return adv >= MIN_ADVERSARIALITY, (
        f"EOT mean adversariality {adv:.1f}% ({_ci(r, 'fm_eot_adversariality')}) over the "
        f"held-out transformations (claim: >= {MIN_ADVERSARIALITY:.0f}%)"
    )


def _above_single_view(r: Results) -> tuple[bool, str]:
    eot = _v(r, "fm_eot_adversariality")
    single = _v(r, "fm_single_view_adversariality")
    gap = eot - single
    note = _ci(r, "fm_eot_minus_single_view_adversariality")
    return gap >= SINGLE_VIEW_MARGIN, (
        f"EOT {eot:.1f}% vs single-view {single:.1f}%: {gap:+.1f} points (paired {note}; "
        f"claim: >= +{SINGLE_VIEW_MARGIN:.0f})"
    )


def _accuracy(r: Results) -> tuple[bool, str]:
    original = _v(r, "fm_original_accuracy")
    eot = _v(r, "fm_eot_accuracy")
    single = _v(r, "fm_single_view_accuracy")
    ok = original >= MIN_ORIGINAL_ACCURACY and eot <= MAX_ADVERSARIAL_ACCURACY
    return ok, (
        f"accuracy under the transformations: originals {original:.1f}% (claim: >= "
        f"{MIN_ORIGINAL_ACCURACY:.0f}%), EOT examples {eot:.1f}% (claim: <= "
        f"{MAX_ADVERSARIAL_ACCURACY:.0f}%); single-view examples {single:.1f}%"
    )


def _distance(r: Results) -> tuple[bool, str]:
    eps = r.metric("eps")
    limit = eps * (1 + RTOL)
    ok, parts = True, []
    for name, label in (("eot", "EOT"), ("single_view", "single-view")):
        worst = r.metric(f"fm_{name}_l2_max")
        seen = r.metric(f"fm_{name}_transformed_distance")
        ok &= worst <= limit and seen <= limit
        parts.append(f"{label}: max ||x'-x|| {worst:.4f}, mean E_t||t(x')-t(x)|| {seen:.3f}")
    eot, single = _v(r, "fm_eot_l2"), _v(r, "fm_single_view_l2")
    matched = abs(eot - single) <= MATCHED_BUDGET * eps
    return ok and matched, (
        "; ".join(parts) + f"; mean ||x'-x|| EOT {eot:.3f} vs single-view {single:.3f} "
        f"(claim: all <= eps = {eps:g}, means within {MATCHED_BUDGET * eps:.2f})"
    )


def _same_seed(r: Results) -> tuple[bool, str]:
    images = r.metric("rerun_max_abs_diff")
    rates = r.metric("rerun_adversariality_max_diff")
    n = r.metric("rerun_images")
    return images == 0.0 and rates == 0.0, (
        f"rerun on {n:.0f} images with the same seeds: max |x'_1 - x'_2| = {images:g}, max "
        f"adversariality difference {rates:g} (claim: both 0)"
    )


CLAIMS = [
    Claim(
        "eot_examples_stay_adversarial",
        "EOT's targeted examples stay adversarial over the transformation distribution: mean "
        "adversariality over 1,000 held-out random transformations per image >= 80% (Section 3.2: "
        "96.4% in 2D; Table 2: 83.4% in 3D)",
        _stay_adversarial,
    ),
    Claim(
        "eot_far_above_single_view",
        "At the same l2 budget, EOT's mean adversariality is at least 20 points above that of a "
        "standard single-view targeted attack (Section 1: standard adversarial examples do not "
        "stay adversarial under transformations; the margin is ours)",
        _above_single_view,
    ),
    Claim(
        "originals_correct_adversarials_not",
        "Under the transformations the originals are classified correctly most of the time "
        "(>= 50%) and the EOT examples almost never (<= 10%) (Table 1 of the ICLR version: 70.0% "
        "and 0.9%; Table 2: 68.8% and 1.1%)",
        _accuracy,
    ),
    Claim(
        "distance_constraint_holds",
        "Both attacks keep ||x' - x||_2 <= eps on every image and E_t ||t(x') - t(x)||_2 <= eps "
        "on average (Section 2's constraint), at a matched budget (mean distances within 5% of "
        "eps)",
        _distance,
    ),
    Claim(
        "same_seed_same_numbers",
        "The EOT attack and the evaluation over random transformations rerun with the same seeds "
        "give bit-identical examples and rates",
        _same_seed,
    ),
]
