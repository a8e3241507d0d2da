"""Learning with a strong adversary (Huang, Xu, Schuurmans & Szepesvári, arXiv 2015/2016).

Paper: "Learning with a Strong Adversary", https://arxiv.org/abs/1511.03034 (no official code).
Reproduces: Table 2 (two-hidden-layer MLPs on MNIST, ℓ2 perturbations of size c = 1.5: the
accuracy of Normal, Dropout, Goodfellow's method, LWA and LWA_Rep on the Adv_Loss, Adv_Alpha and
Adv_Loss_Sign sets generated against each model, and on a fixed Adv_Loss set generated from
Normal) on MNIST-8k (the MNIST test set split 8,000 / 2,000; the training split is not here) and
Fashion-MNIST; the text's comparison of the three perturbations (Fig. 1) on those MLPs.

Map from the paper to the code:
- Section 2, Proposition 1 / Algorithm 1 (perturbation from the softmax output α = g(x) and its
  Jacobian H; for each j ≠ y, the least ℓ2 norm with ĝ(x + r)_j ≥ ĝ(x + r)_y under the linear
  approximation ĝ(x + r) = g(x) + H r is β_j = (α_y − α_j) / ‖H_j − H_y‖₂, reached along
  H_j − H_y; I = argmin_j β_j; the perturbation is rescaled to norm c, Section 3.2)
  -> `adv_alpha` ("Adv_Alpha")
- Section 3.1, likelihood loss ℓ = h(α_y), h decreasing: r* = argmin_{‖r‖ ≤ c} ⟨∇α_y, r⟩, i.e.
  along the loss gradient: ℓ2 -> r* = c · ∇ℓ / ‖∇ℓ‖₂                           -> `adv_loss`
  ("Adv_Loss"); ℓ∞ -> the sign of ∇ℓ ("exactly the method of Goodfellow et al.") -> `adv_loss_sign`
  ("Adv_Loss_Sign"), scaled to the same ℓ2 size c as the others (Table 1 and Fig. 1 compare all
  three at one ℓ2 magnitude)
- Section 3, Eq. (min_g Σ_i max_{‖r⁽ⁱ⁾‖ ≤ c} ℓ(g(x_i + r⁽ⁱ⁾), y_i)) with Proposition 2 (the
  gradient of the inner max is the loss's gradient at x_i + r*, r* held fixed) and Algorithm 2
  (per minibatch: r* in closed form, then an SGD step on the perturbed loss only)
  -> `repro.train.train_classifier(..., adversary=adv_loss_adversary(c), adv_weight=1)` ("LWA")
- Section 3 ("x_i could be the raw data or the output of N_rep"): the same min-max with the
  perturbation added to the representation layer (the first hidden layer's output), r* from the
  loss gradient with respect to the representation                              -> `lwa_rep_objective`
  ("LWA_Rep")
- Goodfellow et al. (2015)'s objective α J(x) + (1 − α) J(x + ε sign ∇J), α = .5
  -> `goodfellow_adversary` with `repro.train.train_classifier(..., adv_weight=0.5)`
- Section 4.2's "n × m" two-hidden-layer networks (Normal 100×100, Dropout 200×200, Goodfellow
  500×500, LWA 500×500, LWA_Rep 200×500)                                -> `TwoLayerMLP`, `MODELS`
- Choosing c for Fashion-MNIST on a validation split (ours)                        -> `choose_c`

Deviations:
- Pixels are x / 255 (the toolkit's) where the paper divides by 256 (a 0.4 % rescaling).
- No clipping to [0, 1] by default (`clip=False`): the paper mentions none, and its perturbation
  sizes are exact ℓ2 norms; `clip=True` clamps after the step (then the norm is at most c).
- Adv_Loss_Sign is the sign direction rescaled to ℓ2 norm c (ℓ∞ size c / √d for a gradient with
  no zero entry: 0.054 on 28 × 28 at c = 1.5). The paper's text calls it the ℓ∞ version of
  Adv_Loss but compares it with the others at the same ℓ2 magnitude (Table 1's caption, Fig. 1);
  an unscaled c · sign(g) at c = 1.5 would move every pixel by more than the pixel range.
- Adv_Alpha on an example the model already misclassifies: the paper assumes N(x) = y; we apply
  Algorithm 1 as written (some β_j < 0 then, and the argmin picks the most negative one).
- The paper's optimiser, epochs, activation and dropout rate are not given: Adam 1e-3, ReLU,
  dropout 0.5 on both hidden layers (the Dropout model only), batch 128; epochs per scale.
- Goodfellow's method: ε = 0.25 on MNIST (Goodfellow et al.'s MNIST value; Huang et al. do not
  give theirs), unclipped; on Fashion-MNIST ε is scaled by the same factor as c (0.25 · c / 1.5).
- LWA_Rep perturbs the 200-unit first hidden layer after its ReLU, at the same c (the paper does
  not say where the split is for the MLP or which c it used there).
- MNIST: 8,000 training images (the test set's first 8,000; the paper trains on 50,000) and 2,000
  test images; Fashion-MNIST: `n_train` of its training split, c chosen on a validation split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro.fgsm import fgsm, input_gradient
from repro.train import Attack, Objective, frozen

__all__ = [
    "MODELS",
    "ModelSpec",
    "TwoLayerMLP",
    "adv_alpha",
    "adv_loss",
    "adv_loss_adversary",
    "adv_loss_sign",
    "choose_c",
    "goodfellow_adversary",
    "l2_direction",
    "lwa_rep_objective",
    "softmax_jacobian",
]

PAPER_C = 1.5  # ℓ2 size of every perturbation on MNIST (Section 4.2)
GOODFELLOW_EPS = 0.25  # Goodfellow et al.'s MNIST eps (Huang et al. do not give theirs)


# --------------------------------------------------------------------------- the networks


class TwoLayerMLP(nn.Module):
    """784 -> h1 -> h2 -> 10, ReLU; dropout (p) after each hidden layer when p > 0.

    `representation(x)` is the first hidden layer's output (LWA_Rep's N_rep) and `head(h)` the
    rest of the network, so that `model(x) == model.head(model.representation(x))`.
    """

    def __init__(self, h1: int, h2: int, *, dropout: float = 0.0, in_features: int = 784) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, h1)
        self.fc2 = nn.Linear(h1, h2)
        self.fc3 = nn.Linear(h2, 10)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def representation(self, x: Tensor) -> Tensor:
        return self.drop(F.relu(self.fc1(x.flatten(1))))

    def head(self, h: Tensor) -> Tensor:
        return self.fc3(self.drop(F.relu(self.fc2(h))))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.representation(x))


@dataclass(frozen=True)
class ModelSpec:
    """One of Table 2's five models: widths, dropout and training method."""

    name: str
    h1: int
    h2: int
    method: str  # "normal" | "goodfellow" | "lwa" | "lwa_rep"
    dropout: float = 0.0


#: Table 2's models, in the paper's order.
MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("normal", 100, 100, "normal"),
    ModelSpec("dropout", 200, 200, "normal", dropout=0.5),
    ModelSpec("goodfellow", 500, 500, "goodfellow"),
    ModelSpec("lwa", 500, 500, "lwa"),
    ModelSpec("lwa_rep", 200, 500, "lwa_rep"),
)


# --------------------------------------------------------------------------- the perturbations


def l2_direction(v: Tensor) -> Tensor:
    """Each example's v / ‖v‖₂ (over all but the batch dimension); 0 where v is 0."""
    norms = v.flatten(1).norm(dim=1).clamp_min(1e-12)
    return v / norms.view(-1, *([1] * (v.dim() - 1)))


def _finish(x: Tensor, r: Tensor, clip: bool) -> Tensor:
    x_adv = x.detach() + r
    return (x_adv.clamp(0.0, 1.0) if clip else x_adv).detach()


def adv_loss(model: nn.Module, x: Tensor, y: Tensor, *, c: float, clip: bool = False) -> Tensor:
    """Adv_Loss (Section 3.1, ℓ2): x + c · ∇ₓℓ / ‖∇ₓℓ‖₂, ℓ the cross-entropy.

    Every perturbation has ℓ2 norm exactly c (unclipped; a zero gradient gives no perturbation).
    Returns a detached tensor of x's shape; the model is left as it was.
    """
    if c < 0:
        raise ValueError(f"adv_loss: c must be >= 0, got {c}")
    return _finish(x, c * l2_direction(input_gradient(model, x, y)), clip)


def adv_loss_sign(
    model: nn.Module, x: Tensor, y: Tensor, *, c: float, clip: bool = False
) -> Tensor:
    """Adv_Loss_Sign (Section 3.1, the ℓ∞ case: Goodfellow et al.'s sign direction) at ℓ2 size c:
    x + c · sign(∇ₓℓ) / ‖sign(∇ₓℓ)‖₂ (ℓ∞ size c / √(non-zero entries))."""
    if c < 0:
        raise ValueError(f"adv_loss_sign: c must be >= 0, got {c}")
    return _finish(x, c * l2_direction(input_gradient(model, x, y).sign()), clip)


def softmax_jacobian(model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """α = softmax(model(x)) (n, K) and its Jacobian H = ∂α/∂x, (n, K, *x.shape[1:]).

    K backward passes over the whole batch (the paper: "K times more expensive" than Adv_Loss).
    """
    with frozen(model):
        x_in = x.detach().clone().requires_grad_(True)
        alpha = F.softmax(model(x_in), dim=1)
        rows = [
            torch.autograd.grad(alpha[:, k].sum(), x_in, retain_graph=k < alpha.shape[1] - 1)[0]
            for k in range(alpha.shape[1])
        ]
    return alpha.detach(), torch.stack(rows, dim=1)


def adv_alpha(model: nn.Module, x: Tensor, y: Tensor, *, c: float, clip: bool = False) -> Tensor:
    """Adv_Alpha (Section 2, Proposition 1 and Algorithm 1, ℓ2; rescaled to size c, Section 3.2).

    With α = g(x) and H = ∂g/∂x: for each j ≠ y, D_j = H_j − H_y and β_j = (α_y − α_j) / ‖D_j‖₂
    (the least ℓ2 norm that makes the linearised α_j reach α_y); I = argmin_j β_j; the
    perturbation is c · D_I / ‖D_I‖₂.
    """
    if c < 0:
        raise ValueError(f"adv_alpha: c must be >= 0, got {c}")
    alpha, jac = softmax_jacobian(model, x)
    n = alpha.shape[0]
    flat = jac.flatten(2)  # (n, K, d)
    idx = torch.arange(n, device=x.device)
    diff = flat - flat[idx, y].unsqueeze(1)  # D_j = H_j - H_y
    gap = alpha[idx, y].unsqueeze(1) - alpha  # α_y - α_j
    beta = gap / diff.norm(dim=2).clamp_min(1e-12)
    beta[idx, y] = float("inf")
    target = beta.argmin(dim=1)
    direction = l2_direction(diff[idx, target]).view_as(x)
    return _finish(x, c * direction, clip)


# --------------------------------------------------------------------------- the training methods


def adv_loss_adversary(c: float) -> Attack:
    """LWA's inner maximisation in closed form (Adv_Loss at c), as a `train_classifier`
    adversary; with `adv_weight=1` the step is Algorithm 2's (the perturbed loss only)."""
    return partial(adv_loss, c=c)


def goodfellow_adversary(eps: float) -> Attack:
    """Goodfellow et al.'s adversary (FGSM, unclipped as in their paper); with
    `adv_weight=0.5` the loss is their J~ with α = .5."""
    return partial(fgsm, eps=eps, clip=None)


def lwa_rep_objective(c: float) -> Objective:
    """LWA_Rep: the min-max at the representation layer, for `train_classifier(objective=...)`.

    h = N_rep(x) (the first hidden layer, dropout off while r* is found); r* = c · ∇ₕℓ / ‖∇ₕℓ‖₂,
    held fixed (Proposition 2); the loss is ℓ(head(h + r*), y), averaged, with gradients flowing
    into both the head and N_rep.
    """

    def objective(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        net = model  # a TwoLayerMLP (or anything with representation / head)
        with frozen(net):
            h0 = net.representation(x).detach().requires_grad_(True)  # type: ignore[operator]
            loss = F.cross_entropy(net.head(h0), y, reduction="sum")  # type: ignore[operator]
            (grad,) = torch.autograd.grad(loss, h0)
        r = (c * l2_direction(grad)).detach()
        h = net.representation(x)  # type: ignore[operator]
        return F.cross_entropy(net.head(h + r), y)  # type: ignore[operator]

    return objective


# --------------------------------------------------------------------------- choosing c


def choose_c(
    accuracy_at: Callable[[float], float], grid: tuple[float, ...], *, broken_below: float
) -> tuple[float, dict[float, float]]:
    """The smallest c of `grid` (ascending) at which `accuracy_at(c)` (the Normal model's
    accuracy on a validation split under Adv_Loss at c, in percent) is at most `broken_below`:
    the size that leaves Normal nearly no accuracy, as c = 1.5 does on MNIST in Table 2 ("the
    normal method can not afford any perturbation"). The largest c if none does. Returns the
    chosen c and every accuracy measured."""
    measured: dict[float, float] = {}
    for c in sorted(grid):
        measured[c] = accuracy_at(c)
        if measured[c] <= broken_below:
            return c, measured
    return max(grid), measured
