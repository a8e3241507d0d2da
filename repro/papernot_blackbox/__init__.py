"""Substitute-model black-box attack (Papernot, McDaniel, Goodfellow, Jha, Celik & Swami, AsiaCCS 2017).

Paper: "Practical Black-Box Attacks against Machine Learning", https://arxiv.org/abs/1602.02697 —
Algorithm 1 (substitute training with Jacobian-based dataset augmentation) and the attack that
crafts adversarial examples on the substitute and transfers them to the oracle.
Reproduces: nothing on its own; it is the black-box attack of Defense-GAN's Tables 1–3 (6 rounds,
λ = 0.1, 150 holdout images, FGSM ε = 0.3 on the substitute, oracle queried through the defense;
`repro.defense_gan`).
Map:
  - Algorithm 1, S₀ labelled by the oracle Õ: D ← {(x, Õ(x)) : x ∈ S_ρ}   -> `_query`
  - Algorithm 1, θ_F ← train(F, D)                                     -> `repro.train.train_classifier`
  - S_{ρ+1} ← {x + λ·sgn(J_F(x)[Õ(x)]) : x ∈ S_ρ} ∪ S_ρ               -> `jacobian_augmentation`
  - the paper's periodic step size λ_ρ = λ·(−1)^⌊ρ/τ⌋                    -> `tau` in `train_substitute`
  - the loop over substitute training epochs ρ = 0 … max_ρ − 1          -> `train_substitute`
  - craft adversarial examples on F, evaluate them on Õ                  -> `blackbox_attack`, `transfer`
Deviations:
  - The substitute keeps its weights from one round to the next (as the authors' cleverhans
    tutorial and Defense-GAN's `blackbox.py` do: `init_all=False`); Algorithm 1 can be read as
    retraining from scratch each round.
  - New points are clipped to `clip` ([0, 1] by default) so the oracle only ever sees valid images;
    the paper and cleverhans do not clip (pass `clip=None` for that).
  - `tau=None` (the default) is a constant λ, which is what Defense-GAN's code runs.
  - Defense-GAN's `blackbox.py` labels the 150 holdout images with their *true* labels and only the
    synthetic points with the oracle; the paper labels all of S₀ with the oracle, which is our
    default. Pass `y_holdout` to reproduce the code's protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn

from repro.env import forked_global_rng
from repro.train import Attack, frozen, train_classifier

__all__ = ["Oracle", "blackbox_attack", "jacobian_augmentation", "train_substitute", "transfer"]

Oracle = Callable[[Tensor], Tensor]


def _query(oracle: Oracle, x: Tensor) -> Tensor:
    """Õ(x): the oracle's labels, checked to be one integer label per input.

    Queried under `torch.no_grad()` (labels only); an oracle that needs autograd inside, such as
    Defense-GAN's projection (gradient descent on z), enables it itself.
    """
    with torch.no_grad():
        labels = oracle(x)
    if not isinstance(labels, Tensor) or labels.shape != (x.shape[0],):
        shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(
            f"papernot_blackbox: the oracle must return one label per input, shape "
            f"({x.shape[0]},); got {shape} (wrap a classifier as `lambda x: predict(model, x)`)"
        )
    if labels.is_floating_point() or labels.is_complex():
        raise ValueError(
            f"papernot_blackbox: the oracle returned {labels.dtype} labels, not integers"
        )
    return labels.to(device=x.device, dtype=torch.int64)


def jacobian_augmentation(
    substitute: nn.Module,
    x: Tensor,
    labels: Tensor,
    *,
    lam: float,
    clip: tuple[float, float] | None = (0.0, 1.0),
    jacobian_of: Literal["softmax", "logits"] = "softmax",
    batch_size: int = 1000,
) -> Tensor:
    """The new points x + λ·sgn(J_F(x)[label]) of Algorithm 1 (only the new half of S_{ρ+1}).

    J_F(x)[label] is the gradient of the substitute's output for the oracle's label: the direction
    in which F's decision for that class changes fastest, so the new points probe the oracle near
    its decision boundaries. The paper's F outputs probabilities (`jacobian_of="softmax"`, as
    Defense-GAN's models with their final softmax); later cleverhans versions use the logits.
    """
    if jacobian_of not in ("softmax", "logits"):
        raise ValueError(f"jacobian_of must be 'softmax' or 'logits', got {jacobian_of!r}")
    new = []
    with frozen(substitute):
        for start in range(0, x.shape[0], batch_size):
            xb = x[start : start + batch_size].detach().requires_grad_(True)
            out = substitute(xb)
            if jacobian_of == "softmax":
                out = out.softmax(dim=1)
            picked = out.gather(1, labels[start : start + batch_size, None]).sum()
            (grad,) = torch.autograd.grad(picked, xb)
            step = xb.detach() + lam * grad.sign()
            new.append(step.clamp(*clip) if clip is not None else step)
    return torch.cat(new) if new else x.detach().clone()


def train_substitute(
    oracle: Oracle,
    x_holdout: Tensor,
    *,
    make_model: Callable[[], nn.Module],
    rounds: int = 6,
    lam: float = 0.1,
    epochs: int,
    lr: float,
    batch_size: int,
    tau: int | None = None,
    y_holdout: Tensor | None = None,
    jacobian_of: Literal["softmax", "logits"] = "softmax",
    clip: tuple[float, float] | None = (0.0, 1.0),
    on_round: Callable[[int, nn.Module, Tensor, Tensor], None] | None = None,
    generator: torch.Generator | None = None,
    progress: bool = True,
) -> nn.Module:
    """Algorithm 1: train a substitute for `oracle` from a small holdout set and its label queries.

    Each round ρ trains the substitute on S_ρ labelled by the oracle, then (except after the last
    round) doubles the set with Jacobian-augmented points x + λ_ρ·sgn(J_F(x)[Õ(x)]) and asks the
    oracle for their labels. The oracle is only ever asked for labels — never gradients or scores —
    so it can be a defended classifier, e.g. Defense-GAN's projection followed by its classifier.
    `rounds=6` from 150 holdout images makes 150·2⁵ = 4,800 points and 4,650 queries (4,800 with the
    holdout's own labels).

    Args:
        oracle: x -> integer labels, one per input (it does its own batching; called under
            `torch.no_grad()`).
        x_holdout: the adversary's initial images S₀ (NCHW in [0, 1]).
        make_model: builds the substitute architecture (moved to `x_holdout`'s device).
        rounds: substitute training epochs ρ of Algorithm 1 (Defense-GAN: 6).
        lam: λ, the augmentation step (Defense-GAN: 0.1).
        epochs, lr, batch_size: training per round (Adam, `repro.train.train_classifier`).
        tau: period of the sign flip λ_ρ = λ·(−1)^⌊ρ/τ⌋; None keeps λ constant.
        y_holdout: labels for S₀ instead of querying the oracle (Defense-GAN's code uses the true
            labels here); the synthetic points are always labelled by the oracle.
        jacobian_of: differentiate the substitute's "softmax" output (the paper) or its "logits".
        clip: box for the synthetic points, or None for no clipping.
        on_round: called as on_round(ρ, substitute, x_sub, y_sub) after each round's training
            (e.g. to log the substitute's agreement with the oracle).
        generator: seeds the substitute's initial weights (`make_model` runs under a forked global
            RNG seeded from it) and shuffles the training batches.
        progress: show the training progress bars.

    Returns:
        The trained substitute, in eval mode.
    """
    if rounds < 1:
        raise ValueError(f"train_substitute: need rounds >= 1, got {rounds}")
    if tau is not None and tau < 1:
        raise ValueError(f"train_substitute: need tau >= 1 or None, got {tau}")
    if generator is None:
        substitute = make_model()
    else:  # the same generator gives the same initial weights, without touching the global RNG
        with forked_global_rng(generator):
            substitute = make_model()
    substitute = substitute.to(x_holdout.device)
    x_sub = x_holdout.detach()
    if y_holdout is None:
        y_sub = _query(oracle, x_sub)
    else:
        y_sub = y_holdout.detach().to(device=x_sub.device, dtype=torch.int64)
    for rho in range(rounds):
        train_classifier(
            substitute,
            x_sub,
            y_sub,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            generator=generator,
            desc=f"substitute round {rho + 1}/{rounds}",
            progress=progress,
        )
        if on_round is not None:
            on_round(rho, substitute, x_sub, y_sub)
        if rho == rounds - 1:
            break
        lam_rho = lam if tau is None else lam * (-1) ** (rho // tau)
        x_new = jacobian_augmentation(
            substitute, x_sub, y_sub, lam=lam_rho, clip=clip, jacobian_of=jacobian_of
        )
        x_sub = torch.cat([x_sub, x_new])
        y_sub = torch.cat([y_sub, _query(oracle, x_new)])
    return substitute.eval()


def blackbox_attack(substitute: nn.Module, x: Tensor, y: Tensor | None, attack: Attack) -> Tensor:
    """Craft adversarial examples on the substitute; they are then evaluated on the oracle.

    `attack(model, x, y) -> x_adv` is any white-box attack (e.g. FGSM with ε = 0.3). With `y=None`
    the substitute's own predictions are the labels, as cleverhans' FGSM does when called without
    labels (Defense-GAN's `blackbox.py`); the true labels may instead be given.
    """
    if y is None:
        with frozen(substitute), torch.no_grad():
            y = substitute(x).argmax(dim=1)
    return attack(substitute, x, y).detach()


def transfer(substitute: nn.Module, attack: Attack, *, use_labels: bool = True) -> Attack:
    """The transfer attack as an `attack(model, x, y)`: the target `model` is never looked at.

    For `repro.train.robust_accuracy(target, x, y, transfer(substitute, fgsm_eps))`, which crafts
    on the substitute and scores the target. `use_labels=False` crafts with the substitute's own
    predictions (see `blackbox_attack`).
    """

    def attack_through_substitute(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        del model  # black box: only the substitute's gradients are used
        return blackbox_attack(substitute, x, y if use_labels else None, attack)

    return attack_through_substitute
