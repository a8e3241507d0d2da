"""RAND+FGSM (Tramèr, Kurakin, Papernot, Goodfellow, Boneh & McDaniel, ICLR 2018).

Paper: "Ensemble Adversarial Training: Attacks and Defenses", https://arxiv.org/abs/1705.07204 —
the single-step attack R+FGSM, which escapes the non-smooth vicinity of the data point (where
single-step adversarial training masks the gradient) with a small random step before the gradient
step.
Reproduces: nothing on its own; it is the RAND+FGSM attack of Defense-GAN's Table 4
(ε = 0.3, α = 0.05; `repro.defense_gan`).
Map:
  - x' = x + α·sign(N(0, I))                       -> the random step in `rand_fgsm`
  - x_adv = x' + (ε − α)·sign(∇_{x'} J(x', y_true)) -> `repro.fgsm.fgsm(model, x', y, eps=ε − α)`
Deviations:
  - Both steps are clipped to `clip` (the paper's equations leave the box implicit); because
    α + (ε − α) = ε, the result stays in the ℓ∞ ball of radius ε around x.
  - The ensemble adversarial *training* of the paper is not implemented here; only its attack.
Defense-GAN's official code (whitebox.py) draws the random step with NumPy, clips it to [0, 1], and
then runs cleverhans' FGSM with ε − α and no labels, i.e. with the model's own predictions on x'
as labels; pass those predictions as `y` to mirror it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from repro.fgsm import fgsm

__all__ = ["rand_fgsm", "random_sign_step"]


def random_sign_step(
    x: Tensor,
    *,
    alpha: float,
    clip: tuple[float, float] = (0.0, 1.0),
    generator: torch.Generator | None = None,
) -> Tensor:
    """x + α·sign(N(0, I)), clipped: each pixel moves by exactly ±α before clipping.

    The Gaussian is drawn on the generator's device (CPU generators work for CUDA inputs), so the
    same seed gives the same step on every device.
    """
    device = generator.device if generator is not None else x.device
    noise = torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype)
    return (x.detach() + alpha * noise.to(x.device).sign()).clamp(*clip)


def rand_fgsm(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    alpha: float,
    clip: tuple[float, float] = (0.0, 1.0),
    generator: torch.Generator | None = None,
) -> Tensor:
    """RAND+FGSM: a random ±α step, then an FGSM step of size ε − α from there.

    The random step moves the gradient evaluation away from x, where a model trained with
    single-step adversarial training has a deceptively flat loss; the total budget stays ε.

    Args:
        model: maps NCHW inputs in `clip` to logits; left as it was (see `repro.fgsm.fgsm`).
        x: inputs, NCHW in `clip`; y: labels (int64) for the loss J(x', y).
        eps: total ℓ∞ budget ε; alpha: the random step α, with 0 ≤ α ≤ ε.
        clip: the valid input box.
        generator: the source of the random signs (the same seed gives the same output).

    Returns:
        Detached tensor like `x`, with ||x_adv − x||∞ ≤ ε.
    """
    if not 0.0 <= alpha <= eps:
        raise ValueError(f"rand_fgsm: need 0 <= alpha <= eps, got alpha={alpha}, eps={eps}")
    x_prime = random_sign_step(x, alpha=alpha, clip=clip, generator=generator)
    return fgsm(model, x_prime, y, eps=eps - alpha, clip=clip).detach()
