"""Chen et al. (2019)'s claims, and our adaptive checks, over a run's results.

Written on 2026-12-02 before any small run of the notebook (only a 3-epoch sanity check of the
loss on 500 images had run), from the paper's Table 3 and README (shared/papers/defense-papers.md
section 11 and its verification) and issue 17's brief. The thresholds are fixed here and are not
tuned after seeing results.

What the run records (percent, each with its per-image vector, so every margin comes with a paired
95 % bootstrap interval over the evaluation images, `repro.stats`):
- MNIST (or `mnist-test-split`): the rows `t3_mnist_<attack>_e<100·eps>_<xe|gce>` of
  `expected.csv` (Table 3: LeNet-5 trained with cross-entropy "xe" or GCE, attack in fgsm, bim,
  pgd, mim; the attack maximises the model's own training loss, as the official PGD script does);
  Fashion-MNIST at eps 0.1: the free metrics `fashion_mnist_<attack>_e10_<xe|gce>`;
- `<ds>_<xe|gce>_clean`: clean test accuracy (ds `mnist` or `fashion_mnist`);
- `robustness.<ds>_lenet_<xe|gce>.<attack>` and `robustness.fashion_mnist_small_cnn_<pgd_at|
  gce_at>.<attack>`: the shared battery (`repro.robust_eval`), `worst` its per-image worst case,
  `paper` the official PGD (40 steps of 0.01 on the model's own loss).

Claims:
1. "Adversarial defense for free" (README table; Table 3): at the headline eps (MNIST 0.2, our
   Fashion-MNIST analogue 0.1) the GCE model's accuracy is >= the XE model's under each of FGSM,
   BIM, PGD and MIM as the paper runs them, on every dataset that ran.
2. "Better robustness with even better performance" (abstract): GCE's clean accuracy is at least
   XE's minus 1 point, on every dataset.
3. The README's six MNIST numbers at eps 0.2 (FGSM, MIM, PGD for XE and GCE) are matched within
   +-10 points. Why 10: our MNIST is 8,000 training images (the test split's first part) and the
   last epoch rather than the best test epoch; a LeNet trained on 8k images is about 1 point less
   accurate clean, and robust accuracies at eps 0.2 move by several points with the training set
   and the seed.
4. Ours (the adaptive check, expected to hold): GCE's advantage does not survive the shared
   battery: the worst-case accuracy (PGD-100 with restarts, CW-loss PGD, AutoAttack, FGSM,
   PGD-20) of GCE exceeds XE's by less than 5 points, on every dataset.
5. Ours: the official evaluation overestimates GCE: on MNIST at eps 0.2, the GCE model's accuracy
   under the paper's PGD (GCE loss) exceeds its worst case by more than `GAP_FLAG` (5) points.
6. "Orthogonal to adversarial training ... with noticeable robustness gain" (abstract): on
   Fashion-MNIST (small_cnn, eps 0.1, the shared PGD-AT baseline's data, epochs and adversary),
   GCE + AT's worst-case accuracy is >= PGD-AT's.
"""

from __future__ import annotations

from repro.claims import Claim, Missing, Results, per_dataset
from repro.stats import claim_interval, interval_note

TIE = 1e-6  # a value exactly at a threshold must not fail on floating-point rounding
ATTACKS = ("fgsm", "bim", "pgd", "mim")
HEADLINE_EPS = {"mnist": 0.2, "fashion_mnist": 0.1}
CLEAN_SLACK = 1.0  # points
PAPER_TOLERANCE = 10.0  # points
README = {  # the README's MNIST table at eps 0.2 (= Table 3's rows)
    ("fgsm", "xe"): 38.88, ("fgsm", "gce"): 62.74,
    ("mim", "xe"): 2.29, ("mim", "gce"): 39.81,
    ("pgd", "xe"): 1.58, ("pgd", "gce"): 9.55,
}  # fmt: skip
WORST_ADVANTAGE_MAX = 5.0  # points
GAP_MIN = 5.0  # repro.robust_eval.GAP_FLAG


def eps_tag(eps: float) -> str:
    """eps in hundredths, as in the row ids: 0.2 -> 'e20', 0.04 -> 'e04'."""
    return f"e{round(eps * 100):02d}"


def attack_name(ds: str, attack: str, model: str, eps: float | None = None) -> str:
    """The recorded name of a model's accuracy under a paper attack at `eps` (the headline)."""
    tag = eps_tag(HEADLINE_EPS[ds] if eps is None else eps)
    if ds == "mnist":
        return f"t3_mnist_{attack}_{tag}_{model}"
    return f"{ds}_{attack}_{tag}_{model}"


def _value(r: Results, name: str) -> float:
    return r[name] if name.startswith("t3_") else r.metric(name)


def _diff_note(r: Results, a: str, b: str, threshold: float = 0.0) -> str:
    return interval_note(claim_interval(r, [a, b], lambda m: m[:, 0] - m[:, 1]), threshold / 100,
                         scale=100.0, digits=1)  # fmt: skip


def _for_free(r: Results, ds: str) -> tuple[bool, str]:
    ok, parts = True, []
    for attack in ATTACKS:
        gce, xe = attack_name(ds, attack, "gce"), attack_name(ds, attack, "xe")
        g, x = _value(r, gce), _value(r, xe)
        ok &= g >= x - TIE
        parts.append(f"{attack.upper()} GCE {g:.1f} vs XE {x:.1f} ({_diff_note(r, gce, xe)})")
    return ok, f"eps {HEADLINE_EPS[ds]}: " + "; ".join(parts)


def _clean(r: Results, ds: str) -> tuple[bool, str]:
    g, x = r.metric(f"{ds}_gce_clean"), r.metric(f"{ds}_xe_clean")
    note = _diff_note(r, f"{ds}_gce_clean", f"{ds}_xe_clean", -CLEAN_SLACK)
    return g >= x - CLEAN_SLACK - TIE, f"clean GCE {g:.2f} vs XE {x:.2f} ({note})"


def _readme(r: Results) -> tuple[bool, str]:
    ok, parts = True, []
    for (attack, model), paper in README.items():
        ours = r[attack_name("mnist", attack, model)]
        ok &= abs(ours - paper) <= PAPER_TOLERANCE + TIE
        parts.append(
            f"{attack.upper()} {model.upper()} {ours:.1f} vs {paper} ({ours - paper:+.1f})"
        )
    return ok, "; ".join(parts) + f" (claim: each within +-{PAPER_TOLERANCE:g} points)"


def _worst(r: Results, ds: str) -> tuple[bool, str]:
    gce, xe = f"robustness.{ds}_lenet_gce.worst", f"robustness.{ds}_lenet_xe.worst"
    g, x = r.metric(gce), r.metric(xe)
    paper = r.metrics.get(f"robustness.{ds}_lenet_gce.paper")
    shown = f"; GCE under the paper's PGD {paper:.1f}" if paper is not None else ""
    note = _diff_note(r, gce, xe, WORST_ADVANTAGE_MAX)
    return g - x < WORST_ADVANTAGE_MAX, (
        f"worst case GCE {g:.1f} vs XE {x:.1f} ({note}){shown} (claim: advantage < "
        f"{WORST_ADVANTAGE_MAX:g} points)"
    )


def _gap(r: Results) -> tuple[bool, str]:
    base = "robustness.mnist_lenet_gce"
    paper, worst = r.metric(f"{base}.paper"), r.metric(f"{base}.worst")
    note = _diff_note(r, f"{base}.paper", f"{base}.worst", GAP_MIN)
    other = r.metrics.get("robustness.fashion_mnist_lenet_gce.gap")
    shown = f"; Fashion-MNIST (eps 0.1): gap {other:+.1f}" if other is not None else ""
    return paper - worst > GAP_MIN, (
        f"MNIST eps 0.2: GCE under the paper's PGD {paper:.1f}, worst case {worst:.1f} ({note})"
        f"{shown} (claim: gap > {GAP_MIN:g} points)"
    )


def _at(r: Results) -> tuple[bool, str]:
    base = "robustness.fashion_mnist_small_cnn"
    gce, pgd = f"{base}_gce_at.worst", f"{base}_pgd_at.worst"
    g, p = r.metric(gce), r.metric(pgd)
    clean = [r.metrics.get(f"{base}_{m}.clean") for m in ("gce_at", "pgd_at")]
    shown = f"; clean {clean[0]:.1f} vs {clean[1]:.1f}" if None not in clean else ""
    return g >= p - TIE, (
        f"worst case GCE+AT {g:.1f} vs PGD-AT {p:.1f} ({_diff_note(r, gce, pgd)}){shown} "
        "(claim: GCE+AT >= PGD-AT)"
    )


def _need_mnist(r: Results) -> None:
    if not any(k.startswith("t3_mnist_") for k in r.rows):
        raise Missing("no MNIST row was recorded (no MNIST files here)")


def _readme_check(r: Results) -> tuple[bool, str]:
    _need_mnist(r)
    return _readme(r)


CLAIMS = [
    Claim(
        "gce_beats_xe_under_papers_attacks",
        "Adversarial defense for free: with no adversarial training, the GCE model is at least as "
        "accurate as the XE model under FGSM, BIM, PGD and MIM as the paper runs them, at the "
        "headline eps (MNIST 0.2, README and Table 3; Fashion-MNIST 0.1, our analogue)",
        lambda r: per_dataset(r, ("mnist", "fashion_mnist"), _for_free),
    ),
    Claim(
        "gce_clean_accuracy_no_worse",
        "GCE does not compromise clean accuracy: GCE's test accuracy >= XE's - 1 point "
        "(abstract: 'even better performance')",
        lambda r: per_dataset(r, ("mnist", "fashion_mnist"), _clean),
    ),
    Claim(
        "mnist_readme_numbers_within_10_points",
        "The README's MNIST table at eps 0.2 (XE / GCE: FGSM 38.88 / 62.74, MIM 2.29 / 39.81, "
        "PGD 1.58 / 9.55) is matched within +-10 points by LeNet-5 trained on 8,000 MNIST images",
        _readme_check,
    ),
    Claim(
        "gce_advantage_vanishes_in_worst_case",
        "Ours: under the shared battery (PGD-100 with restarts, CW-loss PGD, AutoAttack) GCE's "
        "worst-case accuracy exceeds XE's by less than 5 points (the advantage is an artefact of "
        "the evaluation), at the headline eps of every dataset",
        lambda r: per_dataset(r, ("mnist", "fashion_mnist"), _worst),
    ),
    Claim(
        "papers_pgd_overestimates_gce",
        "Ours: the official PGD (40 steps of 0.01 on the GCE loss) overestimates the GCE model: "
        "on MNIST at eps 0.2 its accuracy exceeds the battery's worst case by more than 5 points",
        _gap,
    ),
    Claim(
        "gce_at_beats_pgd_at",
        "GCE is orthogonal to adversarial training with a robustness gain (abstract): GCE + AT's "
        "worst-case accuracy >= PGD-AT's (Fashion-MNIST, small_cnn, eps 0.1, the shared "
        "baseline's data, epochs and PGD adversary)",
        _at,
    ),
]
