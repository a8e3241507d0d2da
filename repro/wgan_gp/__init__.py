"""WGAN-GP: the Wasserstein critic with a gradient penalty (Gulrajani et al., NIPS 2017).

Paper: "Improved Training of Wasserstein GANs", Ishaan Gulrajani, Faruk Ahmed, Martin Arjovsky,
Vincent Dumoulin, Aaron Courville, https://arxiv.org/abs/1704.00028 (catalog key
`2017_Gulrajani_I_p-nips_itwg`) — Algorithm 1, Section 4 (Eq. 3) and Section 5.2 (Figure 2).
Official code: github.com/igul222/improved_wgan_training (TensorFlow, commit fa66c57:
`gan_64x64.py` for Figure 2, `gan_mnist.py` for 28 px images; read, not copied).

Reproduces: Figure 2's experiment (which architectures train with one set of hyperparameters per
objective, under DCGAN's loss, WGAN with weight clipping and WGAN-GP) on Fashion-MNIST as a stated
analogue, decided by FID on our Fashion-MNIST classifier's features (`repro.sample_quality`), with
the claims of `claims.py`. Table 2 (200 random architectures on 32 × 32 ImageNet) and Table 3
(CIFAR-10 Inception scores) stay in `expected.csv`, not run: the data and the ImageNet Inception
network are not here. `repro.defense_gan` trains its generator with this folder's loss.

Map from the paper to the code (tests/repro/test_paper_maps.py checks every name exists):
- Eq. 3, the penalty λ E_{x̂}[(‖∇_x̂ D(x̂)‖₂ − 1)²] at x̂ = ε x + (1 − ε) x̃, ε ~ U[0, 1], with x̃
  a generated sample                                                   -> `gradient_penalty`
- Algorithm 1, lines 3–9 (the critic's loss D(x̃) − D(x) + penalty)    -> `WGANGP.critic_loss`
- Algorithm 1, lines 11–12 (the generator's loss −D(G(z)))             -> `WGANGP.generator_loss`
- Algorithm 1 itself (n_critic critic steps per generator step, Adam for both networks)
                                                                         -> `repro.gan_loop.train_gan`
- the paper's hyperparameters λ = 10, n_critic = 5, Adam α 1e-4, β1 0, β2 0.9 -> `PAPER`;
  its MNIST script's β1 = 0.5 (gan_mnist.py), which Defense-GAN's code also uses
                                                                         -> `MNIST_CODE`
- Section 4: no batch norm in the critic (the penalty is per sample); layer norm as its drop-in replacement in the
  critic, as the code's `Normalize` does under WGAN-GP -> `repro.wgan_gp.architectures.layer_norm`
- Figure 2's architectures (DCGAN baseline; G without batch norm and with a constant number of
  filters; G a 4-layer 512-unit ReLU MLP; no normalisation in G or D; tanh everywhere)
                                                -> `repro.wgan_gp.architectures.build`
- Figure 2's objectives, each with its one set of optimiser settings (`gan_64x64.py`): DCGAN
  (`repro.gan.NonSaturating`), WGAN with clipping (`repro.wgan.WGANClip`), WGAN-GP
                                                -> `repro.wgan_gp.figure2.objective`
- one cell of Figure 2 (an architecture trained with an objective)
                                                -> `repro.wgan_gp.figure2.train_cell`
- "trains or not", by FID (F-MNIST classifier features) over disjoint test splits
                                                -> `repro.wgan_gp.figure2.SplitFID`

Which runs use which Adam: Defense-GAN's generator uses `MNIST_CODE` (β1 = 0.5), as its released
configuration does; Figure 2's WGAN-GP cells use `PAPER` (β1 = 0, as `gan_64x64.py`) at `full`
and `MNIST_CODE` at `smoke` and `small` (the paper's 28 px script; README, "Settings per scale").

Deviations (each also in README.md, with why):
  - ε is drawn per sample and broadcast over the image (as the paper); the norm is over all
    pixels of a sample, as Eq. 3 defines it (Defense-GAN's code took it over image rows: see
    `repro.defense_gan.gan`).
  - Figure 2 runs on Fashion-MNIST at 28 px, not LSUN bedrooms at 64 px; five of its seven
    architectures (not the gated-nonlinearity and 101-layer ResNet rows) and three of its four
    objectives (not LSGAN); at `small` narrower networks, fewer iterations, batch 50, WGAN's
    learning rate ×5 and WGAN-GP's β1 = 0.5 (README).
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
