"""DeepFool: a simple and accurate method to fool deep neural networks (Moosavi-Dezfooli, Fawzi &
Frossard, CVPR 2016).

Paper: "DeepFool: a simple and accurate method to fool deep neural networks", Seyed-Mohsen
Moosavi-Dezfooli, Alhussein Fawzi, Pascal Frossard, https://arxiv.org/abs/1511.04599 (v3; catalog
key `2016_MoosaviDezfooli_S_p-cvpr_dsamfdnn`); official code LTS4/DeepFool (commit 575f3d8).

Reproduces: Table 1 for LeNet and FC500-150-10 on MNIST (test error; the robustness
rho_adv = mean ||r||_2 / ||x||_2 of DeepFool, of FGSM at its smallest eps that misclassifies 90%
of the images, and of box-constrained L-BFGS from `repro.szegedy_lbfgs`), Table 2 (the l_inf
robustness of DeepFool and FGSM on the same networks) and Section 4.2's fine-tuning experiment
(Table 3: test error after 5 extra epochs on DeepFool / FGSM / clean images; Figure 6: rho_adv
rises after fine-tuning on DeepFool's examples). CIFAR-10 and ILSVRC 2012 rows are not run
(no data offline). Fashion-MNIST runs the same protocol as a stated analogue.

Map from the paper to the code:
- Eq. (15), rho_adv(f) = mean over the test set of ||r(x)||_2 / ||x||_2 -> `rho_adv`
- Algorithm 2 (multi-class DeepFool): f'_k = f_k(x_i) - f_{k(x0)}(x_i),
  w'_k = grad f_k(x_i) - grad f_{k(x0)}(x_i) for every candidate class at once
  -> `boundary_terms`
- Algorithm 2, l = argmin_k |f'_k| / ||w'_k||_2 and r_i = |f'_l| / ||w'_l||_2^2 w'_l, looped
  until the label changes, each image leaving the loop when it flips -> `deepfool_attack`
- Section 3.3, the l_p version (p = inf: q = 1, r_i = |f'_l| / ||w'_l||_1 sign(w'_l))
  -> `norm` in `deepfool_attack`
- Section 4, "we multiply r by 1 + eta, eta = 0.02" (overshoot) -> `overshoot` in `deepfool_attack`
- the attack as a batch function `attack(model, x, y)` (the repository's `Attack` type)
  -> `deepfool`
- Table 1's FGSM column: "the minimal eps that misclassifies 90% of the data", searched by
  bisection on eps with `repro.fgsm.fgsm` -> `fgsm_min_eps`
- Table 1's networks: LeNet (conv 5x5x20 - pool - conv 5x5x50 - pool - fc 500 - fc 10) and
  FC500-150-10 -> `lenet`, `fc_500_150`

Deviations (each also in README.md):
- The iterate is clipped to the image box [0, 1] by default (`clip`), so that every output is an
  image; the paper does not clip (`clip=None` reproduces it). The overshoot is applied to the
  accumulated perturbation at every iteration and the label is checked on the overshot iterate,
  as the official code does; each step's length is increased by 1e-4 (official code) so that an
  iterate never stops exactly on a boundary.
- `y` is the label to leave. The paper's k(x0) is the classifier's own label: pass
  `predict(model, x)` for Table 1 (the notebook does). An image not classified as `y` is
  returned unchanged (already "fooled"), which makes the attack safe to use with true labels.
- The candidate classes are fixed at x0 (the `candidates` highest-scoring other classes; all
  classes by default), as the official code's `num_classes` top classes.
- All the gradients w'_k of all active images come from one forward pass and one vectorised
  backward call (no Python loop over images or classes; see `boundary_terms`). The loop over
  iterations checks once per iteration which images are still classified as `y` (one host
  synchronisation per iteration, at most `max_iter`), so that images that flipped cost nothing
  afterwards.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro.fgsm import fgsm
from repro.train import frozen, predict

__all__ = [
    "DeepFoolResult",
    "boundary_terms",
    "deepfool",
    "deepfool_attack",
    "fc_500_150",
    "fgsm_min_eps",
    "lenet",
    "rho_adv",
]

Norm = Literal["l2", "linf"]
NORMS = ("l2", "linf")
_STEP_PAD = 1e-4  # the official code's extra step length (in the norm's units)
_TINY = 1e-12  # keeps a zero gradient difference from dividing by zero
_BATCHED_FROM = 8  # images from which `boundary_terms` vectorises the backward passes


class DeepFoolResult(NamedTuple):
    """What `deepfool_attack` returns: the adversarial images, per image the number of iterations
    taken and whether the label left `y` (False where `max_iter` ran out, or where the image was
    not classified as `y` to begin with and was returned unchanged)."""

    x_adv: Tensor
    iterations: Tensor
    fooled: Tensor


def boundary_terms(model: nn.Module, x: Tensor, y: Tensor, others: Tensor) -> tuple[Tensor, Tensor]:
    """f'_k and w'_k of Algorithm 2 for every image and every candidate class at once.

    `x` (b, ...) images, `y` (b,) the class to leave, `others` (b, k) the candidate classes.
    Returns f' (b, k) = f_k(x) - f_y(x) and w' (b, k, ...) = grad_x f_k(x) - grad_x f_y(x).

    From `_BATCHED_FROM` images on: one forward pass, then the k backward passes vectorised in one
    call (`is_grads_batched`: the vector-Jacobian products with e_{others[:, j]} - e_y). Below it,
    and for a model with an operation that has no batching rule: each image replicated k times on
    the batch dimension, copy j differentiating f_{others[:, j]} - f_y, one backward pass of the
    sum (the copies do not interact: the model is in eval mode). Same numbers either way; measured
    on a CPU, the vectorised form is 1.1-2x faster for batches, the replicated one for one image.
    """
    b, k = others.shape
    if b >= _BATCHED_FROM:
        xi = x.detach().clone().requires_grad_(True)
        logits = model(xi)
        diff = logits.gather(1, others) - logits.gather(1, y[:, None])
        eye = torch.eye(logits.shape[1], dtype=logits.dtype, device=logits.device)
        directions = eye[others.T] - eye[y][None]  # (k, b, classes)
        try:
            (grad,) = torch.autograd.grad(
                logits, xi, grad_outputs=directions, is_grads_batched=True
            )
            return diff.detach(), grad.transpose(0, 1)
        except RuntimeError:
            pass
    shape = x.shape[1:]
    xr = x.detach().unsqueeze(1).expand(b, k, *shape).reshape(b * k, *shape)
    xr = xr.clone().requires_grad_(True)
    logits = model(xr)
    f_y = logits.gather(1, y.repeat_interleave(k)[:, None])
    f_k = logits.gather(1, others.reshape(-1, 1))
    diff = (f_k - f_y).squeeze(1)
    (grad,) = torch.autograd.grad(diff.sum(), xr)
    return diff.detach().view(b, k), grad.view(b, k, *shape)


def deepfool_attack(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    overshoot: float = 0.02,
    max_iter: int = 50,
    candidates: int | None = None,
    norm: Norm = "l2",
    clip: tuple[float, float] | None = (0.0, 1.0),
) -> DeepFoolResult:
    """Multi-class DeepFool (Algorithm 2) on a whole batch; see `DeepFoolResult`.

    Each iteration linearises the classifier at the current iterate x_i, moves to the nearest
    linearised boundary (l2: r_i = |f'_l| / ||w'_l||_2^2 w'_l; linf: r_i = |f'_l| / ||w'_l||_1
    sign(w'_l)), accumulates r = sum r_i and sets x_{i+1} = x0 + (1 + overshoot) r (clipped to
    `clip` when given). An image leaves the loop as soon as it is no longer classified as `y`.

    Args:
        model: maps NCHW inputs to logits; put in eval mode with frozen parameters for the attack
            and restored afterwards.
        x: images (in `clip` when given); y: the label each image must leave (int64).
        overshoot: eta (the paper's 0.02).
        max_iter: iterations per image at most (the official code's 50).
        candidates: how many classes to consider, the label's included (the official code's
            `num_classes`, 10); None = every class.
        norm: "l2" (the paper's main attack) or "linf" (Section 3.3 with p = inf).
        clip: the box the iterates stay in, or None (the paper: no box).
    """
    if norm not in NORMS:
        raise ValueError(f"deepfool: norm must be one of {NORMS}, got {norm!r}")
    if overshoot < 0 or max_iter < 0:
        raise ValueError(
            f"deepfool: need overshoot >= 0 and max_iter >= 0, got {overshoot}, {max_iter}"
        )
    if candidates is not None and candidates < 2:
        raise ValueError(
            f"deepfool: candidates must be >= 2 (the label and one other), got {candidates}"
        )
    x0 = x.detach()
    n = x0.shape[0]
    x_adv = x0.clone()
    r_tot = torch.zeros_like(x0)
    iterations = torch.zeros(n, dtype=torch.long, device=x0.device)
    with frozen(model):
        with torch.no_grad():
            logits = model(x0)
        classes = logits.shape[1]
        k = classes - 1 if candidates is None else min(candidates, classes) - 1
        mask = F.one_hot(y, classes).bool()
        others = logits.masked_fill(mask, float("-inf")).topk(k, dim=1).indices
        active = torch.nonzero(logits.argmax(dim=1) == y).squeeze(1)
        for _ in range(max_iter):
            if active.numel() == 0:
                break
            f_diff, w_diff = boundary_terms(model, x_adv[active], y[active], others[active])
            flat = w_diff.flatten(2)
            dual = flat.norm(dim=2) if norm == "l2" else flat.abs().sum(dim=2)
            distance = f_diff.abs() / (dual + _TINY)
            nearest = distance.argmin(dim=1)
            pick = torch.arange(active.numel(), device=x0.device)
            w = w_diff[pick, nearest]
            length = distance[pick, nearest] + _STEP_PAD
            per_image = (-1,) + (1,) * (x0.dim() - 1)
            if norm == "l2":
                step = length.view(per_image) * w / (dual[pick, nearest].view(per_image) + _TINY)
            else:
                step = length.view(per_image) * w.sign()
            r_tot[active] += step
            moved = x0[active] + (1.0 + overshoot) * r_tot[active]
            if clip is not None:
                moved = moved.clamp(clip[0], clip[1])
            x_adv[active] = moved
            iterations[active] += 1
            with torch.no_grad():
                still = model(moved).argmax(dim=1) == y[active]
            active = active[still]
    fooled = predict(model, x_adv) != y
    fooled &= iterations > 0
    return DeepFoolResult(x_adv.detach(), iterations, fooled)


def deepfool(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    overshoot: float = 0.02,
    max_iter: int = 50,
    candidates: int | None = None,
    norm: Norm = "l2",
    clip: tuple[float, float] | None = (0.0, 1.0),
    generator: torch.Generator | None = None,
) -> Tensor:
    """DeepFool as an `Attack`: the adversarial images of `deepfool_attack` (detached, x's shape).

    `generator` is accepted for the common attack signature; DeepFool is deterministic.
    """
    del generator
    return deepfool_attack(
        model,
        x,
        y,
        overshoot=overshoot,
        max_iter=max_iter,
        candidates=candidates,
        norm=norm,
        clip=clip,
    ).x_adv


def rho_adv(x: Tensor, x_adv: Tensor, norm: Norm = "l2") -> Tensor:
    """Per image ||x_adv - x|| / ||x|| (Eq. 15 before the mean; l2, or linf for Table 2)."""
    if norm not in NORMS:
        raise ValueError(f"rho_adv: norm must be one of {NORMS}, got {norm!r}")
    r, x = (x_adv - x).flatten(1), x.flatten(1)
    if norm == "l2":
        return r.norm(dim=1) / x.norm(dim=1).clamp_min(_TINY)
    return r.abs().amax(dim=1) / x.abs().amax(dim=1).clamp_min(_TINY)


def fgsm_min_eps(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    target_error: float = 0.9,
    eps_max: float = 1.0,
    steps: int = 12,
    clip: tuple[float, float] | None = (0.0, 1.0),
    batch_size: int = 1000,
) -> float:
    """Table 1's FGSM baseline: the smallest eps whose FGSM misclassifies `target_error` of `x`.

    Bisection on eps in [0, eps_max] (`steps` halvings; FGSM's error is close to monotone in eps):
    the returned eps reaches the target error (eps_max when even eps_max does not, which the
    caller can check). FGSM is clipped to `clip` (None: not clipped, as in the paper) and scored
    against `y` (the paper's labels are the classifier's own: pass `predict(model, x)`).
    """
    if not 0.0 < target_error <= 1.0 or eps_max <= 0 or steps < 1:
        raise ValueError("fgsm_min_eps: need 0 < target_error <= 1, eps_max > 0 and steps >= 1")

    def error(eps: float) -> float:
        wrong = 0
        for i in range(0, x.shape[0], batch_size):
            xb, yb = x[i : i + batch_size], y[i : i + batch_size]
            wrong += int((predict(model, fgsm(model, xb, yb, eps=eps, clip=clip)) != yb).sum())
        return wrong / x.shape[0]

    lo, hi = 0.0, eps_max
    for _ in range(steps):
        mid = (lo + hi) / 2
        if error(mid) >= target_error:
            hi = mid
        else:
            lo = mid
    return hi


def lenet(channels: int = 1, classes: int = 10) -> nn.Module:
    """LeNet as in MatConvNet's MNIST example (the paper's "LeNet"): conv 5x5x20, max-pool 2,
    conv 5x5x50, max-pool 2, fc 500 + ReLU, fc 10, for 28x28 inputs."""
    return nn.Sequential(
        nn.Conv2d(channels, 20, 5),
        nn.MaxPool2d(2),
        nn.Conv2d(20, 50, 5),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(50 * 4 * 4, 500),
        nn.ReLU(),
        nn.Linear(500, classes),
    )


def fc_500_150(in_features: int = 784, classes: int = 10) -> nn.Module:
    """The paper's FC500-150-10: two fully connected ReLU layers of 500 and 150 units."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_features, 500),
        nn.ReLU(),
        nn.Linear(500, 150),
        nn.ReLU(),
        nn.Linear(150, classes),
    )
