"""Generative Adversarial Nets (Goodfellow et al., NIPS 2014).

Paper: "Generative Adversarial Nets", Ian J. Goodfellow, Jean Pouget-Abadie, Mehdi Mirza, Bing Xu,
David Warde-Farley, Sherjil Ozair, Aaron Courville, Yoshua Bengio, https://arxiv.org/abs/1406.2661
(catalog key `2014_Goodfellow_I_p-nips_gan`). Official code: github.com/goodfeli/adversarial
(Theano/Pylearn2, commit 1720041): `mnist.yaml` (the MNIST networks and optimiser),
`__init__.py` (`AdversaryCost2`, the losses) and `parzen_ll.py` (Table 1's estimator).

Reproduces: Table 1's Parzen-window log-likelihood of the MNIST GAN (225 ± 2; `expected.csv`,
run wherever MNIST's training split is, here only as a never-compared `mnist-test-split`
analogue) and, as a stated analogue with the claims checked on it, the same protocol on
Fashion-MNIST beside a memorising reference and two simple baselines (`repro.gan.baselines`),
with FID on our F-MNIST classifier's features (`repro.sample_quality`); Section 3's saturating
and non-saturating generator losses side by side. TFD and Table 1's other models (DBN, stacked
CAE, deep GSN) are not run.

Map from the paper to the code (tests/repro/test_paper_maps.py checks every name exists):
- Eq. 1, V(D, G) = E_x[log D(x)] + E_z[log(1 − D(G(z)))], estimated on a batch -> `value`
- Algorithm 1, the discriminator's ascent on (1/m) Σ [log D(x) + log(1 − D(G(z)))], written as
  the binary cross-entropy it negates                              -> `discriminator_loss`
- Algorithm 1, the generator's descent on (1/m) Σ log(1 − D(G(z))) (the saturating minimax
  loss)                                                            -> `Minimax`
- Section 3, G maximises log D(G(z)) instead (the non-saturating loss, the one the official
  code trains with: `g_obj = cost(y1, y_hat0)`)                    -> `NonSaturating`
- Algorithm 1 itself, k = 1 discriminator step per generator step, minibatches of m samples
                                                                   -> `repro.gan_loop.train_gan`,
  called with the paper's networks and optimiser by `train`
- Section 3's "much stronger gradients early in learning": ‖∇_θg‖ of both losses on the same
  fake batch, at chosen generator steps of a run                   -> `GradientProbe`
- mnist.yaml's generator: 100-d uniform noise → ReLU 1200 → ReLU 1200 → sigmoid 784, the output
  bias set from the data's marginals                               -> `Generator`,
  `uniform_latent`, `marginal_logits`
- mnist.yaml's discriminator: maxout 240 × 5 → maxout 240 × 5 → sigmoid, dropout on the inputs
  of every layer (keep 0.8 on the pixels, 0.5 elsewhere)           -> `Discriminator`, `Maxout`
- mnist.yaml's optimiser: SGD, batch 100, learning rate 0.1 divided by 1.000004 per update down
  to 1e-6, momentum 0.5 rising linearly to 0.7 by epoch 250        -> `PaperSGD`
- Table 1's Parzen-window estimate (parzen_ll.py)                  -> `repro.gan.parzen.parzen_evaluation`

Both losses are computed from the discriminator's logits (`F.logsigmoid`,
`F.binary_cross_entropy_with_logits`), never as log(sigmoid(·)): log(1 − D) = log σ(−l) and
log D = log σ(l) stay finite and keep their gradients when D saturates, which is exactly the regime
Section 3 is about. They take any critic that returns one logit per image (N or N × 1 values), so
later papers (DCGAN, WGAN-GP's comparisons) import them from here.

Deviations (each also in README.md, with why):
- Updates alternate as Algorithm 1 writes them (a discriminator step, then a generator step on a
  fresh z, through the toolkit's loop); the official code computes both gradients from one
  minibatch and applies them simultaneously.
- The discriminator's loss is Algorithm 1's sum of the two expectations; the code halves it
  (`d_obj = 0.5 (cost_real + cost_fake)`). With SGD that is the same as halving D's learning
  rate, so `full` uses 0.05 for D and 0.1 for G, which is the code's update exactly.
- Minibatches are drawn uniformly with replacement (the toolkit's loop; the code iterates shuffled
  epochs). Momentum is torch's (v ← μv + g, θ ← θ − εv) where Pylearn2 keeps ε inside the
  velocity (v ← μv − εg); the two agree while ε is constant and ε changes by 4·10⁻⁶ per update.
- `small` trains narrower networks with Adam (lr 2e-4, β1 0.5) for a few thousand iterations on a
  CPU; `full` is the paper's widths and optimiser (README.md, "Settings per scale").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro import ReproError

__all__ = [
    "LATENT_DIM",
    "Discriminator",
    "GANTraining",
    "Generator",
    "GradientProbe",
    "Maxout",
    "Minimax",
    "NonSaturating",
    "PaperSGD",
    "discriminator_loss",
    "logits_of",
    "marginal_logits",
    "train",
    "uniform_latent",
    "value",
]

LATENT_DIM = 100


# --------------------------------------------------------------------------- the losses


def logits_of(critic: nn.Module, x: Tensor) -> Tensor:
    """The critic's one logit per image as a vector of N values (it may return N or N × 1)."""
    out = critic(x)
    if out.numel() != x.shape[0]:
        raise ReproError(
            f"a GAN discriminator must give one logit per image: {tuple(out.shape)} for "
            f"{x.shape[0]} images"
        )
    return out.reshape(x.shape[0])


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """−(1/m) Σ [log D(x) + log(1 − D(G(z)))] from logits: the binary cross-entropy of real
    images labelled 1 plus that of generated images labelled 0 (Algorithm 1's objective, which D
    ascends, negated so that it is minimised)."""
    return F.binary_cross_entropy_with_logits(
        real_logits, torch.ones_like(real_logits)
    ) + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))


def value(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """V(D, G) of Eq. 1 on a batch: mean log D(x) + mean log(1 − D(G(z))), from logits."""
    return F.logsigmoid(real_logits).mean() + F.logsigmoid(-fake_logits).mean()


@dataclass(frozen=True)
class Minimax:
    """The `repro.gan_loop.GANLoss` of Algorithm 1 as written: D minimises
    `discriminator_loss`; G minimises (1/m) Σ log(1 − D(G(z))) = mean log σ(−l), which saturates
    (its gradient in l is −D(G(z))) when D rejects G's samples confidently. The logged statistic
    is the mean D(G(z)) of the discriminator's batch."""

    name: str = "minimax"
    statistic: str = "d_fake"

    def critic_loss(
        self, critic: nn.Module, real: Tensor, fake: Tensor, rng: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        """`discriminator_loss` and mean D(G(z)); draws nothing from `rng`."""
        real_logits, fake_logits = logits_of(critic, real), logits_of(critic, fake)
        return discriminator_loss(real_logits, fake_logits), torch.sigmoid(fake_logits).mean()

    def generator_objective(self, fake_logits: Tensor) -> Tensor:
        """What G minimises, from the logits of its samples: mean log(1 − D(G(z)))."""
        return F.logsigmoid(-fake_logits).mean()

    def generator_loss(self, critic: nn.Module, fake: Tensor) -> Tensor:
        return self.generator_objective(logits_of(critic, fake))

    def after_critic_step(self, critic: nn.Module) -> None:
        """Nothing: the discriminator is unconstrained."""


@dataclass(frozen=True)
class NonSaturating(Minimax):
    """Section 3's variant: the same discriminator, and G maximises log D(G(z)), i.e. minimises
    −mean log σ(l) (gradient in l: −(1 − D(G(z))), strong exactly where `Minimax`'s vanishes).
    The official code trains with this loss."""

    name: str = "non-saturating"

    def generator_objective(self, fake_logits: Tensor) -> Tensor:
        """What G minimises: −mean log D(G(z))."""
        return -F.logsigmoid(fake_logits).mean()


def _norm(grads: tuple[Tensor | None, ...]) -> Tensor:
    parts = [g.reshape(-1) for g in grads if g is not None]
    return torch.linalg.vector_norm(torch.cat(parts))


@dataclass
class GradientProbe:
    """A `GANLoss` that trains exactly as `loss` does and, at every `every`-th generator step up
    to step `until` (steps counted from 1 in this object's life), measures on that step's own fake
    batch and the discriminator's own logits (one forward pass, as without the probe: dropout
    draws are unchanged) the norm of ∇_θg of the saturating loss mean log(1 − D(G(z))), of the
    non-saturating −mean log D(G(z)), and the mean D(G(z)).

    Values stay on the device until `records()` reads them (no host sync in the loop). The step
    count is not part of a checkpoint: probe a run from its start.
    """

    loss: Minimax
    generator: nn.Module
    every: int = 10
    until: int = 500
    _step: int = 0
    _rows: list[tuple[int, Tensor]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.every < 1 or self.until < 0:
            raise ReproError(f"GradientProbe: every {self.every} must be >= 1, until >= 0")

    @property
    def name(self) -> str:
        return self.loss.name

    @property
    def statistic(self) -> str:
        return self.loss.statistic

    def critic_loss(
        self, critic: nn.Module, real: Tensor, fake: Tensor, rng: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        return self.loss.critic_loss(critic, real, fake, rng)

    def after_critic_step(self, critic: nn.Module) -> None:
        self.loss.after_critic_step(critic)

    def generator_loss(self, critic: nn.Module, fake: Tensor) -> Tensor:
        self._step += 1
        logits = logits_of(critic, fake)
        if self._step <= self.until and self._step % self.every == 0:
            params = [p for p in self.generator.parameters() if p.requires_grad]
            saturating = F.logsigmoid(-logits).mean()
            non_saturating = -F.logsigmoid(logits).mean()
            g_sat = torch.autograd.grad(saturating, params, retain_graph=True, allow_unused=True)
            g_ns = torch.autograd.grad(non_saturating, params, retain_graph=True, allow_unused=True)
            stats = torch.stack([_norm(g_sat), _norm(g_ns), torch.sigmoid(logits).mean()])
            self._rows.append((self._step, stats.detach()))
        return self.loss.generator_objective(logits)

    def records(self) -> list[dict[str, float]]:
        """One dict per probed step: `step`, `saturating` and `non_saturating` (the gradient
        norms), `ratio` (non-saturating / saturating) and `d_fake` (mean D(G(z)))."""
        if not self._rows:
            return []
        values = torch.stack([s for _, s in self._rows]).double().cpu().tolist()
        out = []
        for (step, _), (sat, ns, d_fake) in zip(self._rows, values, strict=True):
            ratio = ns / sat if sat > 0 else math.inf
            out.append({"step": step, "saturating": sat, "non_saturating": ns, "ratio": ratio,
                        "d_fake": d_fake})  # fmt: skip
        return out


# --------------------------------------------------------------------------- the networks


def uniform_latent(n: int, rng: torch.Generator, dim: int = LATENT_DIM) -> Tensor:
    """z ~ U(−√3, √3)^dim (the official code's "uniform" noise: zero mean, unit variance), drawn
    from `rng` on its device."""
    r = math.sqrt(3.0)
    return torch.rand(n, dim, generator=rng, device=rng.device) * (2 * r) - r


def marginal_logits(x: Tensor) -> Tensor:
    """Pylearn2's `init_sigmoid_bias_from_marginals`: b with sigmoid(b) = the mean of every pixel
    over `x` (clipped to [1e-7, 1 − 1e-7]), flattened."""
    mean = x.reshape(x.shape[0], -1).double().mean(dim=0).clamp(1e-7, 1 - 1e-7)
    return torch.logit(mean).float()


def _uniform_init(module: nn.Module, irange: float) -> None:
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.uniform_(m.weight, -irange, irange)
            nn.init.zeros_(m.bias)


class Generator(nn.Module):
    """mnist.yaml's generator: z (100) → ReLU `hidden` → ReLU `hidden` → sigmoid 784, reshaped
    to 1 × 28 × 28; weights U(±0.05), biases 0, the output bias `output_bias` (the data's
    marginal logits, `marginal_logits`) when given."""

    def __init__(
        self,
        hidden: int = 1200,
        latent_dim: int = LATENT_DIM,
        shape: tuple[int, ...] = (1, 28, 28),
        output_bias: Tensor | None = None,
    ) -> None:
        super().__init__()
        self.shape = tuple(shape)
        pixels = math.prod(self.shape)
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, pixels),
        )  # fmt: skip
        _uniform_init(self, 0.05)
        if output_bias is not None:
            with torch.no_grad():
                self.net[-1].bias.copy_(output_bias.reshape(pixels))

    def forward(self, z: Tensor) -> Tensor:
        return torch.sigmoid(self.net(z)).view(z.shape[0], *self.shape)


class Maxout(nn.Module):
    """A maxout layer (Goodfellow et al., 2013): `units` maxima of `pieces` affine pieces each
    (Pylearn2's grouping: unit u takes the pieces u·pieces … u·pieces + pieces − 1)."""

    def __init__(self, in_features: int, units: int, pieces: int) -> None:
        super().__init__()
        self.units, self.pieces = units, pieces
        self.linear = nn.Linear(in_features, units * pieces)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x).view(x.shape[0], self.units, self.pieces).amax(dim=2)


class Discriminator(nn.Module):
    """mnist.yaml's discriminator: maxout `units` × `pieces` → maxout `units` × `pieces` → one
    logit (the sigmoid is in the losses), with dropout on the inputs of every layer (drop 0.2 of
    the pixels, 0.5 of the hidden units; inverted dropout, Pylearn2's scales 1.25 and 2); weights
    U(±0.005), biases 0."""

    def __init__(
        self,
        units: int = 240,
        pieces: int = 5,
        in_features: int = 784,
        input_dropout: float = 0.2,
        hidden_dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(input_dropout), Maxout(in_features, units, pieces),
            nn.Dropout(hidden_dropout), Maxout(units, units, pieces),
            nn.Dropout(hidden_dropout), nn.Linear(units, 1),
        )  # fmt: skip
        _uniform_init(self, 0.005)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).view(x.shape[0])


# --------------------------------------------------------------------------- the optimiser


class PaperSGD(torch.optim.SGD):
    """mnist.yaml's SGD: the learning rate `lr` divided by `decay` at every update, never below
    `min_lr` (Pylearn2's ExponentialDecay), and the momentum `init_momentum` until epoch `start`,
    then rising linearly to `final_momentum` at epoch `saturate` (MomentumAdjustor), an epoch
    being `updates_per_epoch` updates (50,000 images / batch 100 = 500).

    The update count lives in the parameter groups, so it is in `state_dict()` and a resumed
    optimiser continues the schedule exactly.
    """

    def __init__(
        self,
        params: Any,
        lr: float = 0.1,
        *,
        decay: float = 1.000004,
        min_lr: float = 1e-6,
        init_momentum: float = 0.5,
        final_momentum: float = 0.7,
        start: int = 1,
        saturate: int = 250,
        updates_per_epoch: int = 500,
    ) -> None:
        super().__init__(params, lr=lr, momentum=init_momentum)
        for group in self.param_groups:
            group.update(lr0=lr, decay=decay, min_lr=min_lr, init_momentum=init_momentum,
                         final_momentum=final_momentum, start=start, saturate=saturate,
                         updates_per_epoch=updates_per_epoch, updates=0)  # fmt: skip

    @staticmethod
    def schedule(group: dict[str, Any], updates: int) -> tuple[float, float]:
        """(learning rate, momentum) of the update that follows `updates` updates."""
        # in log space: decay ** updates overflows a float long before the floor is reached
        lr = max(group["lr0"] * math.exp(-updates * math.log(group["decay"])), group["min_lr"])
        epoch = updates // group["updates_per_epoch"]
        if epoch < group["start"]:
            alpha = 0.0
        else:
            alpha = min(1.0, (epoch - group["start"]) / (group["saturate"] - group["start"]))
        momentum = group["init_momentum"] * (1 - alpha) + group["final_momentum"] * alpha
        return lr, momentum

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> Any:  # type: ignore[override]
        for group in self.param_groups:
            group["lr"], group["momentum"] = self.schedule(group, group["updates"])
        out = super().step(closure)
        for group in self.param_groups:
            group["updates"] += 1
        return out


# --------------------------------------------------------------------------- training


@dataclass
class GANTraining:
    """A trained GAN: the networks (eval mode), the loop's per-iteration history (discriminator
    loss and mean D(G(z))), and the probe's early-gradient records (empty without a probe)."""

    generator: Generator
    discriminator: Discriminator
    iterations: int
    d_loss: list[float]
    d_fake: list[float]
    probe: list[dict[str, float]]


def _optimizer(name: str, params: Any, lr: float, betas: tuple[float, float]) -> Any:
    if name == "sgd":
        return PaperSGD(params, lr=lr)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas)
    raise ReproError(f"unknown optimizer {name!r}: use 'sgd' (the paper's) or 'adam'")


def train(
    x: Tensor,
    *,
    loss: Minimax,
    iterations: int,
    g_hidden: int = 1200,
    d_units: int = 240,
    d_pieces: int = 5,
    batch_size: int = 100,
    optimizer: str = "sgd",
    lr_g: float = 0.1,
    lr_d: float = 0.05,
    betas: tuple[float, float] = (0.5, 0.999),
    seed: int = 0,
    probe_every: int = 0,
    probe_until: int = 0,
    checkpoint: str | None = None,
    samples_dir: str | None = None,
    samples_every: int = 0,
    progress: bool = True,
) -> GANTraining:
    """Algorithm 1 (k = 1) on images `x` (N × 1 × 28 × 28 in [0, 1], on the training device) with
    the paper's networks, through `repro.gan_loop.train_gan`.

    The networks are initialised under `seed` (so two calls that differ only in `loss` start from
    the same G and D and see the same batches and z); the loop's stream is `seed`'s generator on
    the device. `optimizer` "sgd" is `PaperSGD` (the paper's; `lr_d` 0.05 reproduces the code's
    halved discriminator loss), "adam" Adam with `betas`. `probe_every` > 0 wraps the loss in a
    `GradientProbe` up to generator step `probe_until`.
    """
    from repro.env import fork_generator
    from repro.gan_loop import train_gan

    device = x.device
    # Initialisation from the global RNG, re-seeded (not forked: see repro.defense_gan.gan).
    torch.manual_seed(seed)
    gen = Generator(g_hidden, output_bias=marginal_logits(x)).to(device)
    disc = Discriminator(d_units, d_pieces, in_features=x[0].numel()).to(device)
    used: Any = loss
    probe = None
    if probe_every > 0:
        probe = GradientProbe(loss, gen, every=probe_every, until=probe_until)
        used = probe
    config = {"g_hidden": g_hidden, "d_units": d_units, "d_pieces": d_pieces,
              "batch_size": batch_size, "optimizer": optimizer, "lr_g": lr_g, "lr_d": lr_d,
              "betas": list(betas), "seed": seed}  # fmt: skip
    run = train_gan(
        gen,
        disc,
        x,
        loss=used,
        iterations=iterations,
        batch_size=batch_size,
        n_critic=1,
        opt_g=_optimizer(optimizer, gen.parameters(), lr_g, betas),
        opt_d=_optimizer(optimizer, disc.parameters(), lr_d, betas),
        latent=lambda n, rng: uniform_latent(n, rng),
        rng=fork_generator(seed, device=device),
        config=config,
        checkpoint=checkpoint,
        checkpoint_every=1000,
        samples_dir=samples_dir,
        samples_every=samples_every,
        progress=progress,
        desc=f"GAN ({loss.name})",
    )
    return GANTraining(gen, disc, run.iterations, run.critic_loss, run.statistic,
                       probe.records() if probe is not None else [])  # fmt: skip
