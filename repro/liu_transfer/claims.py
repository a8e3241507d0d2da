"""Liu et al. (2017)'s qualitative claims, checked on the Fashion-MNIST analogue.

The paper's numbers are on ImageNet, which is not here; the claims are its qualitative
statements, checked on the same protocol with five Fashion-MNIST networks (free metrics of the
notebook, in percent: `opt_untargeted_<source>_to_<target>_accuracy`,
`opt_targeted_<source>_to_<target>_matching`, `ens_untargeted_wo_<held out>_to_<target>_accuracy`,
`ens_targeted_wo_<held out>_to_<target>_matching`, `noise_to_<target>_matching`). As in the
paper, the optimization attack has no distortion budget (the ensemble's examples come out larger).

The claims and their thresholds were written on 2026-12-02, before any run of this
reproduction's notebook at `small` and before any measurement of transfer on these networks,
from the paper's statements (quoted in each claim). The first `small` run capped every attack at
RMSD 23/255, which left even white-box targeted examples failing on Fashion-MNIST (1-9% target
matching on the attacked model itself): the protocol went back to the paper's (no cap) and two
claim texts lost their words "at the same distortion budget"; no threshold changed.
"""

from __future__ import annotations

from repro.claims import Claim, Results

MODELS = ("mlp", "deep_mlp", "wide_cnn", "deep_cnn", "resnet")
UNTARGETED_MAX_ACCURACY = 50.0  # Table 1: 5-39% accuracy off the diagonal (from 100%)
TARGETED_RATIO = 0.5  # Table 2: matching 0-4% while non-targeted examples fool 61-95%
ENSEMBLE_FACTOR = 2.0  # Table 3 vs 2: 11-46% held-out matching against 0-4% single-model
ENSEMBLE_POINTS = 10.0
ENSEMBLE_ACCURACY_RATIO = 0.5  # Table 4: 0-6% held-out accuracy against at least 12% single
NOISE_MAX_MATCHING = 5.0  # Section 3.2: Gaussian noise matches the target 0% of the time


def _off_diagonal(r: Results, pattern: str) -> dict[tuple[str, str], float]:
    return {(s, t): r.metric(pattern.format(s=s, t=t)) for s in MODELS for t in MODELS if s != t}


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def _untargeted_transfers(r: Results) -> tuple[bool, str]:
    acc = _mean(_off_diagonal(r, "opt_untargeted_{s}_to_{t}_accuracy").values())
    ok = acc <= UNTARGETED_MAX_ACCURACY
    return (
        ok,
        f"mean accuracy of the other models: {acc:.1f}% (claim: <= {UNTARGETED_MAX_ACCURACY:.0f}%)",
    )


def _targeted_rarely(r: Results) -> tuple[bool, str]:
    matching = _mean(_off_diagonal(r, "opt_targeted_{s}_to_{t}_matching").values())
    fooled = 100.0 - _mean(_off_diagonal(r, "opt_untargeted_{s}_to_{t}_accuracy").values())
    ok = matching <= TARGETED_RATIO * fooled
    return ok, (
        f"targeted matching on other models {matching:.1f}% vs non-targeted error "
        f"{fooled:.1f}% (claim: matching <= {TARGETED_RATIO} x error)"
    )


def _ensemble_targeted(r: Results) -> tuple[bool, str]:
    ens, single = [], []
    for held in MODELS:
        ens.append(r.metric(f"ens_targeted_wo_{held}_to_{held}_matching"))
        single.append(
            _mean(r.metric(f"opt_targeted_{s}_to_{held}_matching") for s in MODELS if s != held)
        )
    e, s = _mean(ens), _mean(single)
    ok = e >= ENSEMBLE_FACTOR * s and e >= s + ENSEMBLE_POINTS
    per = ", ".join(f"{m} {v:.0f}%" for m, v in zip(MODELS, ens, strict=True))
    return ok, (
        f"held-out matching: ensemble {e:.1f}% ({per}) vs single-model {s:.1f}% "
        f"(claim: >= {ENSEMBLE_FACTOR:.0f}x and +{ENSEMBLE_POINTS:.0f} points)"
    )


def _ensemble_untargeted(r: Results) -> tuple[bool, str]:
    ens = _mean(r.metric(f"ens_untargeted_wo_{h}_to_{h}_accuracy") for h in MODELS)
    single = _mean(_off_diagonal(r, "opt_untargeted_{s}_to_{t}_accuracy").values())
    ok = ens <= ENSEMBLE_ACCURACY_RATIO * single
    return ok, (
        f"held-out accuracy: ensemble {ens:.1f}% vs single-model {single:.1f}% "
        f"(claim: <= {ENSEMBLE_ACCURACY_RATIO} x)"
    )


def _noise(r: Results) -> tuple[bool, str]:
    rates = {m: r.metric(f"noise_to_{m}_matching") for m in MODELS}
    worst = max(rates, key=rates.get)
    ok = rates[worst] <= NOISE_MAX_MATCHING
    return ok, f"largest target matching of noise: {rates[worst]:.1f}% ({worst})"


CLAIMS = [
    Claim(
        "untargeted_examples_transfer",
        "Non-targeted adversarial examples made on one model transfer: the other models' mean "
        "accuracy on them is at most 50% (Table 1: 5-39% off the diagonal, images all models "
        "classify correctly)",
        _untargeted_transfers,
    ),
    Claim(
        "targeted_examples_rarely_transfer",
        "Targeted examples made on one model rarely carry their target label to another: the "
        "mean matching rate off the diagonal is at most half the non-targeted examples' error "
        "rate there (Table 2: 0-4% against 61-95%)",
        _targeted_rarely,
    ),
    Claim(
        "ensemble_targeted_examples_transfer",
        "Targeted examples made on an ensemble of four models match their target on the held-out "
        "fifth at least 2x as often, and 10 points more, than single-model ones do (Table 3: "
        "11-46% against 0-4% in Table 2)",
        _ensemble_targeted,
    ),
    Claim(
        "ensemble_untargeted_examples_transfer_better",
        "Non-targeted examples made on an ensemble leave the held-out model at most half the "
        "accuracy single-model examples leave the other models (Table 4: 0-6% against at least "
        "12%)",
        _ensemble_untargeted,
    ),
    Claim(
        "noise_does_not_reach_targets",
        "Gaussian noise of the same distortion almost never produces the target label: at most "
        "5% on every model (Section 3.2: 0%)",
        _noise,
    ),
]
