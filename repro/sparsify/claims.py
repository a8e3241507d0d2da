"""Gopalakrishnan et al. (2018)'s claims, and our adaptive checks, over a run's results.

Written on 2026-12-03 before any small run of the notebook (only a 10-epoch validation check of
the clean accuracies, which fixed gamma in repro.toml, had run), from the lecture's slides of the
paper (Fig. 1, Fig. 2 / Theorem 2, Fig. 6: "more gradual decrease in accuracy as perturbation
energy increases") and issue 15's brief. The thresholds are fixed here and not tuned afterwards.

What the run records (percent; accuracies with their per-image vectors):
- `curve.<model>.<attack>.e<100 eps>`: accuracy on the attacked image (the paper's count) of the
  first `n_eval` test images, model in none, frontend<100 rho>, netsparse; attack in fgsm,
  loclin_semi, loclin_white (the paper's), pgd_bpda, pgd_exact (ours);
- `auc.<model>.<attack>`: the area under that curve over the eps grid, divided by its width
  (percent), and `auc.<model>.<attack>.minus_none` with `.ci95_low` / `.ci95_high` (paired
  bootstrap over the images of the per-image areas);
- `theorem2.<model>.max_ratio`: max over examples, attacks, eps > 0 and layers j of
  ||e_j||_inf / (eps prod_{l<=j} gamma_l), gamma_l the trained net's max row l1 norm, eps the
  example's measured ||x_adv - x||_inf (models none and netsparse);
- `robustness.<model>.<attack>`: the shared battery (`repro.robust_eval`) at eps 0.1 on the
  deployed model (front end with BPDA gradients), `paper` = the white-box locally linear attack;
  `adaptive.<model>.worst_all`: per image, the battery's worst case and the paper's attack and
  PGD-100 with the exact (fixed-support) gradient through the front end.

Claims:
1. Fig. 6: both defenses (front end at the paper's rho = 3 %, network sparsity) degrade more
   gracefully than no defense: area under accuracy-vs-eps >= no defense's, under each of the
   paper's attacks (FGSM, locally linear semi-white-box and white-box).
2. Theorem 2: ||e_j||_inf <= eps prod gamma_l on every measured example, layer, attack and eps
   (ratio <= 1 + 1e-4, float32 rounding).
3. Ours (adaptive): the front end (rho = 3 %) keeps an advantage under an adaptive attack at
   eps 0.1: its adaptive worst case exceeds no defense's worst case by >= 10 points. Why 10: a
   defense's advantage should be beyond the ~+-5-point bootstrap noise of a few hundred images
   and big enough to matter; BPDA is expected to remove most of a preprocessing defense's gain
   (Athalye et al., 2018), so this is where the paper's evaluation is most likely to fail.
4. Ours (adaptive): network sparsity keeps an advantage under the battery at eps 0.1: its worst
   case exceeds no defense's by >= 10 points (a constraint on the network itself masks no
   gradient, so we expect this to hold if the defense is real).
5. Ours: the paper's strongest attack (white-box locally linear) overestimates the front end:
   its accuracy exceeds the adaptive worst case by more than 5 points (repro.robust_eval's
   GAP_FLAG).
"""

from __future__ import annotations

from repro.claims import Claim, Results
from repro.stats import claim_interval, interval_note

TIE = 1e-6
PAPER_ATTACKS = ("fgsm", "loclin_semi", "loclin_white")
DEFENSES = ("frontend3", "netsparse")
RATIO_MAX = 1.0 + 1e-4
ADVANTAGE_MIN = 10.0  # points
GAP_MIN = 5.0  # points (repro.robust_eval.GAP_FLAG)


def _diff_note(r: Results, a: str, b: str, threshold: float = 0.0) -> str:
    return interval_note(claim_interval(r, [a, b], lambda m: m[:, 0] - m[:, 1]), threshold / 100,
                         scale=100.0, digits=1)  # fmt: skip


def _auc_note(r: Results, model: str, attack: str) -> str:
    base = f"auc.{model}.{attack}.minus_none"
    low, high = r.metrics.get(f"{base}.ci95_low"), r.metrics.get(f"{base}.ci95_high")
    return "" if low is None or high is None else f" [{low:+.1f}, {high:+.1f}]"


def _graceful(r: Results) -> tuple[bool, str]:
    ok, parts = True, []
    for attack in PAPER_ATTACKS:
        none = r.metric(f"auc.none.{attack}")
        shown = []
        for model in DEFENSES:
            value = r.metric(f"auc.{model}.{attack}")
            ok &= value >= none - TIE
            shown.append(f"{model} {value:.1f} ({value - none:+.1f}{_auc_note(r, model, attack)})")
        others = sorted(k.split(".")[1] for k in r.metrics
                        if k.startswith("auc.frontend") and k.endswith(f".{attack}")
                        and k.split(".")[1] not in DEFENSES)  # fmt: skip
        extra = "".join(f", {m} {r.metric(f'auc.{m}.{attack}'):.1f}" for m in others)
        parts.append(f"{attack}: none {none:.1f}, " + ", ".join(shown) + extra)
    return ok, "; ".join(parts) + " (claim: both defenses' area >= none's under every attack)"


def _theorem2(r: Results) -> tuple[bool, str]:
    ok, parts = True, []
    for model in ("none", "netsparse"):
        ratio = r.metric(f"theorem2.{model}.max_ratio")
        n = r.metrics.get(f"theorem2.{model}.n_checked")
        bound = r.metrics.get(f"theorem2.{model}.gamma_product")
        ok &= ratio <= RATIO_MAX
        shown = f", prod gamma {bound:.3g}" if bound is not None else ""
        count = f" over {n:.0f} example-attack-eps triples" if n is not None else ""
        parts.append(f"{model}: max ||e_j||/(eps prod gamma) = {ratio:.4f}{count}{shown}")
    return ok, "; ".join(parts) + f" (claim: <= {RATIO_MAX:g})"


def _advantage(r: Results, defended: str, model: str) -> tuple[bool, str]:
    none = "robustness.none.worst"
    d, n = r.metric(defended), r.metric(none)
    note = _diff_note(r, defended, none, ADVANTAGE_MIN)
    return d - n >= ADVANTAGE_MIN - TIE, (
        f"eps {r.metrics.get('robustness.none.eps', 0.1):g}: {model} worst case {d:.1f} vs no "
        f"defense {n:.1f} ({note}) (claim: advantage >= {ADVANTAGE_MIN:g} points)"
    )


def _frontend_adaptive(r: Results) -> tuple[bool, str]:
    ok, text = _advantage(r, "adaptive.frontend3.worst_all", "front end (rho 3%), adaptive")
    bpda = r.metrics.get("robustness.frontend3.pgd100")
    return ok, text + (f"; BPDA-PGD-100 alone {bpda:.1f}" if bpda is not None else "")


def _netsparse(r: Results) -> tuple[bool, str]:
    return _advantage(r, "robustness.netsparse.worst", "network sparsity")


def _gap(r: Results) -> tuple[bool, str]:
    paper, worst = "robustness.frontend3.paper", "adaptive.frontend3.worst_all"
    p, w = r.metric(paper), r.metric(worst)
    return p - w > GAP_MIN, (
        f"front end (rho 3%): white-box locally linear {p:.1f}, adaptive worst case {w:.1f} "
        f"({_diff_note(r, paper, worst, GAP_MIN)}) (claim: gap > {GAP_MIN:g} points)"
    )


CLAIMS = [
    Claim(
        "defenses_degrade_more_gracefully",
        "Fig. 6: with the sparsifying front end (rho = 3 %) and with network sparsity, accuracy "
        "decreases more gradually with eps than without defense: the area under accuracy-vs-eps "
        "is >= no defense's under FGSM and the locally linear semi-white-box and white-box attacks",
        _graceful,
    ),
    Claim(
        "theorem2_bound_holds",
        "Theorem 2: with ||w_ij||_1 <= gamma_j for every row, ||e_j||_inf <= eps prod_{l<=j} "
        "gamma_l at every layer, on every measured example, attack and eps (no defense and "
        "network sparsity nets, gamma_l measured on the trained weights)",
        _theorem2,
    ),
    Claim(
        "frontend_survives_adaptive_attack",
        "Ours: under an adaptive attack at eps 0.1 (the battery with BPDA gradients, the paper's "
        "white-box attack and PGD-100 with the exact fixed-support gradient) the front end "
        "(rho = 3 %) is still >= 10 points more accurate than no defense under the battery",
        _frontend_adaptive,
    ),
    Claim(
        "netsparse_survives_battery",
        "Ours: under the shared battery at eps 0.1 network sparsity is >= 10 points more "
        "accurate (worst case) than no defense",
        _netsparse,
    ),
    Claim(
        "papers_attack_overestimates_frontend",
        "Ours: the paper's strongest attack (white-box locally linear, eps 0.1) overestimates the "
        "front end's robustness by more than 5 points against the adaptive worst case",
        _gap,
    ),
]
