"""L-BFGS as `torch.optim.LBFGS` runs it, for a whole batch of independent problems at once.

The perceptual ball's official code (alan-turing-institute/perceptualBall,
`common_code/mul_perceptualFunc_Final.py`, `find_direction`) minimises one image's loss with
`torch.optim.LBFGS([x'], max_iter=...)`: the defaults (lr 1, history 100, no line search,
tolerance_grad 1e-7, tolerance_change 1e-9, max_eval = 1.25 max_iter), one `step`. Running that
image by image is a Python loop over the batch; stacking the images into one optimisation variable
would share the curvature memory, the step and the stopping tests between images and change every
image's path. This runs one independent L-BFGS per image, side by side: each image has its own
history of (s, y) pairs, its own H_diag, its own first step and its own stopping tests, so that
image i ends exactly where `torch.optim.LBFGS` alone on image i ends (tests/repro/
test_perceptual_ball.py checks it in float64). Candidate for the toolkit: any per-image
optimisation (Carlini-Wagner's, Szegedy's) can use it.

Map from the code it mirrors to this one:
- `torch.optim.LBFGS.step` without line search, per image: the two-loop recursion over the stored
  pairs, the step t = min(1, 1 / ||g||_1) lr at the first iteration and lr after, the pair kept
  only when y.s > 1e-10, the oldest pair dropped beyond `history_size`, and the stopping tests
  (max |g| <= tolerance_grad, g.d > -tolerance_change, max |t d| <= tolerance_change,
  |loss - previous loss| < tolerance_change, max_iter, max_eval) -> `lbfgs_batched`
- the loss of a batch as the per-image losses, whose sum's gradient is every image's own gradient
  (the images' problems are independent) -> `loss_fn` in `lbfgs_batched`
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["LbfgsResult", "lbfgs_batched"]


class LbfgsResult(NamedTuple):
    """Where each image ended, its loss at the last evaluation, and its iterations."""

    x: Tensor
    loss: Tensor
    iterations: Tensor


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum(dim=1)


def lbfgs_batched(
    loss_fn: Callable[[Tensor], Tensor],
    x0: Tensor,
    *,
    max_iter: int = 20,
    lr: float = 1.0,
    history_size: int = 100,
    tolerance_grad: float = 1e-7,
    tolerance_change: float = 1e-9,
    max_eval: int | None = None,
) -> LbfgsResult:
    """Minimise each image's loss from `x0` by its own L-BFGS, as one `torch.optim.LBFGS.step`.

    Args:
        loss_fn: maps a batch shaped like `x0` to the per-image losses, shape (n,); image i's
            loss must depend on image i only (eval-mode networks: no batch statistics).
        x0: the starting points (any shape with the batch first); not modified.
        max_iter, lr, history_size, tolerance_grad, tolerance_change, max_eval: as
            `torch.optim.LBFGS` (max_eval defaults to max_iter * 5 // 4), without line search.

    Returns the final points (detached, `x0`'s shape), each image's loss at its last evaluation
    (as in torch, the point reached by the very last step is not evaluated again), and the steps
    each image took.
    """
    if max_iter < 1 or history_size < 1 or lr <= 0:
        raise ValueError(
            f"lbfgs_batched: need max_iter >= 1, history_size >= 1, lr > 0; got "
            f"{max_iter}, {history_size}, {lr}"
        )
    max_eval = max_iter * 5 // 4 if max_eval is None else max_eval
    shape, n = x0.shape, x0.shape[0]
    x = x0.detach().clone().reshape(n, -1)

    def evaluate(flat: Tensor) -> tuple[Tensor, Tensor]:
        var = flat.detach().reshape(shape).requires_grad_(True)
        with torch.enable_grad():
            losses = loss_fn(var)
            if losses.shape != (n,):
                raise ValueError(f"loss_fn must return one loss per image, got {losses.shape}")
            (grad,) = torch.autograd.grad(losses.sum(), var)
        return losses.detach(), grad.detach().reshape(n, -1)

    loss, g = evaluate(x)
    last_loss = loss.clone()
    active = g.abs().amax(dim=1) > tolerance_grad  # torch returns at once when already optimal
    iterations = torch.zeros(n, dtype=torch.long, device=x.device)
    # history: chronological slots of (s, y, rho), `valid` says which image kept which pair
    s_hist: list[Tensor] = []
    y_hist: list[Tensor] = []
    rho_hist: list[Tensor] = []
    valid: list[Tensor] = []
    h_diag = torch.ones(n, dtype=x.dtype, device=x.device)
    d = torch.zeros_like(x)
    t = torch.zeros(n, dtype=x.dtype, device=x.device)
    prev_g, prev_loss = g, loss
    evals = 1
    for k in range(1, max_iter + 1):
        if not bool(active.any()):
            break
        if k == 1:
            d = -g
        else:
            y_vec = g - prev_g
            s_vec = d * t[:, None]
            ys = _dot(y_vec, s_vec)
            keep = active & (ys > 1e-10)
            if bool(keep.any()):
                s_hist.append(s_vec)
                y_hist.append(y_vec)
                rho_hist.append(torch.where(keep, 1.0 / torch.where(keep, ys, 1.0), 0.0))
                valid.append(keep)
                h_diag = torch.where(keep, ys / torch.where(keep, _dot(y_vec, y_vec), 1.0), h_diag)
                # beyond `history_size` pairs an image forgets its oldest one
                count = torch.stack(valid).sum(dim=0)
                for slot in range(len(valid)):
                    over = count > history_size
                    if not bool(over.any()):
                        break
                    drop = over & valid[slot]
                    valid[slot] = valid[slot] & ~drop
                    count = count - drop.long()
                used = [i for i, v in enumerate(valid) if bool(v.any())]
                s_hist = [s_hist[i] for i in used]
                y_hist = [y_hist[i] for i in used]
                rho_hist = [rho_hist[i] for i in used]
                valid = [valid[i] for i in used]
            q = -g
            alphas = []
            for i in range(len(s_hist) - 1, -1, -1):
                a = torch.where(valid[i], _dot(s_hist[i], q) * rho_hist[i], 0.0)
                q = q - a[:, None] * y_hist[i]
                alphas.append(a)
            alphas.reverse()
            r = q * h_diag[:, None]
            for i in range(len(s_hist)):
                b = torch.where(valid[i], _dot(y_hist[i], r) * rho_hist[i], 0.0)
                r = r + (alphas[i] - b)[:, None] * s_hist[i]
            d = torch.where(active[:, None], r, d)
        prev_g, prev_loss = g, loss
        if k == 1:
            t = torch.clamp(1.0 / g.abs().sum(dim=1), max=1.0) * lr
        else:
            t = torch.full_like(t, lr)
        gtd = _dot(g, d)
        active = active & ~(gtd > -tolerance_change)  # not a descent direction: stop before it
        if not bool(active.any()):
            break
        x = torch.where(active[:, None], x + t[:, None] * d, x)
        iterations = iterations + active.long()
        if k == max_iter:
            break
        new_loss, new_g = evaluate(x)
        evals += 1
        loss = torch.where(active, new_loss, loss)
        g = torch.where(active[:, None], new_g, g)
        last_loss = torch.where(active, new_loss, last_loss)
        if evals >= max_eval:
            break
        done = g.abs().amax(dim=1) <= tolerance_grad
        done |= (d * t[:, None]).abs().amax(dim=1) <= tolerance_change
        done |= (loss - prev_loss).abs() < tolerance_change
        active = active & ~done
    return LbfgsResult(x.reshape(shape).detach(), last_loss, iterations)
