"""Wasserstein GAN: a weight-clipped critic estimates the EM distance (Arjovsky, Chintala & Bottou,
ICML 2017).

Paper: "Wasserstein Generative Adversarial Networks", Martin Arjovsky, Soumith Chintala, Léon
Bottou, https://arxiv.org/abs/1701.07875 (catalog key `2017_Arjovsky_M_p-icml_wgan`) — Algorithm 1,
Section 3 (Eq. 2–3) and Section 4 (Figures 3–7). Official code: github.com/martinarjovsky/
WassersteinGAN (PyTorch, commit f7a01e8: `main.py`, `models/dcgan.py`, `models/mlp.py`).

Reproduces: the paper prints no numeric table; its evidence is curves and sample sheets on LSUN
bedrooms (64 × 64), which is not here. The notebook runs the protocol of Section 4 on
Fashion-MNIST (28 × 28) as a stated analogue, with sample quality measured by FID on the features
of our Fashion-MNIST classifier (`repro.sample_quality`): Figure 3 (the median-filtered critic
estimate −Loss_D against sample quality during training, as a rank correlation with a bootstrap
interval), Figure 4 (the same for the standard GAN's JS estimate), Figures 5–7 (WGAN and the
standard GAN with the DCGAN generator, the DCGAN generator without batch norm and with constant
filters, and the 4-layer ReLU-MLP generator: FID and class diversity of the final samples).

Map from the paper to the code (tests/repro/test_paper_maps.py checks every name exists):
- Eq. 3, max_{‖f‖_L ≤ K} E_{P_r}[f(x)] − E_{P_θ}[f(x)] estimated by a critic f_w with w clipped to
  [−c, c], and its gradient −E_z[∇_θ f(g_θ(z))] (Theorem 3)                   -> `WGANClip`
- Algorithm 1, lines 5–6: the critic's ascent on f_w(x) − f_w(g_θ(z)), i.e. it minimises
  D(G(z)) − D(x); the logged statistic is the estimate D(x) − D(G(z)) = −Loss_D
                                                                        -> `WGANClip.critic_loss`
- Algorithm 1, line 7: w ← clip(w, −c, c) after every critic update    -> `WGANClip.after_critic_step`
- Algorithm 1, lines 9–11: the generator descends −E_z[f_w(g_θ(z))]    -> `WGANClip.generator_loss`
- Algorithm 1 itself (n_critic critic steps per generator step, RMSProp) -> `repro.gan_loop.train_gan`
- Algorithm 1's defaults α = 0.00005, c = 0.01, m = 64, n_critic = 5    -> `PAPER`
- the code's schedule (main.py lines 163–166, the README's "only addition"): 100 critic
  iterations for the first 25 generator iterations and every 500th     -> `CriticSchedule`
- Section 4.2 / the README: "−Loss_D" passed through a median filter of width 101 -> `median_filter`
- Figure 3's "clear correlation between lower error and better sample quality", tested as a
  Spearman correlation with a bootstrap interval over checkpoints      -> `spearman_interval`
- Section 4.1–4.3's networks (DCGAN G with and without batch norm, the ReLU-MLP G, the DCGAN
  critic)                                                               -> `repro.wgan.models`
- the baseline "standard GAN procedure using the −log D trick"          -> `repro.gan.NonSaturating`
- Figure 4's JS estimate ½ L(D, g_θ) + log 2                             -> `repro.wgan.baseline.js_estimate`
- "In no experiment did we see evidence of mode collapse": class coverage of the samples under
  our Fashion-MNIST classifier                                          -> `class_entropy`

Deviations (each also in README.md, with why):
- Data: Fashion-MNIST 28 × 28 grey images instead of LSUN bedrooms 64 × 64 RGB (not here); the
  networks are the paper's DCGAN/MLP designs resized to 28 px (`repro.wgan.models`).
- At `small` WGAN's learning rate is 2.5e-4, 5× Algorithm 1's α (`full` keeps 5e-5): with
  RMSProp a weight moves by about α per step, and the ~1,000 generator iterations a CPU allows
  leave the generator at blobs at 5e-5.
- The no-batch-norm generator has a constant number of filters, as the paper says (the code's
  `DCGAN_G_nobn` keeps halving them); the MLP generator ends in tanh (the code's is linear).
- Clipping follows Algorithm 1 (after each critic update); the code clamps before each critic
  update, so its generator step sees the critic of the last update unclipped.
- Batches are drawn uniformly with replacement (`repro.gan_loop`), not in shuffled epochs; the
  code's 100-step phases also stop at an epoch's end, ours do not.
- The median filter truncates its window at the ends of the curve (scipy's `medfilt`, which the
  README uses, pads with zeros, which drags the ends of a positive curve towards 0).
- Sample quality is FID on our Fashion-MNIST classifier's features, not a visual judgement of
  sample sheets (the paper has no number); the standard GAN baseline is trained with DCGAN's
  published recipe (Adam 2e-4, β1 0.5, one discriminator step per generator step) for the same
  number of generator iterations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from repro.stats import LEVEL, RESAMPLES, SEED, Interval

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "PAPER",
    "CriticSchedule",
    "Settings",
    "WGANClip",
    "class_entropy",
    "median_filter",
    "spearman",
    "spearman_interval",
]


@dataclass(frozen=True)
class Settings:
    """The hyperparameters of Algorithm 1."""

    lr: float = 0.00005  # α, RMSProp for the critic and the generator
    clip: float = 0.01  # c
    batch_size: int = 64  # m
    n_critic: int = 5


#: Algorithm 1's defaults, "used in all experiments" (and the code's `main.py` defaults).
PAPER = Settings()


@dataclass(frozen=True)
class CriticSchedule:
    """The number of critic steps before generator iteration `it` (0-based: `it` generator steps
    done), as the code's `main.py`: `long` steps while `it < warmup` or `it % every == 0`, else
    `n_critic`. Its defaults are the code's (100 for the first 25 iterations and every 500th,
    else 5); `warmup=0, every=0` is Algorithm 1 as printed."""

    n_critic: int = 5
    warmup: int = 25
    every: int = 500
    long: int = 100

    def __call__(self, it: int) -> int:
        if it < self.warmup or (self.every > 0 and it % self.every == 0):
            return self.long
        return self.n_critic

    def total(self, iterations: int) -> int:
        """Critic steps in `iterations` loop iterations (for sizing a run)."""
        return sum(self(it) for it in range(iterations))


@dataclass(frozen=True)
class WGANClip:
    """The `repro.gan_loop.GANLoss` of WGAN with weight clipping (Algorithm 1).

    The critic minimises E[D(G(z))] − E[D(x)] (its ascent on the EM estimate), then every
    parameter of the critic is clipped to [−clip, clip] (batch-norm scales and shifts included,
    as the code clamps all of `netD.parameters()`); the generator minimises −E[D(G(z))]. The
    logged statistic `w` is E[D(x)] − E[D(G(z))], the paper's −Loss_D.
    """

    clip: float = 0.01
    name: str = "WGAN"
    statistic: str = "w"

    def critic_loss(
        self, critic: nn.Module, real: Tensor, fake: Tensor, rng: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        """(D(G(z)) − D(x), the estimate D(x) − D(G(z))), batch means; draws nothing."""
        w = critic(real).mean() - critic(fake).mean()
        return -w, w

    def generator_loss(self, critic: nn.Module, fake: Tensor) -> Tensor:
        """−E[D(G(z))] (Algorithm 1, line 10)."""
        return -critic(fake).mean()

    @torch.no_grad()
    def after_critic_step(self, critic: nn.Module) -> None:
        """w ← clip(w, −c, c) for every parameter (Algorithm 1, line 7)."""
        for p in critic.parameters():
            p.clamp_(-self.clip, self.clip)


def median_filter(values: Sequence[float] | Tensor, window: int = 101) -> list[float]:
    """The running median of `values` over `window` (odd) consecutive points centred on each
    point; near the ends the window is truncated to the points that exist (no padding)."""
    import numpy as np

    if window < 1 or window % 2 == 0:
        raise ValueError(f"median_filter: window {window} must be odd and positive")
    v = np.asarray(values.tolist() if isinstance(values, Tensor) else values, dtype=np.float64)
    half = window // 2
    return [float(np.median(v[max(0, i - half) : i + half + 1])) for i in range(v.size)]


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks along the last axis."""
    from scipy.stats import rankdata

    return rankdata(x, axis=-1)


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation of two equally long sequences (ties get average ranks); NaN
    when either is constant."""
    import numpy as np

    ra, rb = _ranks(np.asarray(a, dtype=np.float64)), _ranks(np.asarray(b, dtype=np.float64))
    if ra.size != rb.size or ra.size < 2:
        raise ValueError(
            f"spearman: need two sequences of equal length >= 2, got {ra.size} and {rb.size}"
        )
    if np.ptp(ra) == 0 or np.ptp(rb) == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def spearman_interval(
    a: Sequence[float],
    b: Sequence[float],
    *,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    seed: int = SEED,
) -> Interval:
    """Spearman's ρ between `a` and `b` and its percentile bootstrap interval: the (a_i, b_i)
    pairs (checkpoints) resampled with replacement, `resamples` times from a NumPy generator
    seeded `seed` (repro.stats' conventions: 1,000 resamples, 95 %, seed 0); resamples in which
    either side is constant have no ρ and are left out."""
    import numpy as np

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    estimate = spearman(x, y)
    n = x.size
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    rx, ry = _ranks(x[idx]), _ranks(y[idx])
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    denom = np.sqrt((rx**2).sum(axis=1) * (ry**2).sum(axis=1))
    ok = denom > 0
    rho = (rx[ok] * ry[ok]).sum(axis=1) / denom[ok]
    if rho.size == 0:
        return Interval(estimate, float("nan"), float("nan"), level)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(rho, [tail, 1.0 - tail])
    return Interval(estimate, float(low), float(high), level)


@torch.no_grad()
def class_entropy(logits: Tensor) -> float:
    """Entropy (nats) of the histogram of predicted classes of a batch of samples: log(10) ≈ 2.303
    when a 10-class classifier sees every class equally often, 0 when every sample gets one class
    (total mode collapse). `exp` of it is the effective number of classes covered."""
    counts = torch.bincount(logits.argmax(dim=1), minlength=logits.shape[1]).double()
    p = counts / counts.sum()
    return float(-(p[p > 0] * p[p > 0].log()).sum()) + 0.0  # + 0.0: never -0.0
