"""Projected gradient descent and PGD adversarial training (Madry et al., ICLR 2018).

Paper: "Towards Deep Learning Models Resistant to Adversarial Attacks", Madry, Makelov, Schmidt,
Tsipras & Vladu, https://arxiv.org/abs/1706.06083 (v4); official code MadryLab/mnist_challenge.

Reproduces: Table 1 (MNIST, eps = 0.3: the PGD-trained CNN under FGSM, PGD with 40/100 steps and
1/20 restarts, CW-loss PGD, and black-box transfer from an independently trained copy A') and the
naturally trained network's collapse under FGSM (Section 4, p. 12), with Fashion-MNIST at
eps = 0.1 as the stated analogue.

Map from the paper to the code:
- Eq. (2.1), the saddle point min_theta E max_{||delta||_inf <= eps} L(theta, x + delta, y):
  inner max -> `pgd_linf`; outer min -> `repro.train.train_classifier(..., adversary=...,
  adv_weight=1.0)` (the paper trains on adversarial examples only).
- Section 4 / Appendix A, "PGD starting from a random perturbation", steps of size 0.01 taken in
  the l_inf geometry (x <- Proj_{x+S}(x + a sign(grad_x L))), clipped to [0, 1] like
  mnist_challenge/pgd_attack.py -> the loop in `pgd_linf`.
- "CW" / "CW+" (Section 4): Carlini & Wagner's loss max_{j != y} z_j - z_y (capped at kappa, with
  kappa = 50 for CW+) maximised by PGD -> `pgd_linf(..., loss="margin", kappa=...)`.
- Table 1 restarts: each example keeps its worst restart -> `pgd_linf(..., restarts=R)`.
- The MNIST network (conv 5x5x32 - pool - conv 5x5x64 - pool - fc 1024 - fc 10, truncated-normal
  std 0.1 weights, biases 0.1) -> `madry_cnn`.

Deviations:
- Restarts: among restarts an example keeps the first one that is misclassified, else the one
  with the highest loss (the paper reports the worst case per example). Restart 0 runs for every
  example; the remaining restarts run stacked on the batch dimension for the examples still
  classified correctly only (the result is the same as running them all; it costs less).
- `kappa` generalises the CW loss's confidence: mnist_challenge computes
  -relu(z_y - max_{j != y} z_j + kappa), which has the gradient of min(margin, kappa) used here.
  The default kappa = inf (an uncapped margin) behaves like CW+ at kappa = 50 in practice.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro.train import frozen

__all__ = ["LossFn", "MadryCNN", "attack_loss", "madry_cnn", "pgd_linf"]

LOSSES = ("ce", "margin")
#: A per-example attack loss `(logits, y) -> loss of shape (n,)`: a paper's own training loss
#: attacked as its official code does (e.g. GCE's complement entropy).
LossFn = Callable[[Tensor, Tensor], Tensor]


def attack_loss(
    logits: Tensor, y: Tensor, loss: str | LossFn = "ce", kappa: float = math.inf
) -> Tensor:
    """Per-example loss an attack maximises: cross-entropy, the CW margin capped at kappa, or a
    callable `(logits, y) -> (n,)` losses.

    margin = max_{j != y} z_j - z_y is positive exactly when the example is misclassified.
    """
    if callable(loss):
        out = loss(logits, y)
        if out.shape != y.shape:
            raise ValueError(
                f"pgd_linf: a loss callable must return one loss per example, got {tuple(out.shape)}"
            )
        return out
    if loss == "ce":
        return F.cross_entropy(logits, y, reduction="none")
    if loss == "margin":
        correct = logits.gather(1, y[:, None]).squeeze(1)
        others = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), -math.inf)
        margin = others.amax(dim=1) - correct
        return margin.clamp(max=kappa) if math.isfinite(kappa) else margin
    raise ValueError(f"pgd_linf: loss must be one of {LOSSES}, got {loss!r}")


def _max_rows(device: torch.device) -> int:
    """How many (restart, example) rows one pass may hold: bounded memory on a CPU."""
    return 1 << 16 if device.type == "cuda" else 1 << 12


def _uniform(shape: torch.Size, generator: torch.Generator | None, like: Tensor) -> Tensor:
    device = generator.device if generator is not None else like.device
    u = torch.rand(shape, generator=generator, device=device, dtype=like.dtype)
    return u.to(like.device)


def _pgd_rows(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    step_size: float,
    steps: int,
    random_start: bool,
    loss: str | LossFn,
    kappa: float,
    generator: torch.Generator | None,
    score: bool = True,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """One PGD run per row; returns (x_adv, final loss, misclassified). Model already frozen.

    `score=False` skips the extra forward pass that scores the final point (only restarts need
    it), and returns None for the loss and the misclassification."""
    lo = (x - eps).clamp(min=0.0)
    hi = (x + eps).clamp(max=1.0)
    if random_start:
        x_adv = (x + eps * (2.0 * _uniform(x.shape, generator, x) - 1.0)).clamp(0.0, 1.0)
    else:
        x_adv = x.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        objective = attack_loss(model(x_adv), y, loss, kappa).sum()
        (grad,) = torch.autograd.grad(objective, x_adv)
        x_adv = torch.clamp(x_adv.detach() + step_size * grad.sign(), lo, hi)
    if not score:
        return x_adv.detach(), None, None
    with torch.no_grad():
        logits = model(x_adv)
        final = attack_loss(logits, y, loss, kappa)
        wrong = logits.argmax(dim=1) != y
    return x_adv.detach(), final, wrong


def pgd_linf(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    step_size: float,
    steps: int,
    random_start: bool = True,
    restarts: int = 1,
    loss: str | LossFn = "ce",
    generator: torch.Generator | None = None,
    kappa: float = math.inf,
) -> Tensor:
    """l_inf PGD with sign steps, random start and restarts; each example keeps its worst case.

    x_0 = clip_[0,1](x + U(-eps, eps)) (or x when `random_start` is False), then `steps` times
    x <- clip(x + step_size * sign(grad_x L), max(x - eps, 0), min(x + eps, 1)) with L the summed
    `loss` ("ce", the CW "margin" capped at `kappa`, or a per-example callable). With `restarts`
    R > 1 the R runs are stacked on the batch dimension; per example the first misclassified
    restart wins, else the one with the highest final loss, so more restarts are never weaker than the first one with
    the same generator. Returns a detached tensor like `x`; the model is left as it was.
    """
    if eps < 0 or step_size < 0 or steps < 0:
        raise ValueError(
            f"pgd_linf: eps, step_size, steps must be >= 0, got {eps}, {step_size}, {steps}"
        )
    if restarts < 1:
        raise ValueError(f"pgd_linf: restarts must be >= 1, got {restarts}")
    if restarts > 1 and not random_start:
        raise ValueError("pgd_linf: restarts > 1 needs random_start=True (they would be identical)")
    if not callable(loss) and loss not in LOSSES:
        raise ValueError(f"pgd_linf: loss must be one of {LOSSES}, got {loss!r}")
    x = x.detach()
    n = x.shape[0]
    if n == 0:
        return x.clone()
    shape = [1] * (x.dim() - 1)
    with frozen(model):
        # Restart 0 for everyone, then the other restarts only for the examples that are still
        # classified correctly: an example keeps its first misclassifying restart, so running more
        # restarts on it could not change the result. Survivors' restarts run stacked on the batch
        # dimension, at most `_max_rows` rows per pass.
        best, best_loss, best_wrong = _pgd_rows(
            model,
            x,
            y,
            eps=eps,
            step_size=step_size,
            steps=steps,
            random_start=random_start,
            loss=loss,
            kappa=kappa,
            generator=generator,
            score=restarts > 1,
        )
        done = 1
        while done < restarts:
            assert best_loss is not None and best_wrong is not None  # scored when restarts > 1
            alive = (~best_wrong).nonzero().squeeze(1)
            m = alive.numel()
            if m == 0:
                break
            r = max(1, min(restarts - done, _max_rows(x.device) // m))
            xa, ya = x[alive], y[alive]
            adv, final, wrong = _pgd_rows(
                model,
                xa.repeat(r, *shape),
                ya.repeat(r),
                eps=eps,
                step_size=step_size,
                steps=steps,
                random_start=True,
                loss=loss,
                kappa=kappa,
                generator=generator,
            )
            adv, final, wrong = adv.view(r, *xa.shape), final.view(r, m), wrong.view(r, m)
            # Within the pass: the first misclassified restart, else the highest final loss.
            pick = torch.where(wrong.any(dim=0), wrong.int().argmax(dim=0), final.argmax(dim=0))
            index = torch.arange(m, device=x.device)
            cand, cand_loss, cand_wrong = adv[pick, index], final[pick, index], wrong[pick, index]
            # Survivors are all still correct, so a candidate wins if it misclassifies or has a
            # higher loss; ties keep the earlier restart.
            take = cand_wrong | (cand_loss > best_loss[alive])
            best[alive] = torch.where(take.view(m, *shape), cand, best[alive])
            best_loss[alive] = torch.where(take, cand_loss, best_loss[alive])
            best_wrong[alive] = cand_wrong
            done += r
    return best.detach()


class MadryCNN(nn.Module):
    """The MNIST network of Section 4 / mnist_challenge's model.py.

    conv 5x5, 32 filters (SAME) + ReLU + 2x2 max-pool -> conv 5x5, 64 filters + ReLU + 2x2
    max-pool -> fully connected 1024 + ReLU -> 10 logits. `width` scales the channel and unit
    counts (1.0 is the paper's network; smaller widths are a stated deviation of CPU scales).
    """

    def __init__(
        self,
        in_channels: int = 1,
        classes: int = 10,
        *,
        image_size: int = 28,
        width: float = 1.0,
        init: str = "paper",
    ) -> None:
        super().__init__()
        c1, c2, hidden = (max(1, round(width * n)) for n in (32, 64, 1024))
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        side = image_size // 4
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c2 * side * side, hidden),
            nn.ReLU(),
            nn.Linear(hidden, classes),
        )
        if init == "paper":
            # mnist_challenge/model.py: tf.truncated_normal(stddev=0.1) weights, constant 0.1 biases.
            for module in self.modules():
                if isinstance(module, nn.Conv2d | nn.Linear):
                    nn.init.trunc_normal_(module.weight, std=0.1, a=-0.2, b=0.2)
                    nn.init.constant_(module.bias, 0.1)
        elif init != "default":
            raise ValueError(f"MadryCNN: init must be 'paper' or 'default', got {init!r}")

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def madry_cnn(
    in_channels: int = 1, classes: int = 10, *, width: float = 1.0, init: str = "paper"
) -> MadryCNN:
    """Build the paper's MNIST CNN (see `MadryCNN`)."""
    return MadryCNN(in_channels, classes, width=width, init=init)
