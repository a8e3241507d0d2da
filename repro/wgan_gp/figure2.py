"""Figure 2's experiment (Section 5.2): every architecture trained with every objective, each
objective with one set of hyperparameters for all architectures, and which ones train.

Gulrajani et al. train every architecture with four GAN methods (WGAN-GP, WGAN with weight
clipping, DCGAN and LSGAN), each objective with the default optimiser settings of its own paper,
the same for every architecture (paraphrased; Section 5.2). The settings are those of
`gan_64x64.py` (official code, commit fa66c57), the script Figure 2 was made with.

Map:
- the three objectives of Figure 2 that are reproduced, with the code's optimiser settings,
  identical for every architecture: DCGAN, the non-saturating loss (`repro.gan.NonSaturating`),
  Adam 2e-4, β (0.5, 0.999), one discriminator step per generator step; WGAN with weight
  clipping (`repro.wgan.WGANClip`, c = 0.01), RMSProp 5e-5 (decay 0.9, TF's default), 5 critic
  steps; WGAN-GP (`repro.wgan_gp.WGANGP`, λ = 10), Adam 1e-4, β (0, 0.9) (`repro.wgan_gp.PAPER`),
  5 critic steps, the critic's batch norms replaced by layer norms
  (`repro.wgan_gp.architectures.layer_norm`)                  -> `OBJECTIVES`, `objective`
- one cell of the grid: the (G, D) of an architecture trained by the toolkit's loop
  (`repro.gan_loop.train_gan`), batches of the code's 64, z ~ N(0, I_128) -> `train_cell`
- "trains" or not, by sample quality: FID (F-MNIST classifier features) of the final generator
  on disjoint splits of the test set, mean and t-interval over splits -> `SplitFID`,
  `repro.stats.t_interval`

Every cell of one architecture starts from the same generator weights (the same seed; the
generator does not depend on the objective) and sees batches and codes from a stream seeded
alike; the critic differs only where the objective changes it (layer norm for WGAN-GP).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from repro import ReproError
from repro.env import fork_generator
from repro.gan import NonSaturating
from repro.gan_loop import GANLoss, GANRun, train_gan
from repro.sample_quality import FeatureExtractor, FIDReference
from repro.wgan import WGANClip

from . import PAPER, WGANGP
from .architectures import build, gaussian_latent

__all__ = ["OBJECTIVES", "Objective", "SplitFID", "objective", "train_cell"]

#: Figure 2's columns that are reproduced (its fourth, LSGAN, is not: README).
OBJECTIVES = ("dcgan", "wgan", "wgan_gp")


@dataclass(frozen=True)
class Objective:
    """An objective of Figure 2 with its one set of optimiser settings."""

    name: str
    label: str
    loss: GANLoss
    n_critic: int
    make_optimizer: Callable[[Any], torch.optim.Optimizer]
    critic_layer_norm: bool = False


def objective(
    name: str, *, wgan_lr: float = 5e-5, gp_betas: tuple[float, float] = PAPER.betas
) -> Objective:
    """The objective `name` of `OBJECTIVES` with `gan_64x64.py`'s settings. `wgan_lr` overrides
    WGAN's RMSProp learning rate and `gp_betas` WGAN-GP's Adam betas (`repro.wgan_gp.MNIST_CODE`'s
    (0.5, 0.9) at `small`: README, "Settings per scale")."""
    if name == "dcgan":
        return Objective(
            name, "DCGAN", NonSaturating(), 1,
            lambda params: torch.optim.Adam(params, lr=2e-4, betas=(0.5, 0.999)),
        )  # fmt: skip
    if name == "wgan":
        return Objective(
            name, "WGAN (clipping)", WGANClip(clip=0.01), 5,
            lambda params: torch.optim.RMSprop(params, lr=wgan_lr, alpha=0.9),
        )  # fmt: skip
    if name == "wgan_gp":
        return Objective(
            name, "WGAN-GP", WGANGP(PAPER.gp_weight), PAPER.n_critic,
            lambda params: torch.optim.Adam(params, lr=PAPER.lr, betas=tuple(gp_betas)),
            critic_layer_norm=True,
        )  # fmt: skip
    raise ReproError(f"objective {name!r}: use one of {', '.join(OBJECTIVES)}")


def train_cell(
    architecture: str,
    obj: Objective,
    x: Tensor,
    *,
    iterations: int,
    width: int,
    mlp_hidden: int,
    batch_size: int = 64,
    seed: int = 0,
    samples_dir: str | os.PathLike[str] | None = None,
    samples_every: int = 0,
    checkpoint: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> GANRun:
    """Train one cell of Figure 2: `architecture`'s (G, D) with `obj` on images `x` (on the
    training device) for `iterations` generator iterations. The networks are initialised under
    the global RNG seeded `seed` (restored afterwards), the loop's stream is seeded `seed` too."""
    device = x.device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gen, critic = build(
            architecture, width=width, mlp_hidden=mlp_hidden,
            critic_layer_norm=obj.critic_layer_norm,
        )  # fmt: skip
    gen, critic = gen.to(device), critic.to(device)
    config = {"architecture": architecture, "objective": obj.name, "width": width,
              "mlp_hidden": mlp_hidden, "batch_size": batch_size, "seed": seed}  # fmt: skip
    return train_gan(
        gen, critic, x, loss=obj.loss, iterations=iterations, batch_size=batch_size,
        n_critic=obj.n_critic, opt_g=obj.make_optimizer(gen.parameters()),
        opt_d=obj.make_optimizer(critic.parameters()), latent=gaussian_latent,
        rng=fork_generator(seed, device=device), config=config, checkpoint=checkpoint,
        checkpoint_every=max(iterations, 1), samples_dir=samples_dir,
        samples_every=samples_every, progress=progress, desc=f"{architecture} / {obj.label}",
    )  # fmt: skip


class SplitFID:
    """FID (F-MNIST classifier features) of a generator against `splits` disjoint sets of `n` real
    images (the first n·splits of `real`), each against its own `n` fresh samples: one value per
    split. The real features are computed once, for every generator measured."""

    def __init__(self, real: Tensor, extractor: FeatureExtractor, *, n: int, splits: int) -> None:
        if splits < 2 or n < 2 or n * splits > real.shape[0]:
            raise ReproError(
                f"SplitFID: {splits} splits of {n} images need {n * splits} real images "
                f"(have {real.shape[0]}); at least 2 splits of 2"
            )
        self.n, self.splits = n, splits
        self.references = [
            FIDReference(real[k * n : (k + 1) * n], extractor) for k in range(splits)
        ]

    @torch.no_grad()
    def __call__(self, generator: nn.Module, rng: torch.Generator) -> list[float]:
        """One FID per split; G in eval mode, z ~ N(0, I) from `rng`."""
        was = generator.training
        generator.eval()
        values = []
        for ref in self.references:
            z = gaussian_latent(self.n, rng)
            fake = torch.cat([generator(zb) for zb in z.split(500)])
            values.append(ref(fake))
        generator.train(was)
        return values
