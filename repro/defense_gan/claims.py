"""Defense-GAN's qualitative claims, checked over whatever the run measured, plus our own checks.

Each check reads the rows the notebook recorded (Tables 1-4, 8-11, Figures 4-5) on every dataset
and classifier it ran, so a claim holds only if it holds everywhere it was measured, and is not
evaluated (`Missing`) when nothing it needs was measured. Every margin comes with its 95 %
bootstrap interval over the evaluation images (`repro.stats`, from the per-image vectors the
notebook records); the detail says when an interval straddles the claim's threshold, i.e. when the
verdict could flip with another draw of the evaluation images.

Revised 2026-12-02 (issue 19), thresholds fixed before any run of the revised code:
- `whitebox_as_released` is no longer a claim: its attack has an input gradient of exactly zero,
  so it measures clean accuracy and cannot fail. It is `DEMONSTRATIONS` (same id, same check),
  evaluated by the notebook and recorded as the metric `demonstration.whitebox_as_released.holds`,
  never counted among the paper's claims.
- The white-box claims keep their ids and thresholds; their protocol rows now attack the
  model's own predictions, as the official calls did (no labels), instead of the true labels.
- The range of the paper's own margins is now quoted correctly (below).
- New, ours: `ours_attack_sanity` and `ours_detector_survives_adaptive_attack`.
  `ours_adaptive_bpda_pgd` keeps its id and threshold; it reads the renamed metrics
  (`adaptive.<row>.<attack>`).

Thresholds, and why:
- White-box "well above no defense": at least +20 accuracy points (the brief's definition for the
  small scale; the paper's Table 4 margins are +48 to +95 points, over both datasets).
- Black-box "above no defense": at least +5 points. The paper's own Fashion-MNIST margins (Table 2)
  are +6.0 to +34.4 points, so +20 would fail the paper itself there.
- "Above FGSM adversarial training": strictly higher than the eps_tr = 0.3 column (the paper's
  white-box comparison). In the paper's black-box Table 2 adversarial training *beats*
  Defense-GAN for six of eight Fashion-MNIST pairs, so that half of the claim is expected to fail
  where Fashion-MNIST black-box rows are measured; we report it, we do not soften it.
- Detection: ROC AUC > 0.8 for FGSM at eps 0.3, at the main setting and along the L sweep at
  R = 10 (the paper's legends there are 0.935-1.0; its eps < 0.3 and R < 10 legends, down to
  0.775, are trends and not part of the claim).
- Trends: accuracy at the largest L (R) at least the accuracy at the smallest, less 0.02 (noise).
- Ours, not the paper's (each says so in its text):
  - `ours_adaptive_bpda_pgd`: under PGD with BPDA through the projection (Athalye et al. 2018)
    Defense-GAN keeps at least half of its clean accuracy. We expect it to FAIL.
  - `ours_attack_sanity`: our adaptive attacks work: the eps sweep's accuracy at its largest eps
    is at most 0.05, and the gradient-free Square attack is not stronger than BPDA+EOT on the same
    images by more than 0.05 (were it, the gradients would be masked, not the defense robust).
  - `ours_detector_survives_adaptive_attack`: against the attack that also keeps the
    reconstruction error low, the classifier and the detector together (5 % false positives on
    clean images) still answer correctly or flag at least half of the adversarial inputs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from repro.claims import Claim, Missing, Results
from repro.stats import claim_interval, interval_note

WHITEBOX_MARGIN = 0.20
BLACKBOX_MARGIN = 0.05
AUC_THRESHOLD = 0.8
TREND_SLACK = 0.02
ADAPTIVE_FRACTION = 0.5
SANITY_LARGEST_EPS = 0.05
SANITY_GRADIENT_FREE_SLACK = 0.05
DETECTOR_FLOOR = 0.5
#: Accuracies are fractions of whole images, stored from float32 means: a value exactly at a
#: threshold (0.320 vs 0.120 + 0.20) must not fail on floating-point rounding.
TIE = 1e-6


def _ids(r: Results, pattern: str) -> list[re.Match[str]]:
    """The recorded rows whose id matches `pattern` (a full-match regex), as match objects."""
    rx = re.compile(pattern)
    return [m for m in (rx.fullmatch(i) for i in sorted(r.rows)) if m]


def _metrics(r: Results, pattern: str) -> list[tuple[re.Match[str], float]]:
    """The recorded free metrics whose name matches `pattern`, with their values."""
    rx = re.compile(pattern)
    return [(m, v) for n, v in sorted(r.metrics.items()) if (m := rx.fullmatch(n))]


def _ci(r: Results, names: Sequence[str], func: Callable, threshold: float = 0.0) -> str:
    """The interval of a margin func(means of `names`' vectors), as the detail's note."""
    return interval_note(claim_interval(r, names, func), threshold)


def _whitebox(attack: str) -> Callable[[Results], tuple[bool, str]]:
    def check(r: Results) -> tuple[bool, str]:
        found = _ids(r, rf"t4_(\w+?)_{attack}_([a-f])_defgan_rec")
        if not found:
            raise Missing(f"no white-box {attack} Defense-GAN-Rec row was recorded")
        ok, parts = True, []
        for m in found:
            base = m.group(0).removesuffix("_defgan_rec")
            dg, nd = r[m.group(0)], r[f"{base}_no_defense"]
            good = dg >= nd + WHITEBOX_MARGIN - TIE
            text = f"{m.group(1)} {m.group(2).upper()}: {dg:.3f} vs no defense {nd:.3f}"
            text += " (" + _ci(r, [m.group(0), f"{base}_no_defense"],
                               lambda v: v[:, 0] - v[:, 1] - WHITEBOX_MARGIN) + ")"  # fmt: skip
            at = r.get(f"{base}_advtr_eps030")
            if at is not None:
                good = good and dg > at
                text += f", adv.tr. {at:.3f} ("
                text += _ci(r, [m.group(0), f"{base}_advtr_eps030"], lambda v: v[:, 0] - v[:, 1])
                text += ")"
            ok = ok and good
            parts.append(text + ("" if good else " (fails)"))
        return ok, "; ".join(parts)

    return check


def _as_released(r: Results) -> tuple[bool, str]:
    """The released code's white-box attack (zero input gradient through the defense)."""
    found = _metrics(r, r"t4_(\w+?)_(fgsm|randfgsm)_([a-f])_defgan_rec_official_zero_gradient")
    if not found:
        raise Missing("no white-box attack was run as the released code ran it")
    ok, parts = True, []
    for m, value in found:
        base = f"t4_{m.group(1)}_{m.group(2)}_{m.group(3)}"
        nd = r[f"{base}_no_defense"]
        good = value >= nd + WHITEBOX_MARGIN - TIE
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
            good = dg >= other + margin - TIE if margin else dg > other
            ok = ok and good
            note = _ci(r, [m.group(0), f"{base}_{column}"], lambda v: v[:, 0] - v[:, 1] - margin)
            parts.append(f"{m.group(2)} {m.group(3).upper()} {m.group(4)}: {dg:.3f} vs {other:.3f}"
                         f" ({note})" + ("" if good else " (fails)"))  # fmt: skip
        if not parts:
            raise Missing(f"no black-box {column} row was recorded")
        return ok, "; ".join(parts)

    return check


def _trend(kind: str) -> Callable[[Results], tuple[bool, str]]:
    """Accuracy (Rec, clean and FGSM) at the largest L (or R) vs the smallest."""

    def check(r: Results) -> tuple[bool, str]:
        prefix = "L" if kind == "L" else "R"
        rx = re.compile(r"sweep_(\w+?)_L(\d+)_R(\d+)_(rec_clean|rec_fgsm)")
        series: dict[tuple[str, str, int], list[tuple[int, float, str]]] = {}
        for name, value in r.metrics.items():
            m = rx.fullmatch(name)
            if not m:
                continue
            ds, steps, restarts, key = m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)
            fixed, varied = (restarts, steps) if kind == "L" else (steps, restarts)
            series.setdefault((ds, key, fixed), []).append((varied, value, name))
        # For L: the curve at the largest R; for R: the curve at the largest L.
        best: dict[tuple[str, str], tuple[int, list[tuple[int, float, str]]]] = {}
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
            clean = key == "rec_clean"  # the paper's clean curves rise clearly: strictly
            good = hi[1] > lo[1] if clean else hi[1] >= lo[1] - TREND_SLACK - TIE
            slack = 0.0 if clean else TREND_SLACK
            note = _ci(r, [hi[2], lo[2]], lambda v, s=slack: v[:, 0] - v[:, 1] + s)
            ok = ok and good
            other = "R" if kind == "L" else "L"
            parts.append(f"{ds} {key} ({other}={fixed}): {prefix}={lo[0]} {lo[1]:.3f} -> "
                         f"{prefix}={hi[0]} {hi[1]:.3f} ({note})"
                         + ("" if good else " (fails)"))  # fmt: skip
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
    lowest = min(found, key=lambda item: item[1])[0]
    low, high = r.metrics.get(f"{lowest}.ci95_low"), r.metrics.get(f"{lowest}.ci95_high")
    if low is not None and high is not None:
        detail += f"; the lowest's interval [{low:.3f}, {high:.3f}]"
    straddle = [n for n, _ in found
                if r.metrics.get(f"{n}.ci95_low", AUC_THRESHOLD + 1) <= AUC_THRESHOLD
                <= r.metrics.get(f"{n}.ci95_high", -1)]  # fmt: skip
    if straddle:
        detail += f"; interval straddles {AUC_THRESHOLD}: {', '.join(straddle)}"
    return not bad, detail + (f"; at or below {AUC_THRESHOLD}: {', '.join(bad)}" if bad else "")


def _adaptive(r: Results) -> tuple[bool, str]:
    found = _metrics(r, r"adaptive\.(t4_\w+?_fgsm_[a-f]_defgan_rec)\.bpda_pgd")
    if not found:
        raise Missing("no BPDA-PGD value was recorded")
    ok, parts = True, []
    for m, value in found:
        clean_name = f"adaptive.{m.group(1)}.no_attack"
        clean = r.metric(clean_name)
        good = (
            value >= ADAPTIVE_FRACTION * clean - TIE and clean >= 0.2
        )  # at chance it keeps nothing
        ok = ok and good
        note = _ci(r, [m.group(0), clean_name], lambda v: v[:, 0] - ADAPTIVE_FRACTION * v[:, 1])
        parts.append(f"{m.group(1)}: {value:.3f} (clean {clean:.3f}; {note})"
                     + ("" if good else " (fails)"))  # fmt: skip
    return ok, "; ".join(parts)


def _sanity(r: Results) -> tuple[bool, str]:
    sweeps = _metrics(r, r"adaptive\.(t4_\w+?_defgan_rec)\.bpda_pgd_eps(\d{3})")
    squares = _metrics(r, r"adaptive\.(t4_\w+?_defgan_rec)\.square")
    if not sweeps and not squares:
        raise Missing("neither the eps sweep nor the gradient-free attack was recorded")
    ok, parts = True, []
    largest: dict[str, tuple[int, float, str]] = {}
    for m, value in sweeps:
        eps = int(m.group(2))
        if m.group(1) not in largest or eps > largest[m.group(1)][0]:
            largest[m.group(1)] = (eps, value, m.group(0))
    for row_id, (eps, value, name) in sorted(largest.items()):
        good = value <= SANITY_LARGEST_EPS + TIE
        ok = ok and good
        note = _ci(r, [name], lambda v: SANITY_LARGEST_EPS - v[:, 0])
        parts.append(f"{row_id} eps {eps / 100:.2f}: {value:.3f} (<= {SANITY_LARGEST_EPS}; {note})"
                     + ("" if good else " (fails)"))  # fmt: skip
    for m, value in squares:
        eot_name = f"adaptive.{m.group(1)}.bpda_eot_pgd"
        packed = r.per_image(m.group(0))
        k = int(packed.split(":")[0]) if packed else 0
        interval = claim_interval(r, [m.group(0), eot_name],
                                  lambda v: v[:, 0] - v[:, 1] + SANITY_GRADIENT_FREE_SLACK,
                                  first=k)  # fmt: skip
        if interval is None:  # no vectors: the two values as recorded (not on the same images)
            eot = r.metric(eot_name)
            good = value >= eot - SANITY_GRADIENT_FREE_SLACK - TIE
            text = f"{m.group(1)}: Square {value:.3f} vs BPDA+EOT {eot:.3f} (no interval)"
        else:
            eot = value + SANITY_GRADIENT_FREE_SLACK - interval.estimate  # its first k images
            good = interval.estimate >= -TIE
            text = (f"{m.group(1)}: Square {value:.3f} vs BPDA+EOT {eot:.3f} on the same {k} "
                    f"images ({interval_note(interval)})")  # fmt: skip
        ok = ok and good
        parts.append(text + ("" if good else " (fails: the gradients look masked)"))
    return ok, "; ".join(parts)


def _detector_adaptive(r: Results) -> tuple[bool, str]:
    found = _metrics(r, r"adaptive\.(t4_\w+?_defgan_rec)\.bpda_pgd_low_mse\.correct_or_detected")
    if not found:
        raise Missing("the attack on the detector was not run")
    ok, parts = True, []
    for m, value in found:
        good = value >= DETECTOR_FLOOR - TIE
        ok = ok and good
        base = f"adaptive.{m.group(1)}.bpda_pgd_low_mse"
        acc, det = r.metrics.get(base), r.metrics.get(f"{base}.detected")
        note = _ci(r, [m.group(0)], lambda v: v[:, 0] - DETECTOR_FLOOR)
        text = f"{m.group(1)}: correct or flagged {value:.3f} ({note})"
        if acc is not None and det is not None:
            text += f"; correct {acc:.3f}, flagged {det:.3f}"
        parts.append(text + ("" if good else " (fails)"))
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
    Claim("ours_attack_sanity", "[Our check of our own attacks, not a claim of the paper] The "
          "adaptive attack works: the eps sweep leaves at most 0.05 accuracy at its largest eps "
          "(0.3), and the gradient-free Square attack is not stronger than BPDA+EOT by more than "
          "0.05 on the same images (else the gradients are masked)", _sanity),
    Claim("ours_detector_survives_adaptive_attack", "[Our adaptive-attack check, not a claim of "
          "the paper] Against PGD that also keeps the reconstruction error low (eps 0.3), the "
          "classifier and the MSE detector together (5 % false positives on clean images) answer "
          "correctly or flag at least half of the adversarial inputs", _detector_adaptive),
]  # fmt: skip

#: Not claims of the paper: demonstrations of what the released code measured, kept measured and
#: evaluated (the notebook records `demonstration.<id>.holds`) but never counted as claims.
DEMONSTRATIONS = [
    Claim("whitebox_as_released", "[A demonstration, not a claim: it cannot fail] Under white-box "
          "FGSM and RAND+FGSM run as the released code ran them (on the whole defended model, "
          "whose input gradient is exactly zero), Defense-GAN-Rec stays at its clean accuracy, "
          "well above no defense (>= +20 points): what the paper's Table 4 column measured",
          _as_released),
]  # fmt: skip
