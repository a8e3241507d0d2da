"""The Parzen-window log-likelihood estimate of Goodfellow et al. (NIPS 2014), Table 1.

Paper: https://arxiv.org/abs/1406.2661, Section 5 ("We estimate probability of the test set data
under p_g by fitting a Gaussian Parzen window to the samples generated with G and reporting the
log-likelihood under this distribution. The σ parameter of the Gaussians was obtained by cross
validation on the validation set."). The protocol is the official code's `parzen_ll.py`
(github.com/goodfeli/adversarial, commit 1720041; read, not copied):

    log p̂(x) = log (1/n) Σ_j exp(−‖x − μ_j‖² / (2σ²)) − d log(σ √(2π))

over n = 10,000 samples μ_j of G (d = 784 pixels); σ is the value of `logspace(−1, 0, 10)` whose
mean log-likelihood of 1,000 validation images (MNIST training images 50,000–51,000) is highest;
the reported number is the mean of log p̂ over the test set and its standard error,
`ll.std() / sqrt(n_test)` (numpy's std, ddof = 0).

Map from the paper to the code:
- the Parzen window's log-density of each image, log-mean-exp over the samples
                                                                     -> `parzen_log_likelihood`
- σ by grid search on the validation images (`cross_validate_sigma`) -> `select_sigma`,
  over the grid `PAPER_SIGMAS`
- Table 1's number: the test mean and its standard error at that σ  -> `parzen_evaluation`,
  returning a `ParzenResult`; the standard error alone             -> `standard_error`

Batched: the squared distances come from one matrix product per chunk of test images and chunk of
samples (‖x‖² + ‖μ‖² − 2 x·μ, clamped at 0, in float64 by default), and the log-mean-exp over the
samples is accumulated chunk by chunk (a running maximum and sum), so memory is bounded by
`chunk × chunk` numbers whatever the sizes. The validation distances are computed once and every σ
of the grid evaluated on them.

Deviations:
- None in the estimator. parzen_ll.py computed the differences x − μ explicitly in Theano's
  floatX (float32 on the GPU); we expand the square in float64, which is at least as accurate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from repro import ReproError

__all__ = [
    "PAPER_SIGMAS",
    "ParzenResult",
    "parzen_evaluation",
    "parzen_log_likelihood",
    "select_sigma",
    "standard_error",
]

#: parzen_ll.py's grid: `numpy.logspace(-1, 0, num=10)` (σ from 0.1 to 1, pixels in [0, 1]).
PAPER_SIGMAS: tuple[float, ...] = tuple(10.0 ** (-1.0 + i / 9.0) for i in range(10))


@dataclass(frozen=True)
class ParzenResult:
    """Table 1's estimate: the test images' mean log-likelihood (nats) and its standard error,
    at the σ chosen on the validation images; `per_image` keeps every test image's value and
    `valid_means` the validation mean of every σ of the grid (the cross-validation curve)."""

    mean: float
    se: float
    sigma: float
    per_image: Tensor
    sigmas: tuple[float, ...]
    valid_means: tuple[float, ...]
    n_samples: int


def _flat(x: Tensor, what: str) -> Tensor:
    if x.dim() < 2 or x.shape[0] < 1:
        raise ReproError(f"{what}: expected a batch of images (N, ...), got {tuple(x.shape)}")
    return x.reshape(x.shape[0], -1)


def _sq_norms(x: Tensor) -> Tensor:
    return x.square().sum(dim=1)


def _log_mean_exp_sq(
    x: Tensor, samples: Tensor, scales: Tensor, chunk: int, dtype: torch.dtype
) -> Tensor:
    """For every image of `x` and every entry s of `scales` (= 1 / (2σ²)):
    log (1/n) Σ_j exp(−s ‖x − μ_j‖²), shape (len(scales), N). Chunked over x and the samples with
    a running log-sum-exp."""
    x = x.to(dtype)
    mu = samples.to(dtype)
    n = mu.shape[0]
    mu_sq = _sq_norms(mu)
    out = torch.empty(scales.shape[0], x.shape[0], dtype=dtype, device=x.device)
    scales = scales.to(dtype=dtype, device=x.device).view(-1, 1, 1)
    for i in range(0, x.shape[0], chunk):
        xi = x[i : i + chunk]
        xi_sq = _sq_norms(xi)
        run_max = torch.full((scales.shape[0], xi.shape[0]), -math.inf, dtype=dtype,
                             device=x.device)  # fmt: skip
        run_sum = torch.zeros_like(run_max)
        for j in range(0, n, chunk):
            d2 = xi_sq[:, None] + mu_sq[None, j : j + chunk] - 2.0 * xi @ mu[j : j + chunk].T
            e = -scales * d2.clamp_min_(0.0)[None]  # (S, chunk_x, chunk_mu)
            block_max = e.amax(dim=2)
            new_max = torch.maximum(run_max, block_max)
            run_sum = run_sum * torch.exp(run_max - new_max) + torch.exp(
                e - new_max[..., None]
            ).sum(dim=2)
            run_max = new_max
        out[:, i : i + chunk] = run_max + torch.log(run_sum) - math.log(n)
    return out


def _normaliser(d: int, sigmas: Tensor) -> Tensor:
    """d log(σ √(2π)): the Gaussian's normalising constant (parzen_ll.py's Z)."""
    return d * torch.log(sigmas * math.sqrt(2.0 * math.pi))


@torch.no_grad()
def parzen_log_likelihood(
    samples: Tensor,
    x: Tensor,
    sigma: float,
    *,
    chunk: int = 1024,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """log p̂(x) of every image of `x` under the Parzen window of isotropic Gaussians of width
    `sigma` centred on `samples` (both N × ... with the same number of values per image):
    log (1/n) Σ_j N(x; μ_j, σ² I). Returns a float64 (or `dtype`) vector on `x`'s device."""
    if not sigma > 0:
        raise ReproError(f"parzen_log_likelihood: sigma must be > 0, got {sigma}")
    return _parzen(samples, x, (float(sigma),), chunk=chunk, dtype=dtype)[0]


def _parzen(
    samples: Tensor, x: Tensor, sigmas: tuple[float, ...], *, chunk: int, dtype: torch.dtype
) -> Tensor:
    mu, xf = _flat(samples, "samples"), _flat(x, "images")
    if mu.shape[1] != xf.shape[1]:
        raise ReproError(
            f"parzen: samples have {mu.shape[1]} values per image, the images {xf.shape[1]}"
        )
    if chunk < 1:
        raise ReproError(f"parzen: chunk must be >= 1, got {chunk}")
    s = torch.tensor(sigmas, dtype=dtype, device=xf.device)
    lme = _log_mean_exp_sq(xf, mu.to(xf.device), 1.0 / (2.0 * s.square()), chunk, dtype)
    return lme - _normaliser(xf.shape[1], s)[:, None]


def standard_error(ll: Tensor) -> float:
    """parzen_ll.py's standard error of the mean: `ll.std() / sqrt(n)` with numpy's std (ddof 0)."""
    ll = ll.double()
    return float(ll.std(correction=0) / math.sqrt(ll.numel()))


@torch.no_grad()
def select_sigma(
    samples: Tensor,
    valid: Tensor,
    sigmas: tuple[float, ...] = PAPER_SIGMAS,
    *,
    chunk: int = 1024,
    dtype: torch.dtype = torch.float64,
) -> tuple[float, tuple[float, ...]]:
    """parzen_ll.py's `cross_validate_sigma`: the σ of `sigmas` whose mean log-likelihood of the
    validation images is highest (the first one on a tie, as numpy.argmax), and every σ's mean."""
    if not sigmas or min(sigmas) <= 0:
        raise ReproError(f"select_sigma: need positive sigmas, got {sigmas}")
    means = _parzen(samples, valid, tuple(sigmas), chunk=chunk, dtype=dtype).mean(dim=1)
    best = int(torch.argmax(means))
    return float(sigmas[best]), tuple(float(m) for m in means.tolist())


@torch.no_grad()
def parzen_evaluation(
    samples: Tensor,
    valid: Tensor,
    test: Tensor,
    sigmas: tuple[float, ...] = PAPER_SIGMAS,
    *,
    chunk: int = 1024,
    dtype: torch.dtype = torch.float64,
) -> ParzenResult:
    """Table 1's protocol: σ chosen on `valid` (`select_sigma`), then the mean log-likelihood of
    `test` under the Parzen window of `samples` at that σ and its standard error."""
    sigma, valid_means = select_sigma(samples, valid, sigmas, chunk=chunk, dtype=dtype)
    ll = parzen_log_likelihood(samples, test, sigma, chunk=chunk, dtype=dtype)
    return ParzenResult(
        mean=float(ll.mean()),
        se=standard_error(ll),
        sigma=sigma,
        per_image=ll.cpu(),
        sigmas=tuple(float(s) for s in sigmas),
        valid_means=valid_means,
        n_samples=int(samples.shape[0]),
    )
