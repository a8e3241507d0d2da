"""Defense-GAN's qualitative claims, checked over whatever the run measured, plus our adaptive check.

Each check reads the rows the notebook recorded (Tables 1-4, 8-11, Figures 4-5) on every dataset
and classifier it ran, so a claim holds only if it holds everywhere it was measured, and is not
evaluated (`Missing`) when nothing it needs was measured.

Thresholds, and why:
- White-box claims are checked twice: against the protocol rows (the attacker differentiates the
  classifier behind the projection, a gray-box attack) and against the attack as the released code
  ran it (on the whole defended model, whose gradient is zero, so FGSM does not move the input).
- White-box "well above no defense": at least +20 accuracy points (the brief's definition for the
  small scale; the paper's Table 4 margins are 55-95 points).
- Black-box "above no defense": at least +5 points. The paper's own Fashion-MNIST margins (Table 2)
  are +6 to +26 points, so +20 would fail the paper itself there.
- "Above FGSM adversarial training": strictly higher than the eps_tr = 0.3 column (the paper's
  white-box comparison). In the paper's black-box Table 2 adversarial training *beats*
  Defense-GAN for six of eight Fashion-MNIST pairs, so that half of the claim is expected to fail
  where Fashion-MNIST black-box rows are measured; we report it, we do not soften it.
- Detection: ROC AUC > 0.8 for FGSM at eps 0.3, at the main setting and along the L sweep at
  R = 10 (the paper's legends there are 0.935-1.0; its eps < 0.3 and R < 10 legends, down to
  0.775, are trends and not part of the claim).
- Trends: accuracy at the largest L (R) at least the accuracy at the smallest, less 0.02 (noise).
- The last claim is ours, not the paper's: under PGD with BPDA through the projection (Athalye et
  al. 2018), Defense-GAN keeps at least half of its clean accuracy. We expect it to FAIL.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from repro.claims import Claim, Missing, Results

WHITEBOX_MARGIN = 0.20
BLACKBOX_MARGIN = 0.05
AUC_THRESHOLD = 0.8
TREND_SLACK = 0.02


def _ids(r: Results, pattern: str) -> list[re.Match[str]]:
    """The recorded rows whose id matches `pattern` (a full-match regex), as match objects."""
    rx = re.compile(pattern)
    return [m for m in (rx.fullmatch(i) for i in sorted(r.rows)) if m]


def _whitebox(attack: str) -> Callable[[Results], tuple[bool, str]]:
    def check(r: Results) -> tuple[bool, str]:
        found = _ids(r, rf"t4_(\w+?)_{attack}_([a-f])_defgan_rec")
        if not found:
            raise Missing(f"no white-box {attack} Defense-GAN-Rec row was recorded")
        ok, parts = True, []
        for m in found:
            base = m.group(0).removesuffix("_defgan_rec")
            dg, nd = r[m.group(0)], r[f"{base}_no_defense"]
            good = dg >= nd + WHITEBOX_MARGIN
            text = f"{m.group(1)} {m.group(2).upper()}: {dg:.3f} vs no defense {nd:.3f}"
            at = r.get(f"{base}_advtr_eps030")
            if at is not None:
                good = good and dg > at
                text += f", adv.tr. {at:.3f}"
            ok = ok and good
            parts.append(text + ("" if good else " (fails)"))
        return ok, "; ".join(parts)

    return check


def _as_released(r: Results) -> tuple[bool, str]:
    """The released code's white-box attack (zero input gradient through the defense)."""
    rx = re.compile(r"t4_(\w+?)_(fgsm|randfgsm)_([a-f])_defgan_rec_official_zero_gradient")
    found = [(rx.fullmatch(n), v) for n, v in sorted(r.metrics.items()) if rx.fullmatch(n)]
    if not found:
        raise Missing("no white-box attack was run as the released code ran it")
    ok, parts = True, []
    for m, value in found:
        base = f"t4_{m.group(1)}_{m.group(2)}_{m.group(3)}"
        nd = r[f"{base}_no_defense"]
        good = value >= nd + WHITEBOX_MARGIN
        ok = ok and good
        parts.append(f"{m.group(1)} {m.group(2)} {m.group(3).upper()}: {value:.3f} vs no defense "
                     f"{nd:.3f}" + ("" if good else " (fails)"))  # fmt: skip
    return ok, "; ".join(parts)


def _blackbox_vs(column: str, margin: float) -> Callable[[Results], tuple[bool, str]]:
    def check(r: Results) -> tuple[bool, str]:
        found = _ids(r, r"(t1|t2)_(\w+?)_([a-f][a-f])_defgan_(rec|orig)")
        if not found:
            raise Missing("no black-box Defense-GAN row was recorded")
        ok, parts = True, []
        for m in found:
            base = m.group(0).rsplit("_defgan_", 1)[0]
            other = r.get(f"{base}_{column}")
            if other is None:
                continue
            dg = r[m.group(0)]
            good = dg >= other + margin if margin else dg > other
            ok = ok and good
            parts.append(f"{m.group(2)} {m.group(3).upper()} {m.group(4)}: {dg:.3f} vs {other:.3f}"
                         + ("" if good else " (fails)"))  # fmt: skip
        if not parts:
            raise Missing(f"no black-box {column} row was recorded")
        return ok, "; ".join(parts)

    return check


def _trend(kind: str) -> Callable[[Results], tuple[bool, str]]:
    """Accuracy (Rec and Orig, clean and FGSM) at the largest L (or R) vs the smallest."""

    def check(r: Results) -> tuple[bool, str]:
        prefix = "L" if kind == "L" else "R"
        rx = re.compile(r"sweep_(\w+?)_L(\d+)_R(\d+)_(rec_clean|rec_fgsm)")
        series: dict[tuple[str, str, int], list[tuple[int, float]]] = {}
        for name, value in r.metrics.items():
            m = rx.fullmatch(name)
            if not m:
                continue
            ds, steps, restarts, key = m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)
            fixed, varied = (restarts, steps) if kind == "L" else (steps, restarts)
            series.setdefault((ds, key, fixed), []).append((varied, value))
        # For L: the curve at the largest R; for R: the curve at the largest L.
        best: dict[tuple[str, str], tuple[int, list[tuple[int, float]]]] = {}
        for (ds, key, fixed), pts in series.items():
            if len(pts) < 2:
                continue
            if (ds, key) not in best or fixed > best[(ds, key)][0]:
                best[(ds, key)] = (fixed, sorted(pts))
        if not best:
            raise Missing(f"no {prefix} sweep was recorded")
        ok, parts = True, []
        for (ds, key), (fixed, pts) in sorted(best.items()):
            lo, hi = pts[0], pts[-1]
            good = hi[1] >= lo[1] - TREND_SLACK
            if key == "rec_clean":  # the paper's clean curves rise clearly
                good = good and hi[1] > lo[1]
            ok = ok and good
            other = "R" if kind == "L" else "L"
            parts.append(f"{ds} {key} ({other}={fixed}): {prefix}={lo[0]} {lo[1]:.3f} -> "
                         f"{prefix}={hi[0]} {hi[1]:.3f}" + ("" if good else " (fails)"))  # fmt: skip
        return ok, "; ".join(parts)

    return check


def _detector(r: Results) -> tuple[bool, str]:
    """AUCs at eps 0.3 with the most restarts: the main-setting detectors of every attacked set
    and the L sweep at R = 10 (Figures 4-5's first panels). The eps < 0.3 and R < 10 legends are
    trends (the paper's own go down to 0.775 and 0.794) and are not part of the claim."""
    found = [
        (n, v)
        for n, v in sorted(r.metrics.items())
        if re.fullmatch(
            r"(t1|t2)_\w+_defgan_(rec|orig)_detector_auc|t4_\w+_fgsm_[a-f]_detector_auc", n
        )
    ]
    found += [(m.group(0), r[m.group(0)])
              for m in _ids(r, r"fig[45]_\w+_(R10_eps030_L\d+|L100_eps030_R10)_auc")]  # fmt: skip
    if not found:
        raise Missing("no detection AUC at eps 0.3 was recorded")
    bad = [f"{n} {v:.3f}" for n, v in found if v <= AUC_THRESHOLD]
    values = [v for _, v in found]
    detail = f"{len(found)} AUCs (eps 0.3) from {min(values):.3f} to {max(values):.3f}"
    return not bad, detail + (f"; at or below {AUC_THRESHOLD}: {', '.join(bad)}" if bad else "")


def _adaptive(r: Results) -> tuple[bool, str]:
    rx = re.compile(r"adaptive_(\w+?)_([a-f])_(rec|orig)_bpda_pgd_(eps\d{3})_accuracy")
    found = [(rx.fullmatch(n), v) for n, v in sorted(r.metrics.items()) if rx.fullmatch(n)]
    if not found:
        raise Missing("no BPDA-PGD row was recorded")
    ok, parts = True, []
    for m, value in found:
        clean = r.metric(f"adaptive_{m.group(1)}_{m.group(2)}_{m.group(3)}_clean_accuracy")
        good = value >= 0.5 * clean and clean >= 0.2  # a defense at chance keeps nothing
        ok = ok and good
        parts.append(f"{m.group(1)} {m.group(2).upper()} {m.group(3)} {m.group(4)}: "
                     f"{value:.3f} (clean {clean:.3f})")  # fmt: skip
    return ok, "; ".join(parts)


CLAIMS = [
    Claim("whitebox_fgsm", "Under white-box FGSM (eps 0.3) Defense-GAN-Rec is well above no defense "
          "(>= +20 points) and above FGSM adversarial training, for every classifier run "
          "(paper Table 4; attacker as in the paper's protocol)", _whitebox("fgsm")),
    Claim("whitebox_randfgsm", "Under white-box RAND+FGSM (eps 0.3, alpha 0.05) Defense-GAN-Rec is "
          "well above no defense (>= +20 points) and above FGSM adversarial training, for every "
          "classifier run (paper Table 4)", _whitebox("randfgsm")),
    Claim("whitebox_cw", "Under white-box CW-L2 Defense-GAN-Rec is well above no defense "
          "(>= +20 points) and above FGSM adversarial training, for every classifier run "
          "(paper Table 4)", _whitebox("cw")),
    Claim("whitebox_as_released", "Under white-box FGSM and RAND+FGSM run as the released code ran "
          "them (on the whole defended model, whose input gradient is exactly zero), "
          "Defense-GAN-Rec is well above no defense (>= +20 points): the paper's Table 4 setting",
          _as_released),
    Claim("blackbox_vs_no_defense", "Under the black-box attack (substitute + FGSM eps 0.3) "
          "Defense-GAN-Rec and -Orig are above no defense (>= +5 points) for every "
          "classifier/substitute pair run (paper Tables 1-2)",
          _blackbox_vs("no_defense", BLACKBOX_MARGIN)),
    Claim("blackbox_vs_adv_training", "Under the black-box attack Defense-GAN-Rec and -Orig are "
          "above FGSM adversarial training (eps_tr 0.3) for every pair run (paper's claim; its own "
          "Table 2 contradicts it for most Fashion-MNIST pairs)",
          _blackbox_vs("advtr_eps030", 0.0)),
    Claim("accuracy_grows_with_L", "Defense-GAN-Rec's accuracy grows with the number of "
          "descent steps L (clean: strictly; under FGSM: not lower, within 0.02) (paper Figure 3, "
          "Tables 8-9)", _trend("L")),
    Claim("accuracy_grows_with_R", "Defense-GAN-Rec's accuracy grows with the number of random "
          "restarts R (clean: strictly; under FGSM: not lower, within 0.02) (paper Figure 3, "
          "Tables 10-11)", _trend("R")),
    Claim("mse_detects_attacks", "The reconstruction MSE separates adversarial (FGSM eps 0.3) from "
          "clean inputs: ROC AUC > 0.8 at the main setting and along the L sweep at R = 10 (paper "
          "Section 3.3, Figures 4-5)", _detector),
    Claim("ours_adaptive_bpda_pgd", "[Our adaptive-attack check, not a claim of the paper] Under "
          "PGD with BPDA through the projection (eps 0.3), Defense-GAN keeps at least half of its "
          "clean accuracy. Expected to FAIL: that is the finding of Athalye et al. (2018)",
          _adaptive),
]  # fmt: skip
