"""Model Compression with Adversarial Robustness: A Unified Optimization Framework (Gui et al.,
NeurIPS 2019).

Paper: "Model Compression with Adversarial Robustness: A Unified Optimization Framework", Shupeng
Gui, Haotao Wang, Haichuan Yang, Chen Yu, Zhangyang Wang, Ji Liu, https://arxiv.org/abs/1902.03538
(catalog key `2019_Gui_S_p-neurips_mcaruof`); official code shupenggui/ATMC (PyTorch), whose MNIST
script `mnist/train_proj_admm_quant.py` sets the model and the recipe. The paper's PDF was not
readable here: the problem and the algorithm are taken from the research notes
(`../shared/papers/defense-papers.md`, section 3: the official code's settings, its three-stage
CIFAR-10 recipe, the figure read-offs) and the issue's statement; README.md says what that leaves
uncertain.

Reproduces: the accuracy-versus-model-size figure (the repository's `ATMC_exps.png`: clean and
under PGD, ATMC-32bits, ATMC-8bits and the baselines NAP, AP, ALR, AL0 and the dense
adversarially trained model DA, at several compression ratios) with the Caffe-LeNet of the MNIST
script, on Fashion-MNIST as the stated analogue (free metrics); the MNIST, CIFAR-10, CIFAR-100
and SVHN rows are kept in `expected.csv` and recorded as not run here.

The problem: min_theta max_{||delta||_inf <= eps} f(theta; x + delta, y) subject to theta in
Omega, where Omega holds the networks whose every layer is W_l = A_l B_l + C_l (a low-rank part
plus a sparse part) with sum_l ||A_l||_0 + ||B_l||_0 + ||C_l||_0 <= k, and, at b bits, every
entry of each of A_l, B_l, C_l in a set of 2^b values (0 one of them). ADMM duplicates the
weights, theta = Z, with Z in Omega.

Map from the paper to the code:
- the Caffe-LeNet of the MNIST script (conv 5x5x20 - pool - conv 5x5x50 - pool - fc 500 - ReLU -
  fc 10, no ReLU after the convolutions; 431,080 parameters, the poster's "430K") -> `caffe_lenet`
- the constrained tensors theta (every conv / linear weight; biases are not constrained) ->
  `compressible`; a layer stored as W = A B + C -> `Factorized`, `from_splits`
- the l0 part of Omega, sum ||.||_0 <= k over all tensors at once: the Euclidean projection keeps
  the k entries of largest magnitude -> `project_l0`
- the low-rank part: the best rank-r approximation by truncated SVD -> `project_low_rank`; the
  split W_l ~ A_l B_l + C_l of all layers within k stored numbers (ranks searched, C by
  `project_l0` on the residuals) -> `project_low_rank_sparse`, `Split`
- the quantisation part: 2^b values per tensor with 0 fixed as one of them, by k-means on the
  non-zero entries (the official `kmeans_nnz_fixed_0_center`) -> `quantize_kmeans` (with
  `quantize_to_codebook`), or a uniform grid of 2^b - 1 levels -> `quantize_uniform`
- Proj_Omega (the split, then the quantisation of A, B and C) -> `project_omega`
- ADMM on theta = Z with scaled dual U: theta-step min_theta f_adv(theta) + rho/2 ||theta - Z +
  U||^2 by SGD on PGD examples (the inner max: `repro.madry_pgd.pgd_linf`, through the toolkit
  loop `repro.train.train_classifier`); Z-step Z = Proj_Omega(theta + U); dual step
  U <- U + theta - Z -> `AdmmSGD` (`AdmmSGD.step`, `AdmmSGD.z_update`); the primal residual
  ||theta - Z|| / ||theta|| per Z-step -> `residuals` in `AdmmSGD`; the final hard projection
  theta <- Proj_Omega(theta) -> `AdmmSGD.finish`
- ATMC, the official stages from DA: l0-projected PGD training (stage 2, `adversarial_l0`), ADMM
  over Omega (stage 3, quantised for ATMC-8bits), the hard projection, adversarial fine-tuning
  on the support and a last quantisation -> `atmc_compress`
- the training adversary (PGD with a random start) -> `pgd_adversary`
- the size budget of a compression ratio (bits of the compressed weights over 32 x the dense
  weights, so a b-bit model keeps 32/b times more numbers) -> `budget`, `dense_weight_count`; the
  real size (non-zeros, value bits, codebooks, biases) -> `model_size`
- the baselines: NAP (magnitude pruning of a naturally trained model, natural fine-tuning) and AP
  (magnitude pruning of the DA model, adversarial fine-tuning) -> `prune_and_finetune`; AL0 (PGD
  training under the l0 constraint by projected SGD) -> `adversarial_l0`; ALR (truncated SVD of
  the DA model within the budget, adversarial fine-tuning of the factors) ->
  `adversarial_low_rank`, with the ranks from `allocate_ranks` and the layers from `factorize`;
  projected SGD (a fixed support, or l0) -> `ProjectedSGD`
- inference time of the compressed model in sparse (CSR) form against the dense model ->
  `sparse_deploy`, `time_forward`

Deviations (each also in README.md, with why):
- The exact Proj_Omega is combinatorial; `project_low_rank_sparse` searches the ranks greedily
  and locally (never farther from W than the l0 projection), and the low-rank factors are
  stored dense (all their entries count in k). The paper's parameterisation by sparse factors
  was not readable here.
- Z-step every `admm_interval` SGD steps, with k-means at every Z-step (the official code
  projects on l0 every batch and quantises every 5 batches).
- Fine-tuning after the hard projection keeps the support at full precision and quantises once
  at the end (with a fixed codebook, small steps would snap back to the same values).
- The size ratio counts the weights' value bits only (biases, 580 of 431,080 parameters, stay
  dense at 32 bits; codebooks and sparse indices are not counted): the paper's axis as we read
  it; `model_size` reports the real size with all of them.
- Every compressed model trains the same number of adversarial epochs after its dense model
  (ATMC's three stages together; AP / ALR fine-tuning; AL0 projected SGD); ALR below the size of
  rank 1 in every layer cannot be built and is not run at that ratio. AL0 by projected SGD is our
  reading of the baseline's name.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro.deepfool import lenet
from repro.madry_pgd import pgd_linf
from repro.train import train_classifier

__all__ = [
    "AdmmSGD",
    "Factorized",
    "ProjectedSGD",
    "Split",
    "adversarial_l0",
    "adversarial_low_rank",
    "allocate_ranks",
    "atmc_compress",
    "budget",
    "caffe_lenet",
    "compressible",
    "dense_weight_count",
    "factorize",
    "from_splits",
    "model_size",
    "pgd_adversary",
    "project_l0",
    "project_low_rank",
    "project_low_rank_sparse",
    "project_omega",
    "prune_and_finetune",
    "quantize_kmeans",
    "quantize_to_codebook",
    "quantize_uniform",
    "sparse_deploy",
    "time_forward",
]

Projection = Callable[[Sequence[Tensor]], list[Tensor]]


# --------------------------------------------------------------------------- the model


def caffe_lenet(in_channels: int = 1, classes: int = 10) -> nn.Module:
    """The Caffe-LeNet of ATMC's MNIST script: conv 5x5x20 - max-pool 2 - conv 5x5x50 - max-pool 2
    - fc 800->500 - ReLU - fc 500->10 (no ReLU after the convolutions); 431,080 parameters. The
    same network as DeepFool's LeNet (MatConvNet's MNIST example), so that one builds it."""
    return lenet(in_channels, classes)


def _matrix(layer: nn.Module) -> Tensor:
    """A conv or linear layer's weight as the (out, in * kh * kw) matrix that is factorised."""
    return layer.weight.detach().reshape(layer.weight.shape[0], -1)


class Factorized(nn.Module):
    """A conv or linear layer whose weight is W = A B + C (`c` None: W = A B, ALR's form).

    A is (out, r), B is (r, in * kh * kw), C has W's matrix shape; the bias stays a dense vector.
    """

    def __init__(
        self,
        a: Tensor,
        b: Tensor,
        c: Tensor | None,
        bias: Tensor | None,
        shape: Sequence[int],
        conv: dict | None = None,
    ) -> None:
        super().__init__()
        self.a = nn.Parameter(a.detach().clone())
        self.b = nn.Parameter(b.detach().clone())
        self.c = nn.Parameter(c.detach().clone()) if c is not None else None
        self.bias = nn.Parameter(bias.detach().clone()) if bias is not None else None
        self.shape = tuple(shape)
        self.conv = conv  # stride / padding / dilation of a convolution, None for a linear layer

    @classmethod
    def from_layer(cls, layer: nn.Module, rank: int, *, sparse: bool = True) -> Factorized:
        """Factorise a trained `nn.Conv2d` / `nn.Linear`: A B is its best rank-`rank`
        approximation (truncated SVD, the singular values split evenly between A and B), C the
        remainder W - A B (so the layer computes exactly what it did) or, with `sparse=False`,
        dropped (ALR)."""
        w = _matrix(layer)
        rank = max(1, min(rank, *w.shape))
        u, s, vh = torch.linalg.svd(w, full_matrices=False)
        root = s[:rank].sqrt()
        a = u[:, :rank] * root
        b = root[:, None] * vh[:rank]
        c = w - a @ b if sparse else None
        conv = None
        if isinstance(layer, nn.Conv2d):
            conv = {"stride": layer.stride, "padding": layer.padding, "dilation": layer.dilation}
        bias = layer.bias.detach() if layer.bias is not None else None
        return cls(a, b, c, bias, layer.weight.shape, conv)

    @property
    def rank(self) -> int:
        return self.a.shape[1]

    def weight(self) -> Tensor:
        """The layer's effective weight A B (+ C), in the original layer's shape."""
        w = self.a @ self.b
        if self.c is not None:
            w = w + self.c
        return w.reshape(self.shape)

    def tensors(self) -> list[Tensor]:
        """The tensors Omega constrains (A, B and C when present)."""
        return [self.a, self.b] + ([self.c] if self.c is not None else [])

    def forward(self, x: Tensor) -> Tensor:
        if self.conv is None:
            return F.linear(x, self.weight(), self.bias)
        return F.conv2d(x, self.weight(), self.bias, **self.conv)


def _replace_layers(model: nn.Module, make: Callable[[str, nn.Module], nn.Module]) -> nn.Module:
    out = copy.deepcopy(model)
    for name, module in list(out.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.Conv2d | nn.Linear):
                full = f"{name}.{child_name}" if name else child_name
                setattr(module, child_name, make(full, child))
    return out


def factorize(
    model: nn.Module,
    *,
    rank_fraction: float | None = None,
    ranks: dict[str, int] | None = None,
    sparse: bool = True,
) -> nn.Module:
    """A copy of `model` with every conv / linear layer replaced by a `Factorized` one of rank
    `ranks[name]`, or `max(1, round(rank_fraction * min(m, n)))`; the copy computes the same
    function when `sparse` (C = W - A B)."""
    if (rank_fraction is None) == (ranks is None):
        raise ValueError("factorize: give exactly one of rank_fraction and ranks")

    def make(name: str, layer: nn.Module) -> nn.Module:
        if ranks is not None:
            rank = ranks[name]
        else:
            rank = max(1, round(rank_fraction * min(_matrix(layer).shape)))
        return Factorized.from_layer(layer, rank, sparse=sparse)

    return _replace_layers(model, make)


def from_splits(model: nn.Module, splits: Sequence[Split]) -> nn.Module:
    """A copy of `model` with its conv / linear layers (in `compressible` order) replaced by
    `Factorized` layers holding the A, B, C of `splits` (a point of Omega)."""
    it = iter(splits)

    def make(name: str, layer: nn.Module) -> nn.Module:
        split = next(it)
        conv = None
        if isinstance(layer, nn.Conv2d):
            conv = {"stride": layer.stride, "padding": layer.padding, "dilation": layer.dilation}
        bias = layer.bias.detach() if layer.bias is not None else None
        return Factorized(split.a, split.b, split.c, bias, layer.weight.shape, conv)

    out = _replace_layers(model, make)
    if next(it, None) is not None:
        raise ValueError("from_splits: more splits than layers")
    return out


def compressible(model: nn.Module) -> list[Tensor]:
    """The tensors the size constraint counts: every conv / linear weight, or the A, B (and C) of
    every `Factorized` layer; biases are not among them."""
    out: list[Tensor] = []
    for module in model.modules():
        if isinstance(module, Factorized):
            out.extend(module.tensors())
        elif isinstance(module, nn.Conv2d | nn.Linear):
            out.append(module.weight)
    return out


def dense_weight_count(model: nn.Module) -> int:
    """The number of weights of the dense model (conv / linear weights, biases excluded)."""
    total = 0
    for module in model.modules():
        if isinstance(module, Factorized):
            total += math.prod(module.shape)
        elif isinstance(module, nn.Conv2d | nn.Linear):
            total += module.weight.numel()
    return total


# --------------------------------------------------------------------------- projections


def project_l0(tensors: Sequence[Tensor], k: int) -> list[Tensor]:
    """The Euclidean projection of the tensors (as one vector) onto {||.||_0 <= k}: the k entries
    of largest magnitude over all tensors together are kept (ties: the first in order), the rest
    set to 0. Returns new tensors; exactly min(k, total) entries are kept."""
    flat = torch.cat([t.detach().reshape(-1) for t in tensors])
    if k < 0:
        raise ValueError(f"project_l0: k must be >= 0, got {k}")
    keep = torch.zeros_like(flat, dtype=torch.bool)
    if k >= flat.numel():
        keep[:] = True
    elif k > 0:
        keep[torch.topk(flat.abs(), k, sorted=False).indices] = True
    out, start = [], 0
    for t in tensors:
        n = t.numel()
        out.append((flat[start : start + n] * keep[start : start + n]).reshape(t.shape))
        start += n
    return out


def project_low_rank(w: Tensor, rank: int) -> Tensor:
    """The best rank-`rank` approximation of `w` in Frobenius norm (Eckart-Young: the truncated
    SVD); a conv weight is treated as its (out, in * kh * kw) matrix and reshaped back."""
    m = w.detach().reshape(w.shape[0], -1)
    u, s, vh = torch.linalg.svd(m, full_matrices=False)
    r = max(0, min(rank, s.numel()))
    return ((u[:, :r] * s[:r]) @ vh[:r]).reshape(w.shape)


def allocate_ranks(weights: dict[str, Tensor], size: int) -> dict[str, int] | None:
    """Ranks for ALR: each layer starts at rank 1, then the next singular component is taken
    greedily by captured energy per parameter (sigma^2 / (m + n)) while the factors' total
    size sum r (m + n) stays within `size`. None when rank 1 everywhere does not fit."""
    mats = {n: w.detach().reshape(w.shape[0], -1) for n, w in weights.items()}
    cost = {n: sum(m.shape) for n, m in mats.items()}
    sv = {n: torch.linalg.svdvals(m) for n, m in mats.items()}
    ranks = {n: 1 for n in mats}
    used = sum(cost.values())
    if used > size:
        return None
    while True:
        best, gain = None, -1.0
        for n in mats:
            r = ranks[n]
            if r < sv[n].numel() and used + cost[n] <= size:
                g = float(sv[n][r] ** 2) / cost[n]
                if g > gain:
                    best, gain = n, g
        if best is None:
            return ranks
        ranks[best] += 1
        used += cost[best]


def quantize_uniform(w: Tensor, bits: int) -> Tensor:
    """A symmetric uniform grid of 2^b - 1 levels (0 included, so zeros stay zero):
    s * j / (2^(b-1) - 1) for |j| <= 2^(b-1) - 1, with s = max |w|; each entry to its nearest."""
    if bits < 2:
        raise ValueError(f"quantize_uniform: bits must be >= 2, got {bits}")
    w = w.detach()
    scale = float(w.abs().max())
    if scale == 0.0:
        return w.clone()
    half = 2 ** (bits - 1) - 1
    return torch.round(w / scale * half) * (scale / half)


def quantize_to_codebook(w: Tensor, codebook: Tensor) -> Tensor:
    """Every non-zero entry of `w` to its nearest value of `codebook` (non-zero values, any
    order); zeros stay zero, so the result takes at most len(codebook) + 1 values."""
    w = w.detach()
    if codebook.numel() == 0:
        return torch.zeros_like(w)
    centres = codebook.sort().values
    flat = w.reshape(-1)
    nz = flat != 0
    values = flat[nz]
    if centres.numel() == 1:
        picked = centres.expand_as(values)
    else:
        mids = (centres[1:] + centres[:-1]) / 2
        picked = centres[torch.bucketize(values, mids)]
    out = flat.clone()
    out[nz] = picked
    return out.reshape(w.shape)


def quantize_kmeans(w: Tensor, bits: int, *, iters: int = 15) -> tuple[Tensor, Tensor]:
    """2^b values with 0 fixed (the official `kmeans_nnz_fixed_0_center`): 1-D k-means (Lloyd,
    `iters` rounds, centres started at evenly spaced quantiles, so deterministic) with 2^b - 1
    centres on the non-zero entries; zeros stay zero. Returns the quantised tensor and the
    codebook of non-zero centres."""
    if bits < 1:
        raise ValueError(f"quantize_kmeans: bits must be >= 1, got {bits}")
    w = w.detach()
    values = w.reshape(-1)[w.reshape(-1) != 0]
    centres_max = 2**bits - 1
    if values.numel() == 0:
        return w.clone(), values.new_zeros(0)
    unique = values.unique()
    if unique.numel() <= centres_max:
        return w.clone(), unique
    q = torch.linspace(0, 1, centres_max + 2, dtype=values.dtype, device=values.device)[1:-1]
    centres = torch.quantile(values.float(), q.float()).to(values.dtype).unique()
    for _ in range(iters):
        mids = (centres[1:] + centres[:-1]) / 2
        assign = torch.bucketize(values, mids)
        sums = torch.zeros_like(centres).index_add_(0, assign, values)
        counts = torch.zeros_like(centres).index_add_(0, assign, torch.ones_like(values))
        new = torch.where(counts > 0, sums / counts.clamp(min=1), centres)
        new = new[new != 0].unique()  # an empty or collapsed centre is dropped, 0 stays apart
        if new.numel() == centres.numel() and torch.allclose(new, centres):
            centres = new
            break
        centres = new
    return quantize_to_codebook(w, centres), centres


class Split(NamedTuple):
    """One layer's point of Omega, as its (out, in * kh * kw) matrix W = A B + C: A (out, r) and
    B (r, in * kh * kw) the low-rank factors (r may be 0), C the sparse part."""

    a: Tensor
    b: Tensor
    c: Tensor

    def matrix(self) -> Tensor:
        return self.a @ self.b + self.c

    def count(self) -> int:
        """The numbers this layer stores: the factors' non-zeros plus C's."""
        return int((self.a != 0).sum() + (self.b != 0).sum() + (self.c != 0).sum())


def _greedy_ranks(comps: list, entries: Tensor, n_layers: int, k: int) -> list[int]:
    """Ranks from a greedy pick of the k best items by energy per stored number: singular
    components (density, cost, layer), sorted, or single entries (density = their square)."""
    top = torch.topk(entries, min(k, entries.numel())).values.tolist() if k else []
    ranks, remaining, i, j = [0] * n_layers, k, 0, 0
    while remaining > 0:
        while j < len(comps) and comps[j][1] > remaining:
            j += 1  # does not fit (nor will it later: the budget only shrinks)
        entry = top[i] if i < len(top) else -1.0
        comp = comps[j][0] if j < len(comps) else -1.0
        if comp <= 0 and entry < 0:
            break
        if comp > 0 and comp >= entry:
            ranks[comps[j][2]] += 1
            remaining -= comps[j][1]
            j += 1
        else:
            i += 1
            remaining -= 1
    return ranks


def project_low_rank_sparse(mats: Sequence[Tensor], k: int, *, max_moves: int = 20) -> list[Split]:
    """W_l ~ A_l B_l + C_l for every layer at once, with sum_l r_l (m_l + n_l) + ||C||_0 <= k.

    The exact projection is combinatorial (the ranks r_l against the sparse entries); given the
    ranks, the best split is the rank-r_l truncated SVD A_l B_l (A = U sqrt(S), B = sqrt(S) V^T)
    and, for C, the largest entries of the residuals W_l - A_l B_l over all layers, as many as the
    budget has left (`project_l0`). The ranks are searched: start from the greedy pick of the k
    best items by energy per stored number (a singular component of layer l is worth
    sigma^2 / (m_l + n_l) per number, an entry its square: `_greedy_ranks`) and from ranks 0
    (sparse only, exactly `project_l0`), keep the closer to W, then move one layer's rank by +-1
    while that brings the split closer to W (at most `max_moves` moves). The result is never
    farther from W than the l0 projection."""
    mats = [m.detach() for m in mats]
    if k < 0:
        raise ValueError(f"project_low_rank_sparse: k must be >= 0, got {k}")
    svds = [torch.linalg.svd(m, full_matrices=False) for m in mats]
    costs = [m.shape[0] + m.shape[1] for m in mats]
    comps = []  # (density, cost, layer); within a layer the densities fall with the index
    for layer, ((_, s, _), cost) in enumerate(zip(svds, costs, strict=True)):
        comps.extend((float(v) ** 2 / cost, cost, layer) for v in s.tolist())
    comps.sort(key=lambda c: -c[0])
    cache: dict[tuple[int, int], tuple[Tensor, Tensor, Tensor, Tensor]] = {}

    def layer_at(layer: int, r: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """A, B, the residual W - A B, and its k largest squared entries (sorted)."""
        if (layer, r) not in cache:
            u, s, vh = svds[layer]
            root = s[:r].sqrt()
            a, b = u[:, :r] * root, root[:, None] * vh[:r]
            residual = mats[layer] - a @ b
            energy = residual.reshape(-1).pow(2)
            top = torch.topk(energy, min(k, energy.numel())).values if k else energy[:0]
            cache[layer, r] = (a, b, residual, top)
        return cache[layer, r]

    def error(ranks: Sequence[int]) -> float:
        """||W - (A B + C)||^2 summed over layers, for the best C at these ranks."""
        used = sum(r * c for r, c in zip(ranks, costs, strict=True))
        if used > k or any(r < 0 or r > len(svds[i][1]) for i, r in enumerate(ranks)):
            return math.inf
        tail = sum(float(svds[i][1][r:].pow(2).sum()) for i, r in enumerate(ranks))
        tops = torch.cat([layer_at(i, r)[3] for i, r in enumerate(ranks)])
        kept = float(torch.topk(tops, min(k - used, tops.numel())).values.sum()) if k > used else 0
        return tail - kept

    greedy = _greedy_ranks(comps, torch.cat([m.reshape(-1) for m in mats]).pow(2), len(mats), k)
    ranks = min([[0] * len(mats), greedy], key=error)
    best = error(ranks)
    for _ in range(max_moves):
        moves = [[r + (d if i == j else 0) for j, r in enumerate(ranks)]
                 for i in range(len(mats)) for d in (1, -1)]  # fmt: skip
        errors = [error(m) for m in moves]
        i = min(range(len(moves)), key=errors.__getitem__)
        if errors[i] >= best:
            break
        ranks, best = moves[i], errors[i]
    factors = [layer_at(i, r) for i, r in enumerate(ranks)]
    used = sum(r * c for r, c in zip(ranks, costs, strict=True))
    sparse = project_l0([f[2] for f in factors], k - used)
    return [Split(a, b, c) for (a, b, _, _), c in zip(factors, sparse, strict=True)]


def project_omega(
    mats: Sequence[Tensor],
    k: int,
    bits: int = 32,
    *,
    quantizer: str = "kmeans",
    low_rank: bool = True,
) -> list[Split]:
    """Proj_Omega of the layers' weight matrices: the low-rank-plus-sparse split within k stored
    numbers (`project_low_rank_sparse`; `low_rank=False`: sparse only, `project_l0`), then, for
    bits < 32, each of A, B and C quantised to 2^b values with 0 among them (k-means:
    `quantize_kmeans`, the official choice; or `quantize_uniform`)."""
    if quantizer not in ("kmeans", "uniform"):
        raise ValueError(
            f"project_omega: quantizer must be 'kmeans' or 'uniform', not {quantizer!r}"
        )
    mats = [m.detach() for m in mats]
    if low_rank:
        splits = project_low_rank_sparse(mats, k)
    else:
        splits = [Split(m.new_zeros(m.shape[0], 0), m.new_zeros(0, m.shape[1]), c)
                  for m, c in zip(mats, project_l0(mats, k), strict=True)]  # fmt: skip
    if bits >= 32:
        return splits
    quantize = (lambda t: quantize_kmeans(t, bits)[0]) if quantizer == "kmeans" else (
        lambda t: quantize_uniform(t, bits))  # fmt: skip
    return [Split(*(quantize(t) if t.numel() else t for t in split)) for split in splits]


# --------------------------------------------------------------------------- optimisers


class AdmmSGD(torch.optim.SGD):
    """SGD (momentum, weight decay) on f(theta) + rho/2 ||theta - Z + U||^2, with the ADMM Z- and
    dual steps every `interval` optimiser steps; it drives the toolkit's training loop.

    `tensors` are theta (the constrained parameters, e.g. `compressible(model)`), `project` maps
    theta + U to Z in Omega. Z starts at project(theta), U at 0. `residuals` holds the primal
    residual ||theta - Z|| / ||theta|| after each Z-step; `finish()` sets theta <- Z.
    `rho_growth` > 1 multiplies rho after each Z-step (and divides the scaled dual U by the same
    factor, so that rho U, the unscaled dual, is unchanged).
    """

    def __init__(
        self,
        params,
        tensors: Sequence[Tensor],
        project: Projection,
        *,
        rho: float,
        interval: int,
        lr: float,
        rho_growth: float = 1.0,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
        if rho < 0 or interval < 1 or rho_growth < 1:
            raise ValueError(
                f"AdmmSGD: need rho >= 0, interval >= 1, rho_growth >= 1; got {rho}, {interval}, "
                f"{rho_growth}"
            )
        self.tensors = list(tensors)
        self.project = project
        self.rho = rho
        self.rho_growth = rho_growth
        self.interval = interval
        self.z = [z.detach() for z in project(self.tensors)]
        self.u = [torch.zeros_like(t) for t in self.tensors]
        self.steps = 0
        self.residuals: list[float] = []

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        for t, z, u in zip(self.tensors, self.z, self.u, strict=True):
            penalty = self.rho * (t - z + u)
            if t.grad is None:
                t.grad = penalty
            else:
                t.grad.add_(penalty)
        loss = super().step(closure)
        self.steps += 1
        if self.steps % self.interval == 0:
            self.z_update()
        return loss

    @torch.no_grad()
    def z_update(self) -> float:
        """Z <- Proj_Omega(theta + U); U <- U + theta - Z. Returns the primal residual."""
        self.z = [
            z.detach()
            for z in self.project([t + u for t, u in zip(self.tensors, self.u, strict=True)])
        ]
        for t, z, u in zip(self.tensors, self.z, self.u, strict=True):
            u.add_(t - z)
        self.residuals.append(self.primal_residual())
        if self.rho_growth != 1.0:
            self.rho *= self.rho_growth
            for u in self.u:
                u.div_(self.rho_growth)
        return self.residuals[-1]

    @torch.no_grad()
    def primal_residual(self) -> float:
        """||theta - Z|| / ||theta|| over all constrained tensors."""
        diff = sum(float((t - z).pow(2).sum()) for t, z in zip(self.tensors, self.z, strict=True))
        norm = sum(float(t.pow(2).sum()) for t in self.tensors)
        return math.sqrt(diff / norm) if norm > 0 else 0.0

    @torch.no_grad()
    def finish(self) -> None:
        """The hard projection at the end of ADMM: theta <- Proj_Omega(theta)."""
        for t, z in zip(self.tensors, self.project(self.tensors), strict=True):
            t.copy_(z)


class ProjectedSGD(torch.optim.SGD):
    """SGD (momentum, weight decay) followed by `project` of the constrained tensors after every
    step: masked fine-tuning (project onto a fixed support) or iterative hard thresholding
    (project onto {||.||_0 <= k})."""

    def __init__(
        self,
        params,
        tensors: Sequence[Tensor],
        project: Projection,
        *,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
        self.tensors = list(tensors)
        self.project = project

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = super().step(closure)
        for t, z in zip(self.tensors, self.project(self.tensors), strict=True):
            t.copy_(z)
        return loss


def _mask_projection(tensors: Sequence[Tensor]) -> Projection:
    """Projection onto the current support of `tensors` (entries now 0 stay 0)."""
    masks = [(t.detach() != 0) for t in tensors]
    return lambda ts: [t.detach() * m for t, m in zip(ts, masks, strict=True)]


# --------------------------------------------------------------------------- size and time


def budget(ratio: float, bits: int, dense_weights: int) -> int:
    """Non-zeros allowed at a compression `ratio` of the dense model's weight bits, b bits each:
    floor(ratio * 32 * dense_weights / b)."""
    if not 0 < ratio <= 1 or not 1 <= bits <= 32:
        raise ValueError(f"budget: need 0 < ratio <= 1 and 1 <= bits <= 32, got {ratio}, {bits}")
    return math.floor(ratio * 32 * dense_weights / bits + 1e-9)


def model_size(model: nn.Module, bits: int = 32, dense_weights: int | None = None) -> dict:
    """The real size of a (compressed) model: non-zero weights, distinct non-zero values per
    tensor, value bits (non-zeros x b), codebook bits (32 per distinct value when b < 32), bias
    bits (32 each), their total, and the ratios to the dense model's 32-bit weights: `ratio`
    (value bits, the paper's axis) and `ratio_real` (all bits, biases and codebooks included)."""
    tensors = compressible(model)
    nnz = sum(int((t != 0).sum()) for t in tensors)
    distinct = [int(t[t != 0].unique().numel()) for t in tensors]
    biases = sum(
        m.bias.numel()
        for m in model.modules()
        if isinstance(m, Factorized | nn.Conv2d | nn.Linear) and m.bias is not None
    )
    value_bits = nnz * bits
    codebook_bits = 32 * sum(distinct) if bits < 32 else 0
    bias_bits = 32 * biases
    dense = dense_weights if dense_weights is not None else dense_weight_count(model)
    dense_bits = 32 * dense
    return {
        "nnz": nnz,
        "nnz_with_biases": nnz + biases,
        "max_distinct_values": max(distinct) if distinct else 0,
        "value_bits": value_bits,
        "codebook_bits": codebook_bits,
        "bias_bits": bias_bits,
        "total_bits": value_bits + codebook_bits + bias_bits,
        "ratio": value_bits / dense_bits,
        "ratio_real": (value_bits + codebook_bits + bias_bits) / (dense_bits + bias_bits),
    }


def _density(t: Tensor) -> float:
    return float((t != 0).sum()) / max(1, t.numel())


class _SparseLayer(nn.Module):
    """A conv / linear layer computed as a sum of products of matrices (one chain per term:
    [W], or [A, B] and [C]), each stored in CSR form when under a third of it is non-zero and
    dense otherwise (the dense low-rank factors); chains with an empty factor are dropped."""

    def __init__(self, chains: list[list[Tensor]], bias: Tensor | None, shape, conv) -> None:
        super().__init__()
        self.chains = [
            [f.detach().to_sparse_csr() if _density(f) < 1 / 3 else f.detach() for f in chain]
            for chain in chains
            if all(f.numel() for f in chain)
        ]
        self.bias = bias.detach() if bias is not None else None
        self.shape = tuple(shape)
        self.conv = conv

    def _matmul(self, cols: Tensor) -> Tensor:  # cols: (in, N) -> (out, N)
        out = cols.new_zeros(self.shape[0], cols.shape[1])
        for chain in self.chains:
            y = cols
            for f in reversed(chain):
                y = f @ y
            out = out + y
        return out

    def forward(self, x: Tensor) -> Tensor:
        if self.conv is None:
            y = self._matmul(x.t()).t()
            return y + self.bias if self.bias is not None else y
        n, _, h, w = x.shape
        kh, kw = self.shape[2], self.shape[3]
        cols = F.unfold(x, (kh, kw), **self.conv)  # (n, in*kh*kw, L)
        flat = cols.transpose(0, 1).reshape(cols.shape[1], -1)
        y = self._matmul(flat).reshape(self.shape[0], n, -1).transpose(0, 1)
        st, pd, dl = self.conv["stride"], self.conv["padding"], self.conv["dilation"]
        oh = (h + 2 * pd[0] - dl[0] * (kh - 1) - 1) // st[0] + 1
        ow = (w + 2 * pd[1] - dl[1] * (kw - 1) - 1) // st[1] + 1
        y = y.reshape(n, self.shape[0], oh, ow)
        return y + self.bias[None, :, None, None] if self.bias is not None else y


def sparse_deploy(model: nn.Module) -> nn.Module:
    """A copy of `model` for inference in which every conv / linear (or `Factorized`) layer
    multiplies with CSR sparse matrices (A (B x) + C x for a factorised layer): the form in which
    the pruned model is actually smaller and (on sparse enough layers) faster."""

    def make(module: nn.Module) -> nn.Module:
        if isinstance(module, Factorized):
            chains = [[module.a, module.b]] + ([[module.c]] if module.c is not None else [])
            return _SparseLayer(chains, module.bias, module.shape, module.conv)
        conv = None
        if isinstance(module, nn.Conv2d):
            conv = {"stride": module.stride, "padding": module.padding, "dilation": module.dilation}
        return _SparseLayer([[_matrix(module)]], module.bias, module.weight.shape, conv)

    out = copy.deepcopy(model).eval()
    for parent in list(out.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Factorized | nn.Conv2d | nn.Linear):
                setattr(parent, name, make(child))
    return out


@torch.no_grad()
def time_forward(model: nn.Module, x: Tensor, *, repeats: int = 5) -> float:
    """Median wall time (seconds) of one forward pass of `x` (after one warm-up pass). A
    measurement, never an assertion: it depends on the machine and its load."""
    model.eval()
    model(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


# --------------------------------------------------------------------------- the methods


def pgd_adversary(eps: float, steps: int, step_factor: float, generator: torch.Generator | None):
    """PGD for training: `steps` sign steps of step_factor * eps / steps from a random start."""
    return partial(
        pgd_linf,
        eps=eps,
        step_size=step_factor * eps / steps,
        steps=steps,
        generator=generator,
    )


def _fit(model, x, y, optimizer, *, epochs, batch_size, adversary, generator, desc):
    return train_classifier(
        model,
        x,
        y,
        epochs=epochs,
        batch_size=batch_size,
        lr=0.0,  # the optimiser carries its own rate
        optimizer=optimizer,
        adversary=adversary,
        adv_weight=1.0,
        generator=generator,
        desc=desc,
        progress=False,
    )


def prune_and_finetune(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    k: int,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float = 0.0,
    adversary=None,
    generator: torch.Generator | None = None,
    desc: str = "prune",
) -> nn.Module:
    """Compress, then fine-tune: global magnitude pruning of a trained model to k non-zero weights
    (`project_l0`), then fine-tuning with the support fixed (`ProjectedSGD`). With `adversary`
    None this is NAP (natural fine-tuning of a naturally trained model); with a PGD adversary
    and the DA model, AP."""
    out = copy.deepcopy(model)
    tensors = compressible(out)
    with torch.no_grad():
        for t, z in zip(tensors, project_l0(tensors, k), strict=True):
            t.copy_(z)
    opt = ProjectedSGD(out.parameters(), tensors, _mask_projection(tensors), lr=lr,
                       weight_decay=weight_decay)  # fmt: skip
    _fit(out, x, y, opt, epochs=epochs, batch_size=batch_size, adversary=adversary,
         generator=generator, desc=desc)  # fmt: skip
    return out


def adversarial_l0(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    k: int,
    epochs: int,
    batch_size: int,
    lr: float,
    adversary,
    weight_decay: float = 0.0,
    generator: torch.Generator | None = None,
    desc: str = "al0",
) -> nn.Module:
    """AL0: PGD adversarial training under ||W||_0 <= k by projected SGD (iterative hard
    thresholding: `project_l0` after every step, the support free to move)."""
    out = copy.deepcopy(model)
    tensors = compressible(out)
    project = partial(project_l0, k=k)
    with torch.no_grad():
        for t, z in zip(tensors, project(tensors), strict=True):
            t.copy_(z)
    opt = ProjectedSGD(out.parameters(), tensors, project, lr=lr, weight_decay=weight_decay)
    _fit(out, x, y, opt, epochs=epochs, batch_size=batch_size, adversary=adversary,
         generator=generator, desc=desc)  # fmt: skip
    return out


def adversarial_low_rank(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    size: int,
    epochs: int,
    batch_size: int,
    lr: float,
    adversary,
    weight_decay: float = 0.0,
    generator: torch.Generator | None = None,
    desc: str = "alr",
) -> nn.Module | None:
    """ALR: every layer of the DA model replaced by its truncated SVD A B, ranks chosen by
    `allocate_ranks` so that the factors hold at most `size` numbers, then adversarial
    fine-tuning of the factors. None when rank 1 in every layer exceeds `size`."""
    weights = {
        name: m.weight for name, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)
    }
    ranks = allocate_ranks(weights, size)
    if ranks is None:
        return None
    out = factorize(model, ranks=ranks, sparse=False)
    opt = torch.optim.SGD(out.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    _fit(out, x, y, opt, epochs=epochs, batch_size=batch_size, adversary=adversary,
         generator=generator, desc=desc)  # fmt: skip
    return out


def atmc_compress(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    k: int,
    bits: int,
    admm_epochs: int,
    ft_epochs: int,
    batch_size: int,
    lr: float,
    rho: float,
    admm_interval: int,
    adversary,
    rho_growth: float = 1.0,
    weight_decay: float = 0.0,
    quantizer: str = "kmeans",
    low_rank: bool = True,
    generator: torch.Generator | None = None,
    desc: str = "atmc",
) -> tuple[nn.Module, list[float]]:
    """ATMC on a trained (DA) model: ADMM with PGD training on theta = the layers' weights for
    `admm_epochs` (Z = Proj_Omega(theta + U) every `admm_interval` steps, `project_omega`), the
    hard projection theta <- Proj_Omega(theta), stored as W = A B + C (`from_splits`); then
    `ft_epochs` of adversarial fine-tuning of A, B and C with C's support fixed, and a last
    quantisation of A, B, C (bits < 32). Returns the compressed model and the ADMM primal
    residuals ||theta - Z|| / ||theta||."""
    out = copy.deepcopy(model)
    tensors = compressible(out)
    state: dict = {}

    def project(ts: Sequence[Tensor]) -> list[Tensor]:
        mats = [t.detach().reshape(t.shape[0], -1) for t in ts]
        state["splits"] = project_omega(mats, k, bits, quantizer=quantizer, low_rank=low_rank)
        return [s.matrix().reshape(t.shape) for s, t in zip(state["splits"], ts, strict=True)]

    opt = AdmmSGD(out.parameters(), tensors, project, rho=rho, interval=admm_interval, lr=lr,
                  rho_growth=rho_growth, weight_decay=weight_decay)  # fmt: skip
    _fit(out, x, y, opt, epochs=admm_epochs, batch_size=batch_size, adversary=adversary,
         generator=generator, desc=f"{desc} admm")  # fmt: skip
    opt.finish()  # theta <- Proj_Omega(theta); state["splits"] holds its A, B, C
    compressed = from_splits(out, state["splits"])
    parts = compressible(compressed)
    ft = ProjectedSGD(compressed.parameters(), parts, _mask_projection(parts), lr=lr,
                      weight_decay=weight_decay)  # fmt: skip
    _fit(compressed, x, y, ft, epochs=ft_epochs, batch_size=batch_size, adversary=adversary,
         generator=generator, desc=f"{desc} finetune")  # fmt: skip
    if bits < 32:
        with torch.no_grad():
            for t in parts:
                if t.numel():
                    q = quantize_kmeans(t, bits)[0] if quantizer == "kmeans" else (
                        quantize_uniform(t, bits))  # fmt: skip
                    t.copy_(q)
    return compressed, opt.residuals
