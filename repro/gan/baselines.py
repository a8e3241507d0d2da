"""Simple density models to put beside the GAN in Table 1's Parzen protocol (ours, not the paper's).

Goodfellow et al. (NIPS 2014, https://arxiv.org/abs/1406.2661) compare their Parzen estimate with
DBNs, stacked CAEs and deep GSNs (Table 1), which are not reproduced here. On the Fashion-MNIST
analogue the GAN is compared instead with models anyone can fit in seconds, each evaluated
exactly as the GAN is: draw samples, fit the Parzen window to them, choose σ on validation images
(`repro.gan.parzen.parzen_evaluation`):

- a single Gaussian with the training images' mean and full covariance;
- a mixture of K Gaussians with diagonal covariances, fitted by EM;
- (in the notebook) the training images themselves as the "samples": the memorising reference,
  what a model that reproduced its training set would score.

Both models' samples are clipped to [0, 1], the pixels' range, before the Parzen fit (so are the
GAN's, by its sigmoid). Their exact log-densities (`log_prob`, of the unclipped models) are kept
beside the Parzen estimates to show how far apart the two can be (Theis et al., ICLR 2016).

Map:
- the Gaussian baseline, N(mean, covariance + jitter·I) fitted by maximum likelihood -> `Gaussian`
- the diagonal Gaussian mixture, fitted by EM (`DiagonalGMM.fit`; the E-step's responsibilities
  and the M-step's weighted moments), its density and its samples -> `DiagonalGMM`

Deviations: these baselines are ours; the paper's Table 1 baselines are other published models.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from repro import ReproError

__all__ = ["DiagonalGMM", "Gaussian"]

_LOG_2PI = math.log(2.0 * math.pi)


def _flat64(x: Tensor) -> Tensor:
    if x.dim() < 2 or x.shape[0] < 2:
        raise ReproError(f"baselines: need a batch of at least 2 images, got {tuple(x.shape)}")
    return x.reshape(x.shape[0], -1).double()


@dataclass(frozen=True)
class Gaussian:
    """One Gaussian over all pixels: the training mean and the maximum-likelihood covariance plus
    `jitter`·I (which keeps it positive definite: pixels that never vary, and the low-rank
    directions of the data)."""

    mean: Tensor
    chol: Tensor
    shape: tuple[int, ...]

    @classmethod
    def fit(cls, x: Tensor, *, jitter: float = 1e-3) -> Gaussian:
        """Fit to images `x` (N × ...), in float64."""
        if not jitter > 0:
            raise ReproError(f"Gaussian.fit: jitter must be > 0, got {jitter}")
        xf = _flat64(x)
        mean = xf.mean(dim=0)
        xc = xf - mean
        cov = xc.T @ xc / xf.shape[0]
        cov += jitter * torch.eye(cov.shape[0], dtype=cov.dtype, device=cov.device)
        return cls(mean, torch.linalg.cholesky(cov), tuple(x.shape[1:]))

    def sample(self, n: int, rng: torch.Generator) -> Tensor:
        """n images mean + L ε, ε ~ N(0, I) from `rng`, clipped to [0, 1], float32."""
        eps = torch.randn(
            n, self.mean.numel(), generator=rng, device=rng.device, dtype=torch.float64
        )
        x = self.mean.to(eps.device) + eps @ self.chol.to(eps.device).T
        return x.clamp(0.0, 1.0).float().view(n, *self.shape)

    def log_prob(self, x: Tensor) -> Tensor:
        """The exact log-density of every image of `x` (nats), float64."""
        xc = _flat64(x).to(self.mean.device) - self.mean
        sol = torch.linalg.solve_triangular(self.chol, xc.T, upper=False)
        maha = sol.square().sum(dim=0)
        logdet = 2.0 * torch.log(torch.diagonal(self.chol)).sum()
        return -0.5 * (maha + logdet + self.mean.numel() * _LOG_2PI)


@dataclass(frozen=True)
class DiagonalGMM:
    """A mixture of Gaussians with diagonal covariances: `weights` (K), `means` and `variances`
    (K × D), float64."""

    weights: Tensor
    means: Tensor
    variances: Tensor
    shape: tuple[int, ...]

    def _component_log_probs(self, xf: Tensor) -> Tensor:
        """log w_k + log N(x; μ_k, diag v_k) for every image and component (N × K)."""
        inv = 1.0 / self.variances
        quad = (xf.square() @ inv.T) - 2.0 * (xf @ (self.means * inv).T)
        quad = quad + (self.means.square() * inv).sum(dim=1)
        const = torch.log(self.variances).sum(dim=1) + self.means.shape[1] * _LOG_2PI
        return torch.log(self.weights) - 0.5 * (quad + const)

    def log_prob(self, x: Tensor, *, chunk: int = 4096) -> Tensor:
        """The exact log-density of every image of `x` (nats), float64."""
        xf = _flat64(x).to(self.means.device)
        return torch.cat(
            [torch.logsumexp(self._component_log_probs(xf[i : i + chunk]), dim=1)
             for i in range(0, xf.shape[0], chunk)]
        )  # fmt: skip

    @classmethod
    def fit(
        cls,
        x: Tensor,
        k: int,
        *,
        iterations: int = 30,
        var_floor: float = 1e-3,
        rng: torch.Generator,
        chunk: int = 4096,
    ) -> DiagonalGMM:
        """EM from K training images drawn by `rng` as the means, the pixels' overall variances
        and equal weights; variances floored at `var_floor` after every M-step."""
        if k < 1 or iterations < 0 or not var_floor > 0:
            raise ReproError(f"DiagonalGMM.fit: k {k} >= 1, iterations {iterations} >= 0, "
                             f"var_floor {var_floor} > 0")  # fmt: skip
        xf = _flat64(x)
        if k > xf.shape[0]:
            raise ReproError(f"DiagonalGMM.fit: {k} components for {xf.shape[0]} images")
        idx = torch.randperm(xf.shape[0], generator=rng, device=rng.device)[:k].to(xf.device)
        var = xf.var(dim=0, correction=0).clamp_min(var_floor)
        model = cls(
            torch.full((k,), 1.0 / k, dtype=xf.dtype, device=xf.device),
            xf[idx].clone(),
            var.expand(k, -1).clone(),
            tuple(x.shape[1:]),
        )
        for _ in range(iterations):
            nk = torch.zeros(k, dtype=xf.dtype, device=xf.device)
            s1 = torch.zeros_like(model.means)
            s2 = torch.zeros_like(model.means)
            for i in range(0, xf.shape[0], chunk):  # E-step and the M-step's sums, by chunks
                xb = xf[i : i + chunk]
                resp = torch.softmax(model._component_log_probs(xb), dim=1)
                nk += resp.sum(dim=0)
                s1 += resp.T @ xb
                s2 += resp.T @ xb.square()
            nk = nk.clamp_min(1e-10)
            means = s1 / nk[:, None]
            variances = (s2 / nk[:, None] - means.square()).clamp_min(var_floor)
            model = cls(nk / nk.sum(), means, variances, model.shape)
        return model

    def sample(self, n: int, rng: torch.Generator) -> Tensor:
        """n images: a component by its weight, then its Gaussian, from `rng`; clipped to [0, 1],
        float32."""
        dev = rng.device
        comp = torch.multinomial(self.weights.to(dev), n, replacement=True, generator=rng)
        eps = torch.randn(n, self.means.shape[1], generator=rng, device=dev, dtype=torch.float64)
        x = self.means.to(dev)[comp] + eps * self.variances.to(dev)[comp].sqrt()
        return x.clamp(0.0, 1.0).float().view(n, *self.shape)
