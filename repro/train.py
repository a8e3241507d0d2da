"""The training and evaluation loops every reproduction uses (instead of a copied loop per paper).

Data are whole tensors on the device (`repro.data`); a batch is `x[idx]` for a slice of a seeded
permutation, so there is no DataLoader, no worker process, and the batch order depends only on the
generator. Inner loops do not call `.item()` (no host synchronisation per step): losses are summed on
the device and read once per epoch.

Adversarial training: `adversary(model, x, y) -> x_adv` is called on every batch and the loss is
`(1 - adv_weight) * CE(model(x), y) + adv_weight * CE(model(x_adv), y)` (Goodfellow et al.'s
J~ with alpha = 1 - adv_weight; Madry et al.'s PGD training is `adv_weight=1`). The adversary is
called with the model in eval mode (no dropout noise in its gradients, no batch-norm statistics
updated by its forward passes) and training mode is restored for the loss.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro import ReproError
from repro.env import progress_bar

__all__ = [
    "Attack",
    "Objective",
    "accuracy",
    "frozen",
    "predict",
    "robust_accuracy",
    "train_classifier",
]

#: `attack(model, x, y) -> x_adv`: the type of every attack and adversary in the repository (the
#: attacks' own settings are bound with `functools.partial`).
Attack = Callable[[nn.Module, Tensor, Tensor], Tensor]
#: `objective(model, x, y) -> loss`: a batch's training loss other than cross-entropy.
Objective = Callable[[nn.Module, Tensor, Tensor], Tensor]


def _optimizer(
    model: nn.Module, optimizer: str | torch.optim.Optimizer, lr: float
) -> torch.optim.Optimizer:
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "adam":
        return torch.optim.Adam(params, lr=lr)
    if optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    raise ReproError(f"optimizer {optimizer!r}: use 'adam', 'sgd' or a torch.optim.Optimizer")


def train_classifier(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    optimizer: str | torch.optim.Optimizer = "adam",
    adversary: Attack | None = None,
    adv_weight: float = 0.5,
    generator: torch.Generator | None = None,
    desc: str = "train",
    progress: bool = True,
    objective: Objective | None = None,
    lr_schedule: Callable[[int], float] | None = None,
) -> list[float]:
    """Train `model` with cross-entropy on `(x, y)`; return the mean loss of each epoch.

    `optimizer`: `"adam"`, `"sgd"` (momentum 0.9), or a ready `torch.optim.Optimizer` (then `lr`
    is ignored). `generator` (a CPU generator, e.g. from `repro.env.seed_everything`) fixes the
    batch order; the last, smaller batch of an epoch is kept. The model's train/eval mode is
    restored at the end.

    `objective(model, x, y) -> loss` replaces the loss of a batch (TRADES, the papers' own
    regularisers: they live in their folders); it is called in training mode, and an attack it
    runs inside should run under `frozen(model)` (eval mode, as `adversary` is run). It cannot
    be combined with `adversary`. `lr_schedule(epoch) -> factor` multiplies the learning rate
    during each epoch (torch's `LambdaLR`, stepped after every epoch), e.g. a piecewise-constant
    decay.
    """
    if objective is not None and adversary is not None:
        raise ReproError(f"{desc}: give an objective or an adversary, not both")
    if epochs < 0 or batch_size <= 0:
        raise ReproError(f"{desc}: epochs must be >= 0 and batch_size > 0")
    if not 0.0 <= adv_weight <= 1.0:
        raise ReproError(f"{desc}: adv_weight {adv_weight} is not in [0, 1]")
    if x.shape[0] != y.shape[0]:
        raise ReproError(f"{desc}: {x.shape[0]} inputs but {y.shape[0]} labels")
    n = int(x.shape[0])
    opt = _optimizer(model, optimizer, lr)
    scheduler = None if lr_schedule is None else torch.optim.lr_scheduler.LambdaLR(opt, lr_schedule)
    steps = (n + batch_size - 1) // batch_size
    was_training = model.training
    clean_weight = 1.0 if adversary is None else 1.0 - adv_weight
    losses: list[float] = []
    bar = progress_bar(total=epochs * steps, desc=desc, enabled=progress, unit="step")
    try:
        for epoch in range(epochs):
            order = torch.randperm(n, generator=generator).to(x.device)
            total = torch.zeros((), device=x.device)
            model.train()
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                xb, yb = x[idx], y[idx]
                loss = torch.zeros((), device=x.device)
                if objective is not None:
                    loss = objective(model, xb, yb)
                elif adversary is not None and adv_weight > 0:
                    model.eval()
                    x_adv = adversary(model, xb, yb).detach()
                    model.train()
                    loss = loss + adv_weight * F.cross_entropy(model(x_adv), yb)
                if objective is None and clean_weight > 0:
                    loss = loss + clean_weight * F.cross_entropy(model(xb), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.detach() * yb.shape[0]
                bar.update(1)
            losses.append(float(total) / n)
            if scheduler is not None:
                scheduler.step()
            bar.set_postfix(epoch=epoch + 1, loss=f"{losses[-1]:.4f}", refresh=False)
    finally:
        bar.close()
        model.train(was_training)
    return losses


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, *, batch_size: int = 1000) -> Tensor:
    """Predicted labels (int64, on `x`'s device), in eval mode; the model's mode is restored."""
    was_training = model.training
    model.eval()
    try:
        out = [model(x[i : i + batch_size]).argmax(dim=1) for i in range(0, x.shape[0], batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long, device=x.device)


def accuracy(model: nn.Module, x: Tensor, y: Tensor, *, batch_size: int = 1000) -> float:
    """Fraction of `x` classified as `y`, in [0, 1]."""
    if x.shape[0] == 0:
        raise ReproError("accuracy of an empty set")
    return float((predict(model, x, batch_size=batch_size) == y).float().mean())


def robust_accuracy(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    attack: Attack,
    *,
    batch_size: int = 500,
    require_clean: bool = True,
    desc: str = "attack",
    progress: bool = True,
) -> float:
    """Accuracy under `attack(model, x, y) -> x_adv`, in [0, 1], batch by batch.

    With `require_clean=True` (the default) an example counts only when the model is right on both
    `x` and `x_adv`, the worst case over the two, as RobustBench/AutoAttack count it: robust
    accuracy can then never exceed clean accuracy, whatever the attack does (single-step attacks can
    otherwise turn a wrong prediction right, e.g. FGSM "label leaking"). `require_clean=False` is the
    plain accuracy on `x_adv`, which is what some papers print ("error rate on adversarial
    examples"); use it for those rows and say so.
    """
    if x.shape[0] == 0:
        raise ReproError("robust accuracy of an empty set")
    correct = torch.zeros((), dtype=torch.long, device=y.device)
    steps = (x.shape[0] + batch_size - 1) // batch_size
    with progress_bar(total=steps, desc=desc, enabled=progress, unit="batch") as bar:
        for i in range(0, x.shape[0], batch_size):
            xb, yb = x[i : i + batch_size], y[i : i + batch_size]
            x_adv = attack(model, xb, yb)
            ok = predict(model, x_adv, batch_size=batch_size) == yb
            if require_clean:
                ok &= predict(model, xb, batch_size=batch_size) == yb
            correct += ok.sum()
            bar.update(1)
    return float(correct) / x.shape[0]


@contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Put `model` in eval mode with frozen parameters, with gradients enabled; restore on exit.

    An attack needs input gradients only: evaluating in eval mode makes it deterministic (no
    dropout noise, so the same seed gives the same adversarial example), and freezing the
    parameters stops autograd from keeping what it would need for weight gradients. Every
    module's own training flag and every parameter's own `requires_grad` are restored, so an
    attack called from inside a training step leaves the model exactly as it found it.
    """
    modes = [(module, module.training) for module in model.modules()]
    flags = [(param, param.requires_grad) for param in model.parameters()]
    model.eval()
    for param, _ in flags:
        param.requires_grad_(False)
    try:
        with torch.enable_grad():
            yield model
    finally:
        for module, mode in modes:
            module.training = mode
        for param, flag in flags:
            param.requires_grad_(flag)
