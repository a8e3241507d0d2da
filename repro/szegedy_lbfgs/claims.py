"""Szegedy et al. (2014)'s qualitative claims, checked on every dataset the run measured.

MNIST values are the `expected.csv` rows (measured on `mnist` or `mnist-test-split`);
Fashion-MNIST values are the free metrics `fashion_mnist_<row id>` of the same protocol. A claim
holds when it holds on every dataset that was measured, and is not evaluated when none was.

The claims and every threshold below were written on 2026-12-02, before the first `small` run of
this reproduction (only smoke runs, which prove the pipeline, had been made); they are taken
from the paper's statements and tables, not from our numbers.
"""

from __future__ import annotations

from repro.claims import Claim, Results, per_dataset

DATASETS = ("mnist", "fashion_mnist")
NETWORKS = ("fc10_wd1e4", "fc10_wd1e2", "fc10_wd1", "fc100_100", "fc200_200")
SPLIT_NETWORKS = ("fc100_100_p1", "fc123_456_p1", "fc100_100_p2")
MIN_SUCCESS = 0.9  # "for every network we studied" L-BFGS finds examples: at least 90% of images
MAX_DISTORTION = 0.15  # Table 1's largest average minimal distortion is 0.14 (FC10(1))
PURITY_MARGIN = 0.10  # Section 3: random directions are no less coherent than units (10 points)


def _value(r: Results, dataset: str, row_id: str) -> float:
    """`row_id` is a row on MNIST; `fashion_mnist_<row_id>` a metric on Fashion-MNIST."""
    return r[row_id] if dataset == "mnist" else r.metric(f"fashion_mnist_{row_id}")


def _success(r: Results, dataset: str) -> tuple[bool, str]:
    rates = {n: r.metric(f"{dataset}_{n}_lbfgs_success") for n in NETWORKS}
    worst = min(rates, key=rates.get)
    ok = rates[worst] >= MIN_SUCCESS
    return ok, f"lowest target-reached rate {rates[worst]:.2f} ({worst}; claim: >= {MIN_SUCCESS})"


def _small(r: Results, dataset: str) -> tuple[bool, str]:
    d = {n: _value(r, dataset, f"t1_{n}_distortion") for n in NETWORKS}
    worst = max(d, key=d.get)
    text = ", ".join(f"{n} {v:.3f}" for n, v in d.items())
    return d[worst] <= MAX_DISTORTION, f"distortion {text} (claim: all <= {MAX_DISTORTION})"


def _decay(r: Results, dataset: str) -> tuple[bool, str]:
    d = [_value(r, dataset, f"t1_{n}_distortion") for n in NETWORKS[:3]]
    ok = d[0] < d[1] < d[2]
    return ok, f"FC10 distortion {d[0]:.3f} < {d[1]:.3f} < {d[2]:.3f} for lambda 1e-4 < 1e-2 < 1"


def _transfer(r: Results, dataset: str) -> tuple[bool, str]:
    misses, parts = [], []
    for target in NETWORKS:
        others = [s for s in NETWORKS if s != target]
        mean = sum(_value(r, dataset, f"t2_{s}_to_{target}_error") for s in others) / len(others)
        noise = _value(r, dataset, f"t2_noise01_to_{target}_error")
        parts.append(f"{target} {mean:.1f}% vs {noise:.1f}%")
        if not mean > noise:
            misses.append(target)
    text = "mean error from other networks' examples vs noise 0.1: " + ", ".join(parts)
    return not misses, text + (f" (not above noise: {', '.join(misses)})" if misses else "")


def _cross_training_set(r: Results, dataset: str) -> tuple[bool, str]:
    misses, parts = [], []
    for source in SPLIT_NETWORKS:
        for target in SPLIT_NETWORKS:
            if source == target:
                continue
            amp = _value(r, dataset, f"t4_{source}_amp01_to_{target}_error")
            noise = _value(r, dataset, f"t4_noise01_to_{target}_error")
            parts.append(f"{source}->{target} {amp:.0f}%")
            if not amp > noise:
                misses.append(f"{source}->{target}")
    noise_text = ", ".join(
        f"{t} {_value(r, dataset, f't4_noise01_to_{t}_error'):.1f}%" for t in SPLIT_NETWORKS
    )
    text = f"amplified (0.1) {', '.join(parts)}; noise 0.1: {noise_text}"
    return not misses, text + (f" (not above noise: {', '.join(misses)})" if misses else "")


def _directions(r: Results, dataset: str) -> tuple[bool, str]:
    units = r.metric(f"{dataset}_unit_purity")
    random = r.metric(f"{dataset}_random_direction_purity")
    ok = random >= units - PURITY_MARGIN
    return ok, (
        f"top-image label purity: random directions {random:.2f}, units {units:.2f} "
        f"(claim: random >= units - {PURITY_MARGIN})"
    )


CLAIMS = [
    Claim(
        "lbfgs_finds_adversarial_examples",
        "Box-constrained L-BFGS finds an adversarial example (the random wrong label reached) "
        "for at least 90% of the attacked test images on every network (Section 4.2: 'for all "
        "the networks we studied ... we always manage to generate very close, visually hard to "
        "distinguish, adversarial examples'; Table 2's diagonal is 100%)",
        lambda r: per_dataset(r, DATASETS, _success),
    ),
    Claim(
        "minimal_distortion_is_small",
        "The average minimal distortion sqrt(sum (x'-x)^2 / n) stays at or below 0.15 on every "
        "network (Table 1: 0.058 to 0.14 on MNIST)",
        lambda r: per_dataset(r, DATASETS, _small),
    ),
    Claim(
        "weight_decay_raises_distortion",
        "Stronger weight decay makes the softmax classifier need larger distortions: "
        "FC10(1e-4) < FC10(1e-2) < FC10(1) (Table 1: 0.062 < 0.1 < 0.14)",
        lambda r: per_dataset(r, DATASETS, _decay),
    ),
    Claim(
        "adversarial_examples_transfer_across_models",
        "Examples made for one network are misclassified by the others more often than Gaussian "
        "noise of stddev 0.1 (a larger distortion) is: on every network, the mean error on the "
        "other networks' examples exceeds its error under that noise (Table 2)",
        lambda r: per_dataset(r, DATASETS, _transfer),
    ),
    Claim(
        "adversarial_examples_transfer_across_training_sets",
        "Examples made for a network trained on one half of the training set and amplified to "
        "stddev 0.1 cause more error on the networks of Tables 3-4 (other architecture, or the "
        "other half P2) than Gaussian noise of stddev 0.1 does, for every off-diagonal pair "
        "(Table 4: 22-98% against 2.6-2.8%)",
        lambda r: per_dataset(r, DATASETS, _cross_training_set),
    ),
    Claim(
        "random_directions_as_interpretable_as_units",
        "The images that most activate a random direction of a hidden layer share a label about "
        "as often as those that most activate a single unit: mean top-image label purity of "
        "random directions at least that of units minus 0.10 (Section 3)",
        lambda r: per_dataset(r, DATASETS, _directions),
    ),
]
