"""Intriguing properties of neural networks (Szegedy, Zaremba, Sutskever, Bruna, Erhan, Goodfellow &
Fergus, ICLR 2014).

Paper: "Intriguing properties of neural networks", https://arxiv.org/abs/1312.6199 (catalog key
`2014_Szegedy_C_p-iclr_ipnn`); no official code.

Reproduces: Table 1 (MNIST: training and test error and the average minimal distortion that
box-constrained L-BFGS needs for FC10 with weight decay 1e-4, 1e-2 and 1, FC100-100-10 and
FC200-200-10), Table 2 (cross-model generalisation: the error each model makes on the adversarial
examples made for another, beside Gaussian noise of stddev 0.1 and 0.3), Tables 3-4 (the same
across disjoint halves P1 / P2 of the training set, with the examples amplified to stddev 0.1)
and Section 3's observation that random directions of a hidden layer are as "interpretable" as
its single units (as a figure and a label-purity measure). The AE400-10 network (a sparse
autoencoder) and the AlexNet numbers (Table 5, 0.006508) are not run. Fashion-MNIST runs the same
protocol as a stated analogue.

Map from the paper to the code:
- Section 4.1, "Minimize c|r| + loss_f(x + r, l) subject to x + r in [0, 1]^m" solved with
  box-constrained L-BFGS (SciPy's L-BFGS-B, every image of the batch in one problem)
  -> `lbfgs_minimize`
- Section 4.1, "a line-search to find the minimum c > 0 for which the minimizer r ... satisfies
  f(x + r) = l", per image, keeping the smallest successful r -> `lbfgs_attack`
- the attack with a target per image, and untargeted (target: the runner-up class)
  -> `lbfgs_targeted`, `lbfgs_untargeted`, `runner_up`
- Table 1, "Av. min. distortion" = sqrt(sum (x' - x)^2 / n) per image -> `distortion`
- Table 1's networks: "Softmax with lambda" (FC10(lambda)), "Sigmoid network lambda = 1e-5, 1e-5,
  1e-6" (FC100-100-10, FC200-200-10, FC123-456-10) -> `softmax_net`, `sigmoid_mlp`,
  `weight_decay_groups`
- Table 2's controls, "Gaussian noise, stddev = 0.1 / 0.3" -> `gaussian_noise`
- Table 4, "distorted ... amplified to stddev = 0.1" -> `amplify`
- Section 3, x' = argmax_x <phi(x), e_i> (a unit) against argmax_x <phi(x), v> (a random
  direction v) over held-out images -> `top_activating`, `label_purity`

Deviations (each also in README.md):
- |r| is the squared l2 norm ||r||_2^2 (the paper writes |r|; Carlini & Wagner restate the method
  with the squared norm, which is smooth at r = 0). The line search over c keeps, per image, the
  *largest* c whose minimiser still reaches the target: with c weighting the distance, that is the
  smallest perturbation, which is what "minimum distortion" measures (the text's "minimum c" would
  give the largest one). The search is a bisection in log c per image (x10 / /10 until bracketed,
  then geometric means), `search_steps` values in all.
- The minimisation runs on the whole batch at once: one L-BFGS-B problem whose variable is every
  image of the batch and whose objective is the sum of the per-image objectives (each with its own
  c). The objective is separable, so its minimiser is the per-image minimisers; L-BFGS-B's curvature
  memory and stopping test are shared, which changes the path, not the problem. Every iterate is
  inside the box, and the smallest successful one seen per image is kept (not only the last).
- Gaussian noise is clipped to [0, 1] (the paper does not say).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro.train import frozen

__all__ = [
    "LbfgsResult",
    "amplify",
    "distortion",
    "gaussian_noise",
    "label_purity",
    "lbfgs_attack",
    "lbfgs_minimize",
    "lbfgs_targeted",
    "lbfgs_untargeted",
    "random_targets",
    "runner_up",
    "sigmoid_mlp",
    "softmax_net",
    "top_activating",
    "weight_decay_groups",
]


class LbfgsResult(NamedTuple):
    """What `lbfgs_attack` returns: per image the smallest successful adversarial (or x itself),
    whether the target was reached for some c, and the c that gave the kept example (NaN where
    none did)."""

    x_adv: Tensor
    success: Tensor
    c: Tensor


def distortion(x: Tensor, x_adv: Tensor) -> Tensor:
    """Table 1's distortion per image: sqrt(sum (x' - x)^2 / n), n = pixels per image (the RMS)."""
    return (x_adv - x).flatten(1).pow(2).mean(dim=1).sqrt()


def lbfgs_minimize(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    c: Tensor,
    *,
    max_iter: int,
    clip: tuple[float, float] = (0.0, 1.0),
) -> tuple[Tensor, Tensor]:
    """min over x' in the box of sum_i c_i ||x'_i - x_i||^2 + CE(f(x'_i), target_i), by L-BFGS-B.

    One SciPy problem for the whole batch, started at x' = x, at most `max_iter` iterations.
    Returns (the best successful x' seen per image during the run, or x; whether the image
    reached its target at some iterate). Successful means argmax f(x') = target.
    """
    from scipy.optimize import Bounds, minimize

    x = x.detach()
    shape, n = x.shape, x.shape[0]
    per_image = (n,) + (1,) * (x.dim() - 1)
    c_flat = c.to(device=x.device, dtype=x.dtype)
    # Diagonal preconditioning: image i's variables are u_i = s_i (x'_i - x_i), s_i = sqrt(1 + 2 c_i),
    # so that the curvature of its distance term (2 c_i) looks alike for every image to the one
    # curvature memory L-BFGS-B keeps for the whole batch. The minimiser is unchanged.
    scale = (1.0 + 2.0 * c_flat).sqrt().view(per_image)
    best = x.clone()
    best_dist = torch.full((n,), float("inf"), dtype=x.dtype, device=x.device)

    def objective(flat: np.ndarray) -> tuple[float, np.ndarray]:
        nonlocal best, best_dist
        u = torch.from_numpy(flat.copy()).to(device=x.device, dtype=x.dtype).view(shape)
        u.requires_grad_(True)
        z = x + u / scale
        logits = model(z)
        sq = (z - x).flatten(1).pow(2).sum(dim=1)
        loss = (c_flat * sq).sum() + F.cross_entropy(logits, target, reduction="sum")
        (grad,) = torch.autograd.grad(loss, u)
        with torch.no_grad():
            hit = (logits.argmax(dim=1) == target) & (sq < best_dist)
            best_dist = torch.where(hit, sq, best_dist)
            best = torch.where(hit.view(per_image), z.detach().clamp(clip[0], clip[1]), best)
        return float(loss.detach()), grad.detach().double().cpu().numpy().ravel()

    lower = (scale * (clip[0] - x)).double().cpu().numpy().ravel()
    upper = (scale * (clip[1] - x)).double().cpu().numpy().ravel()
    with frozen(model):
        minimize(
            objective,
            np.zeros(lower.size),
            jac=True,
            method="L-BFGS-B",
            bounds=Bounds(lower, upper),
            options={"maxiter": max_iter, "ftol": 1e-10, "gtol": 1e-8, "maxcor": 10},
        )
    return best, torch.isfinite(best_dist)


def lbfgs_attack(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    *,
    c_init: float = 1.0,
    search_steps: int = 8,
    max_iter: int = 100,
    clip: tuple[float, float] = (0.0, 1.0),
) -> LbfgsResult:
    """Box-constrained L-BFGS with the line search over c (Section 4.1), on a whole batch.

    For each of `search_steps` rounds, every image's problem is solved at its own c
    (`lbfgs_minimize`); an image whose minimiser reached its target keeps the example if it is
    the smallest so far and raises c (x10 until a failing c is known, else the geometric mean with
    it), one that failed lowers c (/10, or the geometric mean with the largest successful c).

    Args:
        model: maps NCHW inputs to logits (eval mode, frozen parameters during the attack; both
            restored afterwards).
        x: images in `clip`; target: the label each image must be classified as (int64).
        c_init: the first c of every image.
        search_steps: values of c tried per image (the research notes: 8-10).
        max_iter: L-BFGS-B iterations per value of c.
        clip: the box.
    """
    if search_steps < 1 or max_iter < 1 or c_init <= 0:
        raise ValueError(
            f"lbfgs_attack: need search_steps >= 1, max_iter >= 1, c_init > 0; got "
            f"{search_steps}, {max_iter}, {c_init}"
        )
    x = x.detach()
    n = x.shape[0]
    per_image = (n,) + (1,) * (x.dim() - 1)
    opts = {"dtype": torch.float64, "device": x.device}
    c = torch.full((n,), float(c_init), **opts)
    good = torch.zeros(n, **opts)  # the largest c known to succeed (0: none)
    bad = torch.full((n,), float("inf"), **opts)  # the smallest c known to fail
    best = x.clone()
    best_dist = torch.full((n,), float("inf"), dtype=x.dtype, device=x.device)
    best_c = torch.full((n,), float("nan"), **opts)
    with frozen(model):
        for _ in range(search_steps):
            x_c, ok = lbfgs_minimize(model, x, target, c, max_iter=max_iter, clip=clip)
            dist = (x_c - x).flatten(1).pow(2).sum(dim=1)
            better = ok & (dist < best_dist)
            best = torch.where(better.view(per_image), x_c, best)
            best_dist = torch.where(better, dist, best_dist)
            best_c = torch.where(better, c, best_c)
            good = torch.where(ok, torch.maximum(good, c), good)
            bad = torch.where(ok, bad, torch.minimum(bad, c))
            bracketed = (good > 0) & torch.isfinite(bad)
            c = torch.where(
                bracketed,
                (good * bad.clamp_max(1e30)).sqrt(),
                torch.where(ok, c * 10.0, c / 10.0),
            )
    return LbfgsResult(best.detach(), torch.isfinite(best_dist), best_c)


def lbfgs_targeted(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    *,
    c_init: float = 1.0,
    search_steps: int = 8,
    max_iter: int = 100,
    clip: tuple[float, float] = (0.0, 1.0),
) -> Tensor:
    """The adversarial images of `lbfgs_attack` (x itself where no c reached the target)."""
    return lbfgs_attack(
        model,
        x,
        target,
        c_init=c_init,
        search_steps=search_steps,
        max_iter=max_iter,
        clip=clip,
    ).x_adv


def runner_up(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """The highest-scoring class other than `y` per image: the target of the untargeted L-BFGS."""
    with frozen(model), torch.no_grad():
        logits = model(x)
    return logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).argmax(dim=1)


def lbfgs_untargeted(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    c_init: float = 1.0,
    search_steps: int = 8,
    max_iter: int = 100,
    clip: tuple[float, float] = (0.0, 1.0),
    generator: torch.Generator | None = None,
) -> Tensor:
    """L-BFGS as an `Attack`: leave `y` for the runner-up class (the nearest in logits).

    An image not classified as `y` is returned unchanged. `generator` is accepted for the common
    attack signature; the attack is deterministic.
    """
    del generator
    x = x.detach()
    with frozen(model), torch.no_grad():
        right = model(x).argmax(dim=1) == y
    x_adv = x.clone()
    if bool(right.any()):
        idx = torch.nonzero(right).squeeze(1)
        x_adv[idx] = lbfgs_targeted(
            model,
            x[idx],
            runner_up(model, x[idx], y[idx]),
            c_init=c_init,
            search_steps=search_steps,
            max_iter=max_iter,
            clip=clip,
        )
    return x_adv


def random_targets(y: Tensor, classes: int, generator: torch.Generator | None = None) -> Tensor:
    """A uniformly random label other than y per image (the paper's random wrong targets)."""
    device = generator.device if generator is not None else y.device
    shift = torch.randint(1, classes, y.shape, generator=generator, device=device).to(y.device)
    return (y + shift) % classes


def gaussian_noise(x: Tensor, std: float, generator: torch.Generator | None = None) -> Tensor:
    """Table 2's control: x + N(0, std^2) per pixel, clipped to [0, 1]."""
    device = generator.device if generator is not None else x.device
    noise = torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)
    return (x.detach() + std * noise).clamp(0.0, 1.0)


def amplify(x: Tensor, x_adv: Tensor, std: float) -> Tensor:
    """Table 4: the perturbation r = x' - x rescaled so that its RMS (`distortion`) is `std`,
    clipped to [0, 1]; an image with r = 0 stays as it is."""
    r = x_adv - x
    rms = distortion(x, x_adv).view((-1,) + (1,) * (x.dim() - 1))
    scale = torch.where(rms > 0, std / rms.clamp_min(1e-12), torch.zeros_like(rms))
    return (x + scale * r).clamp(0.0, 1.0)


def softmax_net(in_features: int = 784, classes: int = 10) -> nn.Module:
    """FC10: a softmax classifier on the pixels (its weight decay is set by the optimiser)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, classes))


def sigmoid_mlp(*hidden: int, in_features: int = 784, classes: int = 10) -> nn.Module:
    """FC<h1>-<h2>-10: fully connected sigmoid layers of the given widths and a softmax layer."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for units in hidden:
        layers += [nn.Linear(width, units), nn.Sigmoid()]
        width = units
    layers.append(nn.Linear(width, classes))
    return nn.Sequential(*layers)


def weight_decay_groups(model: nn.Module, decays: list[float]) -> list[dict[str, object]]:
    """Optimiser parameter groups with one weight decay per linear layer (biases undecayed).

    Table 1's "lambda" is per layer for the sigmoid networks (1e-5, 1e-5, 1e-6) and one value for
    the softmax; `decays` gives one value per `nn.Linear` in order.
    """
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if len(decays) != len(linears):
        raise ValueError(f"weight_decay_groups: {len(linears)} linear layers, {len(decays)} decays")
    groups: list[dict[str, object]] = []
    for layer, decay in zip(linears, decays, strict=True):
        groups.append({"params": [layer.weight], "weight_decay": float(decay)})
        groups.append({"params": [layer.bias], "weight_decay": 0.0})
    return groups


def top_activating(features: Tensor, direction: Tensor, k: int) -> Tensor:
    """Indices of the k images with the largest <phi(x), v> (Section 3's x'), per direction.

    `features` (n, d) the layer's activations phi(x); `direction` (m, d) the directions (rows of
    the identity for single units, random vectors otherwise). Returns (m, k) image indices.
    """
    return (features @ direction.T).T.topk(k, dim=1).indices


def label_purity(labels: Tensor, top: Tensor) -> Tensor:
    """Per direction, the fraction of its top images that share their most common label: how
    "semantically coherent" the images a direction selects are (1 = all of one class)."""
    picked = labels[top]  # (m, k)
    counts = F.one_hot(picked, int(labels.max()) + 1).sum(dim=1)
    return counts.amax(dim=1).to(torch.float32) / top.shape[1]
