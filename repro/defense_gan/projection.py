"""Defense-GAN projection: find z* = argmin_z ||G(z) - x||^2 and return G(z*).

Paper: Samangouei, Kabkab & Chellappa, ICLR 2018, https://arxiv.org/abs/1805.06605 (v2) —
Section 3.2, Algorithm 1 and Figure 2; settings from the released code (`DefenseGANBase.reconstruct`
in kabkabm/defensegan, `models/gan.py`).
Reproduces: the reconstruction step behind every Defense-GAN number (Tables 1-4, 8-11, 13).

Map:
- Eq. (6)-(7), min_z ||G(z) - x||_2^2 by L gradient-descent steps from R random starts
  -> `project`. Per image the loss is the mean squared pixel error; the batch loss is the sum over
  images and restarts, so each (image, restart) pair follows its own independent trajectory.
- "z initialised from N(0, 1/k)" (code: std sqrt(1/latent_dim)), "momentum 0.7, lr 10" (code:
  `MomentumOptimizer`; its staircase decay at step ceil(0.8 L) never fires, see Deviations)
  -> the update loop of `_project_chunk` (v <- m v + g; z <- z - lr_t v, TF's momentum form),
  rates from `lr_schedule`.
- "keep, per image, the restart with the smallest reconstruction error" -> `_select`.

Deviations from the released code (README.md lists them too):
- The restarts and the images share the batch dimension, as in the code (`tf.tile`), but the
  batch is restart-major (row r*N + i) so a `best_of(r)` view is a slice; same maths.
- The code picks the best restart by the loss of the last loop iteration, i.e. of G(z_{L-1})
  before the last update, and returns that G(z_{L-1}). We apply all L updates and select on
  ||G(z_L) - x||^2 (one extra generator pass).
- Learning rate: constant 10 by default (`DECAY = 1.0`), as the released code ran. Its graph
  computes the x0.1 decay at ceil(0.8 L) from a step variable (`rec_iter_{id}`) that the
  `tf.while_loop` never increments (it counts in a loop variable), so the rate the code stated
  never applied; the official README gives lr 10. The stated schedule is a variant:
  `decay=0.1` (`repro.toml` key `rec_decay`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from repro.defense_gan.models import latent_std
from repro.train import frozen

#: The released code's projection: learning rate 10, momentum 0.7, and no decay in effect (the
#: stated x0.1 at ceil(0.8 L) is the variant `decay=0.1`; module docstring).
REC_LR = 10.0
MOMENTUM = 0.7
DECAY = 1.0

#: Largest number of (image, restart) rows pushed through the generator at once. Bounds memory:
#: at width 64 a row holds ~0.3 MB of activations and gradients (8192 rows ~ 2.5 GB).
MAX_ROWS = 8192


@dataclass(frozen=True)
class Projection:
    """Result of `project` for N images with R restarts (tensors on the input's device).

    `reconstruction` (N,C,H,W) = G(`latent`); `mse` (N,) its mean squared error to the input;
    `restart_latent` (R,N,k) and `restart_mse` (R,N) keep every restart's final state, so the
    result for fewer restarts is a view (`best_of`): the restarts are independent trajectories,
    and the best of the first r restarts of an R-restart run is exactly an r-restart run.
    """

    reconstruction: Tensor
    latent: Tensor
    mse: Tensor
    restart_latent: Tensor
    restart_mse: Tensor
    best_restart: Tensor

    @property
    def restarts(self) -> int:
        return int(self.restart_mse.shape[0])

    def best_of(self, generator: nn.Module, restarts: int) -> Projection:
        """The projection that keeps only the first `restarts` restarts (one generator pass)."""
        if not 1 <= restarts <= self.restarts:
            raise ValueError(f"restarts must be in [1, {self.restarts}], got {restarts}")
        return _select(
            generator,
            self.restart_latent[:restarts],
            self.restart_mse[:restarts],
            like=self.reconstruction,
        )


def _select(
    generator: nn.Module, restart_latent: Tensor, restart_mse: Tensor, *, like: Tensor
) -> Projection:
    """Keep, per image, the restart with the smallest reconstruction error, and G of its latent.

    `restart_latent` (R,N,k) and `restart_mse` (R,N) are every restart's final state; the
    reconstruction has `like`'s dtype and shape (one generator pass, no graph).
    """
    best = restart_mse.argmin(dim=0)
    latent = restart_latent.gather(0, best.view(1, -1, 1).expand(1, -1, restart_latent.shape[2]))[0]
    with frozen(generator), torch.no_grad():
        recon = generator(latent).to(like.dtype).view_as(like)
    return Projection(
        reconstruction=recon,
        latent=latent,
        mse=restart_mse.gather(0, best.view(1, -1))[0],
        restart_latent=restart_latent,
        restart_mse=restart_mse,
        best_restart=best,
    )


def initial_latents(
    n: int,
    restarts: int,
    latent_dim: int,
    *,
    device: torch.device | str = "cpu",
    generator_rng: torch.Generator | None = None,
) -> Tensor:
    """z_0 ~ N(0, 1/latent_dim), shape (R, N, k): what `project` draws when no z_init is given."""
    rng_device = generator_rng.device if generator_rng is not None else torch.device(device)
    z = torch.randn(restarts, n, latent_dim, generator=generator_rng, device=rng_device)
    return (z * latent_std(latent_dim)).to(device)


def lr_schedule(steps: int, lr: float, decay: float = DECAY, decay_at: float = 0.8) -> list[float]:
    """Per-step learning rates: `lr` until step ceil(decay_at*steps), then lr*decay (staircase);
    the default `decay` (1.0) is the constant rate the released code ran."""
    switch = math.ceil(decay_at * steps)
    return [lr if t < switch else lr * decay for t in range(steps)]


def project(
    generator: nn.Module,
    x: Tensor,
    *,
    steps: int,
    restarts: int,
    lr: float = REC_LR,
    momentum: float = MOMENTUM,
    generator_rng: torch.Generator | None = None,
    z_init: Tensor | None = None,
    decay: float = DECAY,
    decay_at: float = 0.8,
    max_rows: int = MAX_ROWS,
) -> Projection:
    """Project images `x` (N,C,H,W in [0,1]) onto the range of `generator` (Defense-GAN's step).

    `steps` = L gradient steps, `restarts` = R random starts per image; `lr`, `momentum`,
    `decay`, `decay_at` as in the module docstring. `z_init` fixes the starts (the paper's
    white-box attacker is given them): (R,N,k) per image, or (R,k) the same R starts for every
    image; otherwise they are drawn from `generator_rng`. All images and
    restarts go through the generator together, `max_rows` (image x restart) rows at a time; there
    is no Python loop over images, and no host synchronisation inside the step loop. The generator
    is used in eval mode with requires_grad off (only dL/dz is computed) and is left as it was.
    Returns a detached `Projection`.
    """
    if x.dim() != 4:
        raise ValueError(f"x must be N x C x H x W, got shape {tuple(x.shape)}")
    if steps < 0 or restarts < 1:
        raise ValueError(f"need steps >= 0 and restarts >= 1, got {steps}, {restarts}")
    latent_dim = int(getattr(generator, "latent_dim", 0)) or _infer_latent_dim(generator)
    n = x.shape[0]
    if z_init is None:
        z_init = initial_latents(
            n, restarts, latent_dim, device=x.device, generator_rng=generator_rng
        )
    elif z_init.shape == (restarts, latent_dim):
        z_init = z_init.unsqueeze(1).expand(restarts, n, latent_dim)
    elif z_init.shape != (restarts, n, latent_dim):
        raise ValueError(
            f"z_init must have shape {(restarts, n, latent_dim)} or {(restarts, latent_dim)}, "
            f"got {tuple(z_init.shape)}"
        )
    x = x.detach()
    rates = lr_schedule(steps, lr, decay, decay_at)
    chunk = max(1, max_rows // restarts)
    latents, mses = [], []
    with frozen(generator):
        for start in range(0, n, chunk):  # chunks of images bound memory; each chunk is batched
            z, mse = _project_chunk(
                generator,
                x[start : start + chunk],
                z_init[:, start : start + chunk].to(x.device),
                rates,
                momentum,
            )
            latents.append(z)
            mses.append(mse)
    return _select(generator, torch.cat(latents, dim=1), torch.cat(mses, dim=1), like=x)


def _project_chunk(
    generator: nn.Module, x: Tensor, z0: Tensor, rates: list[float], momentum: float
) -> tuple[Tensor, Tensor]:
    """L momentum steps for a chunk; rows restart-major. Returns z_L (R,n,k) and MSE (R,n)."""
    r, n, k = z0.shape
    target = x.unsqueeze(0).expand(r, *x.shape).reshape(r * n, *x.shape[1:])
    z = z0.reshape(r * n, k).clone()
    velocity = torch.zeros_like(z)
    dims = tuple(range(1, target.dim()))
    for rate in rates:
        z.requires_grad_(True)
        with torch.enable_grad():
            loss = (generator(z) - target).square().mean(dim=dims).sum()
            (grad,) = torch.autograd.grad(loss, z)
        with torch.no_grad():
            velocity.mul_(momentum).add_(grad)
            z = z.detach() - rate * velocity
    with torch.no_grad():
        mse = (generator(z) - target).square().mean(dim=dims)
    return z.detach().view(r, n, k), mse.view(r, n)


def _infer_latent_dim(generator: nn.Module) -> int:
    """Latent size from the first Linear layer, for generators without a `latent_dim` attribute."""
    for m in generator.modules():
        if isinstance(m, nn.Linear):
            return m.in_features
    raise ValueError("cannot infer the generator's latent size; give it a `latent_dim` attribute")
