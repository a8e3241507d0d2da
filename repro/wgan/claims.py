"""Arjovsky, Chintala & Bottou (2017)'s qualitative claims, checked on the Fashion-MNIST analogue.

The paper prints no numbers: its evidence is training curves (Figures 3–4) and sample sheets
(Figures 5–7) on LSUN bedrooms, which are not here. The claims are its statements, checked on
the same protocol run on Fashion-MNIST. They read the rows of `expected.csv` (`fm_<generator>_
<algorithm>_fid`, `..._class_entropy`, `..._loss_fid_spearman`) and the notebook's free metrics:
`<arm>_fid_first` / `<arm>_fid_last` (FID at the first and last checkpoint), `<arm>_loss_first` /
`<arm>_loss_last` (the median-filtered −Loss_D, or the JS estimate for the GAN, at those
checkpoints), `<arm>_loss_fid_spearman.ci95_low` / `.ci95_high` (bootstrap over checkpoints) and
`<a>_minus_<b>_fid.ci95_low` / `.ci95_high` (the paired t-interval of a difference of final FIDs
over the evaluation splits). FID is "FID (F-MNIST classifier features)": lower is better.

Generators (Section 4.3): `dcgan` (batch norm), `dcgan_nobn` (no batch norm, constant filters),
`mlp` (4-layer ReLU MLP); algorithms: `wgan` (Algorithm 1) and `gan` (the standard GAN with the
−log D trick, DCGAN's recipe). An arm the scale does not run (the MLP generator at `small`) makes
the claims about it "not evaluated".

The claims and their thresholds were written on 2026-12-02, before the first `small` run of this
notebook, from the paper's statements (quoted in each claim). Two feasibility runs of one arm
(WGAN, DCGAN generator, 1,000 generator iterations; not runs of this notebook, their numbers were
seen) came first and set the scale's budget and its learning rate (README.md), not the thresholds.
"""

from __future__ import annotations

import math

from repro.claims import Claim, Missing, Results

STRONG = 0.7  # "a clear correlation": Spearman's rho at least 0.7 (and its interval above 0)
WEAK = 0.3  # "correlates poorly": the JS estimate's rho at most 0.3
FAILED_FACTOR = 1.5  # "the standard GAN failed to learn": its FID at least 1.5x WGAN's
BOTH_FACTOR = 2.0  # "both algorithms produce high quality samples": FIDs within a factor 2
COVERAGE = 7.0  # "no mode collapse": samples spread over at least 7 effective classes of 10
MIN_ENTROPY = math.log(COVERAGE)


def _row(r: Results, generator: str, algorithm: str, what: str) -> float:
    return r[f"fm_{generator}_{algorithm}_{what}"]


def _tracks(r: Results, generator: str) -> tuple[bool, str]:
    arm = f"{generator}_wgan"
    rho = _row(r, generator, "wgan", "loss_fid_spearman")
    low = r.metric(f"{arm}_loss_fid_spearman.ci95_low")
    high = r.metric(f"{arm}_loss_fid_spearman.ci95_high")
    w0, w1 = r.metric(f"{arm}_loss_first"), r.metric(f"{arm}_loss_last")
    f0, f1 = r.metric(f"{arm}_fid_first"), r.metric(f"{arm}_fid_last")
    ok = rho >= STRONG and low > 0 and w1 < w0 and f1 < f0
    return ok, (
        f"{generator}: -Loss_D {w0:.4f} -> {w1:.4f}, FID {f0:.1f} -> {f1:.1f}, Spearman "
        f"{rho:+.2f} [{low:+.2f}, {high:+.2f}]"
    )


def _each(r: Results, generators: tuple[str, ...], check) -> tuple[bool, str]:
    """`check` on every generator whose arms ran; Missing when none did."""
    parts, ok, ran = [], True, 0
    for generator in generators:
        try:
            holds, text = check(r, generator)
        except Missing as exc:
            parts.append(f"{generator}: not run ({exc})")
            continue
        ran += 1
        ok &= holds
        parts.append(text)
    if not ran:
        raise Missing("; ".join(parts))
    return ok, "; ".join(parts)


def _estimate_tracks_quality(r: Results) -> tuple[bool, str]:
    ok, text = _each(r, ("dcgan", "mlp"), _tracks)
    return ok, text + (
        f" (claim: the estimate and FID both fall, rho >= {STRONG} with its 95% interval above 0)"
    )


def _js(r: Results, generator: str) -> tuple[bool, str]:
    arm = f"{generator}_gan"
    rho_js = _row(r, generator, "gan", "loss_fid_spearman")
    rho_w = _row(r, generator, "wgan", "loss_fid_spearman")
    j0, j1 = r.metric(f"{arm}_loss_first"), r.metric(f"{arm}_loss_last")
    ok = rho_js <= WEAK and rho_js < rho_w
    return ok, (
        f"{generator}: JS estimate {j0:.3f} -> {j1:.3f}, Spearman with FID {rho_js:+.2f} "
        f"(WGAN's -Loss_D: {rho_w:+.2f})"
    )


def _js_does_not_track(r: Results) -> tuple[bool, str]:
    ok, text = _each(r, ("dcgan", "mlp"), _js)
    return ok, text + f" (claim: rho <= {WEAK} and below the WGAN's)"


def _fid_diff(r: Results, a: str, b: str) -> tuple[float, float]:
    return r.metric(f"{a}_minus_{b}_fid.ci95_low"), r.metric(f"{a}_minus_{b}_fid.ci95_high")


def _beats(r: Results, generator: str) -> tuple[bool, str]:
    wgan, gan = _row(r, generator, "wgan", "fid"), _row(r, generator, "gan", "fid")
    low, high = _fid_diff(r, f"{generator}_gan", f"{generator}_wgan")
    ok = gan >= FAILED_FACTOR * wgan and low > 0
    return ok, (
        f"{generator}: FID WGAN {wgan:.1f}, GAN {gan:.1f} (x{gan / wgan:.2f}; GAN - WGAN "
        f"interval [{low:+.1f}, {high:+.1f}])"
    )


def _without_batch_norm(r: Results) -> tuple[bool, str]:
    ok, text = _beats(r, "dcgan_nobn")
    return ok, text + f" (claim: GAN >= {FAILED_FACTOR}x WGAN, interval above 0)"


def _both_work(r: Results) -> tuple[bool, str]:
    wgan, gan = _row(r, "dcgan", "wgan", "fid"), _row(r, "dcgan", "gan", "fid")
    ratio = max(wgan, gan) / min(wgan, gan)
    return ratio <= BOTH_FACTOR, (
        f"dcgan: FID WGAN {wgan:.1f}, GAN {gan:.1f} (ratio {ratio:.2f}; claim: <= {BOTH_FACTOR})"
    )


def _coverage(r: Results, generator: str) -> tuple[bool, str]:
    h = _row(r, generator, "wgan", "class_entropy")
    return h >= MIN_ENTROPY, f"{generator}: {math.exp(h):.1f} classes"


def _no_mode_collapse(r: Results) -> tuple[bool, str]:
    ok, text = _each(r, ("dcgan", "dcgan_nobn", "mlp"), _coverage)
    return ok, text + f" (effective classes exp(H); claim: >= {COVERAGE:.0f} of 10 in every arm)"


def _mlp(r: Results) -> tuple[bool, str]:
    ok, text = _beats(r, "mlp")
    h_w, h_g = _row(r, "mlp", "wgan", "class_entropy"), _row(r, "mlp", "gan", "class_entropy")
    ok = ok and h_g < h_w
    return ok, (
        f"{text}; classes WGAN {math.exp(h_w):.1f}, GAN {math.exp(h_g):.1f} (claim: GAN >= "
        f"{FAILED_FACTOR}x WGAN's FID, interval above 0, and the GAN covers fewer classes)"
    )


CLAIMS = [
    Claim(
        "critic_estimate_tracks_sample_quality",
        "The critic's EM estimate (-Loss_D, median-filtered) falls as the samples improve: "
        "during WGAN training with the DCGAN (and the MLP) generator it decreases, FID "
        "decreases, and their Spearman correlation over checkpoints is at least 0.7 with its "
        "bootstrap 95% interval above 0 (Section 4.2, Figure 3: 'a clear correlation between "
        "lower error and better sample quality')",
        _estimate_tracks_quality,
    ),
    Claim(
        "js_estimate_does_not_track_sample_quality",
        "The standard GAN's JS estimate (1/2 L(D, g) + log 2) does not track sample quality: "
        "its Spearman correlation with FID over checkpoints is at most 0.3, and below the WGAN "
        "estimate's, with the same generator (Section 4.2, Figure 4: 'This quantity clearly "
        "correlates poorly the sample quality')",
        _js_does_not_track,
    ),
    Claim(
        "wgan_trains_without_batch_norm",
        "With a generator without batch norm and with constant filters, WGAN still learns where "
        "the standard GAN fails: the GAN's final FID is at least 1.5x the WGAN's, with the "
        "95% interval of the difference above 0 (Section 4.3, Figure 6: 'the standard GAN "
        "failed to learn while the WGAN still was able to produce samples')",
        _without_batch_norm,
    ),
    Claim(
        "both_work_with_the_dcgan_generator",
        "With the DCGAN generator (batch norm) both algorithms produce good samples: their final "
        "FIDs are within a factor 2 of each other (Figure 5: 'Both algorithms produce high "
        "quality samples'); the control that makes the no-batch-norm comparison meaningful",
        _both_work,
    ),
    Claim(
        "no_mode_collapse_in_wgan",
        "WGAN's samples show no mode collapse: in every WGAN arm they spread over at least 7 "
        "effective classes of 10 (exp of the entropy of the classifier's predicted classes) "
        "(Section 4.3: 'In no experiment did we see evidence of mode collapse for the WGAN "
        "algorithm')",
        _no_mode_collapse,
    ),
    Claim(
        "wgan_mlp_generator_beats_gan",
        "With the 4-layer ReLU-MLP generator WGAN's samples are better than the standard "
        "GAN's, which collapses: GAN's FID at least 1.5x WGAN's (interval above 0) and fewer "
        "classes covered (Figure 7: 'of higher quality than the MLP of the standard GAN. Note "
        "the significant degree of mode collapse in the GAN MLP')",
        _mlp,
    ),
]
