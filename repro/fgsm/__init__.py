"""Fast gradient sign method (Goodfellow, Shlens & Szegedy, ICLR 2015).

Paper: "Explaining and Harnessing Adversarial Examples", https://arxiv.org/abs/1412.6572
(v3, ICLR 2015). The paper has no numbered results table; every number we compare with is in
its text (pp. 3-6), see `expected.csv`.

Reproduces: the MNIST error of a shallow softmax classifier and of a maxout network under FGSM at
eps = 0.25 (Section 4, p. 3), the 3-vs-7 logistic regression (Section 5, p. 4), FGSM adversarial
training of the maxout network (Section 6, p. 5) and its noise-training controls (p. 6).

Map from the paper to the code:
- Section 4, the method: eta = eps * sign(grad_x J(theta, x, y))                    -> `fgsm`
- Section 6: J~(theta, x, y) = alpha J(theta, x, y) + (1 - alpha) J(theta, x + eta, y), alpha = .5
  -> `repro.train.train_classifier(..., adversary=fgsm, adv_weight=1 - alpha)`
- "maxout network" (permutation-invariant MNIST, Goodfellow et al. 2013: two maxout layers of
  240 units with 5 pieces, dropout)                                                -> `maxout_network`
- "shallow softmax classifier" / logistic regression                               -> `softmax_classifier`
- Section 6 controls (training on +-eps noise and on U(-eps, eps) noise)           -> `sign_noise`,
  `uniform_noise`
- "confidence": mean softmax probability of the (wrong) predicted class over errors -> `error_and_confidence`

Deviations:
- `fgsm` clips to [0, 1] by default so that its outputs are images (the paper does not clip);
  pass `clip=None` for the paper's unclipped perturbation. The reproduction notebook uses
  `clip=None` for the paper's rows.
- The maxout network is trained with the toolkit's Adam loop, without the max-norm constraint and
  momentum schedule of the Pylearn2 original (see README.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro.train import Attack, frozen  # `frozen` re-exported: attacks elsewhere use it

__all__ = [
    "Maxout",
    "error_and_confidence",
    "fgsm",
    "frozen",
    "input_gradient",
    "maxout_network",
    "sign_noise",
    "softmax_classifier",
    "uniform_noise",
]


def input_gradient(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """grad_x of the summed cross-entropy CE(model(x), y), the model in eval mode with frozen
    parameters (left as it was): the one gradient every single-step attack of the project takes
    (FGSM here; Huang et al.'s Adv_Loss, Shaham et al.'s linearised inner maximum). Summed, not
    averaged, so per-example gradients do not shrink with the batch. Returns a detached tensor."""
    with frozen(model):
        x_in = x.detach().clone().requires_grad_(True)
        loss = F.cross_entropy(model(x_in), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x_in)
    return grad.detach()


def fgsm(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    clip: tuple[float, float] | None = (0.0, 1.0),
) -> Tensor:
    """Fast gradient sign method: x + eps * sign(grad_x CE(model(x), y)), then clipped.

    One gradient of the summed cross-entropy with respect to the input (the sign does not care
    whether the loss is summed or averaged; summing avoids tiny per-example gradients).
    `clip=None` reproduces the paper exactly (no clipping); the default keeps outputs in [0, 1].
    Returns a detached tensor of x's shape, dtype and device; the model is left as it was.
    """
    if eps < 0:
        raise ValueError(f"fgsm: eps must be >= 0, got {eps}")
    x = x.detach()
    x_adv = x + eps * input_gradient(model, x, y).sign()
    if clip is not None:
        x_adv = x_adv.clamp(clip[0], clip[1])
    return x_adv.detach()


def sign_noise(
    model: nn.Module | None,
    x: Tensor,
    y: Tensor | None,
    *,
    eps: float,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The paper's first control (Section 6): x + eps * (random +-1 per pixel), not clipped.

    Same signature as an adversary so that `train_classifier(adversary=...)` can train on it;
    `model` and `y` are unused because the noise ignores them.
    """
    del model, y
    device = generator.device if generator is not None else x.device
    bits = torch.randint(0, 2, x.shape, generator=generator, device=device).to(x.device, x.dtype)
    return (x.detach() + eps * (2.0 * bits - 1.0)).detach()


def uniform_noise(
    model: nn.Module | None,
    x: Tensor,
    y: Tensor | None,
    *,
    eps: float,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The paper's second control (Section 6): x + U(-eps, eps) per pixel, not clipped."""
    del model, y
    device = generator.device if generator is not None else x.device
    u = torch.rand(x.shape, generator=generator, device=device).to(x.device, x.dtype)
    return (x.detach() + eps * (2.0 * u - 1.0)).detach()


class Maxout(nn.Module):
    """A maxout layer (Goodfellow et al. 2013): the max over `pieces` affine maps per unit."""

    def __init__(self, in_features: int, units: int, pieces: int) -> None:
        super().__init__()
        self.units = units
        self.pieces = pieces
        self.linear = nn.Linear(in_features, units * pieces)

    def forward(self, x: Tensor) -> Tensor:
        # Pieces-major layout: reducing over a middle dimension is about 1.5x faster on a CPU
        # than over a trailing dimension of 5 (measured), with the same maths.
        z = self.linear(x)
        return z.view(*z.shape[:-1], self.pieces, self.units).amax(dim=-2)


def maxout_network(
    in_features: int = 784,
    classes: int = 10,
    *,
    units: int = 240,
    pieces: int = 5,
    dropout_input: float = 0.2,
    dropout_hidden: float = 0.5,
) -> nn.Module:
    """The permutation-invariant MNIST maxout MLP the paper attacks and adversarially trains.

    Two maxout layers of 240 units with 5 pieces each and a softmax layer, dropout with keep
    probability 0.8 on the input and 0.5 on the hidden layers (Goodfellow et al. 2013, the
    network the FGSM paper reuses). Section 6's larger model has `units=1600`.
    """
    return nn.Sequential(
        nn.Flatten(),
        nn.Dropout(dropout_input),
        Maxout(in_features, units, pieces),
        nn.Dropout(dropout_hidden),
        Maxout(units, units, pieces),
        nn.Dropout(dropout_hidden),
        nn.Linear(units, classes),
    )


def softmax_classifier(in_features: int = 784, classes: int = 10) -> nn.Module:
    """The "shallow softmax classifier": one affine map and a softmax (logistic regression).

    With `classes=2` it is the 3-vs-7 logistic regression of Section 5.
    """
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, classes))


def error_and_confidence(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    attack: Attack | None = None,
    batch_size: int = 1000,
) -> tuple[float, float]:
    """Error rate and the paper's "average confidence", both in percent, batch by batch.

    With `attack`, each batch is replaced by `attack(model, xb, yb)` first (a transfer attack is a
    closure that ignores `model` and crafts on another network). The error is the plain error on
    the (adversarial) inputs, as the paper prints it ("89.4% error rate on adversarial examples").
    The confidence is the softmax probability the model gives its (wrong) prediction, averaged
    over the misclassified examples (Section 4: "99.9% error rate with an average confidence of
    79.3%"); NaN when nothing is misclassified. Evaluated in eval mode; the mode is restored.
    """
    if x.shape[0] == 0:
        raise ValueError("error_and_confidence of an empty set")
    wrong = torch.zeros((), dtype=torch.long, device=x.device)
    confidence = torch.zeros((), dtype=torch.float64, device=x.device)
    for start in range(0, x.shape[0], batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        if attack is not None:
            xb = attack(model, xb, yb)
        with frozen(model), torch.no_grad():
            top, pred = model(xb).softmax(dim=1).max(dim=1)
        miss = pred != yb
        wrong += miss.sum()
        confidence += top[miss].double().sum()
    n_wrong = int(wrong)
    error = 100.0 * n_wrong / x.shape[0]
    mean_confidence = 100.0 * float(confidence) / n_wrong if n_wrong else float("nan")
    return error, mean_confidence
