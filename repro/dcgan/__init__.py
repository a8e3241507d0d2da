"""Unsupervised Representation Learning with Deep Convolutional Generative Adversarial Networks
(Radford, Metz & Chintala, ICLR 2016).

Paper: "Unsupervised Representation Learning with Deep Convolutional Generative Adversarial
Networks", Alec Radford, Luke Metz, Soumith Chintala, https://arxiv.org/abs/1511.06434 (catalog key
`2016_Radford_A_p-iclr_urldcgan`). Official code: github.com/Newmu/dcgan_code (Theano, commit
ee12b2d; read, not copied): `faces/train_uncond_dcgan.py` (the training script),
`svhn/svhn_semisup_analysis.py` (Table 2's few-label protocol on a trained discriminator).

Reproduces: Table 1 (CIFAR-10 accuracy of an L2-SVM on the features of a DCGAN discriminator
trained on ImageNet-1k, with the K-means baselines) and Table 2 (SVHN test error with 1,000
labels) are kept in `expected.csv` and not run (CIFAR-10, ImageNet and SVHN are not here). The
same protocol runs on Fashion-MNIST as the stated analogue: a DCGAN trained unsupervised on the
training images, its discriminator's pooled features against those of a randomly initialised
discriminator and against raw pixels, each with an L2-SVM on 1,000 balanced labels (many label
draws, C chosen on a validation split), the claims checked on it; FID (F-MNIST classifier
features) of the samples over training, latent-space interpolations (Section 6.1, Figure 4) and
vector arithmetic (Section 6.3.2, Figure 7) as figures.

Map from the paper to the code (tests/repro/test_paper_maps.py checks every name exists):
- Section 3's architecture guidelines (all-convolutional, batch norm, no hidden dense layers,
  ReLU/tanh in G, LeakyReLU 0.2 in D), Figure 1's generator -> `models.Generator`,
  `models.Discriminator` (the module other folders import)
- Section 4: "All weights were initialized from a zero-centered Normal distribution with
  standard deviation 0.02"                                  -> `models.init_weights`
- Section 4: z from a 100-dimensional uniform distribution  -> `models.uniform_latent`
- Section 4: "Adam ... learning rate of 0.0002 ... β1 at 0.5 ... mini-batch ... size of 128"
                                                            -> `PAPER`, `adam`
- the GAN objective: Goodfellow et al.'s, with the non-saturating generator loss the code
  trains with (`bce(p_gen, ones)`)                          -> `repro.gan.NonSaturating`
- the training loop (one D step and one G step per iteration) -> `train`, through
  `repro.gan_loop.train_gan`
- Section 5.1 / Tables 1-2: D's features from all layers max-pooled to 4 × 4, an L2-SVM on few
  labels                                                    -> `features.pooled_features`,
  `features.with_data_batch_norm`, `features.fit_l2_svm`, `features.select_c`,
  `features.evaluate_draws`, `features.balanced_draw`
- Section 6.1, Figure 4: walking the latent space between random points -> `interpolate`
- Section 6.3.2, Figure 7: arithmetic on the mean z of three exemplars per concept, and the same
  result with uniform noise of scale ±0.25 added              -> `vector_arithmetic`
- "stable training" (Section 3) measured as FID (F-MNIST classifier features) at checkpoints
  during training (our measurement, not the paper's)         -> `FIDTrace`

Deviations (each also in README.md, with why):
- Data: Fashion-MNIST at 28 px (one channel) instead of ImageNet-1k / SVHN at 32 px; the networks
  are the 32 px SVHN model's three layers each side, resized for 28 px (`models`).
- The discriminator's 28 px maps (14, 7, 4 px) are pooled to 4 × 4 by adaptive max-pooling.
- Width (filters) is reduced at `small` (32 instead of the code's 64 at 32 px) and so are the
  iterations, the number of label draws and the C grid (README.md, "Settings per scale").
- Updates: the toolkit's loop takes a generator step and then a discriminator step on fresh
  batches per iteration; the code alternates the two on successive minibatches of an epoch.
  Minibatches are drawn with replacement (the code iterates shuffled epochs).
- The code's L2 weight decay (1e-5, both networks) is not applied: the paper does not mention it
  (`PAPER.weight_decay` = 0; set it to follow the code).
- Samples (grids, FID, figures) are drawn with G in eval mode (batch norm's running
  statistics); the Theano code samples with batch statistics.
- The SVM is solved exactly by Newton's method (the code: liblinear); the two interval methods
  are reported together: the code's mean ± 1.96 std over draws, and a bootstrap over both draws
  and test images (`features.draws_interval`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from repro import ReproError
from repro.dcgan import features, models
from repro.dcgan.features import (
    balanced_draw,
    draws_interval,
    evaluate_draws,
    fit_l2_svm,
    pixel_features,
    pooled_features,
    select_c,
    with_data_batch_norm,
)
from repro.dcgan.models import (
    LATENT_DIM,
    Discriminator,
    Generator,
    count_parameters,
    init_weights,
    uniform_latent,
)

__all__ = [
    "LATENT_DIM",
    "PAPER",
    "DCGANRun",
    "Discriminator",
    "FIDTrace",
    "Generator",
    "Settings",
    "adam",
    "balanced_draw",
    "count_parameters",
    "draws_interval",
    "evaluate_draws",
    "features",
    "fit_l2_svm",
    "init_weights",
    "interpolate",
    "models",
    "pixel_features",
    "pooled_features",
    "select_c",
    "train",
    "uniform_latent",
    "vector_arithmetic",
    "with_data_batch_norm",
]


@dataclass(frozen=True)
class Settings:
    """Section 4's optimiser: Adam, learning rate 2e-4, β1 0.5 (β2 Theano/PyTorch's 0.999),
    minibatches of 128; `weight_decay` the code's L2 regulariser (1e-5), 0 as in the paper."""

    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    batch_size: int = 128
    weight_decay: float = 0.0


#: The paper's settings.
PAPER = Settings()


def adam(params: Iterable[nn.Parameter], settings: Settings = PAPER) -> torch.optim.Adam:
    """Adam with Section 4's learning rate and momentum term."""
    return torch.optim.Adam(
        params, lr=settings.lr, betas=settings.betas, weight_decay=settings.weight_decay
    )


@dataclass
class DCGANRun:
    """A trained DCGAN: the networks (eval mode), the iterations done, and per iteration the
    discriminator's loss and the mean D(G(z)) of its batch (`repro.gan.NonSaturating`'s
    statistic); `seconds` the wall time of the loop (FID checkpoints excluded); `fid` the
    (iteration, FID) checkpoints of a `FIDTrace`, if one ran."""

    generator: Generator
    discriminator: Discriminator
    iterations: int
    d_loss: list[float] = field(default_factory=list)
    d_fake: list[float] = field(default_factory=list)
    seconds: float = 0.0
    fid: list[tuple[int, float]] = field(default_factory=list)


class FIDTrace:
    """An `on_iteration` hook for `repro.gan_loop.train_gan`: every `every` iterations (and at
    iteration 0, the initial G) the FID (F-MNIST classifier features, `repro.sample_quality`) of
    `n` samples of G against `reference` images.

    Samples come from z drawn once from this object's own generator (seeded `seed`), so the
    training stream is never touched, and G is sampled in eval mode, then put back in training
    mode. `history` holds (iteration, FID); `seconds` the time spent here, which the caller
    subtracts from the loop's wall time.
    """

    def __init__(
        self,
        generator: nn.Module,
        reference: Tensor,
        extractor: Any,
        *,
        every: int,
        n: int,
        latent_dim: int = LATENT_DIM,
        seed: int = 0,
    ) -> None:
        if every < 1 or n < 2:
            raise ReproError(f"FIDTrace: every {every} must be >= 1 and n {n} >= 2")
        self.generator, self.reference, self.extractor = generator, reference, extractor
        self.every = every
        rng = torch.Generator(device=reference.device).manual_seed(seed)
        self.z = uniform_latent(n, rng, latent_dim)
        self.history: list[tuple[int, float]] = []
        self.seconds = 0.0

    @torch.no_grad()
    def measure(self, iteration: int) -> float:
        """The FID of G's samples now, recorded at `iteration`."""
        from repro.sample_quality import fid

        start = time.perf_counter()
        was = self.generator.training
        self.generator.eval()
        samples = torch.cat([self.generator(zb) for zb in self.z.split(500)])
        self.generator.train(was)
        value = fid(self.reference, samples, self.extractor)
        self.history.append((iteration, value))
        self.seconds += time.perf_counter() - start
        return value

    def __call__(self, iteration: int) -> None:
        if iteration % self.every == 0:
            self.measure(iteration)


def train(
    x: Tensor,
    *,
    iterations: int,
    width: int,
    seed: int = 0,
    batch_norm: bool = True,
    settings: Settings = PAPER,
    fid_reference: Tensor | None = None,
    fid_extractor: Any = None,
    fid_every: int = 0,
    fid_n: int = 1000,
    checkpoint: str | None = None,
    samples_dir: str | None = None,
    samples_every: int = 0,
    progress: bool = True,
) -> DCGANRun:
    """Train a DCGAN on images `x` (N × 1 × 28 × 28 in [0, 1], on the training device) with the
    non-saturating GAN loss (`repro.gan.NonSaturating`), one discriminator step per generator
    step, Adam as `settings`, through `repro.gan_loop.train_gan`.

    G and D are initialised under `seed` (the global RNG re-seeded, as `repro.gan.train`); the
    loop's stream is `seed`'s generator on the device. With `fid_every` > 0 a `FIDTrace` of
    `fid_n` samples against `fid_reference` (with `fid_extractor`,
    `repro.sample_quality.fmnist_feature_net`) runs every `fid_every` iterations and once at the
    end; its history is the run's `fid`. Sample grids go to `samples_dir` every
    `samples_every` iterations (and at the end).
    """
    from repro.env import fork_generator
    from repro.gan import NonSaturating
    from repro.gan_loop import train_gan

    device = x.device
    torch.manual_seed(seed)
    generator = Generator(width=width, batch_norm=batch_norm, out_size=x.shape[-1]).to(device)
    discriminator = Discriminator(width=width, batch_norm=batch_norm).to(device)
    hook = None
    if fid_every > 0:
        if fid_reference is None or fid_extractor is None:
            raise ReproError("train: fid_every > 0 needs fid_reference and fid_extractor")
        hook = FIDTrace(generator, fid_reference, fid_extractor, every=fid_every, n=fid_n,
                        seed=seed)  # fmt: skip
    config = {"width": width, "batch_norm": batch_norm, "batch_size": settings.batch_size,
              "lr": settings.lr, "betas": list(settings.betas),
              "weight_decay": settings.weight_decay, "seed": seed}  # fmt: skip
    start = time.perf_counter()
    run = train_gan(
        generator,
        discriminator,
        x,
        loss=NonSaturating(),
        iterations=iterations,
        batch_size=settings.batch_size,
        n_critic=1,
        opt_g=adam(generator.parameters(), settings),
        opt_d=adam(discriminator.parameters(), settings),
        latent=lambda n, rng: uniform_latent(n, rng),
        rng=fork_generator(seed, device=device),
        config=config,
        checkpoint=checkpoint,
        checkpoint_every=max(iterations, 1),
        samples_dir=samples_dir,
        samples_every=samples_every,
        progress=progress,
        desc="DCGAN",
        on_iteration=hook,
    )
    seconds = time.perf_counter() - start - (hook.seconds if hook is not None else 0.0)
    if hook is not None and (not hook.history or hook.history[-1][0] != run.iterations):
        hook.measure(run.iterations)
    return DCGANRun(generator, discriminator, run.iterations, run.critic_loss, run.statistic,
                    seconds, hook.history if hook is not None else [])  # fmt: skip


def interpolate(z0: Tensor, z1: Tensor, steps: int) -> Tensor:
    """`steps` points on the segment from z0 to z1, ends included: (steps, dim) (Figure 4
    interpolates linearly between random points of Z)."""
    if steps < 2:
        raise ReproError(f"interpolate: steps {steps} must be >= 2")
    a = torch.linspace(0.0, 1.0, steps, device=z0.device, dtype=z0.dtype)[:, None]
    return (1.0 - a) * z0.reshape(1, -1) + a * z1.reshape(1, -1)


def vector_arithmetic(
    za: Tensor,
    zb: Tensor,
    zc: Tensor,
    *,
    n_noisy: int = 8,
    noise: float = 0.25,
    rng: torch.Generator | None = None,
) -> Tensor:
    """Figure 7's arithmetic: mean(za) − mean(zb) + mean(zc) over each concept's exemplars (the
    paper averages three), followed by `n_noisy` copies with uniform noise in [−noise, noise]
    added ("Adding noise with scale of +-0.25 was added to the new vector"): (1 + n_noisy, dim).
    """
    for z in (za, zb, zc):
        if z.dim() != 2 or z.shape[0] < 1:
            raise ReproError(f"vector_arithmetic: exemplars must be (k, dim), got {tuple(z.shape)}")
    result = za.mean(0) - zb.mean(0) + zc.mean(0)
    if n_noisy == 0:
        return result[None]
    rng = rng or torch.Generator(device=result.device).manual_seed(0)
    u = torch.rand(n_noisy, result.numel(), generator=rng, device=result.device)
    return torch.cat([result[None], result[None] + (2.0 * u - 1.0) * noise])
