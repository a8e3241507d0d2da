"""Goodfellow et al. (2015)'s qualitative claims, checked on every dataset the run measured.

MNIST values are the `expected.csv` rows (`mnist_*`, measured on `mnist` or `mnist-test-split`);
Fashion-MNIST values are the free metrics `fashion_mnist_*` of the same protocol. A claim holds
when it holds on every dataset that was measured, and is not evaluated when none was.
"""

from __future__ import annotations

from repro.claims import Claim, Results, per_dataset

DATASETS = ("mnist", "fashion_mnist")


def _value(r: Results, dataset: str, name: str) -> float:
    """`mnist_<name>` is a row; `fashion_mnist_<name>` a metric."""
    return r[f"mnist_{name}"] if dataset == "mnist" else r.metric(f"fashion_mnist_{name}")


def _fools(r: Results, dataset: str) -> tuple[bool, str]:
    maxout = _value(r, dataset, "maxout_fgsm_error")
    softmax = _value(r, dataset, "softmax_fgsm_error")
    ok = maxout > 50 and softmax > 50
    return ok, f"error under FGSM: maxout {maxout:.1f}%, softmax {softmax:.1f}% (claim: > 50%)"


def _at_cuts_error(r: Results, dataset: str) -> tuple[bool, str]:
    before = _value(r, dataset, "maxout_fgsm_error")
    after = _value(r, dataset, "maxout_at_fgsm_error")
    factor = before / after if after > 0 else float("inf")
    return factor >= 2, f"FGSM error {before:.1f}% -> {after:.1f}% (x{factor:.1f}; claim: >= 2x)"


def _at_keeps_clean(r: Results, dataset: str) -> tuple[bool, str]:
    before = _value(r, dataset, "maxout_clean_error")
    after = _value(r, dataset, "maxout_at_clean_error")
    rise = after - before
    return rise < 2, f"clean error {before:.2f}% -> {after:.2f}% ({rise:+.2f} points; claim: < +2)"


def _noise_does_not_help(r: Results, dataset: str) -> tuple[bool, str]:
    at = _value(r, dataset, "maxout_at_fgsm_error")
    sign = _value(r, dataset, "sign_noise_fgsm_error")
    uniform = _value(r, dataset, "uniform_noise_fgsm_error")
    ok = min(sign, uniform) > at
    text = f"FGSM error: +-eps noise {sign:.1f}%, U(-eps, eps) {uniform:.1f}%, FGSM-AT {at:.1f}%"
    return ok, text + " (claim: both noise controls stay above adversarial training)"


CLAIMS = [
    Claim(
        "fgsm_fools_standard_networks",
        "FGSM at eps 0.25 fools standard networks most of the time: error above 50% for the "
        "maxout network and the softmax classifier (Section 4: 89.4% and 99.9% on MNIST)",
        lambda r: per_dataset(r, DATASETS, _fools),
    ),
    Claim(
        "adversarial_training_cuts_fgsm_error",
        "FGSM adversarial training (alpha 0.5, eps 0.25) cuts the maxout network's error under "
        "FGSM by at least 2x (Section 6: 89.4% -> 17.9% on MNIST)",
        lambda r: per_dataset(r, DATASETS, _at_cuts_error),
    ),
    Claim(
        "adversarial_training_keeps_clean_error",
        "FGSM adversarial training does not hurt clean accuracy: the clean error rises by less "
        "than 2 points (Section 6: 0.94% -> 0.84% on MNIST)",
        lambda r: per_dataset(r, DATASETS, _at_keeps_clean),
    ),
    Claim(
        "noise_training_is_no_substitute",
        "Training on random +-eps or U(-eps, eps) noise does not give the robustness of "
        "adversarial training (Section 6: 86.2% and 90.4% error under FGSM)",
        lambda r: per_dataset(r, DATASETS, _noise_does_not_help),
    ),
]
