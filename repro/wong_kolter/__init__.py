"""Provable defenses against adversarial examples via the convex outer adversarial polytope (Wong &
Kolter, ICML 2018).

Paper: "Provable Defenses against Adversarial Examples via the Convex Outer Adversarial Polytope",
Eric Wong, J. Zico Kolter, https://arxiv.org/abs/1711.00851 (catalog key
`2018_Wong_E_p-icml_pdaecoap`); official code github.com/locuslab/convex_adversarial, tag v0.2
(read, not copied).

Reproduces: Table 1's MNIST and Fashion-MNIST rows (test error, FGSM error, PGD error and the
certified robust-error bound at eps = 0.1, for the network trained normally and with the robust
loss). Fashion-MNIST runs here; MNIST's training split is not here (its rows are not run); the
HAR and SVHN rows are not run (no data).

The network is z_1 = x, zhat_{i+1} = W_i z_i + b_i (i = 1..k-1), z_i = ReLU(zhat_i) (i = 2..k-1),
output zhat_k; any `nn.Sequential` of `Conv2d` / `Linear` layers with a `ReLU` between consecutive
ones (and `Flatten` anywhere) is read as such (`parse_network`). Everything is computed batched
over examples, in the input's dtype (fp32 on the CPU; on a GPU TF32 is switched off while a bound
is computed, `exact_fp32`).

Map from the paper to the code (tests/repro/test_paper_maps.py checks every name exists):
- Algorithm 1 (activation bounds l_i, u_i of every hidden layer, layer by layer: nuhat_1, gamma_j
  and nu_{j,I_j} propagated forwards, l_{i+1} = psi_i - eps ||nuhat_1||_{1,:} + sum_j sum_{i' in
  I_j} l_{j,i'} [-nu_{j,i'}]_+, u_{i+1} likewise) -> `layer_bounds` (with mode "algorithm1"
  as printed; its default, mode "dual", computes the same numbers backwards, see Deviations)
- Eq. (10)'s sets I_i^-, I_i^+, I_i and the diagonal D_i (0, 1, u / (u - l)) -> `relu_relaxation`
- Theorem 1 / the dual network (nu_k = -c, nuhat_i = W_i^T nu_{i+1}, nu_i = D_i nuhat_i) and the
  dual objective J_eps(x, nu) = -sum_i nu_{i+1}^T b_i - x^T nuhat_1 - eps ||nuhat_1||_1 +
  sum_i sum_{j in I_i} l_ij [nu_ij]_+, a lower bound on min c^T zhat_k over the relaxation
  -> `dual_objective` (W_i^T of a conv layer: `AffineMap.transpose`)
- Section 3.3 / Theorem 2 (the robust cross-entropy L(-J_eps(x, c_y), y) with c_y = e_y 1^T - I,
  and the certificate: an example is provably robust when every J_eps(x, e_y - e_j) > 0, j != y)
  -> `margin_matrix`, `robust_logits`, `robust_loss`, `certify`
- the LP (2) itself (the triangle relaxation of each crossing ReLU), solved by an independent
  solver (scipy's HiGHS) on the same network with the same l, u -> `lp_bound`
- Section 4's network (the v0.2 code's `problems.mnist_model`, for MNIST and Fashion-MNIST:
  Conv(16, 4x4, stride 2, pad 1) - ReLU - Conv(32, 4x4, stride 2, pad 1) - ReLU - FC 100 - ReLU -
  FC 10) -> `mnist_model`; the CPU scales' ReLU MLP -> `mlp_model`
- the v0.2 training scripts' epsilon warm-up (`--starting_epsilon`, linear over the first
  epochs // 2 epochs; none for Fashion-MNIST) -> `epsilon_schedule`
- Section 3.3's robust training (Adam on the robust cross-entropy, epoch by epoch at the
  schedule's eps; checkpointed after every epoch so that `full` survives a stop) -> `train_robust`
- Table 1's attacks as v0.2's `examples/attacks.py` runs them: FGS, x + eps sign(grad), not
  clipped to [0, 1] -> `fgs_v02` (`repro.fgsm.fgsm` with clip=None); PGD, 100 sign steps of 0.01
  from x (no random start), projected on the eps-box only (no clip to [0, 1]) -> `pgd_v02`;
  beside them our clipped PGD with random restarts (`repro.madry_pgd.pgd_linf`) inside the
  project's battery (`repro.robust_eval`)
- Table 1's columns (test, FGSM and PGD error: the plain error rate on the attacked images, as
  v0.2 counts them; the certified robust-error bound) -> `paper_errors`

Deviations (each also in README.md, with why):
- The layer bounds are computed, by default, by the dual network itself run backwards from
  c = I on each hidden layer's units (l_m = J(e_m), u_m = -J(-e_m)) instead of Algorithm 1's
  forward propagation of the input's identity: the same LP bound (the tests check values and
  gradients against Algorithm 1 as printed to 1e-9 in float64); on the conv net early in
  training it is 1.45 times faster on one CPU thread (no row per crossing unit to carry), on
  the MLP 1.2 times slower (the benchmark).
- A unit with l = 0 < u counts as active (D = 1: exact); v0.2 puts it in no set (D = 0). An
  example is certified when J > 0 for every wrong class; v0.2 counts it certified when
  argmax(-J) = y, which differs only on exact ties (J = 0).
- The gradients of the robust loss are v0.2's by default (`grad="v0.2"`: the slope u / (u - l)
  is detached where it scales a crossing unit's own term in the bounds, v0.2's
  `scatter_grad=False`, and on the negative part of nuhat in the dual objective, its
  `alpha_grad=False`); `grad="full"` is autograd's gradient of the bound (the later code's). The
  bound's value does not depend on it.
- Exact bounds everywhere (no random projections: those came with the later "Scaling provable
  adversarial defenses" code).
- The CPU scales (`smoke`, `small`) train `mlp_model` instead of `mnist_model`: a robust step of
  the conv net (batch 50) takes ~47 s of one CPU thread (README); `full` is the paper's.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro import ReproError
from repro.fgsm import fgsm
from repro.train import frozen, predict

__all__ = [
    "AffineMap",
    "Certificate",
    "LayerBounds",
    "RobustTraining",
    "certify",
    "dual_objective",
    "epsilon_schedule",
    "exact_fp32",
    "fgs_v02",
    "layer_bounds",
    "lp_bound",
    "margin_matrix",
    "mlp_model",
    "mnist_model",
    "paper_errors",
    "parse_network",
    "pgd_v02",
    "relu_relaxation",
    "robust_logits",
    "robust_loss",
    "train_robust",
]

GradMode = Literal["v0.2", "full"]


# --------------------------------------------------------------------------- the network


def mnist_model() -> nn.Sequential:
    """The v0.2 code's `mnist_model` (used for MNIST and Fashion-MNIST): two 4x4 stride-2 convs
    (16, 32 channels, padding 1) and a 100-unit hidden layer, ReLUs between; PyTorch's default
    initialisation (uniform +-1/sqrt(fan_in) for the weights and biases, as in 2017)."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, 100),
        nn.ReLU(),
        nn.Linear(100, 10),
    )


def mlp_model(
    hidden: tuple[int, ...] = (100, 100), *, inputs: int = 784, classes: int = 10
) -> nn.Sequential:
    """A ReLU MLP (Flatten, then Linear-ReLU per hidden width, then Linear): the CPU scales'
    stand-in for `mnist_model` (see README: a robust step of the conv net takes ~47 s on one CPU
    thread); the v0.2 code's HAR networks are MLPs of this form."""
    layers: list[nn.Module] = [nn.Flatten()]
    for width in hidden:
        layers += [nn.Linear(inputs, width), nn.ReLU()]
        inputs = width
    return nn.Sequential(*layers, nn.Linear(inputs, classes))


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


@dataclass(frozen=True)
class AffineMap:
    """One affine layer W_i z + b_i of the network, on flattened vectors: `in_shape` and
    `out_shape` are the per-example shapes the layer sees (a `Flatten` before a `Linear` is part
    of the map). Calls take and return (B, features) tensors."""

    module: nn.Linear | nn.Conv2d
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]

    @property
    def in_features(self) -> int:
        return math.prod(self.in_shape)

    @property
    def out_features(self) -> int:
        return math.prod(self.out_shape)

    def __call__(self, v: Tensor, *, bias: bool = True) -> Tensor:
        """W v (+ b) for a batch of flattened vectors v (B, in_features)."""
        m = self.module
        b = m.bias if bias else None
        if isinstance(m, nn.Conv2d):
            out = F.conv2d(v.reshape(-1, *self.in_shape), m.weight, b, m.stride, m.padding)
        else:
            out = F.linear(v.reshape(-1, self.in_features), m.weight, b)
        return out.reshape(v.shape[0], self.out_features)

    def transpose(self, v: Tensor) -> Tensor:
        """W^T v for a batch of flattened vectors v (B, out_features)."""
        m = self.module
        if isinstance(m, nn.Conv2d):
            h_out, w_out = self.out_shape[1:]
            h_in, w_in = self.in_shape[1:]
            (sh, sw), (ph, pw) = _pair(m.stride), _pair(m.padding)
            kh, kw = m.kernel_size
            extra = (
                h_in - ((h_out - 1) * sh - 2 * ph + kh),
                w_in - ((w_out - 1) * sw - 2 * pw + kw),
            )
            out = F.conv_transpose2d(v.reshape(-1, *self.out_shape), m.weight, None, m.stride,
                                     m.padding, output_padding=extra)  # fmt: skip
            return out.reshape(v.shape[0], self.in_features)
        return v @ m.weight

    def full_bias(self) -> Tensor:
        """b_i as a vector over the layer's output units (a conv's bias repeated over positions)."""
        m = self.module
        if m.bias is None:
            return m.weight.new_zeros(self.out_features)
        if isinstance(m, nn.Conv2d):
            c, h, w = self.out_shape
            return m.bias[:, None].expand(c, h * w).reshape(-1)
        return m.bias

    def dense(self) -> Tensor:
        """W_i as a dense (out_features, in_features) matrix (for the LP; small layers only)."""
        eye = torch.eye(self.in_features, dtype=self.module.weight.dtype,
                        device=self.module.weight.device)  # fmt: skip
        return self(eye, bias=False).T


def parse_network(net: nn.Module, input_shape: tuple[int, ...]) -> list[AffineMap]:
    """The affine layers W_1 .. W_{k-1} of a `Sequential` of Conv2d / Linear / ReLU / Flatten
    with exactly one ReLU between consecutive affine layers and none after the last; an
    unsupported network is a `ReproError` naming the module."""
    if not isinstance(net, nn.Sequential):
        raise ReproError(f"dual network: need an nn.Sequential, got {type(net).__name__}")
    maps: list[AffineMap] = []
    relu_ok = False  # a ReLU may follow an affine map, once
    weight = next(net.parameters(), None)
    device = weight.device if weight is not None else None
    with torch.no_grad():
        probe = torch.zeros(1, *input_shape, device=device)
        for i, m in enumerate(net):
            if isinstance(m, nn.Flatten):
                if m.start_dim != 1 or m.end_dim != -1:
                    raise ReproError(f"dual network: module {i}: Flatten must flatten dims 1..-1")
                probe = m(probe)
            elif isinstance(m, nn.Conv2d | nn.Linear):
                if maps and relu_ok:
                    raise ReproError(f"dual network: module {i}: two affine layers without a ReLU")
                if isinstance(m, nn.Conv2d) and (
                    m.groups != 1 or _pair(m.dilation) != (1, 1) or m.padding_mode != "zeros"
                    or isinstance(m.padding, str)
                ):  # fmt: skip
                    raise ReproError(
                        f"dual network: module {i}: only Conv2d with groups 1, dilation 1 and "
                        "numeric zero padding"
                    )
                if isinstance(m, nn.Linear) and probe.dim() != 2:
                    raise ReproError(
                        f"dual network: module {i}: a Linear needs a Flatten before it"
                    )
                in_shape = tuple(probe.shape[1:])
                probe = m(probe.to(m.weight.dtype))
                maps.append(AffineMap(m, in_shape, tuple(probe.shape[1:])))
                relu_ok = True
            elif isinstance(m, nn.ReLU):
                if not relu_ok:
                    raise ReproError(
                        f"dual network: module {i}: a ReLU must follow an affine layer"
                    )
                probe = m(probe)
                relu_ok = False
            else:
                raise ReproError(
                    f"dual network: module {i} ({type(m).__name__}) is not Conv2d, Linear, ReLU "
                    "or Flatten"
                )
    if not maps or not relu_ok:
        raise ReproError("dual network: the network must end with an affine layer")
    return maps


@contextmanager
def exact_fp32() -> Iterator[None]:
    """TF32 off for CUDA matmuls and convolutions (bounds are computed in true fp32); restored
    on exit. A no-op on the CPU."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul
        torch.backends.cudnn.allow_tf32 = cudnn


# --------------------------------------------------------------------------- Algorithm 1


def relu_relaxation(lower: Tensor, upper: Tensor) -> tuple[Tensor, Tensor]:
    """Eq. (10): the diagonal D of the dual ReLU and the crossing set I = {l < 0 < u}.

    D = 0 on I^- (u <= 0), 1 on I^+ (l >= 0), u / (u - l) on I. Gradients flow through l and u
    (the sets themselves are not differentiable)."""
    crossing = (lower < 0) & (upper > 0)
    active = (lower >= 0).to(lower.dtype)
    width = torch.where(crossing, upper - lower, torch.ones_like(lower))  # no 0/0 in the gradient
    return torch.where(crossing, upper / width, active), crossing


@dataclass
class LayerBounds:
    """Algorithm 1's output for a batch: the network's affine maps, the inputs (flattened), eps,
    and per hidden (ReLU) layer i = 2..k-1 the bounds l_i <= zhat_i <= u_i over the eps-ball, the
    dual ReLU's diagonal D_i and crossing set I_i (each (n, d_i))."""

    maps: list[AffineMap]
    x: Tensor
    eps: float
    lower: list[Tensor]
    upper: list[Tensor]
    slope: list[Tensor]
    crossing: list[Tensor]
    grad: GradMode = "v0.2"


def _batch_dot(a: Tensor, v: Tensor) -> Tensor:
    """sum_d a[b, m, d] v[n, d] -> (n, m), where a's batch b is 1 (shared) or n."""
    if a.shape[0] == 1:
        return v @ a[0].T
    return (a @ v.unsqueeze(-1)).squeeze(-1)


def _dual_terms(
    maps: list[AffineMap],
    slope: list[Tensor],
    crossing: list[Tensor],
    lower: list[Tensor],
    x: Tensor,
    c: Tensor,
    *,
    detach_start: bool,
    detach_negative: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The dual network of `maps` (W_1 .. W_j, the ReLUs between them given by slope / crossing /
    lower) run backwards from objectives c (b, m, d_j) on zhat_{j+1}, b = 1 (the same objectives
    for every example) or n. Returns, each (n, m):

    - linear = -sum_i nu_{i+1}^T b_i - x^T nuhat_1,
    - l1 = ||nuhat_1||_1,
    - pos = sum_i sum_{I_i} l [nu]_+ and neg = sum_i sum_{I_i} l [-nu]_+ (nu = s nuhat on I),

    so that J(c) = linear - eps l1 + pos and J(-c) = -linear - eps l1 + neg."""
    nu = -c
    linear: Tensor | float = 0.0
    pos: Tensor | float = 0.0
    neg: Tensor | float = 0.0
    m = c.shape[1]
    for i in range(len(maps) - 1, -1, -1):
        layer = maps[i]
        linear = linear - (nu * layer.full_bias()).sum(-1)
        nu_hat = layer.transpose(nu.reshape(-1, layer.out_features)).reshape(nu.shape[0], m, -1)
        if i == 0:
            linear = linear - _batch_dot(nu_hat, x)
            return linear, nu_hat.abs().sum(-1), pos, neg  # type: ignore[return-value]
        s = slope[i - 1]
        scale = s.detach() if detach_start else s
        w = torch.where(crossing[i - 1], lower[i - 1] * scale, 0.0)  # l s on I, 0 elsewhere
        pos_i = _batch_dot(nu_hat.clamp(min=0), w)
        pos = pos + pos_i
        neg = neg + pos_i - _batch_dot(nu_hat, w)  # [-v]_+ = [v]_+ - v
        s = s.unsqueeze(1)
        if detach_negative:
            nu = s * nu_hat.clamp(min=0) + s.detach() * nu_hat.clamp(max=0)
        else:
            nu = s * nu_hat
    raise AssertionError("unreachable")  # pragma: no cover


def layer_bounds(
    net: nn.Module,
    x: Tensor,
    eps: float,
    *,
    grad: GradMode = "v0.2",
    mode: Literal["dual", "algorithm1"] = "dual",
) -> LayerBounds:
    """l_i, u_i for every hidden layer over the eps-ball, layer by layer (Algorithm 1's bounds).

    `mode="algorithm1"` runs Algorithm 1 as printed, forwards: nuhat_1 ((n, d_0, d_i): W_1^T,
    then D_i W_i^T per layer) gives eps ||nuhat_1||_{1,:}; psi_i (x^T nuhat_1 + sum_j gamma_j)
    is the forward pass with each ReLU replaced by D_i; each crossing unit i' of an earlier layer
    j carries its row nu_{j,i'} (d_{i'} e_{i'} W_j^T, then D W^T per layer), packed over the
    batch and summed back per example. `mode="dual"` (the default) computes the same numbers
    with the dual network itself, run backwards from c = I on each layer's units (the
    objective J(e_m) is l_m, -J(-e_m) is u_m): on the v0.2 conv net early in training it
    certified 1.6 images/s against Algorithm 1's 1.1 on one CPU thread (no row per crossing
    unit to carry; `benchmarks/bench_wong_kolter.py`), on the MLP 181 against 220; the tests
    check the two agree, values and gradients.

    `grad="v0.2"` detaches the slope where it scales a crossing unit's own term (the v0.2
    code's default, `scatter_grad=False`); the values do not depend on `grad`."""
    if eps < 0:
        raise ReproError(f"layer_bounds: eps must be >= 0, got {eps}")
    if mode not in ("dual", "algorithm1"):
        raise ReproError(f"layer_bounds: mode must be 'dual' or 'algorithm1', not {mode!r}")
    maps = parse_network(net, tuple(x.shape[1:]))
    xf = x.reshape(x.shape[0], -1)
    if mode == "algorithm1":
        lower, upper = _algorithm1(maps, xf, eps, grad)
        pairs = [relu_relaxation(lo, up) for lo, up in zip(lower, upper, strict=True)]
        slopes, crossings = [p[0] for p in pairs], [p[1] for p in pairs]
        return LayerBounds(maps, xf, float(eps), lower, upper, slopes, crossings, grad)
    bounds = LayerBounds(maps, xf, float(eps), [], [], [], [], grad)
    for j, layer in enumerate(maps[:-1]):
        eye = torch.eye(layer.out_features, dtype=x.dtype, device=x.device).unsqueeze(0)
        linear, l1, pos, neg = _dual_terms(maps[: j + 1], bounds.slope, bounds.crossing,
                                           bounds.lower, xf, eye, detach_start=grad == "v0.2",
                                           detach_negative=False)  # fmt: skip
        lo, up = linear - eps * l1 + pos, linear + eps * l1 - neg
        d, crossing = relu_relaxation(lo, up)
        bounds.lower.append(lo)
        bounds.upper.append(up)
        bounds.slope.append(d)
        bounds.crossing.append(crossing)
    return bounds


def _algorithm1(
    maps: list[AffineMap], xf: Tensor, eps: float, grad: GradMode
) -> tuple[list[Tensor], list[Tensor]]:
    """Algorithm 1 as printed (see `layer_bounds`): the lists l_2..l_{k-1}, u_2..u_{k-1}."""
    n = xf.shape[0]
    first = maps[0]
    eye = torch.eye(first.in_features, dtype=xf.dtype, device=xf.device)
    nu_hat = first(eye, bias=False).unsqueeze(0)  # (1, d_0, d_2): nuhat_1 = W_1^T
    psi = first(xf)
    norm = nu_hat.abs().sum(1)
    lower, upper = [psi - eps * norm], [psi + eps * norm]
    # nu_{j, I_j} rows: (example index, l of the unit, row over the current layer's units)
    rows: list[tuple[Tensor, Tensor, Tensor]] = []
    for layer in maps[1:-1]:
        d, crossing = relu_relaxation(lower[-1], upper[-1])
        rows = [(ex, lo, layer(r * d[ex], bias=False)) for ex, lo, r in rows]
        ex, unit = crossing.nonzero(as_tuple=True)
        if ex.numel():
            start = d[ex, unit]
            if grad == "v0.2":
                start = start.detach()
            onehot = F.one_hot(unit, d.shape[1]).to(d.dtype) * start[:, None]
            rows.append((ex, lower[-1][ex, unit], layer(onehot, bias=False)))
        psi = layer(d * psi)
        nu_hat = layer((d.unsqueeze(1) * nu_hat).reshape(-1, d.shape[1]), bias=False)
        nu_hat = nu_hat.reshape(n, -1, layer.out_features)
        norm = nu_hat.abs().sum(1)
        lo, up = psi - eps * norm, psi + eps * norm
        for ex, l_unit, r in rows:
            lo = lo.index_add(0, ex, l_unit[:, None] * (-r).clamp(min=0))
            up = up.index_add(0, ex, -l_unit[:, None] * r.clamp(min=0))
        lower.append(lo)
        upper.append(up)
    return lower, upper


# --------------------------------------------------------------------------- the dual network


def dual_objective(bounds: LayerBounds, c: Tensor) -> Tensor:
    """J_eps(x, nu(c)) for a batch of objectives c (n, m, d_k): a lower bound on
    min c^T zhat_k over the eps-ball's relaxation, one per example and objective, (n, m).

    The dual network runs backwards: nu_k = -c, nuhat_i = W_i^T nu_{i+1}, nu_i = D_i nuhat_i
    (on I_i the slope u / (u - l); with `grad="v0.2"` its gradient is kept on the positive part
    of nuhat only, as v0.2's `alpha_grad=False`)."""
    linear, l1, pos, _ = _dual_terms(bounds.maps, bounds.slope, bounds.crossing, bounds.lower,
                                     bounds.x, c, detach_start=False,
                                     detach_negative=bounds.grad == "v0.2")  # fmt: skip
    return linear - bounds.eps * l1 + pos


def margin_matrix(y: Tensor, classes: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """c_y = e_y 1^T - I as a batch (n, classes, classes): row j is e_y - e_j (zero for j = y)."""
    eye = torch.eye(classes, dtype=dtype, device=y.device)
    return eye[y].unsqueeze(1) - eye.unsqueeze(0)


def robust_logits(
    net: nn.Module, eps: float, x: Tensor, y: Tensor, *, grad: GradMode = "v0.2"
) -> Tensor:
    """-J_eps(x, e_y - e_j) for every class j (n, classes): an upper bound on zhat_j - zhat_y over
    the eps-ball (0 for j = y), the logits of the robust loss."""
    bounds = layer_bounds(net, x, eps, grad=grad)
    classes = bounds.maps[-1].out_features
    return -dual_objective(bounds, margin_matrix(y, classes, x.dtype))


def robust_loss(
    net: nn.Module, eps: float, x: Tensor, y: Tensor, *, grad: GradMode = "v0.2"
) -> tuple[Tensor, Tensor]:
    """Theorem 2's robust cross-entropy, mean over the batch, and the certified-error indicator
    per example (bool (n,): True unless J_eps(x, e_y - e_j) > 0 for every j != y)."""
    logits = robust_logits(net, eps, x, y, grad=grad)
    other = torch.ones_like(logits, dtype=torch.bool).scatter(1, y[:, None], False)
    certified = torch.where(other, logits < 0, True).all(dim=1)
    return F.cross_entropy(logits, y), (~certified).detach()


def epsilon_schedule(epoch: int, epochs: int, eps: float, start: float | None) -> float:
    """The v0.2 scripts' training epsilon: with `--starting_epsilon` s, linear from s at epoch 0
    to eps at epoch epochs // 2 (held after); without one (Fashion-MNIST's default), eps."""
    half = epochs // 2
    if start is None or half == 0 or epoch > half:
        return float(eps)
    return float(start + (epoch / half) * (eps - start))


@dataclass
class RobustTraining:
    """What `train_robust` did: the mean robust loss of every epoch so far (resumed epochs
    included), each epoch's eps and wall seconds with the device it ran on, and the epoch this
    call started from (0 unless it resumed)."""

    losses: list[float]
    eps: list[float]
    seconds: list[float]
    devices: list[str]
    resumed_from: int

    @property
    def epochs(self) -> int:
        return len(self.losses)


def train_robust(
    net: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    epochs: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
    start_eps: float | None = None,
    grad: GradMode = "v0.2",
    checkpoint: str | os.PathLike[str] | None = None,
    config: dict[str, Any] | None = None,
    stop_after: int | None = None,
    progress: bool = False,
    desc: str = "robust",
) -> RobustTraining:
    """Section 3.3's robust training as v0.2 runs it: Adam at `lr`, batch `batch_size`, each
    epoch minimising Theorem 2's robust cross-entropy (`robust_loss`, in exact fp32) at the
    epoch's eps (`epsilon_schedule`), through the toolkit's loop (`repro.train.train_classifier`,
    batch order from `generator`).

    With `checkpoint`, the state after every epoch (network, Adam, the batch-order generator,
    the history) is saved there with `config` plus this function's own settings, and a call
    with the same settings resumes from it: a stopped `full` run (20 epochs of the conv net, the
    longest training of the project) loses at most one epoch, and ends bit for bit where an
    uninterrupted one does (`repro.checkpoint`). `stop_after` ends this call after that many
    epochs (an interruption on purpose, for a time-limited machine and for the tests).
    """
    from repro.checkpoint import load_checkpoint, save_checkpoint
    from repro.train import train_classifier

    if epochs < 0 or (stop_after is not None and stop_after < 0):
        raise ReproError(f"{desc}: epochs {epochs} and stop_after {stop_after} must be >= 0")
    settings = dict(config or {})
    settings.update(eps=float(eps), epochs=int(epochs), batch_size=int(batch_size), lr=float(lr),
                    start_eps=start_eps, grad=grad, n_train=int(x.shape[0]))  # fmt: skip
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    done = RobustTraining([], [], [], [], resumed_from=0)
    state = None if checkpoint is None else load_checkpoint(checkpoint, settings,
                                                            map_location=x.device)  # fmt: skip
    if state is not None:
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        generator.set_state(state["generator"].cpu())  # a CPU generator, wherever x is
        history = [list(state[k]) for k in ("losses", "eps", "seconds", "devices")]
        done = RobustTraining(*history, resumed_from=len(history[0]))
    end = epochs if stop_after is None else min(epochs, done.epochs + stop_after)
    for epoch in range(done.epochs, end):
        eps_t = epsilon_schedule(epoch, epochs, eps, start_eps)

        def objective(model: nn.Module, xb: Tensor, yb: Tensor, eps_t: float = eps_t) -> Tensor:
            return robust_loss(model, eps_t, xb, yb, grad=grad)[0]

        start = time.perf_counter()
        with exact_fp32():
            loss = train_classifier(net, x, y, epochs=1, batch_size=batch_size, lr=lr,
                                    optimizer=opt, objective=objective, generator=generator,
                                    progress=progress, desc=f"{desc} eps {eps_t:.3f}")  # fmt: skip
        done.losses += loss
        done.eps.append(eps_t)
        done.seconds.append(time.perf_counter() - start)
        done.devices.append(str(x.device))
        if checkpoint is not None:  # the epochs done are the history's length
            save_checkpoint(checkpoint, {"config": settings, "net": net.state_dict(),
                                         "opt": opt.state_dict(), "generator": generator.get_state(),
                                         "losses": done.losses, "eps": done.eps,
                                         "seconds": done.seconds, "devices": done.devices})  # fmt: skip
    return done


# --------------------------------------------------------------------------- evaluation


@dataclass
class Certificate:
    """Per example: the lower bounds J_eps(x, e_y - e_j) on the margins (n, classes; +inf at
    j = y), the clean prediction, and whether the example is certified (every J > 0)."""

    margins: Tensor
    predicted: Tensor
    certified: Tensor

    @property
    def bound(self) -> Tensor:
        """The smallest certified margin per example (> 0 iff certified)."""
        return self.margins.min(dim=1).values


@torch.no_grad()
def certify(
    net: nn.Module, x: Tensor, y: Tensor, eps: float, *, batch_size: int = 50
) -> Certificate:
    """Certify (x, y) batch by batch in fp32 (TF32 off), the model in eval mode."""
    was_training = net.training
    net.eval()
    margins = []
    try:
        with exact_fp32():
            for i in range(0, x.shape[0], batch_size):
                xb, yb = x[i : i + batch_size], y[i : i + batch_size]
                bounds = layer_bounds(net, xb, eps)
                classes = bounds.maps[-1].out_features
                j = dual_objective(bounds, margin_matrix(yb, classes, xb.dtype))
                margins.append(j.scatter(1, yb[:, None], math.inf))
    finally:
        net.train(was_training)
    margins_t = torch.cat(margins)
    return Certificate(margins_t, predict(net, x), (margins_t > 0).all(dim=1))


def fgs_v02(model: nn.Module, x: Tensor, y: Tensor, *, eps: float) -> Tensor:
    """Table 1's FGSM as v0.2's `attacks.fgs` runs it: x + eps sign(grad_x CE), not clipped to
    [0, 1] (our `repro.fgsm.fgsm` with clip=None)."""
    return fgsm(model, x, y, eps=eps, clip=None)


def pgd_v02(
    model: nn.Module, x: Tensor, y: Tensor, *, eps: float, step_size: float = 0.01,
    steps: int = 100,
) -> Tensor:  # fmt: skip
    """Table 1's PGD as v0.2's `attacks.pgd` runs it: from x itself (no random start), `steps`
    sign steps of `step_size` on the cross-entropy, each projected on the eps-box around x only
    (no clip to [0, 1], so the result may leave the image range). Returns a detached tensor like
    x; the model is left as it was."""
    if eps < 0 or steps < 0:
        raise ReproError(f"pgd_v02: need eps >= 0 and steps >= 0, got {eps}, {steps}")
    x = x.detach()
    x_adv = x.clone()
    with frozen(model):
        for _ in range(steps):
            x_adv.requires_grad_(True)
            loss = F.cross_entropy(model(x_adv), y, reduction="sum")
            (grad,) = torch.autograd.grad(loss, x_adv)
            x_adv = x + (x_adv.detach() + step_size * grad.sign() - x).clamp(-eps, eps)
    return x_adv.detach()


def paper_errors(
    model: nn.Module, x: Tensor, y: Tensor, eps: float, *, batch_size: int = 500,
    pgd_steps: int = 100, pgd_step_size: float = 0.01, certificate: Certificate | None = None,
) -> dict[str, Tensor]:  # fmt: skip
    """Per example, Table 1's error indicators as v0.2 counts them (bool (n,)): `test` (clean
    misclassified), `fgsm` and `pgd` (misclassified after the paper's attack, whatever the clean
    prediction) and `bound` (not certified; from `certificate` when given, else computed)."""
    out: dict[str, list[Tensor]] = {"test": [], "fgsm": [], "pgd": []}
    for i in range(0, x.shape[0], batch_size):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        out["test"].append(predict(model, xb) != yb)
        out["fgsm"].append(predict(model, fgs_v02(model, xb, yb, eps=eps)) != yb)
        x_pgd = pgd_v02(model, xb, yb, eps=eps, step_size=pgd_step_size, steps=pgd_steps)
        out["pgd"].append(predict(model, x_pgd) != yb)
    errors = {k: torch.cat(v) for k, v in out.items()}
    errors["bound"] = ~(certificate or certify(model, x, y, eps)).certified
    return errors


# --------------------------------------------------------------------------- the LP, independently


def lp_bound(bounds: LayerBounds, index: int, c: Tensor, *, relaxation: str = "triangle") -> float:
    """min c^T zhat_k over the LP relaxation of example `index`, solved by scipy's HiGHS in
    float64 with the primal variables (x', zhat_i, z_i) and the same l, u as `bounds`.

    `relaxation="triangle"` is the paper's LP (2): z = zhat on I^+, z = 0 on I^-, and on I the
    convex hull z >= 0, z >= zhat, (u - l) z <= u (zhat - l). Its optimum is >= J (weak duality).
    `"parallel"` replaces z >= 0, z >= zhat by z >= u / (u - l) zhat: the relaxation whose
    dual is exactly J with the slope u / (u - l), so its optimum equals J (strong duality).
    An independent check of `dual_objective`: no dual, no code shared beyond the weights."""
    import numpy as np
    from scipy import sparse
    from scipy.optimize import linprog

    if relaxation not in ("triangle", "parallel"):
        raise ReproError(
            f"lp_bound: relaxation must be 'triangle' or 'parallel', not {relaxation!r}"
        )
    maps = bounds.maps
    with torch.no_grad():
        mats = [sparse.coo_matrix(m.dense().double().cpu().numpy()) for m in maps]
        biases = [m.full_bias().double().cpu().numpy() for m in maps]
    x = bounds.x[index].detach().double().cpu().numpy()
    eps = bounds.eps
    # variable blocks: x' (d_0), then per hidden layer zhat_i and z_i (d_i each)
    sizes = [x.size] + [s for m in maps[:-1] for s in (m.out_features, m.out_features)]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    nvar = int(offsets[-1])
    lo_var = np.full(nvar, -np.inf)
    hi_var = np.full(nvar, np.inf)
    lo_var[: x.size], hi_var[: x.size] = x - eps, x + eps
    eq: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (row, col, value) triplets
    eq_rhs: list[np.ndarray] = []
    ub: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    ub_rhs: list[np.ndarray] = []
    n_eq = n_ub = 0
    prev = 0  # offset of the input of the next affine map (x' or z_i)
    for h, layer in enumerate(maps[:-1]):
        zhat, z = int(offsets[1 + 2 * h]), int(offsets[2 + 2 * h])
        d = layer.out_features
        units = np.arange(d)
        w = mats[h]
        # zhat - W z_prev = b
        eq.append((w.row + n_eq, w.col + prev, -w.data))
        eq.append((units + n_eq, units + zhat, np.ones(d)))
        eq_rhs.append(biases[h])
        n_eq += d
        lo_b = bounds.lower[h][index].detach().double().cpu().numpy()
        up_b = bounds.upper[h][index].detach().double().cpu().numpy()
        cross = bounds.crossing[h][index].cpu().numpy()
        active = (lo_b >= 0) & ~cross
        dead = ~active & ~cross
        # z = zhat on I^+, z = 0 on I^- (equalities)
        on, off = np.flatnonzero(active), np.flatnonzero(dead)
        rows_on = np.arange(on.size) + n_eq
        eq.append((rows_on, z + on, np.ones(on.size)))
        eq.append((rows_on, zhat + on, -np.ones(on.size)))
        eq.append((np.arange(off.size) + n_eq + on.size, z + off, np.ones(off.size)))
        eq_rhs.append(np.zeros(on.size + off.size))
        n_eq += on.size + off.size
        # the relaxation on I: z <= s (zhat - l), and z >= 0, z >= zhat (triangle) or z >= s zhat
        j = np.flatnonzero(cross)
        s = up_b[j] / (up_b[j] - lo_b[j])
        top = np.arange(j.size) + n_ub
        ub.append((np.concatenate([top, top]), np.concatenate([z + j, zhat + j]),
                   np.concatenate([np.ones(j.size), -s])))  # fmt: skip
        ub_rhs.append(-s * lo_b[j])
        low = top + j.size
        slope = np.ones(j.size) if relaxation == "triangle" else s
        ub.append((np.concatenate([low, low]), np.concatenate([zhat + j, z + j]),
                   np.concatenate([slope, -np.ones(j.size)])))  # fmt: skip
        ub_rhs.append(np.zeros(j.size))
        if relaxation == "triangle":
            lo_var[z + j] = 0.0
        n_ub += 2 * j.size
        prev = z
    last = maps[-1]
    c_np = c.detach().double().cpu().numpy().reshape(-1)
    cost = np.zeros(nvar)
    cost[prev : prev + last.in_features] = mats[-1].T @ c_np

    def matrix(
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], rows: int
    ) -> sparse.csr_matrix:
        r, k, v = (np.concatenate([p[i] for p in parts]) for i in range(3))
        return sparse.csr_matrix((v, (r, k)), shape=(rows, nvar))

    a_ub = matrix(ub, n_ub) if n_ub else None
    res = linprog(cost, A_ub=a_ub, b_ub=np.concatenate(ub_rhs) if n_ub else None,
                  A_eq=matrix(eq, n_eq), b_eq=np.concatenate(eq_rhs),
                  bounds=np.stack([lo_var, hi_var], axis=1), method="highs")  # fmt: skip
    if res.status != 0:
        raise ReproError(f"lp_bound: HiGHS did not solve the LP: {res.message}")
    return float(res.fun + c_np @ biases[-1])
