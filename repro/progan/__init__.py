"""Progressive Growing of GANs for Improved Quality, Stability, and Variation (Karras et al., ICLR
2018).

Paper: "Progressive Growing of GANs for Improved Quality, Stability, and Variation", Tero Karras,
Timo Aila, Samuli Laine, Jaakko Lehtinen, https://arxiv.org/abs/1710.10196 (catalog key
`2018_Karras_T_p-iclr_pggiqsv`). Official code: github.com/tkarras/progressive_growing_of_gans
(TensorFlow, commit 2504c3f): `networks.py`, `loss.py`, `train.py`, `config.py` (read, not copied).

Reproduces: the CIFAR-10 Inception score (Section 6.5, 8.80) and Table 1's SWD / MS-SSIM rows are
kept in `expected.csv` and not run here (no CIFAR-10, CelebA, LSUN or Inception weights). As a
stated analogue on Fashion-MNIST padded to 32 × 32, grown 4 → 8 → 16 → 32: Section 6.2's
comparison of progressive and non-progressive training (Figure 4: quality against training
time), measured by FID on our F-MNIST classifier's features (`repro.sample_quality`) against
training compute (FLOPs), images shown to D and wall-clock seconds, with images/s and generator
steps/s; at `full`, Table 1's ablations of minibatch stddev, equalized learning rate and pixel
norm (one switch off at a time).

Map from the paper to the code (tests/repro/test_paper_maps.py checks every name exists):
- Sections 2-4 and Appendix A.1, the networks (fade-in, minibatch stddev, equalized learning
  rate, pixel norm)                                                -> `networks`
  (`repro.progan.networks.Generator`, `repro.progan.networks.Discriminator`)
- Appendix A.1 and loss.py's `D_wgangp_acgan`: WGAN-GP (λ = 10, target γ = 1) plus the drift
  term ε_drift · E[D(x)²], ε_drift = 0.001, on D's loss            -> `ProGANLoss.critic_loss`,
  the penalty from `repro.wgan_gp.WGANGP` (imported; repro.toml declares wgan_gp in uses)
- loss.py's `G_wgan_acgan`: G minimises −D(G(z))                  -> `ProGANLoss.generator_loss`
- Figure 2's caption: D sees real images downscaled to the current resolution, interpolated
  between two resolutions during a fade-in (train.py's `process_reals`) -> `process_reals`
- Section 2 / Appendix A.1, the schedule: start at 4 × 4, then for each resolution a fade-in
  phase (α from 0 to 1 over its images) and a stabilising phase, each a fixed number of real
  images (800k in the paper); the code's level of detail `lod`     -> `Phase`, `Phase.lod`,
  `progressive_phases`
- Section 6.2's non-progressive variant (config.py's -nogrowing: the same networks at the final
  resolution from the start)                                       -> `fixed_phases`
- Appendix A.1: Adam α 0.001, β1 0, β2 0.99, ε 1e-8; one D step per G step
                                                                   -> `ADAM`, and
  `repro.gan_loop.train_gan` (n_critic 1), called once per phase by `train`
- train.py: the optimisers' state is reset whenever the level of detail starts or ends a
  transition (`reset_opt_for_new_lod`), i.e. at every phase       -> `train` (new Adam per phase)
- Appendix A.1 / train.py: G's weights averaged with decay 0.999 per minibatch (`G_smoothing`,
  the network that is evaluated)                                   -> `GeneratorAverage`,
  `ema_beta`, `CODE_EMA_HALF_LIFE_IMAGES`
- Section 6.2 / Figure 4, training progress in real images shown to D and in time; our compute
  measure                                                          -> `EvalPoint`, `PhaseStats`,
  `iteration_flops`
- Section 2's "comparable result quality is often obtained up to 2-6 times faster" and Section
  6.2's comparison with the non-progressive variant, at equal compute: the compute at which a run
  first reaches a quality, and the non-progressive run's budget  -> `first_reaching`,
  `equal_compute_images`

Deviations (each also in README.md, with why):
- Fashion-MNIST (1 channel, zero-padded from 28 to 32 px) instead of CIFAR-10 / CelebA / LSUN;
  channels per resolution far below the paper's 512; phases of thousands (small) or tens of
  thousands (full) of images instead of 800k; one minibatch size per scale.
- The sample-quality metric is FID on our F-MNIST classifier's features, not the paper's SWD /
  MS-SSIM or the Inception score.
- The loop is the toolkit's: a G step then a D step per iteration, with G's step skipped at each
  phase's first iteration (one G step fewer per phase than D steps: 7 in a 7-phase run); the code
  runs the D step first. The level of detail is updated every iteration (the code: every 4
  minibatches). Minibatches are drawn uniformly with replacement.
- G's weight average keeps the code's half-life in images at `full` (11k images: 0.999 per
  minibatch of 16); `small` uses a shorter half-life in proportion to its shorter run
  (repro.toml `ema_half_life_images`).
- The gradient penalty's target is the paper's default γ = 1 (its CIFAR-10 run used γ = 750,
  "not tried with other datasets").
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from repro import ReproError
from repro.gan_loop import gaussian_latent
from repro.progan import networks
from repro.progan.networks import Architecture, Discriminator, Generator, downscale2d, upscale2d
from repro.wgan_gp import WGANGP

__all__ = [
    "ADAM",
    "CODE_EMA_HALF_LIFE_IMAGES",
    "Architecture",
    "EvalPoint",
    "GeneratorAverage",
    "Phase",
    "PhaseStats",
    "ProGANLoss",
    "ProGANRun",
    "build",
    "ema_beta",
    "equal_compute_images",
    "first_reaching",
    "fixed_phases",
    "gaussian_latent",
    "iteration_flops",
    "networks",
    "process_reals",
    "progressive_phases",
    "sample_images",
    "train",
]

#: Appendix A.1 / config.py: Adam for both networks.
ADAM = {"lr": 1e-3, "betas": (0.0, 0.99), "eps": 1e-8}
#: The code's G_smoothing = 0.999 per minibatch of 16 (the paper's), as a half-life in images.
CODE_EMA_HALF_LIFE_IMAGES = 16 * math.log(0.5) / math.log(0.999)


def ema_beta(batch_size: int, half_life_images: float) -> float:
    """The per-minibatch decay whose half-life is `half_life_images` real images."""
    if half_life_images <= 0:
        return 0.0
    return 0.5 ** (batch_size / half_life_images)


def process_reals(x: Tensor, lod: float) -> Tensor:
    """The real images D sees at level of detail `lod` (train.py's `process_reals`): downscaled
    to the trained resolution (2^floor(lod) times smaller, box filter), blended with their own 2×
    blur by the fractional part of `lod` during a fade-in (the real-image counterpart of G's
    blended output), and upscaled back to the final size (nearest neighbour)."""
    whole = math.floor(lod)
    frac = lod - whole
    y = downscale2d(x, 2**whole)
    if frac > 0:
        y = torch.lerp(y, upscale2d(downscale2d(y)), frac)
    return upscale2d(y, 2**whole)


class _Tap:
    """Calls the critic and keeps its output on one given input tensor (the real batch), so the
    drift term reuses D(x) from WGAN-GP's loss instead of a second forward pass."""

    def __init__(self, critic: nn.Module, watch: Tensor) -> None:
        self.critic = critic
        self.watch = watch
        self.out: Tensor | None = None

    def __call__(self, x: Tensor) -> Tensor:
        y = self.critic(x)
        if x is self.watch:
            self.out = y
        return y


@dataclass
class ProGANLoss:
    """The `repro.gan_loop.GANLoss` of Progressive GAN: WGAN-GP's critic loss D(G(z)) − D(x) +
    λ·penalty (from `repro.wgan_gp`) plus ε_drift · E[D(x)²], on real images processed for the
    current level of detail `lod` (set by the schedule); G minimises −D(G(z))."""

    wgan_gp: WGANGP = field(default_factory=lambda: WGANGP(gp_weight=10.0))
    drift: float = 0.001
    lod: float = 0.0
    name: str = "Progressive GAN (WGAN-GP + drift)"
    statistic: str = "w"

    def critic_loss(
        self, critic: nn.Module, real: Tensor, fake: Tensor, rng: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        """D's loss and the Wasserstein estimate D(x) − D(G(z)); draws the penalty's ε from `rng`."""
        real = process_reals(real, self.lod)
        tap = _Tap(critic, real)
        loss, w = self.wgan_gp.critic_loss(tap, real, fake, rng)  # type: ignore[arg-type]
        if tap.out is None:  # pragma: no cover - WGANGP always scores the real batch
            raise ReproError("ProGANLoss: WGAN-GP's loss did not score the real batch")
        return loss + self.drift * tap.out.square().mean(), w

    def generator_loss(self, critic: nn.Module, fake: Tensor) -> Tensor:
        """−E[D(G(z))]."""
        return self.wgan_gp.generator_loss(critic, fake)

    def after_critic_step(self, critic: nn.Module) -> None:
        """Nothing (the penalty, not clipping, constrains D)."""


class GeneratorAverage:
    """An exponential moving average of G's weights (the code's `Gs`): after every G step,
    w̄ ← β w̄ + (1 − β) w. Starts as a copy of G."""

    def __init__(self, generator: Generator, beta: float) -> None:
        self.beta = beta
        self.model = copy.deepcopy(generator).requires_grad_(False).eval()

    @torch.no_grad()
    def update(self, generator: nn.Module) -> None:
        for avg, w in zip(self.model.parameters(), generator.parameters(), strict=True):
            avg.lerp_(w, 1.0 - self.beta)


@dataclass(frozen=True)
class Phase:
    """One call of the training loop: `resolution` is trained (fading in when `fade`, else
    stabilising) for `images` real images shown to D."""

    resolution: int
    fade: bool
    images: int

    @property
    def name(self) -> str:
        return f"{'fade' if self.fade else 'stable'}_{self.resolution}"

    def lod(self, final: int, done: int) -> float:
        """The level of detail after `done` of the phase's images: log2(final / resolution), plus
        the part of the fade-in still to go (1 → 0, linear in images, as the code's schedule)."""
        base = math.log2(final / self.resolution)
        if not self.fade or self.images <= 0:
            return base
        return base + max(0.0, 1.0 - done / self.images)


def progressive_phases(
    final: int, images_per_phase: int, final_images: int | None = None, start: int = 4
) -> list[Phase]:
    """Section 2's schedule: stabilise at `start`, then fade in and stabilise every doubling up
    to `final`; the last stabilising phase runs `final_images` (default: `images_per_phase`)."""
    if final < start or final & (final - 1) or start & (start - 1):
        raise ReproError(f"progressive_phases: {start} -> {final} is not a power-of-two growth")
    phases = [Phase(start, False, images_per_phase)]
    res = start * 2
    while res <= final:
        last = res == final
        phases.append(Phase(res, True, images_per_phase))
        phases.append(Phase(res, False, (final_images or images_per_phase) if last
                            else images_per_phase))  # fmt: skip
        res *= 2
    if final == start and final_images:
        phases[-1] = Phase(start, False, final_images)
    return phases


def fixed_phases(final: int, images: int) -> list[Phase]:
    """The non-progressive variant: the final resolution from the start, for `images` images."""
    return [Phase(final, False, images)]


@torch.no_grad()
def sample_images(generator: nn.Module, z: Tensor, batch_size: int = 500) -> Tensor:
    """G's images for the codes `z`, mapped from the networks' [-1, 1] to [0, 1] and clipped."""
    was = generator.training
    generator.eval()
    out = torch.cat([generator(z[i : i + batch_size]) for i in range(0, len(z), batch_size)])
    generator.train(was)
    return ((out + 1) / 2).clamp(0, 1)


def _set_lod(lod: float, *modules: object) -> None:
    for m in modules:
        m.lod = lod  # type: ignore[attr-defined]


def _flop_counter() -> object:
    """A dispatch mode that sums torch's registered FLOP formulas (`torch.utils.flop_counter`'s
    registry: convolutions, their backward passes, matrix products) over every op it sees.

    `FlopCounterMode` itself cannot be used: its per-module tracking hooks refuse the
    `autograd.grad` call of the gradient penalty ("A leaf node was passed to
    _will_engine_execute_node"); this counts the same formulas without module tracking."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry

    class FlopCount(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            formula = flop_registry.get(func._overloadpacket)
            if formula is not None:
                self.total += int(formula(*args, **kwargs, out_val=out))
            return out

    return FlopCount()


def iteration_flops(
    generator: Generator,
    critic: Discriminator,
    loss: ProGANLoss,
    x: Tensor,
    *,
    batch_size: int,
    lod: float,
) -> int:
    """Floating-point operations of one training iteration (a G step's and a D step's forward and
    backward passes, the penalty's double backward included) at level of detail `lod`: the
    convolutions and matrix products, by torch's own FLOP formulas (`_flop_counter`). Runs one
    iteration on a batch of `x` (in the networks' range) without stepping; gradients are
    cleared afterwards and the networks' `lod` restored."""
    saved = (generator.lod, critic.lod, loss.lod)
    _set_lod(lod, generator, critic, loss)
    rng = torch.Generator(device=x.device).manual_seed(0)
    latent = gaussian_latent(generator.arch.z_dim)
    counter = _flop_counter()
    try:
        with counter:  # type: ignore[attr-defined]
            critic.requires_grad_(False)
            loss.generator_loss(critic, generator(latent(batch_size, rng))).backward()
            critic.requires_grad_(True)
            real = x[torch.randint(0, len(x), (batch_size,), generator=rng, device=x.device)]
            with torch.no_grad():
                fake = generator(latent(batch_size, rng))
            loss.critic_loss(critic, real, fake, rng)[0].backward()
    finally:
        critic.requires_grad_(True)
        generator.zero_grad(set_to_none=True)
        critic.zero_grad(set_to_none=True)
        generator.lod, critic.lod, loss.lod = saved
    return int(counter.total)  # type: ignore[attr-defined]


@dataclass
class EvalPoint:
    """One evaluation during training: where the run stood (phase, level of detail, real images
    shown to D, G steps, FLOPs, training seconds excluding evaluations) and the evaluator's
    value for the averaged G (FID)."""

    phase: str
    lod: float
    images: int
    g_steps: int
    flops: float
    seconds: float
    value: float


@dataclass
class PhaseStats:
    """One phase's cost: iterations (= D steps), G steps, images, training seconds (evaluations
    excluded), FLOPs per iteration; and the throughputs the issue asks for."""

    name: str
    resolution: int
    fade: bool
    iterations: int
    g_steps: int
    images: int
    seconds: float
    flops_per_iteration: int

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")

    @property
    def g_steps_per_second(self) -> float:
        return self.g_steps / self.seconds if self.seconds > 0 else float("nan")


@dataclass
class ProGANRun:
    """A trained Progressive GAN: G, its weight average (the network that is evaluated), D, the
    phases' costs, the evaluation curve, G-average sample grids at the end of every phase
    (images in [0, 1], CPU), and the per-iteration history of D's loss and W estimate."""

    generator: Generator
    average: Generator
    critic: Discriminator
    phases: list[PhaseStats]
    curve: list[EvalPoint]
    grids: dict[str, Tensor]
    critic_loss: list[float] = field(default_factory=list)
    wasserstein: list[float] = field(default_factory=list)

    @property
    def images(self) -> int:
        return sum(p.images for p in self.phases)

    @property
    def g_steps(self) -> int:
        return sum(p.g_steps for p in self.phases)

    @property
    def seconds(self) -> float:
        return sum(p.seconds for p in self.phases)

    @property
    def flops(self) -> float:
        return float(sum(p.iterations * p.flops_per_iteration for p in self.phases))


def first_reaching(curve: Sequence[EvalPoint], threshold: float) -> EvalPoint | None:
    """The first evaluation whose value is at most `threshold` (None if none is): where a run
    "reaches" a sample quality, for Section 6.2's time-to-quality comparison."""
    return next((p for p in curve if p.value <= threshold), None)


def equal_compute_images(
    flops: float, arch: Architecture, x: Tensor, *, batch_size: int, loss: ProGANLoss | None = None
) -> int:
    """The real images the non-progressive variant (the final resolution from the start) trains
    on to spend `flops` (our equal-compute rule): whole iterations of its measured per-iteration
    FLOPs, rounded up. `x`: images in [0, 1] on the training device."""
    generator, critic = build(arch, torch.Generator().manual_seed(0))
    generator, critic = generator.to(x.device), critic.to(x.device)
    per_it = iteration_flops(generator, critic, loss or ProGANLoss(), x * 2 - 1,
                             batch_size=batch_size, lod=0.0)  # fmt: skip
    return math.ceil(flops / per_it) * batch_size


def build(arch: Architecture, parent: torch.Generator) -> tuple[Generator, Discriminator]:
    """G and D on the CPU, initialised under the global RNG seeded from one draw of `parent` (the
    same parent state and architecture give the same weights)."""
    from repro.env import forked_global_rng

    with forked_global_rng(parent):
        return Generator(arch), Discriminator(arch)


def train(
    x: Tensor,
    *,
    arch: Architecture,
    phases: Sequence[Phase],
    batch_size: int,
    seed: int,
    ema_half_life_images: float = CODE_EMA_HALF_LIFE_IMAGES,
    adam: dict | None = None,
    loss: ProGANLoss | None = None,
    evaluate: Callable[[Generator], float] | None = None,
    eval_every: int = 0,
    grid_z: Tensor | None = None,
    progress: bool = False,
    desc: str = "",
) -> ProGANRun:
    """Train G and D on `x` (images in [0, 1], N × C × R × R with R = `arch.resolution`, on the
    training device) through `phases`, one `repro.gan_loop.train_gan` call per phase with fresh
    Adam optimisers (the code's reset at every change of level of detail) and one D step per G
    step; G's weight average is updated after every G step.

    `evaluate(average_generator)` (its `lod` set to the run's) is called every `eval_every` real
    images and at the end of every phase; its time is excluded from the training seconds. With
    `grid_z`, the average G's images of those codes are kept at the end of every phase. The
    initial weights depend on `seed` and `arch` only, so a progressive and a non-progressive
    run of one seed start from the same networks and draw the same training stream.
    """
    from repro.env import fork_generator
    from repro.gan_loop import train_gan

    final = arch.resolution
    if x.shape[-1] != final or x.shape[-2] != final:
        raise ReproError(f"train: expected {final}-px images, got {tuple(x.shape)}")
    device = x.device
    parent = fork_generator(seed)
    generator, critic = build(arch, parent)
    generator, critic = generator.to(device), critic.to(device)
    loss = loss or ProGANLoss()
    average = GeneratorAverage(generator, ema_beta(batch_size, ema_half_life_images))
    settings = {**ADAM, **(adam or {})}
    rng = fork_generator(parent, device=device)  # the loop's one stream: batches, z, penalty ε
    latent = gaussian_latent(arch.z_dim)
    xn = x * 2 - 1  # the networks' range (the code's drange_net [-1, 1])

    stats: list[PhaseStats] = []
    curve: list[EvalPoint] = []
    grids: dict[str, Tensor] = {}
    d_hist: list[float] = []
    w_hist: list[float] = []
    flops_cache: dict[tuple[int, bool], int] = {}
    done = {"images": 0, "g_steps": 0, "flops": 0.0, "seconds": 0.0}
    next_eval = eval_every if eval_every > 0 else math.inf

    def run_eval(phase: Phase, lod: float, images: int, g_steps: int, flops: float,
                 seconds: float) -> float:  # fmt: skip
        start = time.perf_counter()
        _set_lod(lod, average.model)
        if evaluate is not None:
            value = float(evaluate(average.model))
            curve.append(EvalPoint(phase.name, lod, images, g_steps, flops, seconds, value))
        return time.perf_counter() - start

    for phase in phases:
        iterations = max(1, math.ceil(phase.images / batch_size))
        key = (phase.resolution, phase.fade)
        if key not in flops_cache:
            mid = phase.lod(final, phase.images // 2)
            flops_cache[key] = iteration_flops(generator, critic, loss, xn,
                                               batch_size=batch_size, lod=mid)  # fmt: skip
        per_it = flops_cache[key]
        opt_g = torch.optim.Adam(generator.parameters(), **settings)
        opt_d = torch.optim.Adam(critic.parameters(), **settings)
        paused = 0.0
        start = time.perf_counter()

        def on_iteration(it: int, phase: Phase = phase, start: float = start,
                         per_it: int = per_it) -> None:  # fmt: skip
            nonlocal next_eval, paused
            if it >= 2:  # iteration it - 1 took a G step (iteration 0 takes none)
                average.update(generator)
            lod = phase.lod(final, it * batch_size)
            _set_lod(lod, generator, critic, loss, average.model)
            images = done["images"] + it * batch_size
            if images >= next_eval and it > 0:
                seconds = done["seconds"] + time.perf_counter() - start - paused
                paused += run_eval(phase, lod, images, done["g_steps"] + it - 1,
                                   done["flops"] + it * per_it, seconds)  # fmt: skip
                while next_eval <= images:
                    next_eval += eval_every

        run = train_gan(
            generator, critic, xn, loss=loss, iterations=iterations, batch_size=batch_size,
            n_critic=1, opt_g=opt_g, opt_d=opt_d, latent=latent, rng=rng,
            progress=progress, desc=f"{desc} {phase.name}".strip(), on_iteration=on_iteration,
        )  # fmt: skip
        if iterations >= 2:
            average.update(generator)
        seconds = time.perf_counter() - start - paused
        g_steps = iterations - 1
        stats.append(PhaseStats(phase.name, phase.resolution, phase.fade, iterations, g_steps,
                                iterations * batch_size, seconds, per_it))  # fmt: skip
        d_hist.extend(run.critic_loss)
        w_hist.extend(run.statistic)
        done["images"] += iterations * batch_size
        done["g_steps"] += g_steps
        done["flops"] += iterations * per_it
        done["seconds"] += seconds
        end_lod = phase.lod(final, phase.images)
        _set_lod(end_lod, generator, critic, loss, average.model)
        run_eval(phase, end_lod, done["images"], done["g_steps"], done["flops"], done["seconds"])
        if next_eval <= done["images"]:
            while next_eval <= done["images"]:
                next_eval += eval_every
        if grid_z is not None:
            grids[phase.name] = sample_images(average.model, grid_z).cpu()
    return ProGANRun(generator, average.model, critic, stats, curve, grids, d_hist, w_hist)
