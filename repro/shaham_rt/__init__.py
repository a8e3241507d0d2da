"""Robust training by the linearised inner maximum (Shaham, Yamada & Negahban, Neurocomputing 2018).

Paper: "Understanding adversarial training: Increasing local stability of supervised models through
robust optimization", Uri Shaham, Yutaro Yamada, Sahand Negahban, Neurocomputing 307:195-204
(2018), https://arxiv.org/abs/1511.05432 (catalog key `2018_Shaham_U_j-nc_uatilssmro`); official
code runopti/RobustTraining (Torch/Lua, commit b3adc17; read, not copied).

The paper trains min_theta sum_i max_{r_i in U_i} J(theta, x_i + r_i, y_i) by alternating: at each
parameter update the inner maximum is replaced by the maximum of the loss's first-order (linear)
approximation over the uncertainty ball U_i = {r : ||r||_p <= eps}, which has a closed form, the
"dual-norm direction" of the input gradient g = grad_x J:
    p = inf:  r* = eps * sign(g)                     (Goodfellow et al.'s fast gradient sign)
    p = 2:    r* = eps * g / ||g||_2
    p = 1:    r* = eps * sign(g_j) e_j, j = argmax_j |g_j|  (one pixel; the official code takes the
              first coordinate of maximal magnitude, over channel, row and column)
and the batch is then REPLACED by x + r* for the parameter step (no clean term;
"train-mnist-robust-{inf,l2,l1}-BN.lua" call "adversarial_fast(...)" and train on its output).
It claims this increases robustness to existing adversarial examples (a fixed set made against
the normally trained net), makes new ones harder to find (larger minimal perturbations), and
improves clean test accuracy.

Reproduces: the MNIST experiment of the official code (its tables are not retrieved: every paper
number is unknown here; expected.csv holds the official code's comments, tagged unverified) on
Fashion-MNIST and, where only MNIST's test split is here, an 8,000 / 2,000 split of it.

Map from the paper (and the official code) to the code:
- the linearised inner maximum, argmax_{||r||_p <= eps} <g, r>, for p in {inf, 2, 1}
  -> `linearized_step` (on a given gradient) and `linearized_max` (an `Attack`: the gradient of the
  cross-entropy at x by `repro.fgsm.input_gradient`, then the step; "computeAdversarials.lua"'s
  "adversarial_fast")
- the alternating min-max (each batch replaced by its perturbed version)
  -> `robust_adversary`, passed to `repro.train.train_classifier(adversary=..., adv_weight=1)`
- the MNIST net of "train-mnist-robust-*-BN.lua" (spatial batch norm without affine parameters
  on the input, conv 5x5x32, ReLU, max-pool 3/3, conv 5x5x64, ReLU, max-pool 2, FC 256 -> 200,
  ReLU, FC 10) on 32x32 inputs -> `ShahamNet`, the padding -> `pad32`
- the optimizer: torch7 "optim.sgd" with lr 0.01, momentum 0.9 (torch7's dampening defaults to the
  momentum), the L2 coefficient 1e-3 added to the gradient ("coefL2"), learning-rate decay 5e-6
  per update ("sgdState") -> `paper_optimizer`, `lr_decay_schedule`
- the "intensity" (0.2 for l_inf, 2 for l_2 and l_1, in units of the globally normalised data)
  converted to [0, 1] pixel units (times the pixel standard deviation of the padded training
  set) -> `INTENSITY`, `intensity_to_pixels`
- "harder to generate new adversarial examples": the minimal l2 (and l_inf) perturbation found by
  DeepFool (`repro.deepfool`) for each model -> `minimal_perturbation`, compared between models by
  the paired bootstrap of the difference of medians -> `median_difference_interval`

Deviations (each also in README.md):
- The adversarial gradient is taken with the model in eval mode (the input batch norm uses its
  running statistics, `train_classifier`'s adversary hook); the official code takes it in
  training mode (batch statistics). With one input channel the two differ by the batch norm's
  cross-example terms only.
- Batches are a seeded permutation each epoch (the official code walks the data in order), and
  the learning-rate decay is applied per epoch (`lr_decay_schedule`), not per update.
- The official baseline ("train-baseline.lua") is the same net without the input batch norm; our
  baseline keeps it (the same net trained normally: only the training differs).
- Inputs are [0, 1] images padded to 32x32 (the official MNIST copy is 32x32); the global mean/std
  normalisation is not applied, since the affine-free input batch norm cancels it (up to its
  epsilon); the intensity is converted to pixel units instead (`intensity_to_pixels`).
- At test time perturbed images are clipped to [0, 1] (`clip`); the official training step does
  not clip (`clip=None` at training, as the official code).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro.deepfool import deepfool_attack
from repro.fgsm import input_gradient
from repro.stats import RESAMPLES, SEED, Interval
from repro.train import Attack, predict

__all__ = [
    "INTENSITY",
    "NORMS",
    "ShahamNet",
    "intensity_to_pixels",
    "linearized_max",
    "linearized_step",
    "lr_decay_schedule",
    "median_difference_interval",
    "minimal_perturbation",
    "pad32",
    "paper_optimizer",
    "robust_adversary",
]

Norm = Literal["linf", "l2", "l1"]
NORMS: tuple[Norm, ...] = ("linf", "l2", "l1")
#: The official scripts' `intensity`, in units of the globally normalised data (std 1).
INTENSITY: dict[str, float] = {"linf": 0.2, "l2": 2.0, "l1": 2.0}
_TINY = 1e-12


def pad32(x: Tensor) -> Tensor:
    """28x28 images -> 32x32 with a 2-pixel border of zeros (the official code's MNIST copy)."""
    if x.shape[-1] == 32 and x.shape[-2] == 32:
        return x
    return F.pad(x, (2, 2, 2, 2))


class ShahamNet(nn.Module):
    """The official MNIST net (`train-mnist-robust-*-BN.lua`, model `convnet`) for 1x32x32 inputs:
    BN(1, no affine) -> conv 5x5x32 -> ReLU -> max-pool 3/3 -> conv 5x5x64 -> ReLU -> max-pool
    2/2 -> FC 256 -> 200 -> ReLU -> FC 10 (logits; the official LogSoftMax + NLL is our
    cross-entropy)."""

    def __init__(self, input_bn: bool = True, classes: int = 10) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(1, affine=False) if input_bn else nn.Identity()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 5), nn.ReLU(), nn.MaxPool2d(3, 3),
            nn.Conv2d(32, 64, 5), nn.ReLU(), nn.MaxPool2d(2, 2),
        )  # fmt: skip
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * 2 * 2, 200), nn.ReLU(), nn.Linear(200, classes)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(self.bn(x)))


def intensity_to_pixels(intensity: float, x_train: Tensor) -> float:
    """The official `intensity` (normalised units: the data divided by its global std) in the
    units of `x_train` (e.g. [0, 1] pixels): intensity times the global pixel std of `x_train`.
    The same factor holds for every norm (the normalisation is one scalar)."""
    return float(intensity) * float(x_train.double().std())


def linearized_step(g: Tensor, *, norm: Norm, eps: float) -> Tensor:
    """argmax over ||r||_p <= eps of <g, r>, per example (the linearised inner maximum).

    linf: eps * sign(g); l2: eps * g / ||g||_2 (zero where g = 0); l1: eps * sign(g_j) at the
    first coordinate j of maximal |g_j| (zero where g = 0). The value reached is eps times the
    dual norm of g (l1, l2, linf norm respectively)."""
    if norm not in NORMS:
        raise ValueError(f"linearized_step: norm must be one of {NORMS}, got {norm!r}")
    if eps < 0:
        raise ValueError(f"linearized_step: eps must be >= 0, got {eps}")
    flat = g.flatten(1)
    if norm == "linf":
        step = flat.sign()
    elif norm == "l2":
        step = flat / flat.norm(dim=1, keepdim=True).clamp_min(_TINY)
    else:
        j = flat.abs().argmax(dim=1, keepdim=True)
        step = torch.zeros_like(flat).scatter_(1, j, flat.gather(1, j).sign())
    return (eps * step).view_as(g)


def linearized_max(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    norm: Norm,
    eps: float,
    clip: tuple[float, float] | None = (0.0, 1.0),
) -> Tensor:
    """The one-step adversarial example x + r* of the linearised inner maximum over the l_`norm`
    ball of radius `eps` (official `adversarial_fast`); clipped to `clip` when given (the
    official training step does not clip: `clip=None`). linf with clip is FGSM."""
    x_adv = x.detach() + linearized_step(input_gradient(model, x, y), norm=norm, eps=eps)
    if clip is not None:
        x_adv = x_adv.clamp(clip[0], clip[1])
    return x_adv.detach()


def robust_adversary(norm: Norm, eps: float, clip: tuple[float, float] | None = None) -> Attack:
    """The training adversary of the robust training: `train_classifier(..., adversary=this,
    adv_weight=1.0)` replaces each batch by its linearised-maximum version (no clean term), as
    `train-mnist-robust-*-BN.lua` does."""
    return partial(linearized_max, norm=norm, eps=eps, clip=clip)


def paper_optimizer(
    model: nn.Module, lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 1e-3
) -> torch.optim.SGD:
    """torch7 `optim.sgd` as the official script runs it: momentum 0.9 with torch7's default
    dampening (= momentum: v <- m v + (1 - m) g after the first step, which is torch's
    `dampening`), and the L2 coefficient 1e-3 added to the gradient before it (`coefL2`,
    torch's `weight_decay`). The learning-rate decay is `lr_decay_schedule`."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD(
        params, lr=lr, momentum=momentum, dampening=momentum, weight_decay=weight_decay
    )


def lr_decay_schedule(steps_per_epoch: int, decay: float = 5e-6) -> Callable[[int], float]:
    """torch7's learningRateDecay, lr_t = lr / (1 + t * decay) after t updates, held constant
    within an epoch: factor(epoch) = 1 / (1 + epoch * steps_per_epoch * decay)."""
    return lambda epoch: 1.0 / (1.0 + epoch * steps_per_epoch * decay)


def minimal_perturbation(
    model: nn.Module,
    x: Tensor,
    *,
    norm: Literal["l2", "linf"] = "l2",
    max_iter: int = 50,
    overshoot: float = 0.02,
    batch_size: int = 500,
) -> Tensor:
    """Per image, the norm (`norm`) of the smallest perturbation DeepFool finds that changes the
    model's own label (images in the [0, 1] box); +inf where DeepFool does not flip the label in
    `max_iter` iterations (so medians stay honest). float64 on the CPU."""
    out = []
    for i in range(0, x.shape[0], batch_size):
        xb = x[i : i + batch_size]
        res = deepfool_attack(model, xb, predict(model, xb), norm=norm, max_iter=max_iter,
                              overshoot=overshoot)  # fmt: skip
        r = (res.x_adv - xb).flatten(1)
        size = r.norm(dim=1) if norm == "l2" else r.abs().amax(dim=1)
        size = torch.where(res.fooled, size, torch.full_like(size, float("inf")))
        out.append(size.double().cpu())
    return torch.cat(out)


def median_difference_interval(
    a: Tensor | np.ndarray,
    b: Tensor | np.ndarray,
    *,
    resamples: int = RESAMPLES,
    level: float = 0.95,
    seed: int = SEED,
) -> Interval:
    """median(a) - median(b) over the same images, with the paired percentile bootstrap interval
    (the images resampled together; `repro.stats`' convention: B = 1,000, seed 0). Infinite
    entries (never fooled) are allowed: they sort last, so the estimate or an end of the interval
    can be infinite or nan (inf - inf) when half the images or more are never fooled."""
    a_, b_ = (np.asarray(v, dtype=np.float64).ravel() for v in (a, b))
    if a_.size != b_.size or a_.size == 0:
        raise ValueError(f"median_difference_interval: need equal, non-empty sizes, got "
                         f"{a_.size} and {b_.size}")  # fmt: skip
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, a_.size, size=(resamples, a_.size))
    diffs = np.median(a_[idx], axis=1) - np.median(b_[idx], axis=1)
    with np.errstate(invalid="ignore"):
        diffs = diffs[~np.isnan(diffs)]  # inf - inf
    estimate = float(np.median(a_) - np.median(b_))
    if diffs.size == 0:
        return Interval(estimate, float("nan"), float("nan"), level)
    # no interpolation between order statistics: an infinite one would give nan
    low = np.quantile(diffs, (1 - level) / 2, method="lower")
    high = np.quantile(diffs, (1 + level) / 2, method="higher")
    return Interval(estimate, float(low), float(high), level)
