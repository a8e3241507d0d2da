"""Zheng, Zhang & Mao (2021)'s claims, checked on the Fashion-MNIST low-data analogue.

Every number of the paper is on SVHN, CIFAR-10 or CIFAR-100 (not here); the claims are checked
on the same comparison run on the first `n_train` Fashion-MNIST training images: ERM, dropout,
label smoothing, mixup and AMP, each trained from the same initialisation and batch order for
every seed, scored on the whole test split. The checks read the analogue's rows of
`expected.csv` (`fm_<method>_test_error` in percent, `fm_<method>_test_nll` in nats, the means
over seeds) and free metrics of the notebook: the difference AMP - ERM in error points with two
95 % intervals, one over seeds (`fm_amp_minus_erm_error_seed.ci95_low/high`: a paired t interval
on the per-seed differences, the training randomness) and one over test images
(`fm_amp_minus_erm_error.ci95_low/high`: the paired bootstrap of `repro.stats` on the per-image
errors averaged over seeds, the test-set sampling), the same for AMP - the best other
regulariser, and the seconds per epoch of each method.

The claims and their thresholds were written on 2026-12-02, before the first `small` run (and
before any run of AMP or of a regulariser on Fashion-MNIST); the paper's numbers quoted with each
are the authors' poster tables (defense-papers.md, verification section 8):

- AMP's mean test error is below ERM's (the paper: every one of its 12 ERM-vs-AMP comparisons,
  e.g. PreActResNet18 CIFAR-100 24.31 -> 21.51, WRN-28-10 19.17 -> 17.33).
- ... beyond the noise: both intervals of AMP - ERM lie below 0 (the paper's gaps are 3-10 of its
  standard deviations over seeds). The effect is small at this scale, so this is its own claim.
- AMP's mean error is at most the best of dropout, label smoothing and mixup (the paper's
  "Results on Image Classification Benchmarks": AMP best in 5 of 6 columns; MixUp ahead only on
  VGG16 CIFAR-10, 5.48 vs 5.65).
- AMP has the lowest mean test NLL of the five methods (the same tables: AMP lowest in all 6).
- AMP with one inner step costs 1.5x to 2.5x ERM's time per epoch (README: "usually takes 1.8
  times longer than ERM"; two gradient evaluations per step instead of one).
"""

from __future__ import annotations

from repro.claims import Claim, Missing, Results

OTHERS = ("dropout", "label_smoothing", "mixup")
ALL = ("erm", *OTHERS, "amp")
COST_LOW, COST_HIGH = 1.5, 2.5  # AMP's seconds per epoch over ERM's


def _v(r: Results, name: str) -> float:
    """A recorded row of the analogue, or a free metric of that name."""
    return r[name] if name in r else r.metric(name)


def _interval(r: Results, name: str) -> tuple[float, float]:
    return r.metric(f"{name}.ci95_low"), r.metric(f"{name}.ci95_high")


def _describe(r: Results, name: str, label: str) -> tuple[bool, str]:
    """Whether the interval `name` lies below 0, and how it reads."""
    try:
        low, high = _interval(r, name)
    except Missing:
        return False, f"{label} interval not recorded"
    below = high < 0.0
    where = "excludes 0" if below or low > 0.0 else "straddles 0"
    return below, f"{label} 95% [{low:+.2f}, {high:+.2f}] ({where})"


def _gap_detail(r: Results) -> tuple[float, bool, str]:
    amp, erm = _v(r, "fm_amp_test_error"), _v(r, "fm_erm_test_error")
    seeds = r.metric("seeds")
    seed_below, seed_text = _describe(r, "fm_amp_minus_erm_error_seed", f"over {seeds:.0f} seeds")
    image_below, image_text = _describe(r, "fm_amp_minus_erm_error", "over test images")
    text = (f"AMP {amp:.2f}% vs ERM {erm:.2f}% test error (mean of {seeds:.0f} seeds): "
            f"{amp - erm:+.2f} points; {seed_text}; {image_text}")  # fmt: skip
    return amp - erm, seed_below and image_below, text


def _beats_erm(r: Results) -> tuple[bool, str]:
    gap, _, text = _gap_detail(r)
    return gap < 0.0, text + " (claim: AMP below ERM)"


def _beyond_noise(r: Results) -> tuple[bool, str]:
    _, below, text = _gap_detail(r)
    return below, text + " (claim: both intervals below 0)"


def _best_regulariser(r: Results) -> tuple[bool, str]:
    amp = _v(r, "fm_amp_test_error")
    others = {m: _v(r, f"fm_{m}_test_error") for m in OTHERS}
    best = min(others, key=others.__getitem__)
    listed = ", ".join(f"{m} {e:.2f}%" for m, e in others.items())
    _, seed_text = _describe(r, "fm_amp_minus_best_other_error_seed", "over seeds")
    _, image_text = _describe(r, "fm_amp_minus_best_other_error", "over test images")
    return amp <= others[best], (
        f"AMP {amp:.2f}% vs {listed}: AMP - {best} {amp - others[best]:+.2f} points; {seed_text}; "
        f"{image_text} (claim: AMP <= the best of the three)"
    )


def _lowest_nll(r: Results) -> tuple[bool, str]:
    nll = {m: _v(r, f"fm_{m}_test_nll") for m in ALL}
    best = min(nll, key=nll.__getitem__)
    listed = ", ".join(f"{m} {v:.3f}" for m, v in nll.items())
    return best == "amp", f"mean test NLL (nats): {listed}; lowest: {best} (claim: AMP lowest)"


def _cost(r: Results) -> tuple[bool, str]:
    amp, erm = r.metric("cost.amp.epoch_seconds"), r.metric("cost.erm.epoch_seconds")
    ratio = amp / erm
    inner = r.metric("inner_iter")
    return COST_LOW <= ratio <= COST_HIGH, (
        f"seconds per epoch: AMP {amp:.2f} (inner_iter {inner:.0f}) vs ERM {erm:.2f}: "
        f"{ratio:.2f}x (claim: {COST_LOW}x to {COST_HIGH}x; the README: about 1.8x)"
    )


CLAIMS = [
    Claim(
        "amp_beats_erm",
        "AMP lowers the mean test error below ERM's (poster/paper result tables: AMP below ERM in "
        "every one of its 12 comparisons, e.g. PreActResNet18 on CIFAR-100 24.31 -> 21.51 %)",
        _beats_erm,
    ),
    Claim(
        "amp_beats_erm_beyond_noise",
        "AMP's gain over ERM is beyond the noise: the 95% interval of AMP - ERM over seeds (paired "
        "t) and over test images (paired bootstrap) both lie below 0 (the paper's gaps are several "
        "of its standard deviations over seeds)",
        _beyond_noise,
    ),
    Claim(
        "amp_at_least_best_regulariser",
        "AMP's mean test error is at most the best of dropout, label smoothing and mixup (result "
        "tables: AMP best in 5 of 6 columns, MixUp ahead only on VGG16 CIFAR-10)",
        _best_regulariser,
    ),
    Claim(
        "amp_lowest_nll",
        "AMP has the lowest mean test negative log-likelihood of ERM, dropout, label smoothing, "
        "mixup and AMP (result tables: AMP's test NLL is the lowest in all 6 columns)",
        _lowest_nll,
    ),
    Claim(
        "amp_costs_about_twice_erm",
        "AMP with one inner step costs 1.5x to 2.5x ERM's time per epoch (README: about 1.8x; two "
        "gradient evaluations per step)",
        _cost,
    ),
]
