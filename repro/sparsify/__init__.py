"""Sparsifying front end and network sparsity (Gopalakrishnan, Marzi, Madhow & Pedarsani, 2018).

Paper: "Robust Adversarial Learning via Sparsifying Front Ends", https://arxiv.org/abs/1810.10625
(the lecture's "Robustness via sparsification"; the companion ICLR 2018 workshop paper
"Combating Adversarial Attacks Using Sparse Representations", arXiv 1803.03880, holds the
front end and the locally linear attacks on MNIST only). Official code (TensorFlow, read, not
copied): github.com/soorya19/sparsity-based-defenses @ b29926a, `neural_nets/`.
Reproduces: Fig. 6 (Fashion-MNIST binary classification accuracy against eps for no defense, the
sparsifying front end and network sparsity) and Theorem 2 (the l_inf bound on the perturbation at
every layer of an l1-constrained network), on a Fashion-MNIST pair (see the notebook).

Map:
  - Fig. 1, the sparsifying front end: project x onto the K = floor(rho N) largest coefficients
    of an orthonormal wavelet basis Psi (db5, one level, periodisation: the official binary
    script's `wavelet_mat/db5_1.npz`), reconstruct, clip to [0, 1]
        f(x) = clip_[0,1](Psi^T H_K(Psi x))                              -> `SparsifyingFrontEnd`,
    with Psi built by PyWavelets (`wavelet_matrix`) and `sparsify_reference` the same map
    computed coefficient by coefficient with pywt.wavedec2 / waverec2 (the tests compare them).
  - Theorem 1 (linear classifier w): the front end turns the attack's output distortion
    eps ||w||_1 into eps ||P_x w||_1 with P_x the projection onto x's top-K support,
    ~K/N of it for a w spread over the basis                            -> `project_onto_support`
  - The deployed defense x -> g(f(x)): with backward="bpda" the gradient passes through f as
    the identity (the official grad_sp_frontend, "BPDA of 1"), with backward="exact" it is
    autograd's (the support held fixed: the white-box locally linear Jacobian)
                                                                        -> `FrontEndClassifier`
  - Locally linear attacks (Section 4 of 1803.03880; `attacks.py` `LocLinearAttack`): w_eq,t =
    grad_x z_t; per target t != y the step eps sign(w_eq,t - w_eq,y), keep the target with the
    largest z_t - z_y (semi-white-box); white-box: the direction projected onto the top-rho
    support of the current adversarial image, `proj_iters` times (`run_proj`, 20 in the code)
                                                                        -> `loclin_attack`
  - Fig. 2 / Theorem 2, network sparsity: ||w_ij||_1 <= gamma_j for every row i of layer j gives
    ||e_j||_inf <= eps prod_{l<=j} gamma_l at the output of layer j     -> `BinaryMLP.layer_outputs`,
    `BinaryMLP.gammas`, `theorem2_ratios`; the constraint enforced by Euclidean projection onto
    the l1 ball after every optimiser step (Duchi et al., 2008)         -> `project_l1_rows`,
    `L1ProjectedAdam`
  - The binary classifier (official `two_layer_nn`: 784 -> 10 ReLU -> 1 logit, sigmoid) as two
    logits (0, z), so that softmax cross-entropy is the sigmoid loss and every attack of the
    project applies                                                     -> `BinaryMLP`

Deviations:
  - The network-sparsity training of the paper was not found in the official repository (it has
    only the front end); we enforce Theorem 2's constraints by projected Adam, with gamma_l fixed
    in repro.toml (chosen on a validation split before the first small run, see the README).
  - The white-box locally linear attack projects the difference w_t - w_y onto the support of
    x_adv,t (the code projects w_t and w_y each on its own image's support); for two classes,
    all we run, the two are the same.
  - The Fashion-MNIST pair of Fig. 6 is not in our sources: see the notebook for the pair used.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from repro import ReproError
from repro.obfuscated_gradients import bpda
from repro.train import frozen

__all__ = [
    "BinaryMLP",
    "FrontEndClassifier",
    "L1ProjectedAdam",
    "SparsifyingFrontEnd",
    "keep_count",
    "loclin_attack",
    "project_l1_rows",
    "project_onto_support",
    "sparsify_reference",
    "theorem2_ratios",
    "wavelet_matrix",
]

WAVELET = "db5"  # the official binary script's basis (wavelet_mat/db5_1.npz)
LEVEL = 1
MODE = "periodization"  # an orthonormal transform with exactly N coefficients


# --------------------------------------------------------------------------- the front end


def keep_count(rho: float, n: int) -> int:
    """K = floor(rho N), as `sp_frontend` computes it (`np.floor(rho*dim)`)."""
    if not 0.0 < rho <= 1.0:
        raise ReproError(f"sparsity level rho must be in (0, 1], got {rho}")
    return max(1, math.floor(rho * n + 1e-9))


def _coeffs(images: np.ndarray, wavelet: str, level: int) -> np.ndarray:
    """Flattened wavelet coefficients of a batch (B, H, W) -> (B, N), pywt's own order."""
    import pywt

    coeffs = pywt.wavedec2(images, wavelet, mode=MODE, level=level, axes=(-2, -1))
    arr, _ = pywt.coeffs_to_array(coeffs, axes=(-2, -1))
    return arr.reshape(images.shape[0], -1)


@lru_cache(maxsize=8)
def _wavelet_matrix_np(side: int, wavelet: str, level: int) -> np.ndarray:
    eye = np.eye(side * side, dtype=np.float64).reshape(-1, side, side)
    psi = _coeffs(eye, wavelet, level).T  # column i = coefficients of basis image e_i
    if psi.shape[0] != side * side:
        raise ReproError(
            f"wavelet {wavelet} level {level} on {side}x{side}: {psi.shape[0]} coefficients, "
            f"not {side * side} (use a periodised, orthonormal transform)"
        )
    gram = psi @ psi.T
    if not np.allclose(gram, np.eye(side * side), atol=1e-8):
        raise ReproError(f"wavelet {wavelet} level {level} is not orthonormal on {side}x{side}")
    return psi


def wavelet_matrix(
    side: int = 28, wavelet: str = WAVELET, level: int = LEVEL, dtype: torch.dtype = torch.float32
) -> Tensor:
    """The orthonormal analysis matrix Psi (N x N, N = side^2): coefficients c = Psi x for x
    flattened row by row, built by PyWavelets from the basis images (as the official
    `wavelet_mat/*.npz` matrices are); x = Psi^T c."""
    return torch.from_numpy(_wavelet_matrix_np(side, wavelet, level)).to(dtype)


def _top_mask(coeffs: Tensor, k: int) -> Tensor:
    """1 on the k largest |coefficients| of each row, 0 elsewhere."""
    idx = coeffs.abs().topk(k, dim=1).indices
    return torch.zeros_like(coeffs).scatter_(1, idx, 1.0)


class SparsifyingFrontEnd(nn.Module):
    """f(x) = clip_[0,1](Psi^T H_K(Psi x)): keep the K = floor(rho N) largest wavelet coefficients.

    Batched (B, 1, H, W) in [0, 1]. Differentiable in x with the support held fixed (autograd
    through the mask-multiply: the locally linear Jacobian D_clip Psi^T M_x Psi)."""

    def __init__(
        self, rho: float, *, side: int = 28, wavelet: str = WAVELET, level: int = LEVEL
    ) -> None:
        super().__init__()
        self.rho, self.side, self.wavelet, self.level = rho, side, wavelet, level
        self.k = keep_count(rho, side * side)
        self.register_buffer("psi", wavelet_matrix(side, wavelet, level), persistent=False)

    def coefficients(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1) @ self.psi.to(x.dtype).T

    def support(self, x: Tensor) -> Tensor:
        """The top-K mask of x's coefficients (B, N)."""
        with torch.no_grad():
            return _top_mask(self.coefficients(x), self.k)

    def forward(self, x: Tensor) -> Tensor:
        c = self.coefficients(x)
        mask = _top_mask(c.detach(), self.k)
        out = (c * mask) @ self.psi.to(x.dtype)
        return out.clamp(0.0, 1.0).reshape(x.shape)


def sparsify_reference(
    images: np.ndarray, rho: float, *, wavelet: str = WAVELET, level: int = LEVEL
) -> np.ndarray:
    """The front end computed with pywt directly (wavedec2, keep top K, waverec2, clip), for a
    batch (B, H, W) of floats: the check of `SparsifyingFrontEnd`'s matrix."""
    import pywt

    b, h, w = images.shape
    coeffs = pywt.wavedec2(images, wavelet, mode=MODE, level=level, axes=(-2, -1))
    arr, slices = pywt.coeffs_to_array(coeffs, axes=(-2, -1))
    flat = arr.reshape(b, -1).copy()
    k = keep_count(rho, h * w)
    drop = np.argsort(-np.abs(flat), axis=1, kind="stable")[:, k:]
    np.put_along_axis(flat, drop, 0.0, axis=1)
    kept = pywt.array_to_coeffs(flat.reshape(arr.shape), slices, output_format="wavedec2")
    out = pywt.waverec2(kept, wavelet, mode=MODE, axes=(-2, -1))
    return np.clip(out, 0.0, 1.0)


def project_onto_support(front: SparsifyingFrontEnd, x: Tensor, w: Tensor) -> Tensor:
    """P_x w = Psi^T (M_x Psi w): w restricted to the top-K wavelet support of x (`sp_project`)."""
    mask = front.support(x)
    cw = w.reshape(w.shape[0], -1) @ front.psi.to(w.dtype).T
    return ((cw * mask) @ front.psi.to(w.dtype)).reshape(w.shape)


class FrontEndClassifier(nn.Module):
    """classifier(front(x)), the deployed defense; `backward` "bpda" (the official code's
    identity gradient through the front end, via `repro.obfuscated_gradients.bpda`) or "exact"."""

    def __init__(
        self,
        front: SparsifyingFrontEnd,
        classifier: nn.Module,
        backward: Literal["bpda", "exact"] = "bpda",
    ) -> None:
        super().__init__()
        if backward not in ("bpda", "exact"):
            raise ReproError(f"backward must be 'bpda' or 'exact', got {backward!r}")
        self.front, self.classifier, self.backward = front, classifier, backward

    def forward(self, x: Tensor) -> Tensor:
        pre = bpda(self.front)(x) if self.backward == "bpda" else self.front(x)
        return self.classifier(pre)


# --------------------------------------------------------------------------- the network


class BinaryMLP(nn.Module):
    """784 -> `hidden` ReLU -> 1 logit z (official `two_layer_nn`), returned as logits (0, z):
    softmax cross-entropy on them is the sigmoid loss of z, the prediction is z > 0."""

    def __init__(self, hidden: int = 10, n_in: int = 784) -> None:
        super().__init__()
        self.fc1 = nn.Linear(n_in, hidden)
        self.fc2 = nn.Linear(hidden, 1)

    def layer_outputs(self, x: Tensor) -> list[Tensor]:
        """[e_1's layer: ReLU(W_1 x + b_1), e_2's layer: z = W_2 h + b_2] (Theorem 2's layers)."""
        h = torch.relu(self.fc1(x.reshape(x.shape[0], -1)))
        return [h, self.fc2(h)]

    def forward(self, x: Tensor) -> Tensor:
        z = self.layer_outputs(x)[-1]
        return torch.cat([torch.zeros_like(z), z], dim=1)

    def constrained(self) -> list[nn.Parameter]:
        return [self.fc1.weight, self.fc2.weight]

    def gammas(self) -> list[float]:
        """gamma_l = max_i ||w_il||_1 of each layer's rows, as trained (<= the constraint)."""
        return [float(w.detach().abs().sum(dim=1).max()) for w in self.constrained()]


def theorem2_ratios(model: BinaryMLP, x: Tensor, x_adv: Tensor) -> Tensor:
    """Per example and layer j, ||e_j||_inf / (eps prod_{l<=j} gamma_l) with eps = ||x_adv - x||_inf
    of that example (B, L); Theorem 2 says every entry is <= 1. Examples with eps = 0 give 0."""
    with torch.no_grad():
        eps = (x_adv - x).reshape(x.shape[0], -1).abs().amax(dim=1)
        clean, adv = model.layer_outputs(x), model.layer_outputs(x_adv)
        bound = torch.ones_like(eps)
        out = []
        for gamma, a, b in zip(model.gammas(), clean, adv, strict=True):
            bound = bound * gamma
            e = (b - a).abs().amax(dim=1)
            denom = eps * bound
            out.append(torch.where(denom > 0, e / denom.clamp_min(1e-30), torch.zeros_like(e)))
        return torch.stack(out, dim=1)


def project_l1_rows(w: Tensor, radius: float) -> Tensor:
    """Euclidean projection of every row of w onto the l1 ball of `radius` (Duchi, Shalev-Shwartz,
    Singer & Chandra, ICML 2008, Fig. 1): rows inside the ball are unchanged."""
    if radius <= 0:
        raise ReproError(f"l1 radius must be > 0, got {radius}")
    flat = w.reshape(w.shape[0], -1)
    a = flat.abs()
    u = a.sort(dim=1, descending=True).values
    css = u.cumsum(dim=1) - radius
    j = torch.arange(1, u.shape[1] + 1, device=w.device, dtype=w.dtype)
    cond = (u - css / j) > 0
    rho = cond.to(w.dtype).mul(j).amax(dim=1).clamp_min(1).long()  # the last j where it holds
    theta = css.gather(1, (rho - 1)[:, None]) / rho[:, None].to(w.dtype)
    proj = flat.sign() * (a - theta).clamp_min(0)
    inside = a.sum(dim=1, keepdim=True) <= radius
    return torch.where(inside, flat, proj).reshape(w.shape)


class L1ProjectedAdam(torch.optim.Adam):
    """Adam, then every constrained weight's rows projected onto their l1 ball (projected
    gradient for Theorem 2's ||w_ij||_1 <= gamma_j); pass it to `train_classifier(optimizer=)`."""

    def __init__(
        self,
        params: Iterable[nn.Parameter],
        constraints: Sequence[tuple[nn.Parameter, float]],
        lr: float = 1e-3,
    ) -> None:
        super().__init__(params, lr=lr)
        self.constraints = list(constraints)
        self.project()

    @torch.no_grad()
    def project(self) -> None:
        for weight, radius in self.constraints:
            weight.copy_(project_l1_rows(weight, radius))

    def step(self, closure=None):  # type: ignore[no-untyped-def,override]
        loss = super().step(closure)
        self.project()
        return loss


# --------------------------------------------------------------------------- the attacks


def _logit_grads(model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """Logits (B, C) at x and w_eq,t = grad_x z_t for every class t, (C, B, ...)."""
    xg = x.detach().clone().requires_grad_(True)
    logits = model(xg)
    grads = []
    for t in range(logits.shape[1]):
        (g,) = torch.autograd.grad(logits[:, t].sum(), xg, retain_graph=t < logits.shape[1] - 1)
        grads.append(g)
    return logits.detach(), torch.stack(grads)


def loclin_attack(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    front: SparsifyingFrontEnd | None = None,
    proj_iters: int = 0,
) -> Tensor:
    """The locally linear attack (official `LocLinearAttack.run` / `run_proj`).

    w_eq,t = grad_x z_t(x) of the model as given (for a `FrontEndClassifier` with BPDA: the
    classifier's gradient at f(x)); per target t != y: x_t = clip(x + eps sign(w_t - w_y)); with
    `front` and `proj_iters` > 0 (white-box) the direction is `proj_iters` times replaced by its
    projection onto the top-K support of x_t, recomputed from the new x_t; per example the target
    with the largest z_t - z_y at x_t wins. Returns a detached tensor like x, in [0, 1]."""
    with frozen(model):
        logits, grads = _logit_grads(model, x)
        n_classes = logits.shape[1]
        rows = torch.arange(x.shape[0], device=x.device)
        w_y = grads[y, rows]
        best = x.detach().clone()
        best_score = torch.full((x.shape[0],), -math.inf, device=x.device)
        for t in range(n_classes):
            direction = grads[t] - w_y
            x_t = (x + eps * direction.sign()).clamp(0.0, 1.0)
            if front is not None:
                for _ in range(proj_iters):
                    x_t = (x + eps * project_onto_support(front, x_t, direction).sign()).clamp(
                        0.0, 1.0
                    )
            with torch.no_grad():
                z = model(x_t)
            score = z[:, t] - z[rows, y]
            score = torch.where(y == t, torch.full_like(score, -math.inf), score)
            take = score > best_score
            best[take] = x_t[take]
            best_score = torch.where(take, score, best_score)
    return best.detach()
