"""Zhong & Deng (2019)'s qualitative claims, checked on the Fashion-MNIST analogue.

The paper's numbers (faces: Table 4; MNIST: Table 1) cannot run here, so the claims are checked
on the free metrics the notebook records on Fashion-MNIST (percentages, each with its per-image
or per-pair vector, so every margin has a paired 95 % bootstrap interval, `repro.stats`):

- `fashion_mnist_<model>_hit_<attack>`: the hit rate of an attack over the same source→target
  pairs for every model (`attack` one of `ftgsm`, `iftgsm_half`, `iftgsm`, `itgsm`; ε of the
  scale, `iftgsm_half` at ε/2; the analogue of Table 4's FFTGSM ε=10, IFTGSM ε=5 / ε=10 and
  ITGSM ε=10 columns);
- `fashion_mnist_<model>_acc_<attack>`: accuracy on the clean test images and under FGSM, BIM
  and ITGSM (Table 1's columns);
- `robustness.<model>.<attack>`: the shared battery (`repro.robust_eval`), `worst` its worst case.

`model` is `natural` (the plain model: the shared natural baseline), `feature_at` (the paper's
"+adv.": adversarial training on the exploitation's examples), `mter`, and `pgd_at` (the shared
PGD-AT baseline, measured but in no claim: the paper does not compare with it).

Claims and thresholds written on 2026-12-02 before any run of the notebook, from Table 4 and
Table 1 as confirmed in `../shared/papers/defense-papers.md` section 4:

1. MTER lowers the IFTGSM (ε) hit rate below the plain model's, the paired interval of the
   difference entirely below 0 (Table 4, ε=10: 100.0 -> 27.4 / 35.6 / 61.4 / 19.5).
2. MTER's IFTGSM (ε) hit rate is at most "+adv."'s (Table 4, ε=10: 27.4 vs 49.5, 35.6 vs 63.8,
   61.4 vs 62.6).
3. MTER keeps the plain model's clean accuracy within 2 points (Table 4: LFW within 0.2, YTF
   within 0.8 points of ArcFace).
4. MTER lowers the ITGSM (label-level) hit rate below the plain model's, interval below 0
   (Table 4: 98.3 / 100.0 / 69.2 -> 0.1 / 0.1 / 0.0).
5. MTER lowers the one-step FTGSM hit rate below the plain model's, interval below 0 (Table 4:
   99.3 / 98.3 / 99.8 -> 2.0 / 4.6 / 4.1).
6. MTER keeps at least half its clean accuracy under BIM (Table 1, MNIST ε=0.3: 98.7 of 99.5;
   the plain model 0.0).
7. The same on the worst case of the shared battery (`robustness.mter.worst` >= half of
   `robustness.mter.clean`): the robustness of claim 6 must survive stronger attacks.
"""

from __future__ import annotations

from repro.claims import Claim, Results
from repro.stats import claim_interval, interval_note

DS = "fashion_mnist"
TIE = 1e-6  # a value exactly at a threshold must not fail on floating-point rounding
CLEAN_GAP = 2.0  # points
ROBUST_SHARE = 0.5


def _hit(model: str, attack: str) -> str:
    return f"{DS}_{model}_hit_{attack}"


def _acc(model: str, attack: str) -> str:
    return f"{DS}_{model}_acc_{attack}"


def _lower_than_plain(attack: str):
    def check(r: Results) -> tuple[bool, str]:
        mter, plain = r.metric(_hit("mter", attack)), r.metric(_hit("natural", attack))
        ci = claim_interval(r, [_hit("mter", attack), _hit("natural", attack)],
                            lambda m: m[:, 0] - m[:, 1])  # fmt: skip
        below = mter < plain and (ci is None or ci.high < 0)
        return below, (
            f"{attack} hit rate: MTER {mter:.1f}% vs plain {plain:.1f}% "
            f"({interval_note(ci)}; claim: MTER lower, interval below 0)"
        )

    return check


def _at_most_adv(r: Results) -> tuple[bool, str]:
    mter, adv = r.metric(_hit("mter", "iftgsm")), r.metric(_hit("feature_at", "iftgsm"))
    ci = claim_interval(r, [_hit("mter", "iftgsm"), _hit("feature_at", "iftgsm")],
                        lambda m: m[:, 0] - m[:, 1])  # fmt: skip
    return mter <= adv + TIE, (
        f"IFTGSM hit rate: MTER {mter:.1f}% vs +adv. {adv:.1f}% ({interval_note(ci)}; "
        "claim: MTER <= +adv.)"
    )


def _keeps_clean(r: Results) -> tuple[bool, str]:
    mter, plain = r.metric(_acc("mter", "clean")), r.metric(_acc("natural", "clean"))
    ci = claim_interval(r, [_acc("mter", "clean"), _acc("natural", "clean")],
                        lambda m: m[:, 0] - m[:, 1] + CLEAN_GAP / 100)  # fmt: skip
    return mter >= plain - CLEAN_GAP - TIE, (
        f"clean accuracy: MTER {mter:.2f}% vs plain {plain:.2f}% ({interval_note(ci)} in "
        f"fractions; claim: MTER >= plain - {CLEAN_GAP:g} points)"
    )


def _robust_bim(r: Results) -> tuple[bool, str]:
    bim, clean = r.metric(_acc("mter", "bim")), r.metric(_acc("mter", "clean"))
    ok = bim >= ROBUST_SHARE * clean - TIE
    return ok, f"MTER: BIM {bim:.1f}% of clean {clean:.1f}% (claim: >= {ROBUST_SHARE:g} x clean)"


def _robust_worst(r: Results) -> tuple[bool, str]:
    worst, clean = r.metric("robustness.mter.worst"), r.metric("robustness.mter.clean")
    ci = claim_interval(r, ["robustness.mter.worst", "robustness.mter.clean"],
                        lambda m: m[:, 0] - ROBUST_SHARE * m[:, 1])  # fmt: skip
    paper = r.metrics.get("robustness.mter.paper")
    shown = f", the paper's attack (BIM) {paper:.1f}%" if paper is not None else ""
    return worst >= ROBUST_SHARE * clean - TIE, (
        f"MTER on the battery's images: worst case {worst:.1f}% of clean {clean:.1f}%{shown} "
        f"({interval_note(ci)} in fractions; claim: worst >= {ROBUST_SHARE:g} x clean)"
    )


CLAIMS = [
    Claim(
        "mter_lowers_iftgsm_hit_rate",
        "MTER lowers the hit rate of the iterative feature-level targeted attack (IFTGSM at the "
        "scale's eps) below the plain model's, the paired bootstrap interval of the difference "
        "below 0 (Table 4, eps=10: 100.0 -> 27.4 / 35.6 / 61.4 / 19.5)",
        _lower_than_plain("iftgsm"),
    ),
    Claim(
        "mter_at_most_adv_iftgsm_hit_rate",
        "MTER's IFTGSM hit rate is at most that of adversarial training on the same feature "
        "attack's examples (+adv.) (Table 4, eps=10: 27.4 vs 49.5, 35.6 vs 63.8, 61.4 vs 62.6)",
        _at_most_adv,
    ),
    Claim(
        "mter_keeps_clean_accuracy",
        "MTER keeps the plain model's clean accuracy within 2 points (Table 4: LFW within 0.2, "
        "YTF within 0.8 points of ArcFace)",
        _keeps_clean,
    ),
    Claim(
        "mter_lowers_itgsm_hit_rate",
        "MTER lowers the label-level targeted attack's (ITGSM) hit rate below the plain "
        "model's, interval below 0 (Table 4: 98.3 / 100.0 / 69.2 -> 0.1 / 0.1 / 0.0)",
        _lower_than_plain("itgsm"),
    ),
    Claim(
        "mter_lowers_ftgsm_hit_rate",
        "MTER lowers the one-step feature attack's (FTGSM) hit rate below the plain model's, "
        "interval below 0 (Table 4: 99.3 / 98.3 / 99.8 -> 2.0 / 4.6 / 4.1)",
        _lower_than_plain("ftgsm"),
    ),
    Claim(
        "mter_robust_under_bim",
        "MTER keeps at least half its clean accuracy under BIM (Table 1, MNIST eps=0.3: 98.7 of "
        "99.5, the plain model 0.0)",
        _robust_bim,
    ),
    Claim(
        "mter_robust_worst_case",
        "MTER keeps at least half its clean accuracy under the worst case of the shared battery "
        "(FGSM, PGD-20/100, CW-PGD, AutoAttack): Table 1's robustness under stronger attacks",
        _robust_worst,
    ),
]
