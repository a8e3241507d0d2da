"""Table 1 and 2's protocol: a trained DCGAN discriminator as a feature extractor for a linear
classifier trained on few labels (Radford, Metz & Chintala, ICLR 2016, Section 5.1).

Paper: https://arxiv.org/abs/1511.06434, Section 5.1 ("we use the discriminator's convolutional
features from all layers, maxpooling each layers representation to produce a 4 × 4 spatial grid.
These features are then flattened and concatenated ... and a regularized linear L2-SVM classifier
is trained on top of them"), Table 2's 1,000-label SVHN protocol, and the official code's
`svhn/svhn_semisup_analysis.py` (commit ee12b2d; read, not copied), which fixes what the text
leaves open: batch-norm statistics inferred from the training images, the SVM's C chosen on a
validation split by the mean error over 10 draws of 100 labels per class, then the test error's
mean and 1.96 standard deviations over 100 draws.

Map (Section 5.1 and the code's protocol -> the code):
- "features from all layers, maxpooling each layers representation to produce a 4 × 4 spatial
  grid ... flattened and concatenated" (the code pools 16, 8 and 4 px maps by 4, 2 and 1)
                                                              -> `pooled_features`
- the code's `infer_bnorm_stats`: batch norm evaluated with the mean over training batches of
  each batch's statistics                                     -> `with_data_batch_norm`
- raw pixels through the same classifier (our baseline)      -> `pixel_features`
- "a regularized linear L2-SVM": one-vs-rest, squared hinge, L2 penalty, the intercept
  regularised (the code's `sklearn.svm.LinearSVC(C=c)` defaults) -> `fit_l2_svm`, `LinearSVM`
- 100 labelled images per class drawn at random (1,000 labels) -> `balanced_draw`
- C chosen by the mean validation error over draws           -> `select_c`
- the test error over draws                                  -> `evaluate_draws`
- an interval that accounts for both the label draw and the test images (our addition: the code
  prints mean ± 1.96 std over draws)                         -> `draws_interval`

Deviations (each also in README.md):
- 28 px maps (14, 7 and 4 px) are max-pooled to 4 × 4 with `adaptive_max_pool2d` (windows of 3
  or 4 px that overlap by at most one pixel) where the code's 32 px maps divide exactly.
- The SVM is solved exactly by Newton's method on the active set (Chapelle 2007) in the span of
  the labelled features, in float64, instead of liblinear's dual coordinate descent (which stops
  at a tolerance): the same convex problem, its optimum.
- Batch-norm variances are the average of each batch's unbiased variance (PyTorch's cumulative
  average) where the code averages biased ones: a factor 127/128 at batch 128.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro import ReproError
from repro.stats import LEVEL, RESAMPLES, SEED, Interval

__all__ = [
    "GRID",
    "LinearSVM",
    "balanced_draw",
    "draws_interval",
    "evaluate_draws",
    "fit_l2_svm",
    "pixel_features",
    "pooled_features",
    "select_c",
    "with_data_batch_norm",
]

#: Section 5.1: each layer's map is max-pooled to a 4 × 4 grid.
GRID = 4


def _batches(x: Tensor, size: int) -> list[Tensor]:
    return [x[i : i + size] for i in range(0, x.shape[0], size)]


@torch.no_grad()
def with_data_batch_norm(critic: nn.Module, x: Tensor, *, batch_size: int = 128) -> nn.Module:
    """A copy of `critic` in eval mode whose batch norms normalise with statistics of the images
    `x`: the mean over batches of `batch_size` of each batch's mean and variance (the code's
    `infer_bnorm_stats`). A network without batch norm is copied and put in eval mode.

    During GAN training the discriminator's running statistics mix real and generated batches;
    the code re-estimates them on real training images before reading features, and so does
    this, for the trained and the random discriminator alike. `critic` is left as it was.
    """
    model = copy.deepcopy(critic)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if norms:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the batches below
        model.train()
        forward = getattr(model, "features", model)
        for xb in _batches(x, batch_size):
            forward(xb)
    return model.eval()


@torch.no_grad()
def pooled_features(
    critic: nn.Module, x: Tensor, *, grid: int = GRID, batch_size: int = 500
) -> Tensor:
    """Section 5.1's representation: every map of `critic.features(x)` max-pooled to
    `grid` × `grid`, flattened and concatenated: (N, grid² Σ channels) = (N, 16 · 7 · width)
    for `repro.dcgan.Discriminator`. `critic` must be in eval mode (`with_data_batch_norm`):
    in training mode batch norm would mix the images of a batch."""
    if critic.training:
        raise ReproError(
            "pooled_features: put the discriminator in eval mode (with_data_batch_norm) first"
        )
    out = []
    for xb in _batches(x, batch_size):
        maps = critic.features(xb)
        out.append(torch.cat([F.adaptive_max_pool2d(m, grid).flatten(1) for m in maps], dim=1))
    return torch.cat(out)


def pixel_features(x: Tensor) -> Tensor:
    """The baseline representation: the pixels themselves, on the discriminator's input scale
    [−1, 1], flattened."""
    return (2.0 * x - 1.0).flatten(1)


@dataclass(frozen=True)
class LinearSVM:
    """One-vs-rest linear classifier: scores f W^T + b, the class with the highest score."""

    weight: Tensor  # (classes, features)
    bias: Tensor  # (classes,)

    def scores(self, f: Tensor) -> Tensor:
        return f.to(self.weight.dtype) @ self.weight.T + self.bias

    def predict(self, f: Tensor) -> Tensor:
        return self.scores(f).argmax(dim=1)


def _newton_sq_hinge(k: Tensor, t: Tensor, c: float, max_iter: int) -> Tensor:
    """β with w = Σ_i β_i x̃_i minimising ½‖w‖² + c Σ_i max(0, 1 − t_i w · x̃_i)², given the
    Gram matrix k = X̃ X̃^T and targets t = ±1 (float64).

    Newton's method on the active set S = {i : t_i o_i < 1} (o = kβ): on S the objective is
    quadratic and its minimiser is β_S = (I / 2c + k_SS)^{-1} t_S, β = 0 off S (Chapelle 2007,
    "Training a support vector machine in the primal", Section 4); a step that does not lower
    the objective is halved. Converged when a full step leaves S unchanged: β is then the
    minimiser on its own piece of a convex piecewise-quadratic function, the global minimum.
    """
    n = k.shape[0]
    beta = torch.zeros(n, dtype=k.dtype, device=k.device)
    out = torch.zeros_like(beta)

    def objective(b: Tensor, o: Tensor) -> float:
        return float(0.5 * (b @ o) + c * (1.0 - t * o).clamp_min(0.0).square().sum())

    current = objective(beta, out)
    for _ in range(max_iter):
        active = torch.nonzero(t * out < 1.0).flatten()
        eye = torch.eye(active.numel(), dtype=k.dtype, device=k.device)
        chol = torch.linalg.cholesky(k[active][:, active] + eye / (2.0 * c))
        solved = torch.cholesky_solve(t[active, None], chol).flatten()
        target = torch.zeros_like(beta)
        target[active] = solved
        step, out_step = target - beta, k[:, active] @ solved - out
        tau = 1.0
        while True:
            cand, cand_out = beta + tau * step, out + tau * out_step
            value = objective(cand, cand_out)
            if value <= current * (1.0 + 1e-12) or tau < 1e-8:
                break
            tau /= 2.0
        beta, out, current = cand, cand_out, value
        if tau == 1.0 and torch.equal(torch.nonzero(t * out < 1.0).flatten(), active):
            return beta
    raise ReproError(f"fit_l2_svm: Newton's method did not converge in {max_iter} iterations")


def _fit_many(f: Tensor, y: Tensor, cs: Sequence[float], classes: int) -> list[LinearSVM]:
    """`fit_l2_svm` for each C of `cs`, sharing one Gram matrix."""
    if any(c <= 0 for c in cs):
        raise ReproError(f"fit_l2_svm: C must be positive, got {list(cs)}")
    if f.dim() != 2 or y.shape != (f.shape[0],):
        raise ReproError(f"fit_l2_svm: features (N, D) and labels (N,), got {f.shape}, {y.shape}")
    ones = torch.ones(f.shape[0], 1, dtype=torch.float64, device=f.device)
    x = torch.cat([f.double(), ones], dim=1)  # the intercept as a constant feature
    gram = x @ x.T
    t = F.one_hot(y.long().to(f.device), classes).double() * 2.0 - 1.0
    out = []
    for c in cs:
        beta = torch.stack([_newton_sq_hinge(gram, t[:, j], c, 100) for j in range(classes)], 1)
        w = x.T @ beta  # (D + 1, classes)
        out.append(LinearSVM(w[:-1].T.contiguous(), w[-1].clone()))
    return out


def fit_l2_svm(f: Tensor, y: Tensor, *, c: float, classes: int) -> LinearSVM:
    """The L2-SVM of Section 5.1 as the code's `LinearSVC(C=c)` defines it: for each class k
    (one-vs-rest, targets t = ±1), min over (w_k, b_k) of
    ½ (‖w_k‖² + b_k²) + c Σ_i max(0, 1 − t_ik (w_k · f_i + b_k))² — squared hinge, L2 penalty,
    the intercept regularised like a weight (liblinear's intercept_scaling = 1).

    Solved exactly (to float64 rounding) by Newton's method in the span of the training features
    (`_newton_sq_hinge`): with 1,000 labelled images and thousands of features, the 1,000 × 1,000
    Gram matrix is the small side of the problem.
    """
    return _fit_many(f, y, [c], classes)[0]


def balanced_draw(y: Tensor, per_class: int, classes: int, rng: torch.Generator) -> Tensor:
    """Indices of `per_class` images of each class of `y`, drawn without replacement from `rng`
    (the code's `py_rng.sample(class_idxs, 100)` per class), grouped by class."""
    out = []
    for k in range(classes):
        idx = torch.nonzero(y.cpu() == k).flatten()
        if idx.numel() < per_class:
            raise ReproError(f"balanced_draw: class {k} has {idx.numel()} < {per_class} images")
        perm = torch.randperm(idx.numel(), generator=rng, device=rng.device).cpu()
        out.append(idx[perm[:per_class]])
    return torch.cat(out)


def _correct(
    f_pool: Tensor, y_pool: Tensor, f_eval: Tensor, y_eval: Tensor, sets: Sequence[Tensor],
    cs: Sequence[float], classes: int,
) -> list[Tensor]:  # fmt: skip
    """For each C of `cs`: (len(sets), N_eval) correctness of the SVM trained on each set."""
    rows: list[list[Tensor]] = [[] for _ in cs]
    y_eval = y_eval.to(f_eval.device)
    for idx in sets:
        for i, svm in enumerate(_fit_many(f_pool[idx], y_pool[idx], cs, classes)):
            rows[i].append(svm.predict(f_eval) == y_eval)
    return [torch.stack(r) for r in rows]


def select_c(
    f_pool: Tensor,
    y_pool: Tensor,
    f_valid: Tensor,
    y_valid: Tensor,
    sets: Sequence[Tensor],
    cs: Sequence[float],
    *,
    classes: int = 10,
) -> tuple[float, dict[float, float]]:
    """The C of `cs` with the lowest mean validation error (in percent) over the labelled sets
    `sets` (indices into the pool), and every C's mean error; ties go to the smaller C."""
    correct = _correct(f_pool, y_pool, f_valid, y_valid, sets, cs, classes)
    errors = {
        float(c): 100.0 * (1.0 - m.double().mean().item()) for c, m in zip(cs, correct, strict=True)
    }
    best = min(errors, key=lambda k: (errors[k], k))
    return best, errors


def evaluate_draws(
    f_pool: Tensor,
    y_pool: Tensor,
    f_test: Tensor,
    y_test: Tensor,
    sets: Sequence[Tensor],
    c: float,
    *,
    classes: int = 10,
) -> Tensor:
    """Per draw and test image, whether the SVM trained on that draw's labelled set classifies
    the image correctly: a bool tensor (len(sets), N_test). Its mean is the accuracy over draws;
    the same `sets` for every representation pair the comparisons."""
    return _correct(f_pool, y_pool, f_test, y_test, sets, [c], classes)[0].cpu()


def draws_interval(
    correct: Sequence[Any],
    func: Callable[[Any], Any] | None = None,
    *,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    seed: int = SEED,
) -> Interval:
    """Bootstrap interval of `func(means)`, where `means` holds the accuracy of each (draws ×
    images) 0/1 matrix of `correct`, resampling both the label draws and the test images (the
    same resamples for every matrix: paired); `func` maps (B, k) means to (B,), default the
    first. The estimate is `func` of the matrices' plain means.

    This is `repro.stats.means_interval` with a second, independent resampling of the rows: the
    few-label protocol's spread comes from which labels were drawn as much as from which test
    images were scored.
    """
    import numpy as np

    mats = [
        np.asarray(m.detach().cpu().numpy() if hasattr(m, "detach") else m, dtype=np.float64)
        for m in correct
    ]
    if not mats or any(m.ndim != 2 or m.shape != mats[0].shape or m.size == 0 for m in mats):
        raise ReproError("draws_interval: non-empty (draws, images) matrices of one shape")
    d, n = mats[0].shape
    func = func or (lambda m: m[:, 0])
    stacked = np.stack(mats)  # (k, d, n)
    estimate = float(np.asarray(func(stacked.mean(axis=(1, 2))[None, :])).reshape(-1)[0])
    rng = np.random.default_rng(seed)
    values = []
    chunk = max(1, (1 << 22) // max(n, 1))
    done = 0
    while done < resamples:
        b = min(chunk, resamples - done)
        wd = np.stack([np.bincount(r, minlength=d) for r in rng.integers(0, d, (b, d))])
        wi = np.stack([np.bincount(r, minlength=n) for r in rng.integers(0, n, (b, n))])
        # mean of matrix k under resample j: wd_j^T M_k wi_j / (d n)
        per_image = np.einsum("bd,kdn->bkn", wd.astype(np.float64), stacked)
        means = np.einsum("bkn,bn->bk", per_image, wi.astype(np.float64)) / (d * n)
        values.append(np.asarray(func(means), dtype=np.float64).reshape(-1))
        done += b
    allv = np.concatenate(values)
    allv = allv[np.isfinite(allv)]
    if allv.size == 0:
        return Interval(estimate, math.nan, math.nan, level)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(allv, [tail, 1.0 - tail])
    return Interval(estimate, float(low), float(high), level)
