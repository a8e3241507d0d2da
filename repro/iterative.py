"""The iterative ℓ∞ attacks the robust-training papers evaluate with: BIM and MIM.

PCL and GCE (issue 17) report FGSM, BIM, MIM and PGD columns. BIM (Kurakin, Goodfellow & Bengio,
2017) is PGD without the random start, `steps` sign steps of ε/steps: it is
`repro.madry_pgd.pgd_linf` with those settings, so `bim_linf` only fixes them. MIM (Dong et al.,
"Boosting Adversarial Attacks with Momentum", CVPR 2018) accumulates the L1-normalised gradient,
g ← μ·g + ∇/‖∇‖₁, and steps along sign(g); neither paper is in our reading lists, so both live
here in the toolkit rather than in a paper folder.

Both clip to the ε-ball and to [0, 1] after every step, take whole batches, accept any per-example
loss `repro.madry_pgd.pgd_linf` accepts ("ce", "margin" or a callable: a paper's own loss), and
leave the model as it was.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from repro.madry_pgd import LossFn, attack_loss, pgd_linf
from repro.train import frozen

__all__ = ["bim_linf", "mim_linf"]


def bim_linf(
    model: nn.Module, x: Tensor, y: Tensor, *, eps: float, steps: int = 10,
    loss: str | LossFn = "ce",
) -> Tensor:  # fmt: skip
    """BIM: `steps` sign steps of eps/steps from x itself (no random start)."""
    if steps < 1:
        raise ValueError(f"bim_linf: steps must be >= 1, got {steps}")
    return pgd_linf(model, x, y, eps=eps, step_size=eps / steps, steps=steps,
                    random_start=False, loss=loss)  # fmt: skip


def mim_linf(
    model: nn.Module, x: Tensor, y: Tensor, *, eps: float, steps: int = 10, decay: float = 1.0,
    step_size: float | None = None, loss: str | LossFn = "ce",
) -> Tensor:  # fmt: skip
    """MIM (Dong et al., Algorithm 1): g_{t+1} = μ·g_t + ∇_x L / ‖∇_x L‖₁ (per example),
    x_{t+1} = clip(x_t + α·sign(g_{t+1})), α = eps/steps unless `step_size` is given, μ = `decay`."""
    if eps < 0 or steps < 1 or decay < 0:
        raise ValueError(
            f"mim_linf: need eps >= 0, steps >= 1, decay >= 0; got {eps}, {steps}, {decay}"
        )
    alpha = eps / steps if step_size is None else step_size
    x = x.detach()
    lo, hi = (x - eps).clamp(min=0.0), (x + eps).clamp(max=1.0)
    g = torch.zeros_like(x)
    x_adv = x.clone()
    dims = tuple(range(1, x.dim()))
    with frozen(model):
        for _ in range(steps):
            x_adv.requires_grad_(True)
            (grad,) = torch.autograd.grad(attack_loss(model(x_adv), y, loss).sum(), x_adv)
            norm = grad.abs().sum(dim=dims, keepdim=True).clamp_min(1e-12)
            g = decay * g + grad / norm
            x_adv = torch.clamp(x_adv.detach() + alpha * g.sign(), lo, hi)
    return x_adv.detach()
