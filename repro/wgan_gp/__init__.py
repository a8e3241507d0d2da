"""WGAN-GP: the Wasserstein critic with a gradient penalty (Gulrajani et al., NIPS 2017).

Paper: "Improved Training of Wasserstein GANs", https://arxiv.org/abs/1704.00028 — Algorithm 1 and
Section 4 (Eq. 3). Official code: github.com/igul222/improved_wgan_training (TensorFlow).
Reproduces: nothing on its own yet (a method-only folder); `repro.defense_gan` trains its generator
with it through the toolkit's loop `repro.gan_loop.train_gan`.
Map:
  - Eq. 3, the penalty λ E_{x̂}[(‖∇_x̂ D(x̂)‖₂ − 1)²] at x̂ = ε x + (1 − ε) x̃, ε ~ U[0, 1], with x̃
    a generated sample                                                   -> `gradient_penalty`
  - Algorithm 1, lines 3–9 (the critic's loss D(x̃) − D(x) + penalty)    -> `WGANGP.critic_loss`
  - Algorithm 1, lines 11–12 (the generator's loss −D(G(z)))             -> `WGANGP.generator_loss`
  - Algorithm 1 itself (n_critic critic steps per generator step, Adam for both networks)
                                                                         -> `repro.gan_loop.train_gan`
  - the paper's hyperparameters λ = 10, n_critic = 5, Adam α 1e-4, β1 0, β2 0.9 -> `PAPER`;
    its MNIST script's β1 = 0.5 (gan_mnist.py), which Defense-GAN's code also uses
                                                                         -> `MNIST_CODE`
Deviations:
  - ε is drawn per sample and broadcast over the image (as the paper); the norm is over all
    pixels of a sample, as Eq. 3 defines it (Defense-GAN's code took it over image rows: see
    `repro.defense_gan.gan`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["MNIST_CODE", "PAPER", "WGANGP", "Settings", "gradient_penalty"]


@dataclass(frozen=True)
class Settings:
    """The hyperparameters of Algorithm 1."""

    gp_weight: float = 10.0
    n_critic: int = 5
    lr: float = 1e-4
    betas: tuple[float, float] = (0.0, 0.9)


#: Algorithm 1's defaults as the paper prints them.
PAPER = Settings()
#: The official MNIST script's Adam (β1 = 0.5), which Defense-GAN's released code also uses.
MNIST_CODE = Settings(betas=(0.5, 0.9))


def gradient_penalty(critic: nn.Module, real: Tensor, fake: Tensor, alpha: Tensor) -> Tensor:
    """E[(‖∇_x D(x̂)‖₂ − 1)²] at x̂ = real + alpha (fake − real) (Eq. 3, without λ).

    `alpha` broadcasts against the images (one value per sample). The graph is kept
    (`create_graph=True`) because the penalty is itself differentiated in the critic's update.
    """
    x_hat = (real + alpha * (fake - real)).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1.0).square().mean()


@dataclass(frozen=True)
class WGANGP:
    """The `repro.gan_loop.GANLoss` of WGAN-GP: the critic minimises D(G(z)) − D(x) + λ·penalty, the
    generator −D(G(z)); the logged statistic is the Wasserstein estimate D(x) − D(G(z))."""

    gp_weight: float = 10.0
    name: str = "WGAN-GP"
    statistic: str = "w"

    def critic_loss(
        self, critic: nn.Module, real: Tensor, fake: Tensor, rng: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        """The critic's loss and the Wasserstein estimate; draws ε per sample from `rng`."""
        shape = (real.shape[0],) + (1,) * (real.dim() - 1)
        alpha = torch.rand(shape, generator=rng, device=real.device)
        w = critic(real).mean() - critic(fake).mean()
        return -w + self.gp_weight * gradient_penalty(critic, real, fake, alpha), w

    def generator_loss(self, critic: nn.Module, fake: Tensor) -> Tensor:
        """−E[D(G(z))]."""
        return -critic(fake).mean()

    def after_critic_step(self, critic: nn.Module) -> None:
        """Nothing: the penalty replaces WGAN's weight clipping."""
