"""Learnable Boundary Guided Adversarial Training (Cui et al., ICCV 2021).

Paper: "Learnable Boundary Guided Adversarial Training", Jiequan Cui, Shu Liu, Liwei Wang, Jiaya
Jia, ICCV 2021, pp. 15721-15730, https://arxiv.org/abs/2011.11164 (catalog key
`2021_Cui_J_p-iccv_lbgat`). Official code: github.com/dvlab-research/LBGAT (`lbgat.py`,
`train_lbgat_cifar100.py`), read at HEAD f7f33f0, never copied.

Reproduces: the shape of the repository README's AutoAttack table (natural / AutoAttack accuracy
of LBGAT0, LBGAT (β = 6), TRADES (β = 6) and PGD-AT, WRN-34-10 on CIFAR-10/100, ε = 0.031) on a
Fashion-MNIST analogue (ε = 0.1, `repro.baselines.SmallCNN`). The CIFAR rows of `expected.csv`
are not run (no CIFAR here, and WRN-34-10 is out of reach of a CPU).

The method. A robust model f_rob and a natural model f_nat are trained *together*, in one
optimizer; f_nat sees only clean images and learns the labels, f_rob's logits on adversarial
images are pulled onto f_nat's logits on the clean ones (the "learnable boundary": f_nat's
decision boundary guides f_rob's, and, the MSE term being differentiated in both networks, f_rob
pulls f_nat back in turn). Per batch, as the official `lbgat_loss` computes it:

    x'   = argmax_{‖x'−x‖∞≤ε} KL(f_rob(x) ‖ f_rob(x'))     TRADES's inner maximisation: `steps`
           signed-gradient steps of `step_size` on the summed KL, from x + 0.001·N(0, I),
           projected onto the ε-ball and [0, 1], f_rob in eval mode
    loss = MSE(f_rob(x'), f_nat(x)) + CE(f_nat(x), y) + β · KL(f_rob(x) ‖ f_rob(x')) / N

MSE is `nn.MSELoss()`'s mean over the N × C logits, CE the batch mean, the KL summed over the
batch and divided by N (the code's `criterion_kl(log_softmax(out_adv), softmax(out_natural))`,
i.e. the clean distribution first, as in TRADES). LBGAT0 is β = 0 (f_rob then has no loss of its
own on the labels: everything it learns comes through f_nat); LBGAT is β = 6.

Map from the paper (and its official code) to this module:
- the pair (f_rob, f_nat), trained jointly, forward = f_rob (so every evaluation attacks the
  robust model) -> `LBGATPair`, built by `lbgat_pair`; f_nat smaller than f_rob (the paper's
  ResNet-18 beside WRN-34-10, about 0.24 of its parameters) -> `natural_cnn`
- the inner maximisation (TRADES's, `lbgat_loss`'s loop) -> `repro.baselines.trades_adversary`
  (the shared TRADES baseline's own, so LBGAT and TRADES are attacked by one computation)
- the outer loss above -> `lbgat_loss`; as a `repro.train.train_classifier` objective (the
  attack, then the loss, per batch) -> `lbgat_objective`
- the paper's evaluation, AutoAttack (standard) at ε, run by the project's one battery, whose
  `autoattack` column it is (marked as the paper's attack, so the gap to the worst case is
  recorded without a second run) -> `evaluate_as_paper`
- the per-epoch cost of a training objective beside PGD-AT's and TRADES's, measured on the same
  batches in one process -> `seconds_per_epoch`
- what this paper takes from madry_pgd (repro.toml `uses`): PGD-AT's adversary in the cost
  comparison -> `repro.madry_pgd.pgd_linf`; PGD-AT and TRADES themselves are the shared
  baselines -> `repro.baselines.baseline`, every model evaluated by `repro.robust_eval.evaluate`

Deviations (each also in README.md, with why):
- Fashion-MNIST at ε = 0.1 instead of CIFAR-10/100 at ε = 0.031 (no CIFAR here); f_rob is the
  shared baselines' `SmallCNN` (width 32, 421k parameters) instead of WRN-34-10, f_nat a
  `SmallCNN` of width 8 (103k parameters, 0.245 of f_rob's: the ResNet-18 / WRN-34-10 ratio is
  0.242) instead of ResNet-18.
- Training recipe of the shared baselines (Adam 1e-3, batch 128, no weight decay, no
  augmentation; at small 10,000 images for 5 epochs with 7 attack steps of 2.5·ε/7) instead of
  SGD 0.1 (momentum 0.9, weight decay 2e-4, the step schedule) for 100 epochs with 10 steps of
  0.007 at ε = 0.031: LBGAT must be trained exactly as the PGD-AT and TRADES it is compared with.
- The inner maximisation's start x + 0.001·N(0, I) is clipped to [0, 1] before the first step
  (the official code clips after each step only), as the shared TRADES baseline's loop does, so
  that LBGAT and TRADES are attacked by the same computation (one function,
  `repro.baselines.trades_adversary`); after the first step the two are identical.
- When β = 0 the unused f_rob(x) forward is skipped (the official code computes it; with batch
  normalisation it would move the running statistics, but SmallCNN has none, so the result is
  the same).
- Evaluation: the project's battery (`repro.robust_eval`), whose `autoattack` column is
  AutoAttack standard assembled from torchattacks' components, not the authors' bundled copy of
  AutoAttack; standard AutoAttack at full only: at small the battery runs AutoAttack's
  APGD-CE + APGD-T (FAB-T and Square cost ~4 s of CPU per robust image) on 100 test images,
  not 10,000.
"""

from __future__ import annotations

import copy
import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro import ReproError
from repro.baselines import SmallCNN, trades_adversary
from repro.robust_eval import Protocol, RobustnessReport, evaluate
from repro.train import Attack, Objective, train_classifier

__all__ = [
    "NATURAL_WIDTH",
    "LBGATPair",
    "evaluate_as_paper",
    "lbgat_loss",
    "lbgat_objective",
    "lbgat_pair",
    "natural_cnn",
    "seconds_per_epoch",
]

#: Width of f_nat's `SmallCNN`: 103k parameters, 0.245 of f_rob's (ResNet-18 / WRN-34-10: 0.242).
NATURAL_WIDTH = 8


class LBGATPair(nn.Module):
    """f_rob and f_nat in one module, so that one optimizer trains both (the official code's
    single SGD over both parameter groups). `forward` is f_rob: the pair *is* the robust model
    for every evaluation and attack; f_nat is reached as `.natural`."""

    def __init__(self, robust: nn.Module, natural: nn.Module) -> None:
        super().__init__()
        self.robust = robust
        self.natural = natural

    def forward(self, x: Tensor) -> Tensor:
        return self.robust(x)


def natural_cnn() -> SmallCNN:
    """f_nat: the shared `SmallCNN` at width `NATURAL_WIDTH` (a quarter of f_rob's parameters)."""
    return SmallCNN(width=NATURAL_WIDTH)


def lbgat_pair(seed: int = 0) -> LBGATPair:
    """An untrained pair: f_rob is initialised exactly as the shared baselines' `SmallCNN`
    (`torch.manual_seed(seed)` then `SmallCNN()`, `repro.baselines.baseline`), f_nat after it
    from the same stream. The global CPU random stream is left where it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        robust = SmallCNN()
        natural = natural_cnn()
    return LBGATPair(robust, natural)


def lbgat_loss(
    robust: nn.Module, natural: nn.Module, x: Tensor, x_adv: Tensor, y: Tensor, *, beta: float
) -> Tensor:
    """MSE(f_rob(x'), f_nat(x)) + CE(f_nat(x), y) + β · KL(f_rob(x) ‖ f_rob(x')) / N, with the
    official code's reductions (module docstring). Differentiable in both networks: the MSE term
    trains f_nat as well as f_rob."""
    if beta < 0:
        raise ReproError(f"lbgat_loss: beta must be >= 0, got {beta}")
    out_adv = robust(x_adv)
    out_nat = natural(x)
    loss = F.mse_loss(out_adv, out_nat) + F.cross_entropy(out_nat, y)
    if beta > 0:
        p_clean = F.softmax(robust(x), dim=1)
        kl = F.kl_div(F.log_softmax(out_adv, dim=1), p_clean, reduction="sum") / x.shape[0]
        loss = loss + beta * kl
    return loss


def lbgat_objective(
    *,
    eps: float,
    steps: int,
    step_size: float,
    beta: float,
    generator: torch.Generator | None = None,
) -> Objective:
    """LBGAT as a `repro.train.train_classifier` objective over an `LBGATPair`: per batch the
    inner maximisation on f_rob (eval mode, frozen), then `lbgat_loss` in training mode."""

    def objective(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        if not isinstance(model, LBGATPair):
            raise ReproError("lbgat_objective trains an LBGATPair (f_rob and f_nat together)")
        x_adv = trades_adversary(model.robust, x, eps=eps, steps=steps, step_size=step_size,
                                 generator=generator)  # fmt: skip
        return lbgat_loss(model.robust, model.natural, x, x_adv, y, beta=beta)

    return objective


def seconds_per_epoch(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    epoch_images: int,
    batch_size: int = 128,
    lr: float = 1e-3,
    objective: Objective | None = None,
    adversary: Attack | None = None,
) -> float:
    """Wall seconds of one training epoch of `epoch_images` images, extrapolated from one pass
    of the toolkit's loop over (x, y) on a copy of `model` (the model itself is not touched).
    Give `objective` (LBGAT, TRADES) or `adversary` (PGD-AT, `adv_weight=1`); timing every
    method on the same batches in the same process makes the costs comparable, which the
    baselines' cached `epoch_seconds` (measured whenever they were trained) are not."""
    if x.shape[0] == 0:
        raise ReproError("seconds_per_epoch: no images to time")
    probe = copy.deepcopy(model)
    kwargs: dict[str, object] = {"objective": objective}
    if adversary is not None:
        kwargs = {"adversary": adversary, "adv_weight": 1.0}
    start = time.perf_counter()
    train_classifier(probe, x, y, epochs=1, batch_size=batch_size, lr=lr, progress=False,
                     generator=torch.Generator().manual_seed(0), **kwargs)  # type: ignore[arg-type]  # fmt: skip
    return (time.perf_counter() - start) * epoch_images / x.shape[0]


def evaluate_as_paper(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    protocol: Protocol,
    *,
    progress: bool = True,
    desc: str = "robustness",
) -> RobustnessReport:
    """`repro.robust_eval.evaluate` on (x, y). The paper evaluates with AutoAttack (standard),
    which the battery already runs as its `autoattack` column: where it runs in full (protocol
    `autoattack="standard"`), its per-image result is also the report's `paper` column, so the
    report's gap (paper's attack minus worst case) is recorded without running it twice. The
    reduced AutoAttack of smoke scales (`"apgd"`) is not the paper's and is never marked so."""
    report = evaluate(model, x, y, protocol, progress=progress, desc=desc)
    if protocol.autoattack == "standard" and "autoattack" in report.correct:
        report.correct["paper"] = report.correct["autoattack"].clone()
    return report
