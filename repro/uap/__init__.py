"""Universal adversarial perturbations (Moosavi-Dezfooli, Fawzi, Fawzi & Frossard, CVPR 2017).

Paper: "Universal adversarial perturbations", https://arxiv.org/abs/1610.08401 (catalog key
`2017_MoosaviDezfooli_S_p-cvpr_uap`); official code LTS4/universal (commit 2e5ab15,
`python/universal_pert.py`).

Reproduces: the protocol of Table 1 (fooling ratio on X and on held-out images), Figure 6 (fooling
ratio against the size of X), Figure 8's random-perturbation control and Table 2 (the
cross-model matrix: a perturbation computed for one network, fooling ratio on another), on
Fashion-MNIST as the stated analogue of ILSVRC 2012, whose rows (Tables 1-2) are kept in
`expected.csv` and not run (no ImageNet offline).

Map from the paper to the code:
- Section 3, the fooling ratio P(k(x + v) != k(x)) -> `fooling_rate`
- Algorithm 1: for each x_i of the shuffled X with k(x_i + v) = k(x_i), the minimal
  perturbation dv_i = argmin ||r||_2 s.t. k(x_i + v + r) != k(x_i), by DeepFool
  -> `universal_perturbation` with `repro.deepfool.deepfool_attack`
- Algorithm 1, v <- P_{p, xi}(v + dv_i), the projection on the l_p ball of radius xi
  -> `project_lp`
- Algorithm 1's stopping rule, Err(X_v) >= 1 - delta (delta = 0.2 in the official code) or the
  pass budget spent -> `delta` / `max_passes` in `universal_perturbation`
- Figure 8's control: a random perturbation of the same norm -> `random_perturbation`
- the perturbation applied to a batch as an attack `attack(model, x, y)` -> `apply_perturbation`,
  `uap_attack`
- the architectures of the cross-model table: `repro.deepfool`'s FC500-150-10, LeCun et al.'s
  LeNet-300-100 and a CNN with strided convolutions -> `fc_300_100`, `strided_cnn`

Deviations (each also in README.md):
- The images x + v are clipped to [0, 1] (`clip`), when computing v and when measuring fooling
  rates, so that they are images; the paper works on mean-subtracted ImageNet inputs without a
  box. DeepFool inside runs with the same box, overshoot 0.02 and at most 10 iterations, and its
  step is added only when it fooled the image (the official code adds it when DeepFool stopped
  before its last iteration).
- Checking k(x_i + v) = k(x_i) is batched: the next `batch_size` images of the pass are checked
  at once with the current v; the first one that v does not fool is passed to DeepFool, v is
  updated, and the check restarts after it. Every image is therefore checked with the v of its
  turn, exactly as in the sequential loop, with far fewer forward passes.
- Fashion-MNIST instead of ImageNet: the radius xi is in [0, 1] pixel units (l_inf) and is a
  setting of the scale, not the paper's 10 / 255.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from repro.deepfool import deepfool_attack
from repro.train import Attack, frozen, predict

__all__ = [
    "UapResult",
    "apply_perturbation",
    "fc_300_100",
    "fooling_rate",
    "project_lp",
    "random_perturbation",
    "strided_cnn",
    "uap_attack",
    "universal_perturbation",
]

Norm = Literal["l2", "linf"]
NORMS = ("l2", "linf")


class UapResult(NamedTuple):
    """What `universal_perturbation` returns: v (the shape of one image), the fooling rate on X
    after each pass, and how many DeepFool updates were applied."""

    v: Tensor
    fooling_history: list[float]
    updates: int


def project_lp(v: Tensor, xi: float, norm: Norm) -> Tensor:
    """P_{p, xi}: the projection of v on the l_p ball of radius xi (l2: rescale; linf: clip)."""
    if norm == "l2":
        size = v.norm()
        return v * (xi / size) if size > xi else v
    if norm == "linf":
        return v.clamp(-xi, xi)
    raise ValueError(f"project_lp: norm must be one of {NORMS}, got {norm!r}")


def apply_perturbation(
    x: Tensor, v: Tensor, clip: tuple[float, float] | None = (0.0, 1.0)
) -> Tensor:
    """x + v for every image of the batch (v broadcast), clipped to `clip` when given."""
    out = x.detach() + v.to(device=x.device, dtype=x.dtype)
    return (out.clamp(clip[0], clip[1]) if clip is not None else out).detach()


def fooling_rate(
    model: nn.Module,
    x: Tensor,
    v: Tensor,
    *,
    clip: tuple[float, float] | None = (0.0, 1.0),
    batch_size: int = 1000,
) -> float:
    """P(k(x + v) != k(x)) over `x` (the labels are the model's own, not the true ones)."""
    if x.shape[0] == 0:
        raise ValueError("fooling_rate of an empty set")
    changed = 0
    for i in range(0, x.shape[0], batch_size):
        xb = x[i : i + batch_size]
        before = predict(model, xb, batch_size=batch_size)
        after = predict(model, apply_perturbation(xb, v, clip), batch_size=batch_size)
        changed += int((before != after).sum())
    return changed / x.shape[0]


def universal_perturbation(
    model: nn.Module,
    x: Tensor,
    *,
    xi: float,
    norm: Norm = "linf",
    delta: float = 0.2,
    max_passes: int = 10,
    overshoot: float = 0.02,
    max_iter_df: int = 10,
    clip: tuple[float, float] | None = (0.0, 1.0),
    batch_size: int = 256,
    generator: torch.Generator | None = None,
) -> UapResult:
    """Algorithm 1: one perturbation v with ||v||_p <= xi that fools most images of X.

    Passes over X in a random order (drawn from `generator`); each image that x + v does not yet
    fool contributes DeepFool's minimal perturbation of x + v, and v is projected back on the
    l_p ball. Stops once the fooling rate on X reaches 1 - delta, or after `max_passes` passes.

    Args:
        model: the classifier (eval mode, frozen parameters during the computation; restored).
        x: the images X (NCHW, in `clip`).
        xi: the radius of the l_p ball; norm: "linf" (the official default) or "l2".
        delta: the stopping rule's 1 - delta fooling rate on X (the official 0.2).
        max_passes: passes over X at most; overshoot, max_iter_df: DeepFool's (0.02, 10).
        clip: the box x + v is kept in; batch_size: images checked per forward pass.
        generator: the order of each pass.
    """
    if norm not in NORMS:
        raise ValueError(f"universal_perturbation: norm must be one of {NORMS}, got {norm!r}")
    if xi <= 0 or not 0.0 <= delta < 1.0 or max_passes < 1 or batch_size < 1:
        raise ValueError(
            "universal_perturbation: need xi > 0, 0 <= delta < 1, max_passes >= 1, batch_size >= 1"
        )
    x = x.detach()
    n = x.shape[0]
    v = torch.zeros_like(x[0])
    labels = predict(model, x)
    history: list[float] = []
    updates = 0
    with frozen(model):
        for _ in range(max_passes):
            order = torch.randperm(n, generator=generator).to(x.device)
            pos = 0
            while pos < n:
                chunk = order[pos : pos + batch_size]
                with torch.no_grad():
                    same = model(apply_perturbation(x[chunk], v, clip)).argmax(dim=1)
                same = torch.nonzero(same == labels[chunk]).squeeze(1)
                if same.numel() == 0:
                    pos += chunk.numel()
                    continue
                first = int(same[0])
                i = chunk[first : first + 1]
                x_v = apply_perturbation(x[i], v, clip)
                step = deepfool_attack(
                    model,
                    x_v,
                    labels[i],
                    overshoot=overshoot,
                    max_iter=max_iter_df,
                    clip=clip,
                )
                if bool(step.fooled[0]):
                    v = project_lp(v + (step.x_adv[0] - x_v[0]), xi, norm)
                    updates += 1
                pos += first + 1
            history.append(fooling_rate(model, x, v, clip=clip))
            if history[-1] >= 1.0 - delta:
                break
    return UapResult(v.detach(), history, updates)


def random_perturbation(
    like: Tensor, xi: float, norm: Norm, generator: torch.Generator | None = None
) -> Tensor:
    """Figure 8's control: a random v of the same norm xi (l_inf: +-xi per pixel, a corner of the
    ball; l2: a Gaussian direction scaled to length xi), the shape of one image."""
    device = generator.device if generator is not None else like.device
    g = torch.randn(like.shape, generator=generator, device=device, dtype=like.dtype)
    g = g.to(like.device)
    if norm == "linf":
        return xi * g.sign()
    if norm == "l2":
        return xi * g / g.norm()
    raise ValueError(f"random_perturbation: norm must be one of {NORMS}, got {norm!r}")


def uap_attack(v: Tensor, clip: tuple[float, float] | None = (0.0, 1.0)) -> Attack:
    """A fixed universal perturbation as an `attack(model, x, y)`: the same v for every image
    and every model (which is what makes it universal, and transferable)."""

    def add_v(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        del model, y
        return apply_perturbation(x, v, clip)

    return add_v


def fc_300_100(in_features: int = 784, classes: int = 10) -> nn.Module:
    """LeNet-300-100 (LeCun et al. 1998): fully connected ReLU layers of 300 and 100 units."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_features, 300),
        nn.ReLU(),
        nn.Linear(300, 100),
        nn.ReLU(),
        nn.Linear(100, classes),
    )


def strided_cnn(channels: int = 1, classes: int = 10) -> nn.Module:
    """A CNN with strided convolutions instead of pooling (conv 5x5x32 stride 2, conv 5x5x64
    stride 2, fc 128): the convolutional network of the cross-model table (about half of LeNet's
    multiply-adds: Algorithm 1 runs DeepFool image by image, which a CPU feels)."""
    return nn.Sequential(
        nn.Conv2d(channels, 32, 5, stride=2),
        nn.ReLU(),
        nn.Conv2d(32, 64, 5, stride=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(64 * 4 * 4, 128),
        nn.ReLU(),
        nn.Linear(128, classes),
    )
