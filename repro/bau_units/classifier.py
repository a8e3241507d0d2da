"""The classifier side of Bau et al. (2020): rank a layer's units by single-unit ablation, then
remove a class's most important units (or keep only them) and measure that class's accuracy.

The official code (davidbau/dissect `experiment/intervention_experiment.py`, read, not copied):
`test_perclass_pra` measures, for every class, the *balanced* accuracy of the 10-way (365-way)
classifier read as a one-vs-rest detector of that class, (recall + true-negative rate) / 2, with
chosen units of `features.conv5_3` zeroed; each unit is zeroed alone on the training split and the
units are sorted by the balanced accuracy that is left (lowest first: the most important unit of
the class); on the validation split the first N units of a class's order are removed, or all but
them.

Map from the paper to the code:
- "Single-class accuracy is tested on the balanced two-way classification problem of
  discriminating the specified class from all the other classes" -> `balanced_accuracy`,
  `balanced_accuracy_vectors`, `class_counts`
- each unit removed alone, on the training split (`single_unit_ablation_ba`) ->
  `single_unit_ablation`, `UnitAblation`
- "we rank the importance of units according to their individual impact on single-class ...
  accuracy on the training set" (`single_unit_ablation_ba[:, c].sort(0)[1]`) -> `rank_units`
- Fig. 2b-d: the N most important units of a class removed; the others removed (only the N
  kept); as a control (ours) N random units removed -> `class_interventions`,
  `predict_ablated`, `Intervention`
- Fig. 2b-d's numbers: mean single-class accuracy in each setting, the all-class accuracy, and
  (ours) every drop and margin with a paired bootstrap interval -> `intervention_statistics`,
  `intervention_vectors`
- VGG-16's last convolutional layer conv5_3 -> `UnitCNN`, `LAYER`
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro import ReproError
from repro.bau_units.ablation import ablate_each, layer_units
from repro.bau_units.intervals import MeanVectors
from repro.stats import Interval

__all__ = [
    "LAYER",
    "Intervention",
    "UnitAblation",
    "UnitCNN",
    "balanced_accuracy",
    "balanced_accuracy_vectors",
    "class_counts",
    "class_interventions",
    "intervention_statistics",
    "intervention_vectors",
    "predict_ablated",
    "rank_units",
    "single_unit_ablation",
]

#: The layer whose units are dissected: the last convolution (the paper's conv5_3 of VGG-16).
LAYER = "conv3"


class UnitCNN(nn.Sequential):
    """A small VGG-like classifier of 28 × 28 grey images: three blocks `conv1`, `conv2`, `conv3`
    of a 3 × 3 convolution (32, 64 and `units` maps), ReLU and 2 × 2 max-pooling (28 -> 14 -> 7
    -> 4 px), then `head`: two dense layers (`hidden` units, ReLU; `classes` logits).

    `conv3` is the layer whose units are ranked and removed (VGG-16's last convolution conv5_3
    has 512 units; 128 here). Zeroing a channel of the block's output is zeroing that unit's
    convolution output (ReLU(0) = 0 and the max-pool of zeros is 0), which is what the code
    does to conv5_3; hooking the block's pooled output keeps the per-unit copies of
    `ablate_each` four times smaller."""

    def __init__(self, units: int = 128, hidden: int = 256, classes: int = 10) -> None:
        if min(units, hidden, classes) < 1:
            raise ReproError(f"UnitCNN: units {units}, hidden {hidden}, classes {classes} >= 1")

        def block(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(),
                                 nn.MaxPool2d(2, ceil_mode=True))  # fmt: skip

        super().__init__(
            OrderedDict(
                [
                    ("conv1", block(1, 32)),
                    ("conv2", block(32, 64)),
                    ("conv3", block(64, units)),
                    ("head", nn.Sequential(nn.Flatten(), nn.Linear(units * 4 * 4, hidden),
                                           nn.ReLU(), nn.Linear(hidden, classes))),
                ]
            )
        )  # fmt: skip


def class_counts(pred: Tensor, y: Tensor, classes: int) -> tuple[Tensor, Tensor]:
    """Per class, the true positives and the number of predictions of it: two tensors of shape
    (..., classes) for predictions `pred` of shape (..., n) against labels `y` (n,)."""
    if pred.shape[-1] != y.shape[0]:
        raise ReproError(f"class_counts: {pred.shape[-1]} predictions for {y.shape[0]} labels")
    pred_1h = F.one_hot(pred, classes).to(torch.float64)  # (..., n, K)
    tp = (pred_1h * F.one_hot(y, classes).to(torch.float64)).sum(-2)
    return tp, pred_1h.sum(-2)


def _balanced(tp: Tensor, predicted: Tensor, positives: Tensor, n: int) -> Tensor:
    negatives = n - positives
    tn = negatives - (predicted - tp)
    return 0.5 * (tp / positives + tn / negatives)


def balanced_accuracy(pred: Tensor, y: Tensor, classes: int) -> Tensor:
    """The code's `balanced_accuracy` per class: (recall + true-negative rate) / 2 of the
    classifier read as a detector of that class, shape (..., classes) for `pred` (..., n). Each
    class needs positives and negatives among the labels."""
    positives = torch.bincount(y, minlength=classes).to(torch.float64)
    if bool((positives == 0).any()) or bool((positives == y.shape[0]).any()):
        raise ReproError("balanced_accuracy: every class needs positives and negatives")
    tp, predicted = class_counts(pred, y, classes)
    return _balanced(tp, predicted, positives, y.shape[0])


def balanced_accuracy_vectors(pred: Tensor, y: Tensor, c: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per image, for class c: true positive (y = c and predicted c), true negative (y != c and
    not predicted c), and positive (y = c), as float vectors (n,). The class's balanced accuracy
    is 0.5 · (mean(tp) / mean(pos) + mean(tn) / (1 − mean(pos))): a function of means, so a
    bootstrap over images (`repro.stats.means_interval`) gives its interval. `pred` may carry a
    leading dimension of draws (R, n): the vectors are then averaged over the draws."""
    hit, pos = pred == c, (y == c)
    tp = (hit & pos).to(torch.float64)
    tn = (~hit & ~pos).to(torch.float64)
    if tp.dim() == 2:
        tp, tn = tp.mean(0), tn.mean(0)
    return tp, tn, pos.to(torch.float64)


@torch.no_grad()
def predict_ablated(
    model: nn.Module,
    layer: str | nn.Module,
    sets: Sequence[Sequence[int]],
    x: Tensor,
    *,
    batch_size: int = 500,
    sets_per_pass: int = 16,
) -> Tensor:
    """Predicted labels (S, n) of `model` on `x` with each set of units `sets[j]` of `layer`
    zeroed (an empty set: the unchanged model), `sets_per_pass` sets per forward pass
    (`ablate_each`). The model is put in eval mode and its mode restored."""
    was = model.training
    model.eval()
    try:
        rows = []
        for start in range(0, len(sets), sets_per_pass):
            chunk = [list(s) for s in sets[start : start + sets_per_pass]]
            with ablate_each(model, layer, chunk):
                parts = [model(x[i : i + batch_size]).argmax(1).view(len(chunk), -1)
                         for i in range(0, len(x), batch_size)]  # fmt: skip
            rows.append(torch.cat(parts, dim=1))
        return torch.cat(rows)
    finally:
        model.train(was)


@dataclass(frozen=True)
class UnitAblation:
    """Per-class balanced accuracy with nothing removed (`baseline`, (K,)) and with each unit of
    the layer removed alone (`ablated`, (U, K), row u for unit u), on the images it was measured
    on."""

    baseline: Tensor
    ablated: Tensor

    @property
    def drop(self) -> Tensor:
        """How much each unit's removal costs each class: baseline − ablated, (U, K)."""
        return self.baseline[None, :] - self.ablated


@torch.no_grad()
def single_unit_ablation(
    model: nn.Module,
    layer: str | nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    classes: int = 10,
    batch_size: int = 250,
    units_per_pass: int = 32,
) -> UnitAblation:
    """The per-class balanced accuracy of `model` on (x, y) with each unit of `layer` zeroed
    alone: the code's single-unit ablation loop, batched. Each forward pass takes `batch_size`
    images and `units_per_pass` units at once (`ablate_each`): the layers before `layer` run
    once per batch, the ones after it once per (unit, image). The model is put in eval mode and
    its mode restored."""
    was = model.training
    model.eval()
    try:
        units = layer_units(model, layer, x[:1])
        positives = torch.bincount(y, minlength=classes).to(torch.float64)
        tp = torch.zeros(units, classes, dtype=torch.float64, device=x.device)
        predicted = torch.zeros_like(tp)
        base = [model(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)]
        for start in range(0, units, units_per_pass):
            chunk = list(range(start, min(start + units_per_pass, units)))
            with ablate_each(model, layer, chunk):
                for i in range(0, len(x), batch_size):
                    xb, yb = x[i : i + batch_size], y[i : i + batch_size]
                    pred = model(xb).argmax(1).view(len(chunk), len(xb))
                    t, p = class_counts(pred, yb, classes)
                    tp[chunk] += t
                    predicted[chunk] += p
        t0, p0 = class_counts(torch.cat(base), y, classes)
        return UnitAblation(
            _balanced(t0, p0, positives, len(y)), _balanced(tp, predicted, positives, len(y))
        )
    finally:
        model.train(was)


def rank_units(score: Tensor, *, descending: bool = False) -> Tensor:
    """Per class, the units in order of importance: (K, U) unit indices, from a (U, K) score.
    The code sorts the balanced accuracy left after a unit's removal, lowest first
    (`descending=False`: `UnitAblation.ablated`); for a drop (higher = more important) pass
    `descending=True`. Ties keep the lower unit index first (a stable sort)."""
    return torch.sort(score.T, dim=1, descending=descending, stable=True).indices


@dataclass(frozen=True)
class Intervention:
    """Predicted labels on the evaluation images under each intervention, per class c:
    `baseline` (n,); `top[c]` (n,) with c's top-k units removed; `keep[c]` (n,) with every unit
    removed but c's top k; `random[c]` (R, n) with k random units removed, R draws; and the
    units removed (`top_units` (K, k), `random_units` (K, R, k))."""

    baseline: Tensor
    top: Tensor
    keep: Tensor
    random: Tensor
    top_units: Tensor
    random_units: Tensor


def class_interventions(
    model: nn.Module,
    layer: str | nn.Module,
    x: Tensor,
    ranking: Tensor,
    k: int,
    *,
    draws: int,
    generator: torch.Generator,
    batch_size: int = 500,
    sets_per_pass: int = 16,
) -> Intervention:
    """The paper's test: for each class c (a row of `ranking`, (K, U)), the predictions on `x`
    with c's first k units removed, with all units but those k removed, and with k units drawn
    uniformly without replacement (`draws` times, from `generator`, on the CPU) removed. All
    sets go through `predict_ablated` (the layers before `layer` run once per batch)."""
    n_classes, n_units = ranking.shape
    if not 1 <= k < n_units or draws < 1:
        raise ReproError(f"class_interventions: need 1 <= k < {n_units} units and draws >= 1")
    top_units = ranking[:, :k].cpu()
    random_units = torch.stack(
        [
            torch.stack([torch.randperm(n_units, generator=generator)[:k] for _ in range(draws)])
            for _ in range(n_classes)
        ]
    )
    sets: list[list[int]] = [[]]
    for c in range(n_classes):
        chosen = top_units[c].tolist()
        sets.append(chosen)
        sets.append([u for u in range(n_units) if u not in set(chosen)])
        sets.extend(r.tolist() for r in random_units[c])
    pred = predict_ablated(model, layer, sets, x, batch_size=batch_size,
                           sets_per_pass=sets_per_pass)  # fmt: skip
    per_class = pred[1:].view(n_classes, 2 + draws, -1)
    return Intervention(pred[0], per_class[:, 0], per_class[:, 1], per_class[:, 2:], top_units,
                        random_units)  # fmt: skip


def _ba(m: dict, arm: str, c: int) -> np.ndarray:
    """Balanced accuracy (percent) of class c under intervention `arm`, from vector means."""
    pos = m[f"pos{c}"]
    return 50.0 * (m[f"{arm}_tp{c}"] / pos + m[f"{arm}_tn{c}"] / (1.0 - pos))


def intervention_vectors(iv: Intervention, y: Tensor) -> MeanVectors:
    """The per-image vectors behind every statistic of `intervention_statistics`: for each
    class c, `pos{c}`; `base_tp{c}` / `base_tn{c}` (nothing removed); `top{c}_tp{j}` /
    `top{c}_tn{j}` (c's top units removed, as seen by every class j); `keep{c}_*` and
    `random{c}_*` (class c only; random averaged over the draws); and the 10-way correctness
    `base_ok`, `top{c}_ok`, `keep{c}_ok`, `random{c}_ok`."""
    vectors = MeanVectors()
    classes = iv.top.shape[0]

    def add(arm: str, pred: Tensor, c: int) -> None:
        tp, tn, _ = balanced_accuracy_vectors(pred, y, c)
        vectors.add(f"{arm}_tp{c}", tp)
        vectors.add(f"{arm}_tn{c}", tn)

    vectors.add("base_ok", (iv.baseline == y).to(torch.float64))
    for c in range(classes):
        vectors.add(f"pos{c}", (y == c).to(torch.float64))
        add("base", iv.baseline, c)
        add(f"keep{c}", iv.keep[c], c)
        add(f"random{c}", iv.random[c], c)
        for j in range(classes):
            add(f"top{c}", iv.top[c], j)
        vectors.add(f"top{c}_ok", (iv.top[c] == y).to(torch.float64))
        vectors.add(f"keep{c}_ok", (iv.keep[c] == y).to(torch.float64))
        vectors.add(f"random{c}_ok", (iv.random[c] == y).to(torch.float64).mean(0))
    return vectors


def intervention_statistics(iv: Intervention, y: Tensor) -> dict[str, Interval]:
    """The statistics of the paper's test with their 95 % paired bootstrap intervals over the
    evaluation images (percent, and points for drops):

    - `ba_base`, `ba_top`, `ba_random`, `ba_keep`: balanced single-class accuracy averaged over
      the classes, each class under its own intervention (Fig. 2d's three settings, and random);
    - `drop_top`, `drop_random`, `drop_keep`: the mean drops from `ba_base`;
    - `drop_other`: the mean over c of the mean drop of the other classes j != c when c's top
      units are removed;
    - `top_minus_random_drop`, `own_minus_other_drop`: the margins of claims 1-2;
    - `keep_fraction`: (ba_keep − 50) / (ba_base − 50), the above-chance accuracy kept (claim 3);
    - `acc_base`, `acc_top`, `acc_random`, `acc_keep`: 10-way accuracy (Fig. 2b's all-class
      column), averaged over the classes' interventions;
    - per class c: `class{c}_ba_base`, `class{c}_drop_top`, `class{c}_drop_random`,
      `class{c}_drop_keep`.
    """
    classes = iv.top.shape[0]
    v = intervention_vectors(iv, y)
    every = list(v.vectors)
    ks = range(classes)

    def mean_ba(arm: str) -> Callable[[dict], np.ndarray]:
        def f(m: dict) -> np.ndarray:
            return sum(_ba(m, arm.format(c=c), c) for c in ks) / classes

        return f

    base, top, rand, keep = (mean_ba(a) for a in ("base", "top{c}", "random{c}", "keep{c}"))

    def other(m: dict) -> np.ndarray:
        return sum(sum(_ba(m, "base", j) - _ba(m, f"top{c}", j) for j in ks if j != c)
                   / (classes - 1) for c in ks) / classes  # fmt: skip

    def acc(arm: str) -> Callable[[dict], np.ndarray]:
        if arm == "base":
            return lambda m: 100.0 * m["base_ok"]
        return lambda m: 100.0 * sum(m[f"{arm}{c}_ok"] for c in ks) / classes

    funcs: dict[str, Callable[[dict], np.ndarray]] = {
        "ba_base": base,
        "ba_top": top,
        "ba_random": rand,
        "ba_keep": keep,
        "drop_top": lambda m: base(m) - top(m),
        "drop_random": lambda m: base(m) - rand(m),
        "drop_keep": lambda m: base(m) - keep(m),
        "drop_other": other,
        "top_minus_random_drop": lambda m: rand(m) - top(m),
        "own_minus_other_drop": lambda m: base(m) - top(m) - other(m),
        "keep_fraction": lambda m: (keep(m) - 50.0) / (base(m) - 50.0),
        "acc_base": acc("base"),
        "acc_top": acc("top"),
        "acc_random": acc("random"),
        "acc_keep": acc("keep"),
    }
    out = {name: v.interval(f, every) for name, f in funcs.items()}
    for c in ks:
        names = [f"pos{c}", *(f"{a}_{s}{c}" for a in ("base", f"top{c}", f"random{c}",
                                                      f"keep{c}") for s in ("tp", "tn"))]  # fmt: skip
        out[f"class{c}_ba_base"] = v.interval(lambda m, c=c: _ba(m, "base", c), names)
        for arm, key in (("top", "drop_top"), ("random", "drop_random"), ("keep", "drop_keep")):
            out[f"class{c}_{key}"] = v.interval(
                lambda m, c=c, arm=arm: _ba(m, "base", c) - _ba(m, f"{arm}{c}", c), names
            )
    return out
