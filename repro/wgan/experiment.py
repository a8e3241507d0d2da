"""One arm of Section 4's experiments: a generator and a critic trained by the toolkit's loop
with one loss, stopped at checkpoints where the notebook measures sample quality.

Map:
- Section 4.3's three generator architectures, one critic for all       -> `build_generator` /
  `build_critic`
- the prior z ~ N(0, I) of the code                                     -> `gaussian_latent`
- Figure 3's "samples at different stages of training": training with measurements at
  checkpoints                                                           -> `train_in_segments`

`train_in_segments` runs `repro.gan_loop.train_gan` up to each checkpoint in turn, resuming from
the loop's own checkpoint file: the loop resumes bit-identically, so the networks at the end are
those of one uninterrupted run (tested), and the measurement at each stop (FID on a fixed set of
latent codes) draws nothing from the training stream.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from repro import ReproError
from repro.gan_loop import GANLoss, GANRun, SampleLatent, train_gan
from repro.gan_loop import gaussian_latent as _gaussian_latent

from .models import LATENT_DIM, DCGANCritic, DCGANGenerator, MLPGenerator

__all__ = ["GENERATORS", "build_generator", "gaussian_latent", "train_in_segments"]

#: The three generator architectures of Section 4.3 (Figures 5, 6 and 7).
GENERATORS = ("dcgan", "dcgan_nobn", "mlp")


def build_generator(kind: str, *, ngf: int, mlp_hidden: int = 512) -> nn.Module:
    """`dcgan` (batch norm, filters halving as the resolution doubles), `dcgan_nobn` (no batch
    norm, `ngf` filters at every layer) or `mlp` (3 hidden ReLU layers of `mlp_hidden` units)."""
    if kind == "dcgan":
        return DCGANGenerator(LATENT_DIM, ngf)
    if kind == "dcgan_nobn":
        return DCGANGenerator(LATENT_DIM, ngf, batch_norm=False, constant_filters=True)
    if kind == "mlp":
        return MLPGenerator(LATENT_DIM, mlp_hidden)
    raise ReproError(f"generator {kind!r}: use one of {', '.join(GENERATORS)}")


def build_critic(*, ndf: int) -> nn.Module:
    """The DCGAN critic / discriminator every arm uses."""
    return DCGANCritic(ndf)


#: z ~ N(0, I_100), drawn from `rng` on its device (the code's `noise.normal_(0, 1)`).
gaussian_latent = _gaussian_latent(LATENT_DIM)


@dataclass
class Segmented:
    """The run after the last checkpoint (its full history), and the checkpoints' iterations."""

    run: GANRun
    stops: list[int]


def train_in_segments(
    generator: nn.Module,
    critic: nn.Module,
    x: Tensor,
    *,
    loss: GANLoss,
    stops: Sequence[int],
    batch_size: int,
    n_critic: int | Callable[[int], int],
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    rng: torch.Generator,
    checkpoint: str | os.PathLike[str],
    on_stop: Callable[[int], None],
    latent: SampleLatent = gaussian_latent,
    config: dict[str, Any] | None = None,
    desc: str | None = None,
    progress: bool = False,
) -> Segmented:
    """Train for `max(stops)` generator iterations, calling `on_stop(iteration)` with the
    networks in eval mode after `iteration` loop iterations, for every iteration of `stops`.

    `checkpoint` must not exist yet (a stale file from another run is refused by the loop when
    its settings differ, and silently resumed when they agree: the caller gives a fresh path).
    """
    order = sorted(set(int(s) for s in stops))
    if not order or order[0] < 1:
        raise ReproError(f"train_in_segments: stops {list(stops)} must be positive")
    if os.path.exists(checkpoint):
        raise ReproError(f"train_in_segments: {checkpoint} exists; give a fresh checkpoint path")
    run: GANRun | None = None
    for stop in order:
        run = train_gan(
            generator, critic, x, loss=loss, iterations=stop, batch_size=batch_size,
            n_critic=n_critic, opt_g=opt_g, opt_d=opt_d, latent=latent, rng=rng,
            config=config, checkpoint=checkpoint, checkpoint_every=10**9,
            progress=progress, desc=desc,
        )  # fmt: skip
        on_stop(stop)
    assert run is not None
    return Segmented(run, order)
