"""WGAN-GP training of the Defense-GAN generator, with resumable checkpoints.

Paper: Samangouei, Kabkab & Chellappa, ICLR 2018, https://arxiv.org/abs/1805.06605 (v2), Section 3
("we train a WGAN ... with the procedure of Gulrajani et al."); the settings are the released code's
(`experiments/cfgs/gans/{mnist,fmnist}.yml`, `DefenseGANBase.train` in `models/gan.py`):
Adam lr 1e-4, betas (0.5, 0.9) for both networks, batch 50, 5 critic steps per generator step,
gradient penalty weight 10, 200,000 generator iterations, a checkpoint every 500 iterations.

The method is Gulrajani et al.'s and lives in their folder (`repro.wgan_gp`: the penalty, the
critic's and the generator's losses); the loop is the toolkit's (`repro.gan_loop.train_gan`: n_critic
critic steps per generator step, checkpoints that resume bit-identically). This module only fixes
Defense-GAN's networks (`repro.defense_gan.models`) and the released code's settings.

Map:
- the generator trained with those settings                             -> `train_wgan_gp`;
- the generator back from a checkpoint                                   -> `load_generator`.

Order per iteration follows the code: one generator step (skipped at iteration 0), then the critic
steps. An interrupted-then-resumed run gives the same weights as an uninterrupted one (tested).

Deviations:
- Batches are drawn uniformly with replacement from the training tensor (the code iterates shuffled
  epochs); this keeps the whole sampling state in one `torch.Generator`, which is what makes
  resuming exact.
- Gradient penalty: the code computes the slope as `sqrt(sum(grad^2, axis=1))` on NHWC images, i.e.
  a norm over image *rows* for every (sample, column) pair, not over the whole image; we use the
  per-sample norm over all pixels that Gulrajani et al. define.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from repro.defense_gan.models import LATENT_DIM, Critic, Generator
from repro.env import fork_generator
from repro.gan_loop import gaussian_latent, train_gan
from repro.wgan_gp import WGANGP


@dataclass
class GANResult:
    """A trained (or resumed) WGAN-GP: the networks, where training started, and its losses."""

    generator: Generator
    critic: Critic
    iterations: int
    resumed_from: int
    critic_loss: list[float] = field(default_factory=list)  # per iteration, -W estimate + GP
    wasserstein: list[float] = field(default_factory=list)  # per iteration, D(x) - D(G(z))


def _config(dim: int, latent_dim: int, batch_size: int, critic_iters: int, gp_weight: float,
            lr: float, betas: tuple[float, float]) -> dict[str, Any]:  # fmt: skip
    return {"dim": dim, "latent_dim": latent_dim, "batch_size": batch_size,
            "critic_iters": critic_iters, "gp_weight": gp_weight, "lr": lr,
            "betas": list(betas)}  # fmt: skip


def train_wgan_gp(
    x: Tensor,
    *,
    iterations: int,
    dim: int = 64,
    latent_dim: int = LATENT_DIM,
    batch_size: int = 50,
    critic_iters: int = 5,
    gp_weight: float = 10.0,
    lr: float = 1e-4,
    betas: tuple[float, float] = (0.5, 0.9),
    seed: int = 0,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 500,
    stop_after: int | None = None,
    samples_dir: str | Path | None = None,
    samples_every: int = 0,
    progress: bool = True,
) -> GANResult:
    """Train G and D on images `x` (N,1,28,28 in [0,1], on the training device) for `iterations`
    generator iterations; resume from `checkpoint` when that file exists.

    A checkpoint whose settings (width, batch, optimiser...) differ from these raises ReproError
    instead of silently mixing runs; a larger `iterations` than the checkpoint's continues training.
    `stop_after` ends the call after that many iterations *of this call* (for tests that simulate an
    interruption); `samples_dir`/`samples_every` save sample grids during training. Returns the
    networks in eval mode.
    """
    device = x.device
    # Network initialisation from the global RNG, re-seeded rather than forked: forking would move
    # the global stream that follows this call (dropout masks of later training) in recorded runs.
    torch.manual_seed(seed)
    gen = Generator(dim, latent_dim).to(device)
    critic = Critic(dim).to(device)
    run = train_gan(
        gen,
        critic,
        x,
        loss=WGANGP(gp_weight),
        iterations=iterations,
        batch_size=batch_size,
        n_critic=critic_iters,
        opt_g=torch.optim.Adam(gen.parameters(), lr=lr, betas=betas),
        opt_d=torch.optim.Adam(critic.parameters(), lr=lr, betas=betas),
        latent=gaussian_latent(latent_dim),
        # batches, z and alpha: the state a checkpoint keeps
        rng=fork_generator(seed, device=device),
        config=_config(dim, latent_dim, batch_size, critic_iters, gp_weight, lr, betas),
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        stop_after=stop_after,
        samples_dir=samples_dir,
        samples_every=samples_every,
        progress=progress,
        desc="WGAN-GP",
    )
    return GANResult(gen, critic, run.iterations, run.resumed_from, run.critic_loss, run.statistic)


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> Generator:
    """The generator stored in a `train_wgan_gp` checkpoint, in eval mode."""
    state = torch.load(Path(path), map_location=device, weights_only=False)
    cfg = state["config"]
    gen = Generator(cfg["dim"], cfg["latent_dim"]).to(device)
    gen.load_state_dict(state["generator"])
    return gen.eval()
