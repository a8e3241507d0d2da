"""Wong & Kolter (2018)'s claims, as checks over a run's results.

Written on 2026-12-02 before any run of the notebook at `small` (the thresholds come from the
paper's Table 1 and the issue, not from our numbers). Each check runs on every dataset the run
measured: `fmnist` (Fashion-MNIST, the paper's own row) and `mnist` (only when the run trained on
the MNIST analogue, `mnist-test-split`).

What the notebook records, per dataset key K and model M in {natural, robust}:
- the rows `t1_K_M_test_err`, `t1_K_M_fgsm_err`, `t1_K_M_pgd_err`, `t1_K_M_bound` (percent, as
  Table 1 prints them), each with its per-image vector (`correct`: 1 where the image is right
  under that column: classified right, right after the paper's FGSM / PGD, certified);
- the project's robustness battery (`repro.robust_eval`) on the first `n_robust` test images as
  `robustness.K_M.<attack>` (percent right, clean and attacked), `worst` the per-image AND of
  every attack of the battery;
- `K_lp_*`: the independent LP check of the certified margins (scipy's HiGHS on the LP itself).

Claims:
1. The certificate is sound, per example (Theorem 1: J is a lower bound on the worst-case margin):
   no certified test image of either model is misclassified under any attack that ran (the
   paper's FGSM and PGD, unclipped, and every attack of the battery): 0 violations.
2. Robust training makes the certificate informative (Table 1: the normally trained network's
   bound is 100 % at eps 0.1, the robust one's 34.53 % on Fashion-MNIST and 5.82 % on MNIST):
   natural bound >= 95 % and robust bound <= 50 % (at most half the test set uncertified, a
   level set for the CPU scales' short training of a smaller network).
3. Robustness costs clean error on Fashion-MNIST (Table 1: 21.73 % against 9.36 %): the robust
   model's test error is at least 5 points above the natural model's.
4. The bound is close to what attacks achieve on the robust model (Table 1: bound minus PGD error
   2.90 points on Fashion-MNIST, 1.71 on MNIST, at most 6.93 on any dataset): bound minus the
   battery's worst-case error on the same images <= 10 points.
5. The dual network solves the LP's dual (Theorem 1): its bound equals the optimum of the LP of
   the relaxation it is the dual of (|J - LP| <= 1e-5 (1 + |J|) on every checked example and
   class) and never exceeds the optimum of the paper's LP (2) (the triangle relaxation, same l
   and u).
"""

from __future__ import annotations

from repro.claims import Claim, Missing, Results
from repro.stats import claim_interval, interval_note, unpack_bits

KEYS = ("fmnist", "mnist")
MODELS = ("natural", "robust")
NATURAL_BOUND_MIN = 95.0
ROBUST_BOUND_MAX = 50.0
CLEAN_COST_MIN = 5.0
BOUND_GAP_MAX = 10.0
LP_TOL = 1e-5
TIE = 1e-9


def _keys(r: Results) -> list[str]:
    """The dataset keys the run measured (its robust model's bound row is there)."""
    keys = [k for k in KEYS if f"t1_{k}_robust_bound" in r]
    if not keys:
        raise Missing("no t1_<dataset>_robust_bound row was recorded")
    return keys


def _vector(r: Results, name: str):
    packed = r.per_image(name)
    if packed is None:
        raise Missing(f"{name} has no per-image vector")
    return unpack_bits(packed).astype(bool)


def _sound(r: Results) -> tuple[bool, str]:
    parts, total = [], 0
    for key in _keys(r):
        for model in MODELS:
            row = f"t1_{key}_{model}_bound"
            if row not in r:
                continue
            certified = _vector(r, row)
            found = []
            for attack in ("fgsm_err", "pgd_err"):
                right = _vector(r, f"t1_{key}_{model}_{attack}")
                found.append((f"paper {attack[:-4].upper()}", int((certified & ~right).sum())))
            worst = f"robustness.{key}_{model}.worst"
            if r.per_image(worst) is not None:
                right = _vector(r, worst)
                found.append(("battery worst case", int((certified[: right.size] & ~right).sum())))
            count = sum(v for _, v in found)
            total += count
            shown = ", ".join(f"{a} {v}" for a, v in found)
            parts.append(f"{key} {model}: {int(certified.sum())} certified, violations: {shown}")
    if not parts:
        raise Missing("no bound row was recorded")
    return total == 0, "; ".join(parts) + " (claim: 0 certified images broken)"


def _informative(r: Results) -> tuple[bool, str]:
    ok, parts = True, []
    for key in _keys(r):
        natural, robust = r[f"t1_{key}_natural_bound"], r[f"t1_{key}_robust_bound"]
        ok &= natural >= NATURAL_BOUND_MIN - TIE and robust <= ROBUST_BOUND_MAX + TIE
        ci = claim_interval(r, [f"t1_{key}_robust_bound"], lambda m: 100.0 * (1.0 - m[:, 0]))
        note = interval_note(ci, ROBUST_BOUND_MAX, digits=1)
        parts.append(f"{key}: natural bound {natural:.2f}%, robust bound {robust:.2f}% ({note})")
    return ok, "; ".join(parts) + (
        f" (claim: natural >= {NATURAL_BOUND_MIN:g}%, robust <= {ROBUST_BOUND_MAX:g}%)"
    )


def _clean_cost(r: Results) -> tuple[bool, str]:
    natural, robust = r["t1_fmnist_natural_test_err"], r["t1_fmnist_robust_test_err"]
    ci = claim_interval(r, ["t1_fmnist_natural_test_err", "t1_fmnist_robust_test_err"],
                        lambda m: 100.0 * (m[:, 0] - m[:, 1]))  # fmt: skip
    note = interval_note(ci, CLEAN_COST_MIN, digits=2)
    return robust - natural >= CLEAN_COST_MIN - TIE, (
        f"test error natural {natural:.2f}%, robust {robust:.2f}% (+{robust - natural:.2f} "
        f"points; {note}; claim: >= +{CLEAN_COST_MIN:g})"
    )


def _close_to_attacks(r: Results) -> tuple[bool, str]:
    ok, parts = True, []
    for key in _keys(r):
        worst = f"robustness.{key}_robust.worst"
        right = _vector(r, worst)
        certified = _vector(r, f"t1_{key}_robust_bound")[: right.size]
        gap = 100.0 * float((right.astype(float) - certified.astype(float)).mean())
        ci = claim_interval(r, [worst, f"t1_{key}_robust_bound"],
                            lambda m: 100.0 * (m[:, 0] - m[:, 1]), first=right.size)  # fmt: skip
        note = interval_note(ci, BOUND_GAP_MAX, digits=2)
        ok &= gap <= BOUND_GAP_MAX + TIE
        parts.append(
            f"{key}: on {right.size} images bound {100 - 100 * certified.mean():.2f}% vs "
            f"worst-case error {100 - 100 * right.mean():.2f}%, gap {gap:.2f} points ({note})"
        )
    return ok, "; ".join(parts) + f" (claim: gap <= {BOUND_GAP_MAX:g} points)"


def _lp(r: Results) -> tuple[bool, str]:
    ok, parts = True, []
    for key in _keys(r):
        checked = r.metric(f"{key}_lp_parallel_checked")
        diff = r.metric(f"{key}_lp_parallel_max_rel_diff")
        tri = r.metric(f"{key}_lp_triangle_checked")
        above = r.metric(f"{key}_lp_triangle_violations")
        gap = r.metric(f"{key}_lp_triangle_mean_gap")
        ok &= checked > 0 and diff <= LP_TOL and tri > 0 and above == 0
        parts.append(
            f"{key}: {checked:.0f} (example, class) pairs, max |J - LP| / (1 + |J|) = {diff:.2e}; "
            f"triangle LP on {tri:.0f} pairs: J above it {above:.0f} times, mean LP - J "
            f"{gap:.2e}"
        )
    return ok, "; ".join(parts) + f" (claim: <= {LP_TOL:g} and 0 times above)"


CLAIMS = [
    Claim(
        "certificate_sound_per_example",
        "The certified bound is sound per example (Theorem 1): no certified test image of the "
        "natural or the robust model is misclassified by any attack that ran (the paper's "
        "unclipped FGSM and PGD, and the project's battery with AutoAttack)",
        _sound,
    ),
    Claim(
        "robust_training_makes_bound_informative",
        "Robust training makes the certificate informative (Table 1): the normally trained "
        "network's bound is vacuous (>= 95 %; the paper: 100 %), the robustly trained one's at "
        "most 50 % (the paper: 34.53 % on Fashion-MNIST, 5.82 % on MNIST, at eps 0.1)",
        _informative,
    ),
    Claim(
        "robustness_costs_clean_error",
        "On Fashion-MNIST robust training trades clean error for the certificate (Table 1: "
        "21.73 % against 9.36 %): the robust model's test error is at least 5 points higher",
        _clean_cost,
    ),
    Claim(
        "bound_close_to_attacks",
        "For the robust model the certified bound is close to the error attacks reach (Table 1: "
        "34.53 % vs PGD 31.63 % on Fashion-MNIST, at most 6.93 points apart on any dataset): "
        "bound minus the worst-case error of our battery <= 10 points on the same images",
        _close_to_attacks,
    ),
    Claim(
        "dual_network_bounds_the_lp",
        "The dual network bounds the LP (Theorem 1): J equals the optimum of the LP of its own "
        "relaxation (the slope u / (u - l) on both sides) and never exceeds the optimum of the "
        "paper's LP (2), both solved independently by scipy's HiGHS with the same l, u",
        _lp,
    ),
]
