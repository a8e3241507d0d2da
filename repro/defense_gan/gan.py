"""WGAN-GP training of the Defense-GAN generator, with resumable checkpoints.

Paper: Samangouei, Kabkab & Chellappa, ICLR 2018, https://arxiv.org/abs/1805.06605 (v2), Section 3
("we train a WGAN ... with the procedure of Gulrajani et al."); the settings are the released code's
(`experiments/cfgs/gans/{mnist,fmnist}.yml`, `DefenseGANBase.train` in `models/gan.py`):
Adam lr 1e-4, betas (0.5, 0.9) for both networks, batch 50, 5 critic steps per generator step,
gradient penalty weight 10, 200,000 generator iterations, a checkpoint every 500 iterations.

Map (Gulrajani et al., "Improved Training of Wasserstein GANs", NeurIPS 2017, Algorithm 1):
- the critic update, loss D(G(z)) - D(x) + lambda (||grad D(x_hat)||_2 - 1)^2 with
  x_hat = x + alpha (G(z) - x), alpha ~ U(0, 1) -> `_critic_step`; the penalty (their Eq. 3)
  -> `gradient_penalty`.
- the generator update, loss -D(G(z)) -> `_generator_step`.
- the loop, n_critic critic updates per generator update, Adam for both -> `train_wgan_gp`.

Order per iteration follows the code: one generator step (skipped at iteration 0), then the critic
steps. `train_wgan_gp` writes a checkpoint (networks, both Adam states, the random-number state and
the loss history) every `checkpoint_every` iterations and at the end; called again with the same
checkpoint path it resumes, and an interrupted-then-resumed run gives the same weights as an
uninterrupted one (tested).

Deviations:
- Batches are drawn uniformly with replacement from the training tensor (the code iterates shuffled
  epochs); this keeps the whole sampling state in one `torch.Generator`, which is what makes
  resuming exact.
- Gradient penalty: the code computes the slope as `sqrt(sum(grad^2, axis=1))` on NHWC images, i.e.
  a norm over image *rows* for every (sample, column) pair, not over the whole image; we use the
  per-sample norm over all pixels that Gulrajani et al. define.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from repro.defense_gan.models import LATENT_DIM, Critic, Generator
from repro.env import fork_generator


@dataclass
class GANResult:
    """A trained (or resumed) WGAN-GP: the networks, where training started, and its losses."""

    generator: Generator
    critic: Critic
    iterations: int
    resumed_from: int
    critic_loss: list[float] = field(default_factory=list)  # per iteration, -W estimate + GP
    wasserstein: list[float] = field(default_factory=list)  # per iteration, D(x) - D(G(z))


def gradient_penalty(critic: torch.nn.Module, real: Tensor, fake: Tensor, alpha: Tensor) -> Tensor:
    """E[(||grad_x D(x_hat)||_2 - 1)^2] at x_hat = real + alpha (fake - real) (Gulrajani Eq. 3)."""
    x_hat = (real + alpha * (fake - real)).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1.0).square().mean()


def _critic_step(
    gen: Generator,
    critic: Critic,
    opt_d: torch.optim.Optimizer,
    x: Tensor,
    *,
    batch_size: int,
    gp_weight: float,
    rng: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """One critic update of Algorithm 1; returns the (detached) critic loss and W estimate.

    Draws, in this order, the batch indices, z and alpha from `rng` (the order resuming relies on);
    G(z) is computed without a graph, so only the critic's weights get gradients.
    """
    idx = torch.randint(0, x.shape[0], (batch_size,), generator=rng, device=x.device)
    real = x[idx]
    z = torch.randn(batch_size, gen.latent_dim, generator=rng, device=x.device)
    alpha = torch.rand(batch_size, 1, 1, 1, generator=rng, device=x.device)
    with torch.no_grad():
        fake = gen(z)
    w = critic(real).mean() - critic(fake).mean()
    d_loss = -w + gp_weight * gradient_penalty(critic, real, fake, alpha)
    opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_d.step()
    return d_loss.detach(), w.detach()


def _generator_step(
    gen: Generator,
    critic: Critic,
    opt_g: torch.optim.Optimizer,
    *,
    batch_size: int,
    rng: torch.Generator,
) -> None:
    """One generator update of Algorithm 1: minimise -D(G(z)), the critic's weights held fixed
    (their `requires_grad` is off during the step, so no critic gradient is computed)."""
    z = torch.randn(batch_size, gen.latent_dim, generator=rng, device=rng.device)
    critic.requires_grad_(False)
    g_loss = -critic(gen(z)).mean()
    opt_g.zero_grad(set_to_none=True)
    g_loss.backward()
    opt_g.step()
    critic.requires_grad_(True)


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
    progress: bool = True,
) -> GANResult:
    """Train G and D on images `x` (N,1,28,28 in [0,1], on the training device) for `iterations`
    generator iterations; resume from `checkpoint` when that file exists.

    A checkpoint whose settings (width, batch, optimiser...) differ from these raises ValueError
    instead of silently mixing runs; a larger `iterations` than the checkpoint's continues training.
    `stop_after` ends the call after that many iterations *of this call* (for tests that simulate an
    interruption). Returns the networks in eval mode.
    """
    from repro import ReproError

    device = x.device
    config = _config(dim, latent_dim, batch_size, critic_iters, gp_weight, lr, betas)
    # Network initialisation from the global RNG, re-seeded rather than forked: forking would move
    # the global stream that follows this call (dropout masks of later training) in recorded runs.
    torch.manual_seed(seed)
    gen = Generator(dim, latent_dim).to(device)
    critic = Critic(dim).to(device)
    opt_g = torch.optim.Adam(gen.parameters(), lr=lr, betas=betas)
    opt_d = torch.optim.Adam(critic.parameters(), lr=lr, betas=betas)
    rng = fork_generator(seed, device=device)  # batches, z and alpha: the state a checkpoint keeps
    start = 0
    critic_hist: list[float] = []
    w_hist: list[float] = []
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.exists():
        state = torch.load(path, map_location=device, weights_only=False)
        if state["config"] != config:
            raise ReproError(
                f"{path}: checkpoint settings {state['config']} differ from {config}; "
                "remove it or use another checkpoint path"
            )
        gen.load_state_dict(state["generator"])
        critic.load_state_dict(state["critic"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        rng.set_state(state["rng"].to(rng.get_state().device))
        start = int(state["iteration"])
        critic_hist = list(state["critic_loss"])
        w_hist = list(state["wasserstein"])

    def save(iteration: int) -> None:
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(
            {"config": config, "iteration": iteration, "generator": gen.state_dict(),
             "critic": critic.state_dict(), "opt_g": opt_g.state_dict(),
             "opt_d": opt_d.state_dict(), "rng": rng.get_state(),
             "critic_loss": critic_hist, "wasserstein": w_hist},
            tmp,
        )  # fmt: skip
        os.replace(tmp, path)  # atomic: an interruption never leaves a half-written checkpoint

    end = iterations if stop_after is None else min(iterations, start + stop_after)
    end = max(end, start)  # a checkpoint past `iterations` is returned as it is
    gen.train()
    critic.train()
    bar = _progress(range(start, end), progress, "WGAN-GP")
    pending_c: list[Tensor] = []
    pending_w: list[Tensor] = []
    for it in bar:
        if it > 0:  # the code skips the generator step at iteration 0
            _generator_step(gen, critic, opt_g, batch_size=batch_size, rng=rng)
        for _ in range(critic_iters):
            d_loss, w = _critic_step(
                gen, critic, opt_d, x, batch_size=batch_size, gp_weight=gp_weight, rng=rng
            )
        pending_c.append(d_loss)
        pending_w.append(w)
        done = it + 1
        if done % checkpoint_every == 0 or done == end:
            critic_hist += torch.stack(pending_c).tolist()
            w_hist += torch.stack(pending_w).tolist()
            pending_c, pending_w = [], []
            save(done)
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(w=f"{w_hist[-1]:.3f}")
    gen.eval()
    critic.eval()
    return GANResult(gen, critic, end, start, critic_hist, w_hist)


def _progress(it: range, enabled: bool, desc: str) -> Any:
    from repro.env import progress_bar

    return progress_bar(it, total=len(it), desc=desc, enabled=enabled)


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> Generator:
    """The generator stored in a `train_wgan_gp` checkpoint, in eval mode."""
    state = torch.load(Path(path), map_location=device, weights_only=False)
    cfg = state["config"]
    gen = Generator(cfg["dim"], cfg["latent_dim"]).to(device)
    gen.load_state_dict(state["generator"])
    return gen.eval()
