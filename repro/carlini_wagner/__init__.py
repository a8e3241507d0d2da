"""Carlini–Wagner L2 attack (Carlini & Wagner, IEEE S&P 2017).

Paper: "Towards Evaluating the Robustness of Neural Networks", https://arxiv.org/abs/1608.04644 —
Section V (objective functions f1–f7, box constraint by change of variables, choosing c) and
Section VI.A (the L2 attack).
Reproduces: nothing on its own; it is the CW-ℓ2 attack of Defense-GAN's Table 4 (`repro.defense_gan`).
Map:
  - change of variables (Section V.B, "method 3"): δ = ½(tanh(w) + 1) − x, so x + δ ∈ [0, 1]
    without clipping -> `_to_box` / `_from_box` (generalised to any box: `clip` in `cw_l2`).
  - f6(x') = max(Z(x')_y − max_{i≠y} Z(x')_i, −κ) (Section V.A, f6, untargeted form as in the
    authors' released code) -> `cw_margin` and the clamp in `cw_l2`.
  - minimize ||δ||²₂ + c·f6(x + δ) over w with Adam (Section VI.A) -> the inner loop of `cw_l2`.
  - modified binary search over c, per example (Section V: c ×10 while no adversarial has been
    found, bisection once one has) -> the outer loop of `cw_l2`.
  - keep, per example, the successful adversarial with the smallest L2 over every step of every
    search step -> `best_l2` / `best_adv` in `cw_l2`.
Deviations:
  - No early abort (the authors' code stops an inner loop when the loss stalls): checking the loss
    would synchronise with the host every step; running all `steps` can only lower the best L2.
  - The L2 distance is measured to the original `x`, not to its tanh round trip (the reference
    code's `tanh(arctanh(x·0.999999))`); the difference is ~1e-6 per pixel.
  - Untargeted only (Defense-GAN uses the untargeted attack); the targeted form swaps y for t.
  - With `binary_search_steps=1` it is a fixed-c attack, which is how Defense-GAN's official code
    runs it (cleverhans `CarliniWagnerL2`: 1 binary step, 100 iterations, lr 10, c = 100).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from repro.train import frozen

__all__ = ["cw_l2", "cw_margin"]

# Above this the upper bound on c is "not found yet" (the authors' code uses 1e10 / 1e9 the same way).
_NO_UPPER_BOUND = 1e10
# The authors' code scales x into (−1, 1) by this factor before arctanh, so that arctanh stays finite.
_ATANH_SHRINK = 0.999999


def _to_box(w: Tensor, lo: float, hi: float) -> Tensor:
    """x = lo + (hi − lo)·½(tanh(w) + 1): every w maps inside the box [lo, hi]."""
    return lo + (hi - lo) * 0.5 * (torch.tanh(w) + 1.0)


def _from_box(x: Tensor, lo: float, hi: float) -> Tensor:
    """The w with `_to_box(w) ≈ x`, shrunk slightly so that pixels at the box edges stay finite."""
    unit = ((x - lo) / (hi - lo)).clamp(0.0, 1.0) * 2.0 - 1.0
    return torch.atanh(unit * _ATANH_SHRINK)


def cw_margin(logits: Tensor, y: Tensor) -> Tensor:
    """Z_y − max_{i≠y} Z_i per example: positive while the example is still classified as y."""
    real = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.masked_fill(
        nn.functional.one_hot(y, logits.shape[1]).bool(), float("-inf")
    ).amax(dim=1)
    return real - others


def cw_l2(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    c: float,
    steps: int,
    lr: float,
    binary_search_steps: int,
    confidence: float = 0.0,
    clip: tuple[float, float] = (0.0, 1.0),
    generator: torch.Generator | None = None,
) -> Tensor:
    """Untargeted Carlini–Wagner L2 attack with the paper's per-example binary search over c.

    For each of `binary_search_steps` values of c (per example, starting at `c`), run `steps` Adam
    steps (learning rate `lr`) on w, minimising ||x' − x||²₂ + c·max(Z_y − max_{i≠y} Z_i, −κ) with
    x' = ½(tanh(w) + 1) scaled to `clip`. An example whose search at some c succeeded has c bisected
    towards the largest c that failed; one that never succeeded has c multiplied by 10. Over all
    steps, the successful x' (max_{i≠y} Z_i − Z_y > κ) with the smallest L2 is kept per example.

    With `binary_search_steps=1` there is no search: it is a fixed-c attack, as Defense-GAN's
    official code runs it (c=100, 100 steps, lr 10).

    Args:
        model: maps NCHW inputs to logits Z. Put in eval mode with frozen parameters for the attack
            and restored afterwards.
        x: inputs in `clip` (normally [0, 1]); y: their labels (int64).
        c: initial trade-off constant (the same for every example).
        steps: Adam iterations per value of c; lr: Adam's learning rate (in w space).
        binary_search_steps: number of values of c tried per example.
        confidence: κ; a success needs the best other logit to beat Z_y by more than κ.
        clip: the box [lo, hi] the adversarial must stay in.
        generator: accepted for the common attack signature; the attack is deterministic.

    Returns:
        Detached tensor like `x`: the smallest-L2 successful adversarial per example, or `x`
        itself (bit for bit) where no c succeeded.
    """
    del generator  # deterministic: w starts at x's own preimage, as in the paper
    if steps < 0 or binary_search_steps < 1:
        raise ValueError(
            f"cw_l2: need steps >= 0 and binary_search_steps >= 1, got {steps}, "
            f"{binary_search_steps}"
        )
    if c <= 0 or lr <= 0:
        raise ValueError(f"cw_l2: need c > 0 and lr > 0, got c={c}, lr={lr}")
    lo, hi = clip
    x = x.detach()
    n = x.shape[0]
    per_example = (n,) + (1,) * (x.dim() - 1)
    options = {"device": x.device, "dtype": x.dtype}

    w0 = _from_box(x, lo, hi)
    const = torch.full((n,), float(c), **options)
    lower = torch.zeros(n, **options)
    upper = torch.full((n,), _NO_UPPER_BOUND, **options)
    best_l2 = torch.full((n,), float("inf"), **options)
    best_adv = x.clone()

    with frozen(model):
        for _ in range(binary_search_steps):
            # Each value of c starts from w0 with a fresh Adam state, as in the authors' code.
            delta = torch.zeros_like(w0, requires_grad=True)
            optimizer = torch.optim.Adam([delta], lr=lr)
            found = torch.zeros(n, dtype=torch.bool, device=x.device)
            for step in range(steps + 1):
                x_adv = _to_box(w0 + delta, lo, hi)
                margin = cw_margin(model(x_adv), y)
                l2 = (x_adv - x).pow(2).flatten(1).sum(dim=1)
                success = margin < -confidence
                improved = success & (l2 < best_l2)
                best_l2 = torch.where(improved, l2.detach(), best_l2)
                best_adv = torch.where(improved.view(per_example), x_adv.detach(), best_adv)
                found |= success
                if step == steps:  # the last iterate is evaluated, not stepped from
                    break
                loss = (l2 + const * margin.clamp(min=-confidence)).sum()
                (delta.grad,) = torch.autograd.grad(loss, delta)
                optimizer.step()
            # Section V: bisect once an adversarial is known, else grow c tenfold.
            upper = torch.where(found, torch.minimum(upper, const), upper)
            lower = torch.where(found, lower, torch.maximum(lower, const))
            const = torch.where(upper < _NO_UPPER_BOUND / 10, (lower + upper) / 2, const * 10)
    return best_adv.detach()
