"""The one GAN training loop of the repository; the loss is a parameter.

Goodfellow et al.'s minimax game, its non-saturating variant, WGAN with weight clipping and WGAN-GP
differ in two functions (the critic's loss on a real and a fake batch, the generator's loss on a
fake batch) and in what happens after a critic step (WGAN clips the weights). Those live in the
papers' folders as `GANLoss` objects (`repro.wgan_gp.WGANGP`, ...); everything else — batches,
the n_critic schedule, optimiser steps, checkpoints that resume exactly, sample grids during
training, the progress bar — is here, once.

One iteration is: a generator step (skipped at iteration 0, as Gulrajani et al.'s code does), then
`n_critic` critic steps. Each critic step draws, from one `torch.Generator`, the batch indices
(uniformly with replacement), then z, then whatever the loss draws (WGAN-GP's interpolation
weights); the generator step draws z. Keeping every draw in that one generator is what makes a
resumed run bit-identical to an uninterrupted one: a checkpoint stores both networks, both
optimiser states, that generator's state and the loss history.

Performance: data stay on the device; the step loop never reads a value back to the host except
when the history is flushed (every `log_every` iterations and at checkpoints), so a GPU runs ahead.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from repro import ReproError
from repro.checkpoint import load_checkpoint, save_checkpoint
from repro.env import progress_bar

__all__ = ["GANLoss", "GANRun", "SampleLatent", "gaussian_latent", "train_gan"]


class GANLoss(Protocol):
    """What a GAN paper contributes to the loop.

    `critic_loss` returns the loss the critic minimises and one statistic to log (the Wasserstein
    estimate D(x) − D(G(z)) for the WGANs, the discriminator's accuracy or value for the others);
    it may draw from `rng` (after the loop's own draws). `generator_loss` is what G minimises on a
    fake batch. `after_critic_step` runs after each critic update (WGAN's weight clipping).
    `statistic` names the statistic in the history and on the progress bar.
    """

    name: str
    statistic: str

    def critic_loss(
        self, critic: nn.Module, real: Tensor, fake: Tensor, rng: torch.Generator
    ) -> tuple[Tensor, Tensor]: ...

    def generator_loss(self, critic: nn.Module, fake: Tensor) -> Tensor: ...

    def after_critic_step(self, critic: nn.Module) -> None: ...


@dataclass
class GANRun:
    """A trained (or resumed) GAN: where this call started and ended, and the per-iteration
    history of the critic's loss and the loss's statistic (the last critic step of each
    iteration)."""

    generator: nn.Module
    critic: nn.Module
    iterations: int
    resumed_from: int
    critic_loss: list[float] = field(default_factory=list)
    statistic: list[float] = field(default_factory=list)


SampleLatent = Callable[[int, torch.Generator], Tensor]


def gaussian_latent(dim: int) -> SampleLatent:
    """The prior z ~ N(0, I_dim) as a `SampleLatent`: `draw(n, rng)` on `rng`'s device (WGAN,
    WGAN-GP, ProGAN and Defense-GAN's generator all use it, each with its own `dim`)."""

    def draw(n: int, rng: torch.Generator) -> Tensor:
        return torch.randn(n, dim, generator=rng, device=rng.device)

    return draw


def _sample_grid(
    generator: nn.Module, z: Tensor, path: Path, nrow: int
) -> None:  # pragma: no cover - thin
    from torchvision.utils import save_image

    was = generator.training
    generator.eval()
    with torch.no_grad():
        images = generator(z)
    generator.train(was)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(images.float().cpu(), path, nrow=nrow)


def train_gan(
    generator: nn.Module,
    critic: nn.Module,
    x: Tensor,
    *,
    loss: GANLoss,
    iterations: int,
    batch_size: int,
    n_critic: int | Callable[[int], int],
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    latent: SampleLatent,
    rng: torch.Generator,
    config: dict[str, Any] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 500,
    stop_after: int | None = None,
    samples_dir: str | os.PathLike[str] | None = None,
    samples_every: int = 0,
    samples_seed: int = 0,
    log_every: int = 100,
    progress: bool = True,
    desc: str | None = None,
    on_iteration: Callable[[int], None] | None = None,
) -> GANRun:
    """Train `generator` and `critic` on images `x` (on the training device) for `iterations`
    generator iterations; resume from `checkpoint` when that file exists.

    `latent(n, rng)` draws n latent codes from `rng` (the paper's prior). `config` (the settings a
    run depends on) is stored in the checkpoint and compared on resume: a mismatch raises
    `ReproError` instead of silently mixing runs; a larger `iterations` than the checkpoint's
    continues training. `stop_after` ends this call after that many iterations (a simulated
    interruption). With `samples_dir` and `samples_every`, a grid of G on 64 fixed codes (drawn
    from their own generator, seeded `samples_seed`, so sampling never moves the training stream)
    is saved as `samples_dir/iter_XXXXXX.png` every `samples_every` iterations and at the end.
    `n_critic` is a number of critic steps per iteration or a schedule `n_critic(iteration)`
    (Arjovsky et al.'s code trains the critic 100 times for the first 25 generator iterations and
    every 500th). `on_iteration(iteration)` runs at the start of every iteration, before the
    generator's step (Progressive GAN's fade-in α, an EMA of G's weights after the previous step,
    a probe of the gradients); it must not draw from `rng`. Returns the networks in eval mode.
    """
    schedule = n_critic if callable(n_critic) else (lambda _it, k=n_critic: k)
    if iterations < 0 or batch_size < 1 or (not callable(n_critic) and n_critic < 1):
        raise ReproError(
            f"train_gan: iterations {iterations}, batch_size {batch_size} and n_critic {n_critic} "
            "must be >= 0, >= 1 and >= 1"
        )
    device = x.device
    config = dict(config or {})
    config.setdefault("loss", loss.name)
    start = 0
    critic_hist: list[float] = []
    stat_hist: list[float] = []
    path = Path(checkpoint) if checkpoint is not None else None
    state = load_checkpoint(path, config, map_location=device) if path is not None else None
    if state is not None:
        generator.load_state_dict(state["generator"])
        critic.load_state_dict(state["critic"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        rng.set_state(state["rng"].to(rng.get_state().device))
        start = int(state["iteration"])
        critic_hist = list(state["critic_loss"])
        stat_hist = list(state["statistic"])

    def save(iteration: int) -> None:
        if path is None:
            return
        save_checkpoint(
            path,
            {"config": config, "iteration": iteration, "generator": generator.state_dict(),
             "critic": critic.state_dict(), "opt_g": opt_g.state_dict(),
             "opt_d": opt_d.state_dict(), "rng": rng.get_state(),
             "critic_loss": critic_hist, "statistic": stat_hist},
        )  # fmt: skip

    fixed_z: Tensor | None = None
    grids = Path(samples_dir) if samples_dir is not None and samples_every > 0 else None
    if grids is not None:
        fixed_z = latent(64, torch.Generator(device=rng.device).manual_seed(samples_seed))

    end = iterations if stop_after is None else min(iterations, start + stop_after)
    end = max(end, start)  # a checkpoint past `iterations` is returned as it is
    generator.train()
    critic.train()
    pending_c: list[Tensor] = []
    pending_s: list[Tensor] = []

    def flush() -> None:
        nonlocal pending_c, pending_s
        if pending_c:
            critic_hist.extend(torch.stack(pending_c).tolist())
            stat_hist.extend(torch.stack(pending_s).tolist())
            pending_c, pending_s = [], []

    with progress_bar(
        total=end - start, desc=desc or loss.name, enabled=progress, unit="it"
    ) as bar:
        for it in range(start, end):
            if on_iteration is not None:
                on_iteration(it)
            if it > 0:
                z = latent(batch_size, rng)
                critic.requires_grad_(False)  # no critic gradient during the generator's step
                g_loss = loss.generator_loss(critic, generator(z))
                opt_g.zero_grad(set_to_none=True)
                g_loss.backward()
                opt_g.step()
                critic.requires_grad_(True)
            steps = schedule(it)
            if steps < 1:
                raise ReproError(f"train_gan: the n_critic schedule gave {steps} at iteration {it}")
            for _ in range(steps):
                idx = torch.randint(0, x.shape[0], (batch_size,), generator=rng, device=device)
                real = x[idx]
                z = latent(batch_size, rng)
                with torch.no_grad():
                    fake = generator(z)
                d_loss, stat = loss.critic_loss(critic, real, fake, rng)
                opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                opt_d.step()
                loss.after_critic_step(critic)
            pending_c.append(d_loss.detach())
            pending_s.append(stat.detach())
            done = it + 1
            bar.update(1)
            if done % checkpoint_every == 0 or done == end or done % log_every == 0:
                flush()
                bar.set_postfix(
                    {"d_loss": f"{critic_hist[-1]:.3f}", loss.statistic: f"{stat_hist[-1]:.3f}"},
                    refresh=False,
                )
            if done % checkpoint_every == 0 or done == end:
                save(done)
            if (
                grids is not None
                and fixed_z is not None
                and (done % samples_every == 0 or done == end)
            ):
                _sample_grid(generator, fixed_z, grids / f"iter_{done:06d}.png", nrow=8)
    flush()
    generator.eval()
    critic.eval()
    return GANRun(generator, critic, end, start, critic_hist, stat_hist)
