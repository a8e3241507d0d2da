"""Engstrom et al. (2019)'s qualitative claims, checked on every dataset the run measured.

The paper's accuracy table could not be read (UNVERIFIED in `../shared/papers/lecture-papers.md`,
section 9): the claims are the abstract's statements (read on ar5iv, arXiv 1712.02779v4) and the
issue's, with thresholds set from the shape of the code release's ImageNet benchmark
(MadryLab/spatial-pytorch README: standard 71.3% natural -> 20.9% grid, augmentation 68.9% ->
38.1%, worst-of-10 69.1% -> 48.1%; not the paper's numbers). Values are the notebook's free
metrics `<dataset>_<model>_<attack>_accuracy` (fractions in [0, 1]; the claims speak in points),
each recorded with its per-image vector, so that every margin comes with its 95 % paired bootstrap
interval over the evaluation images (`repro.stats`); a claim holds on the point estimate, and the
detail says when the interval straddles the threshold.

Models: `standard` (clean training), `augmented` (one random transformation of the box per image
and step), `worst10` (worst-of-10 robust optimisation), `canvas` (clean training on a black
canvas). Attacks: `natural`, `random`, `worst10`, `grid` (the exhaustive 5 x 5 x 31 grid of the
scale), `first_order` (PGD on the transformation's parameters), and for aggregation `grid_coarse`
/ `vote_grid` (plain and majority-vote classifier under the same coarser grid, on the same images).

Thresholds, fixed on 2026-12-02 before the first `small` run of this reproduction (a timing check
of the attacks on an untrained and a 2-epoch standard CNN came first; no robust model had been
trained):
- "vulnerable": the standard model loses at least 30 points from natural to grid accuracy (the
  code release: 50 points);
- "augmentation offers relatively small robustness": the augmented model still loses at least
  10 points under the grid (the code release: 31 points);
- "robust optimisation significantly improves robustness": the worst-of-10 model's grid accuracy
  is at least 20 points above the standard model's (code release: +27) and at least 3 points
  above the augmented model's (code release: +10);
- "first-order methods cannot reliably find worst-case perturbations": on every model the
  first-order attack leaves at least the grid's accuracy, and on the two models trained on
  transformations (where the grid leaves room) at least 5 points more;
- "the loss is not concave in the transformation": on the standard model at least half of the
  landscape images have two or more strict local maxima of the loss over (dx, theta) at dy = 0;
- "test-time aggregation significantly improves robustness": on the augmented and worst-of-10
  models the majority vote's accuracy under the coarser grid is at least 3 points above the plain
  model's under the same grid;
- the black canvas (nothing cut off) does not remove the vulnerability: the canvas model loses at
  least 30 points under the grid, as the standard one (our reading of why the paper has the
  setting; evaluated only at scales that train it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from repro.claims import Claim, Results, per_dataset
from repro.stats import claim_interval, interval_note

DATASETS = ("fashion_mnist", "mnist")
TIE = 1e-6  # a value exactly at a threshold must not fail on floating-point rounding
STANDARD_DROP = 30.0
AUGMENTED_DROP = 10.0
W10_OVER_STANDARD = 20.0
W10_OVER_AUGMENTED = 3.0
FIRST_ORDER_GAP = 5.0
MULTI_PEAK_FRACTION = 0.5
VOTE_GAIN = 3.0
CANVAS_DROP = 30.0


def _name(dataset: str, model: str, attack: str) -> str:
    return f"{dataset}_{model}_{attack}_accuracy"


def _acc(r: Results, dataset: str, model: str, attack: str) -> float:
    """An accuracy in points (the metric is a fraction)."""
    return 100.0 * r.metric(_name(dataset, model, attack))


def _ci(
    r: Results,
    dataset: str,
    pairs: Sequence[tuple[str, str]],
    func: Callable,
    threshold: float = 0.0,
) -> str:
    """The interval of a margin in points; `func` gets the accuracies (in points) of `pairs`."""
    names = [_name(dataset, m, a) for m, a in pairs]
    return interval_note(claim_interval(r, names, lambda m: func(100.0 * m)), threshold, digits=1)


def _drop(model: str, threshold: float) -> Callable[[Results, str], tuple[bool, str]]:
    def check(r: Results, dataset: str) -> tuple[bool, str]:
        nat, grid = _acc(r, dataset, model, "natural"), _acc(r, dataset, model, "grid")
        note = _ci(r, dataset, [(model, "natural"), (model, "grid")],
                   lambda a: a[:, 0] - a[:, 1] - threshold)  # fmt: skip
        return nat - grid >= threshold - TIE, (
            f"{model}: natural {nat:.1f}% -> grid {grid:.1f}% ({nat - grid:.1f} points; claim: "
            f">= {threshold:.0f}; {note})"
        )

    return check


def _w10_improves(r: Results, dataset: str) -> tuple[bool, str]:
    w10 = _acc(r, dataset, "worst10", "grid")
    std = _acc(r, dataset, "standard", "grid")
    aug = _acc(r, dataset, "augmented", "grid")
    n_std = _ci(r, dataset, [("worst10", "grid"), ("standard", "grid")],
                lambda a: a[:, 0] - a[:, 1] - W10_OVER_STANDARD)  # fmt: skip
    n_aug = _ci(r, dataset, [("worst10", "grid"), ("augmented", "grid")],
                lambda a: a[:, 0] - a[:, 1] - W10_OVER_AUGMENTED)  # fmt: skip
    ok = w10 - std >= W10_OVER_STANDARD - TIE and w10 - aug >= W10_OVER_AUGMENTED - TIE
    return ok, (
        f"grid accuracy worst-of-10 {w10:.1f}% vs standard {std:.1f}% (claim: +"
        f"{W10_OVER_STANDARD:.0f}; {n_std}) and augmented {aug:.1f}% (claim: +"
        f"{W10_OVER_AUGMENTED:.0f}; {n_aug})"
    )


def _first_order_weaker(r: Results, dataset: str) -> tuple[bool, str]:
    parts, ok = [], True
    for model in ("standard", "augmented", "worst10"):
        fo, grid = _acc(r, dataset, model, "first_order"), _acc(r, dataset, model, "grid")
        need = 0.0 if model == "standard" else FIRST_ORDER_GAP
        ok &= fo - grid >= need - TIE
        note = _ci(r, dataset, [(model, "first_order"), (model, "grid")],
                   lambda a, need=need: a[:, 0] - a[:, 1] - need)  # fmt: skip
        parts.append(
            f"{model} first-order {fo:.1f}% vs grid {grid:.1f}% (claim: +{need:.0f}; {note})"
        )
    return ok, "; ".join(parts)


def _not_concave(r: Results, dataset: str) -> tuple[bool, str]:
    frac = r.metric(f"{dataset}_standard_landscape_multi_peak_fraction")
    peaks = r.metric(f"{dataset}_standard_landscape_median_peaks")
    return frac >= MULTI_PEAK_FRACTION - TIE, (
        f"{100 * frac:.0f}% of the landscape images have >= 2 local maxima (median {peaks:.0f}; "
        f"claim: >= {100 * MULTI_PEAK_FRACTION:.0f}%)"
    )


def _aggregation_helps(r: Results, dataset: str) -> tuple[bool, str]:
    parts, ok = [], True
    for model in ("augmented", "worst10"):
        vote, plain = _acc(r, dataset, model, "vote_grid"), _acc(r, dataset, model, "grid_coarse")
        ok &= vote - plain >= VOTE_GAIN - TIE
        note = _ci(r, dataset, [(model, "vote_grid"), (model, "grid_coarse")],
                   lambda a: a[:, 0] - a[:, 1] - VOTE_GAIN)  # fmt: skip
        parts.append(f"{model} vote {vote:.1f}% vs plain {plain:.1f}% under the coarse grid "
                     f"(claim: +{VOTE_GAIN:.0f}; {note})")  # fmt: skip
    return ok, "; ".join(parts)


CLAIMS = [
    Claim(
        "standard_model_falls_under_grid",
        "Models are vulnerable to small rotations and translations: the standard model loses at "
        "least 30 points from natural to exhaustive-grid accuracy (abstract; +-3 px, +-30 deg)",
        lambda r: per_dataset(r, DATASETS, _drop("standard", STANDARD_DROP)),
    ),
    Claim(
        "augmentation_gives_little_robustness",
        "Data augmentation offers relatively small robustness: the model trained on random "
        "transformations of the box still loses at least 10 points under the grid (abstract)",
        lambda r: per_dataset(r, DATASETS, _drop("augmented", AUGMENTED_DROP)),
    ),
    Claim(
        "worst_of_10_training_recovers",
        "Robust optimisation (worst-of-10 training) significantly improves robustness: its grid "
        "accuracy is at least 20 points above the standard model's and at least 3 points above "
        "the augmented model's (abstract)",
        lambda r: per_dataset(r, DATASETS, _w10_improves),
    ),
    Claim(
        "first_order_attack_weaker_than_grid",
        "First-order methods cannot reliably find the worst-case transformation: PGD on (dx, dy, "
        "theta) leaves at least the grid's accuracy on every model, and at least 5 points more "
        "on the models trained on transformations (abstract)",
        lambda r: per_dataset(r, DATASETS, _first_order_weaker),
    ),
    Claim(
        "loss_landscape_not_concave",
        "The loss is not concave in the transformation: for at least half of the landscape "
        "images of the standard model the loss over (dx, theta) at dy = 0 has two or more strict "
        "local maxima (the loss-landscape figure)",
        lambda r: per_dataset(r, DATASETS, _not_concave),
    ),
    Claim(
        "aggregation_improves_robustness",
        "Test-time input aggregation significantly improves robustness: the majority vote over "
        "random transformations is at least 3 points more accurate under the grid than the "
        "plain augmented and worst-of-10 models (abstract)",
        lambda r: per_dataset(r, DATASETS, _aggregation_helps),
    ),
    Claim(
        "black_canvas_still_vulnerable",
        "The vulnerability is not an artefact of cutting the image off: a standard model on a "
        "black canvas (nothing leaves the frame) also loses at least 30 points under the grid",
        lambda r: per_dataset(r, DATASETS, _drop("canvas", CANVAS_DROP)),
    ),
]
