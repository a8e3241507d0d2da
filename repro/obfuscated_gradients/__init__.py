"""BPDA — Backward Pass Differentiable Approximation (Athalye, Carlini & Wagner, ICML 2018).

Paper: "Obfuscated Gradients Give a False Sense of Security: Circumventing Defenses to Adversarial
Examples", https://arxiv.org/abs/1802.00420 — Section 4.1 (BPDA); Defense-GAN is one of the
defenses of its Section 5 case study.
Reproduces: nothing on its own; it is the adaptive attack of `repro.defense_gan` (PGD whose
gradient passes through the projection x ↦ G(z*(x)) as if it were the identity).
Map:
  - Section 4.1: a defense f(g(x)) whose preprocessor g is non-differentiable (or whose gradient
    vanishes, as through Defense-GAN's 200 unrolled descent steps) is attacked by computing the
    forward pass with g and the backward pass with a differentiable ĝ ≈ g; with g(x) ≈ x the
    special case ĝ = identity gives ∇_x f(g(x)) ≈ ∇f(u)|_{u=g(x)}       -> `bpda`, `_BPDA`
  - the attacked model x ↦ f(g(x)) with BPDA gradients                   -> `BPDAWrapper`
  - the attack itself: any gradient attack on the wrapper     -> e.g. `repro.madry_pgd.pgd_linf`
    on `BPDAWrapper(project, classifier)`.
Deviations:
  - For Defense-GAN itself the paper's case study searches the generator's range for a
    misclassified G(z) close to x (an ℓ2 attack) instead of BPDA. We provide the identity-BPDA of
    Section 4.1 through the projection, the ℓ∞ adaptive attack that Defense-GAN's reproduction
    places beside the paper's white-box rows.
  - Expectation over Transformation (the paper's answer to randomised defenses) is not part of
    this module; a caller can average gradients over the projection's random restarts itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["BPDAWrapper", "bpda", "identity"]

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
