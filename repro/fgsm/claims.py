"""Goodfellow et al. (2015)'s qualitative claims, checked on every dataset the run measured.

MNIST values are the `expected.csv` rows (`mnist_*`, measured on `mnist` or `mnist-test-split`);
Fashion-MNIST values are the free metrics `fashion_mnist_*` of the same protocol. A claim holds
when it holds on every dataset that was measured, and is not evaluated when none was. Each margin
comes with its 95 % bootstrap interval over the test images (`repro.stats`, from the per-image
vectors the notebook records with each value); the detail says when it straddles the threshold.

Revised 2026-12-02 (issue 19), threshold fixed before any run of the revised code:
- `adversarial_training_keeps_clean_error` (clean error rises by less than 2 points) is
  replaced by `adversarial_training_lowers_clean_error`, a different claim and so a new id: the
  old threshold could hardly fail on MNIST, where the error is about 1 %, while the paper claims
  an improvement (Section 6: 0.94 % -> 0.84 %). The claim now holds only if the adversarially
  trained network's clean error is strictly lower than the natural network's.
- The other three claims are unchanged (ids and thresholds); their details gained intervals.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from repro.claims import Claim, Results, per_dataset
from repro.stats import claim_interval, interval_note

DATASETS = ("mnist", "fashion_mnist")
TIE = 1e-6  # a value exactly at a threshold must not fail on floating-point rounding


def _name(dataset: str, name: str) -> str:
    """`mnist_<name>` is a row; `fashion_mnist_<name>` a metric."""
    return f"{dataset}_{name}"


def _value(r: Results, dataset: str, name: str) -> float:
    return r[_name("mnist", name)] if dataset == "mnist" else r.metric(_name(dataset, name))


def _ci(
    r: Results, dataset: str, names: Sequence[str], func: Callable, threshold: float = 0.0
) -> str:
    """The interval of a margin in percentage points; `func` gets the *error rates* (%) of
    `names` (the vectors record per-image correctness)."""
    interval = claim_interval(r, [_name(dataset, n) for n in names], lambda m: func(100 * (1 - m)))
    return interval_note(interval, threshold, digits=2)


def _fools(r: Results, dataset: str) -> tuple[bool, str]:
    maxout = _value(r, dataset, "maxout_fgsm_error")
    softmax = _value(r, dataset, "softmax_fgsm_error")
    ok = maxout > 50 and softmax > 50
    note = _ci(r, dataset, ["maxout_fgsm_error", "softmax_fgsm_error"],
               lambda e: e.min(axis=1) - 50)  # fmt: skip
    return ok, (f"error under FGSM: maxout {maxout:.1f}%, softmax {softmax:.1f}% (claim: > 50%; "
                f"{note})")  # fmt: skip


def _at_cuts_error(r: Results, dataset: str) -> tuple[bool, str]:
    before = _value(r, dataset, "maxout_fgsm_error")
    after = _value(r, dataset, "maxout_at_fgsm_error")
    factor = before / after if after > 0 else float("inf")
    note = _ci(r, dataset, ["maxout_fgsm_error", "maxout_at_fgsm_error"],
               lambda e: e[:, 0] - 2 * e[:, 1])  # fmt: skip
    text = (f"FGSM error {before:.1f}% -> {after:.1f}% (x{factor:.1f}; claim: >= 2x; "
            f"before - 2 x after: {note})")  # fmt: skip
    return factor >= 2 - TIE, text


def _at_lowers_clean(r: Results, dataset: str) -> tuple[bool, str]:
    before = _value(r, dataset, "maxout_clean_error")
    after = _value(r, dataset, "maxout_at_clean_error")
    note = _ci(r, dataset, ["maxout_clean_error", "maxout_at_clean_error"],
               lambda e: e[:, 0] - e[:, 1])  # fmt: skip
    return after < before, (f"clean error {before:.2f}% -> {after:.2f}% "
                            f"({after - before:+.2f} points; claim: lower; {note})")  # fmt: skip


def _noise_does_not_help(r: Results, dataset: str) -> tuple[bool, str]:
    at = _value(r, dataset, "maxout_at_fgsm_error")
    sign = _value(r, dataset, "sign_noise_fgsm_error")
    uniform = _value(r, dataset, "uniform_noise_fgsm_error")
    ok = min(sign, uniform) > at
    note = _ci(r, dataset, ["sign_noise_fgsm_error", "uniform_noise_fgsm_error",
                            "maxout_at_fgsm_error"],
               lambda e: e[:, :2].min(axis=1) - e[:, 2])  # fmt: skip
    text = f"FGSM error: +-eps noise {sign:.1f}%, U(-eps, eps) {uniform:.1f}%, FGSM-AT {at:.1f}%"
    return ok, text + f" (claim: both noise controls stay above adversarial training; {note})"


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
        "adversarial_training_lowers_clean_error",
        "FGSM adversarial training regularises: the maxout network's clean test error is lower "
        "with it than without (Section 6: 0.94% -> 0.84% on MNIST)",
        lambda r: per_dataset(r, DATASETS, _at_lowers_clean),
    ),
    Claim(
        "noise_training_is_no_substitute",
        "Training on random +-eps or U(-eps, eps) noise does not give the robustness of "
        "adversarial training (Section 6: 86.2% and 90.4% error under FGSM)",
        lambda r: per_dataset(r, DATASETS, _noise_does_not_help),
    ),
]
