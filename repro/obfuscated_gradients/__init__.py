"""BPDA, EOT and the latent-space attack (Athalye, Carlini & Wagner, ICML 2018).

Paper: "Obfuscated Gradients Give a False Sense of Security: Circumventing Defenses to Adversarial
Examples", https://arxiv.org/abs/1802.00420 — Section 4.1 (BPDA), Section 4.3 (EOT) and the
Defense-GAN case study of Section 5; EOT itself is Athalye, Engstrom, Ilyas & Kwok (ICML 2018).
Reproduces: nothing on its own; these are the adaptive attacks of `repro.defense_gan` (PGD whose
gradient passes through the projection x ↦ G(z*(x)) as if it were the identity, averaged over the
projection's random restarts, and the search for adversarial points on the generator's range).
Map:
  - Section 4.1: a defense f(g(x)) whose preprocessor g is non-differentiable (or whose gradient
    vanishes, as through Defense-GAN's 200 unrolled descent steps) is attacked by computing the
    forward pass with g and the backward pass with a differentiable ĝ ≈ g; with g(x) ≈ x the
    special case ĝ = identity gives ∇_x f(g(x)) ≈ ∇f(u)|_{u=g(x)}       -> `bpda`, `_BPDA`
  - the attacked model x ↦ f(g(x)) with BPDA gradients                   -> `BPDAWrapper`
  - the attack itself: any gradient attack on the wrapper     -> e.g. `repro.madry_pgd.pgd_linf`
    on `BPDAWrapper(project, classifier)`.
  - Section 4.3, EOT: for a randomised defense f_t, follow ∇ E_t[L(f_t(x))] estimated by the mean
    of the gradients of `samples` independent draws per step (the estimator is EOT's own, in
    its paper's folder: `repro.eot.eot_loss_and_grad`); keep per example the best iterate
                                                                         -> `eot_pgd_linf`
  - Section 5 (Defense-GAN): adversarial examples on the generator's range: from the inversion
    z_0 of x, minimise ||G(z) - x||^2 + c max(Z_y - max_{i != y} Z_i, -kappa) over z (their
    `l2_attack` on G, CW's objective); x' = G(z) is classified wrong and is its own projection
                                                                         -> `latent_cw_l2`
Deviations:
  - `latent_cw_l2` runs Adam on z with a fixed c per binary-search step (CW's search over c, as
    `repro.carlini_wagner.cw_l2`), from the caller's inversion z_0; Athalye et al. invert with
    their CW code at c = 0 (3,000 steps) and then attack one image at a time (30,000 steps,
    5 values of c). The sizes are the caller's.
  - `eot_pgd_linf` judges "best" on an optional deterministic `judge` (e.g. the deployed defense
    with the random starts the white-box attacker is given), else on the EOT loss.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro.eot import eot_loss_and_grad
from repro.train import frozen

__all__ = ["BPDAWrapper", "bpda", "eot_pgd_linf", "identity", "latent_cw_l2"]

Preprocess = Callable[[Tensor], Tensor]


def identity(x: Tensor) -> Tensor:
    """The default backward approximation ĝ(x) = x: the gradient passes through unchanged."""
    return x


class _BPDA(torch.autograd.Function):
    """Forward: g(x) without a graph. Backward: the vector–Jacobian product of ĝ at x."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: Tensor, forward: Preprocess, backward_approx: Preprocess
    ) -> Tensor:
        with torch.no_grad():
            out = forward(x)
        if not isinstance(out, Tensor):
            raise TypeError(
                f"bpda: the forward function returned {type(out).__name__}, not a Tensor"
            )
        if backward_approx is identity and out.shape != x.shape:
            raise ValueError(
                f"bpda: the preprocessor maps {tuple(x.shape)} to {tuple(out.shape)}; an identity "
                "backward pass needs the shapes to agree"
            )
        ctx.backward_approx = backward_approx
        ctx.save_for_backward(x)
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, None, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        approx = ctx.backward_approx
        if approx is identity:  # the common case, without building a graph
            return grad_out, None, None
        with torch.enable_grad():
            leaf = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(approx(leaf), leaf, grad_out)
        return grad, None, None


def bpda(forward: Preprocess, backward_approx: Preprocess = identity) -> Preprocess:
    """`forward` on the forward pass, the gradient of `backward_approx` on the backward pass.

    `forward` (e.g. Defense-GAN's projection, a quantiser, JPEG) runs under `torch.no_grad()`, so
    its own graph — vanishing, shattered, or just expensive — is never built or used (a
    preprocessor that differentiates internally, as the projection does with respect to z, enables
    grad mode itself). `forward` should be deterministic or its randomness fixed by the caller:
    the gradient is that of the forward pass that was actually run. The returned
    function is differentiable in x: the backward pass evaluates the vector–Jacobian product of
    `backward_approx` at x (for the default identity: the incoming gradient, unchanged).
    """

    def apply(x: Tensor) -> Tensor:
        return _BPDA.apply(x, forward, backward_approx)

    return apply


class BPDAWrapper(nn.Module):
    """classifier(preprocess(x)), with BPDA gradients through `preprocess`.

    The input gradient of the wrapper at x is the classifier's input gradient at preprocess(x),
    pulled back through `backward_approx` (identity by default): what Athalye et al. use to attack
    input-purification defenses. Modules passed as `preprocess` or `classifier` are registered
    as submodules, so `.eval()` and `.requires_grad_(False)` reach them.
    """

    def __init__(
        self,
        preprocess: Preprocess,
        classifier: nn.Module,
        backward_approx: Preprocess = identity,
    ) -> None:
        super().__init__()
        self.preprocess = preprocess
        self.classifier = classifier
        self.backward_approx = backward_approx

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(bpda(self.preprocess, self.backward_approx)(x))


def _uniform_ball(x: Tensor, eps: float, generator: torch.Generator | None) -> Tensor:
    device = generator.device if generator is not None else x.device
    u = torch.rand(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)
    return (x + eps * (2.0 * u - 1.0)).clamp(0.0, 1.0)


def eot_pgd_linf(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    step_size: float,
    steps: int,
    samples: int = 1,
    restarts: int = 1,
    random_start: bool = True,
    judge: nn.Module | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """l_inf PGD with Expectation over Transformation on a randomised `model`, best iterate kept.

    `model(x)` may draw fresh randomness at every call (Defense-GAN's random restarts through
    BPDA: `DefenseGAN.bpda_view(fresh=True)`). Each step averages the input gradient of the
    cross-entropy over `samples` calls (the gradient of the expected loss, EOT) and takes
    x <- clip(x + step_size sign(g), [x - eps, x + eps] ∩ [0, 1]), from a uniform random start
    (or x). Per example the returned point is the best iterate over all steps and `restarts`:
    the first one `judge` misclassifies (a deterministic model: e.g. the defense with the random
    starts the attacker knows), otherwise the one with the highest EOT loss (also the criterion
    when `judge` is None). Every iterate x_0 ... x_T is scored. An example the judge has seen
    misclassified is done: later steps and restarts run on the others only, so the models must
    treat examples independently (eval mode; a projection per image). Returns a detached tensor
    like `x`; the models are left as they were.
    """
    if eps < 0 or step_size < 0 or steps < 0:
        raise ValueError(f"eot_pgd_linf: eps, step_size, steps must be >= 0, got {eps}, "
                         f"{step_size}, {steps}")  # fmt: skip
    if samples < 1 or restarts < 1:
        raise ValueError(f"eot_pgd_linf: need samples, restarts >= 1, got {samples}, {restarts}")
    if restarts > 1 and not random_start:
        raise ValueError("eot_pgd_linf: restarts > 1 needs random_start=True")
    x = x.detach()
    n = x.shape[0]
    if n == 0:
        return x.clone()
    lo, hi = (x - eps).clamp(min=0.0), (x + eps).clamp(max=1.0)
    best = x.clone()
    best_loss = torch.full((n,), -float("inf"), device=x.device, dtype=x.dtype)
    fooled = torch.zeros(n, dtype=torch.bool, device=x.device)
    judged = judge if judge is not None else nn.Identity()
    with frozen(model), frozen(judged):
        for _ in range(restarts):
            # Examples the judge has already seen misclassified are done: later restarts, and
            # later steps of this one, run on the others only (the model is per-example).
            idx = (~fooled).nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            xs, ys = x[idx], y[idx]
            x_adv = _uniform_ball(xs, eps, generator) if random_start else xs.clone()
            for step in range(steps + 1):
                loss, grad = eot_loss_and_grad(
                    lambda v, ys=ys: F.cross_entropy(model(v), ys, reduction="none"), x_adv, samples
                )
                if judge is not None:
                    with torch.no_grad():
                        wrong = judge(x_adv).argmax(dim=1) != ys
                else:
                    wrong = torch.zeros_like(ys, dtype=torch.bool)
                take = wrong | (loss > best_loss[idx])
                shape = (idx.numel(),) + (1,) * (x.dim() - 1)
                best[idx] = torch.where(take.view(shape), x_adv, best[idx])
                best_loss[idx] = torch.where(take, loss, best_loss[idx])
                fooled[idx] |= wrong
                keep = ~wrong
                if step == steps or not bool(keep.any()):
                    break
                idx, xs, ys, x_adv, grad = idx[keep], xs[keep], ys[keep], x_adv[keep], grad[keep]
                x_adv = torch.clamp(x_adv + step_size * grad.sign(), lo[idx], hi[idx]).detach()
    return best.detach()


def latent_cw_l2(
    generator: nn.Module,
    classifier: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    z_init: Tensor,
    c: float,
    steps: int,
    lr: float,
    binary_search_steps: int = 1,
    confidence: float = 0.0,
) -> Tensor:
    """Athalye et al.'s attack on Defense-GAN: a misclassified point G(z) of the generator's range
    close to x, found by Carlini-Wagner's objective in latent space.

    From `z_init` (N, k), the inversion of x (e.g. the latent of Defense-GAN's own projection),
    Adam (`lr`) minimises ||G(z) - x||_2^2 + c max(Z_y - max_{i != y} Z_i, -kappa) over z for
    `steps` steps, for each of `binary_search_steps` values of c (per example: bisected towards
    the largest failing c after a success, x10 after a failure, as CW's search). Per example the
    successful G(z) (classifier wrong by more than kappa) with the smallest squared L2 distance to
    x is returned; where none succeeded, x itself. A perfect projection maps such a G(z) to itself,
    so the defense classifies it as the bare classifier does; an imperfect one (random restarts,
    L steps) may not, which is what Athalye et al.'s 55 % measures.
    """
    if steps < 0 or binary_search_steps < 1 or c <= 0 or lr <= 0:
        raise ValueError(f"latent_cw_l2: need steps >= 0, binary_search_steps >= 1, c > 0 and "
                         f"lr > 0, got {steps}, {binary_search_steps}, {c}, {lr}")  # fmt: skip
    x = x.detach()
    n = x.shape[0]
    if z_init.shape[0] != n:
        raise ValueError(f"latent_cw_l2: z_init has {z_init.shape[0]} rows for {n} images")
    shape = (n,) + (1,) * (x.dim() - 1)
    const = torch.full((n,), float(c), device=x.device)
    lower = torch.zeros(n, device=x.device)
    upper = torch.full((n,), float("inf"), device=x.device)
    best_l2 = torch.full((n,), float("inf"), device=x.device)
    best = x.clone()
    with frozen(generator), frozen(classifier):
        for _ in range(binary_search_steps):
            z = z_init.detach().clone().to(x.device).requires_grad_(True)
            optimizer = torch.optim.Adam([z], lr=lr)
            found = torch.zeros(n, dtype=torch.bool, device=x.device)
            for step in range(steps + 1):
                image = generator(z).view_as(x)
                logits = classifier(image)
                real = logits.gather(1, y[:, None]).squeeze(1)
                other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), -float("inf"))
                margin = real - other.amax(dim=1)
                l2 = (image - x).pow(2).flatten(1).sum(dim=1)
                success = (margin < -confidence).detach()
                better = success & (l2.detach() < best_l2)
                best_l2 = torch.where(better, l2.detach(), best_l2)
                best = torch.where(better.view(shape), image.detach(), best)
                found |= success
                if step == steps:
                    break
                loss = (l2 + const * margin.clamp(min=-confidence)).sum()
                optimizer.zero_grad(set_to_none=True)
                (z.grad,) = torch.autograd.grad(loss, z)
                optimizer.step()
            upper = torch.where(found, torch.minimum(upper, const), upper)
            lower = torch.where(found, lower, torch.maximum(lower, const))
            const = torch.where(upper < float("inf"), (lower + upper) / 2, const * 10)
    return best.clamp(0.0, 1.0).detach()
