"""Madry et al. (2018)'s qualitative claims, checked on every dataset the run measured.

MNIST values are the `expected.csv` rows (`t1_*`, `s4_*`) and `mnist_*` metrics (measured on
`mnist` or `mnist-test-split`); Fashion-MNIST values are the free metrics `fashion_mnist_*` of
the same protocol at eps 0.1. The grid's step and restart counts depend on the scale (the row
`t1_a_pgd100x20` holds the longest PGD with the most restarts the scale runs, see repro.toml).
A claim holds when it holds on every dataset measured; it is not evaluated when none was.

Each margin comes with its 95 % bootstrap interval over the evaluation images (`repro.stats`,
from the per-image vectors the notebook records with each value); the detail says when the
interval straddles the threshold.

Thresholds, fixed before any run:
- "keeps most of its accuracy": under every attack of the grid the PGD-trained network keeps at
  least half of its clean accuracy (the paper keeps 89.3 / 98.8 = 90% on MNIST; half leaves room
  for the CPU scales' short training, and a network with no robustness keeps ~0%).
- "collapses": the naturally trained network is below 10% under FGSM (paper: 6.4% under FGSM).
  Revised 2026-12-02 (issue 19), fixed before any run of the revised code: the check read PGD,
  while the paper's number is FGSM's; it now tests what the paper reports. Same claim, same id;
  PGD's value stays in the detail.
- "plateau": going from PGD 40 steps x 1 restart to 100 steps x the most restarts costs at most
  5 points (paper: 93.2% -> 89.3%, 3.9 points).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from repro.claims import Claim, Results, per_dataset
from repro.stats import claim_interval, interval_note

DATASETS = ("mnist", "fashion_mnist")
TIE = 1e-6  # a value exactly at a threshold must not fail on floating-point rounding
WHITE_BOX = ("fgsm", "pgd40x1", "pgd100x1", "pgd40x20", "pgd100x20", "cw40", "cwplus40")
TRANSFER = ("fgsm", "pgd40x1", "pgd100x20", "cw40", "cwplus40")
ROWS = {"natural_clean": "s4_natural_clean", "natural_fgsm": "s4_natural_fgsm"}


def _value(r: Results, dataset: str, key: str) -> float:
    """The value of `key` (e.g. `a_pgd40x1`) on `dataset`: a row for MNIST where expected.csv
    has one, else the metric `<dataset>_<key>`."""
    if dataset == "fashion_mnist":
        return r.metric(f"fashion_mnist_{key}")
    if key in ROWS:
        return r[ROWS[key]]
    if key.startswith(("a_", "aprime_")):
        return r[f"t1_{key}"]
    return r.metric(f"mnist_{key}")


def _name(dataset: str, key: str) -> str:
    """The row or metric name `_value` reads for `key` on `dataset`."""
    if dataset == "fashion_mnist":
        return f"fashion_mnist_{key}"
    if key in ROWS:
        return ROWS[key]
    if key.startswith(("a_", "aprime_")):
        return f"t1_{key}"
    return f"mnist_{key}"


def _ci(
    r: Results, dataset: str, keys: Sequence[str], func: Callable, threshold: float = 0.0
) -> str:
    """The interval of a margin in percentage points; `func` gets the accuracies (%) of `keys`."""
    interval = claim_interval(r, [_name(dataset, k) for k in keys], lambda m: func(100 * m))
    return interval_note(interval, threshold, digits=2)


def _keeps_accuracy(r: Results, dataset: str) -> tuple[bool, str]:
    clean = _value(r, dataset, "a_natural")
    under = {f"A {k}": _value(r, dataset, f"a_{k}") for k in WHITE_BOX}
    under |= {f"A' {k}": _value(r, dataset, f"aprime_{k}") for k in TRANSFER}
    worst = min(under, key=under.get)
    ok = under[worst] >= 0.5 * clean - TIE
    keys = ["a_natural", *[f"a_{k}" for k in WHITE_BOX], *[f"aprime_{k}" for k in TRANSFER]]
    note = _ci(r, dataset, keys, lambda a: a[:, 1:].min(axis=1) - 0.5 * a[:, 0])
    return (
        ok,
        f"clean {clean:.1f}%, worst {worst} {under[worst]:.1f}% (claim: >= {0.5 * clean:.1f}%; "
        f"{note})",
    )


def _natural_collapses(r: Results, dataset: str) -> tuple[bool, str]:
    clean = _value(r, dataset, "natural_clean")
    pgd = _value(r, dataset, "natural_pgd")
    fgsm = _value(r, dataset, "natural_fgsm")
    note = _ci(r, dataset, ["natural_fgsm"], lambda a: 10 - a[:, 0])
    return fgsm < 10, (f"clean {clean:.1f}%, FGSM {fgsm:.1f}%, PGD {pgd:.1f}% (claim: FGSM < 10%; "
                       f"{note})")  # fmt: skip


def _plateau(r: Results, dataset: str) -> tuple[bool, str]:
    short = _value(r, dataset, "a_pgd40x1")
    strongest = _value(r, dataset, "a_pgd100x20")
    drop = short - strongest
    note = _ci(r, dataset, ["a_pgd40x1", "a_pgd100x20"], lambda a: 5 - (a[:, 0] - a[:, 1]))
    return drop <= 5 + TIE, (f"{short:.1f}% -> {strongest:.1f}% ({drop:.1f} points; claim: <= 5; "
                       f"{note})")  # fmt: skip


def _transfer_weaker(r: Results, dataset: str) -> tuple[bool, str]:
    white = _value(r, dataset, "a_pgd40x1")
    black = _value(r, dataset, "aprime_pgd40x1")
    note = _ci(r, dataset, ["aprime_pgd40x1", "a_pgd40x1"], lambda a: a[:, 0] - a[:, 1])
    return black >= white, (f"PGD from A' {black:.1f}% vs white-box {white:.1f}% (claim: >=; "
                            f"{note})")  # fmt: skip


CLAIMS = [
    Claim(
        "pgd_training_resists_every_attack",
        "The PGD-trained network keeps most of its accuracy (at least half of its clean "
        "accuracy) under every attack of the Table 1 grid: FGSM, PGD with more steps and "
        "restarts, CW-loss PGD, and transfer from an independently trained copy",
        lambda r: per_dataset(r, DATASETS, _keeps_accuracy),
    ),
    Claim(
        "natural_training_collapses",
        "The naturally trained network collapses under attack: below 10% accuracy under FGSM "
        "(Section 4: 6.4% under FGSM on MNIST)",
        lambda r: per_dataset(r, DATASETS, _natural_collapses),
    ),
    Claim(
        "first_order_plateau",
        "More PGD steps and restarts lower the PGD-trained network's accuracy only slightly "
        "(at most 5 points from 40 steps x 1 restart to 100 steps x the most restarts; "
        "Table 1: 93.2% -> 89.3%)",
        lambda r: per_dataset(r, DATASETS, _plateau),
    ),
    Claim(
        "transfer_weaker_than_white_box",
        "Black-box PGD transferred from an independently trained copy A' is weaker than "
        "white-box PGD (Table 1: 96.0% vs 93.2%)",
        lambda r: per_dataset(r, DATASETS, _transfer_weaker),
    ),
]
