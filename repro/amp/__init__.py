"""Adversarial Model Perturbation (Zheng, Zhang & Mao, CVPR 2021).

Paper: "Regularizing Neural Networks via Adversarial Model Perturbation", Yaowei Zheng, Richong
Zhang, Yongyi Mao, https://arxiv.org/abs/2010.04925 (catalog key `2021_Zheng_Y_p-cvpr_rnnamp`).
Official code: github.com/hiyouga/AMP-Regularizer (`amp.py`, `main.py`; read, not copied).

Reproduces: the comparison of the paper's "Results on Image Classification Benchmarks" table (ERM,
dropout, label smoothing, mixup and AMP; test error and test NLL, mean over seeds) and AMP's cost
per epoch (README: about 1.8x ERM), on a low-data Fashion-MNIST analogue. The paper's own numbers
(SVHN, CIFAR-10, CIFAR-100 with PreActResNet18, VGG16, WideResNet-28-10, PyramidNet-164-270) stay
in `expected.csv` as not run: none of those datasets is here.

AMP is a generalisation method (flat minima), not input robustness: the perturbation is on the
weights, so no attack on inputs and no robustness evaluation belong here.

Map from the paper to the code (tests/repro/test_paper_maps.py checks every name exists):
- the AMP loss, L_AMP(theta) = max_{||Delta|| <= eps} L_ERM(theta + Delta) on a mini-batch, with
  the norm bound per parameter tensor (the official code) -> `AMP`, `amp_objective`
- Algorithm 1, inner loop: Delta <- Delta + zeta grad L_ERM(theta + Delta) (zeta = inner_lr), and
  "if ||Delta||_2 > eps, normalise Delta to norm eps", N = inner_iter times -> `AMP.perturb`,
  `clip_to_ball`
- Algorithm 1, outer step: the gradient of L_ERM at theta + Delta, theta restored, then the base
  optimiser's step (SGD, Nesterov momentum 0.9, weight decay) -> `AMP.step`, `AMP.restore`
- the official training recipe: gradient-norm clip 50 on every gradient, the learning rate x0.1 at
  50 % and 75 % of the epochs (epochs 100 and 150 of 200) -> `clip_norm` in `AMP`,
  `step_schedule`
- the compared regularisers: dropout (Srivastava et al. 2014) -> `DropoutCNN`; label smoothing
  (Szegedy et al. 2016) -> `label_smoothing_loss`; mixup (Zhang et al. 2018) -> `mixup_loss`;
  ERM -> `cross_entropy_loss`; one method by name, every one driven by the same optimiser code
  -> `train_method`, `METHODS`
- the evaluation: test error and test negative log-likelihood per image -> `per_image_scores`;
  the spread over seeds and over test images -> `seed_interval`, `seeds_image_interval`
Deviations (each also in README.md, with why):
- Data and model: Fashion-MNIST's first `n_train` training images (3,000 at `small`, 5,000 at
  `full`; the paper: the whole of SVHN / CIFAR) with `repro.baselines.SmallCNN` (width 8 at
  `small`, 32 at `full`) instead of the paper's ResNets; no data augmentation (the paper: crop
  and flip); 12 epochs at `small` (the paper: 200), the schedule scaled.
- AMP's eps is 0.03, not the paper's 0.5: with eps = 0.5 and inner_lr = 1 this small network
  (no batch norm) stays on the loss plateau at initialisation (validation error 62.6 %). eps was
  chosen once, during development, on a validation split of the training set (images
  50,000-54,999, never the test set) from {0.5, 0.1, 0.03, 0.01} at the `small` recipe, one seed;
  inner_lr = 1 and inner_iter = 1 are the paper's. The notebook reruns eps = 0.5 on one seed
  (`paper_epsilon_check`).
- The regularisers' strengths are not in the material we could read, and were not tuned: the
  usual ones, fixed before any run (dropout 0.5 on the hidden layer, label smoothing 0.1, mixup
  alpha 1). Only AMP's eps was selected: a bias in AMP's favour in the comparison with them.
- SGD as the official code: lr 0.1, batch 50, Nesterov momentum 0.9, weight decay 1e-4,
  gradient-norm clip 50, lr x0.1 at 50 % and 75 % of the epochs.
- theta is restored by copying the saved tensors, not by subtracting Delta (the official code):
  bit-exact, where the subtraction is exact only up to rounding.
- Every method (ERM included) runs through `AMP` with `inner_iter = 0` (a plain SGD step with the
  same gradient clip), so the methods differ only by their loss, model or perturbation. The
  official code's ERM runs are not published: we assume the same script and clip.
- The error is the last epoch's (the official script also logs the best test accuracy over
  epochs, a selection on the test set; which one the paper prints is not known).
- The paper's flooding, adversarial training and RMP baselines are not run (not asked of this
  analogue; their rows stay in `expected.csv`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro import ReproError
from repro.baselines import SmallCNN
from repro.stats import Interval, means_interval, t_interval
from repro.train import Objective, train_classifier

__all__ = [
    "AMP",
    "METHODS",
    "DropoutCNN",
    "Settings",
    "Trained",
    "amp_objective",
    "clip_to_ball",
    "cross_entropy_loss",
    "label_smoothing_loss",
    "mixup_loss",
    "per_image_scores",
    "seed_interval",
    "seeds_image_interval",
    "step_schedule",
    "train_method",
]

#: `closure() -> loss`: zero the gradients, forward, backward, return the loss (torch's closure).
Closure = Callable[[], Tensor]


def clip_to_ball(dev: Tensor, epsilon: float) -> Tensor:
    """`dev` scaled onto the l2 ball of radius `epsilon` when it lies outside (one tensor).

    The official rule: `c = eps / (||dev|| + 1e-12)`, `dev * c` when `c < 1`, else `dev`.
    """
    coef = epsilon / (float(dev.norm()) + 1e-12)
    return dev * coef if coef < 1.0 else dev


class AMP(torch.optim.Optimizer):
    """Adversarial model perturbation around a base optimiser (SGD by default).

    Two ways to drive it, the same arithmetic:

    - closure style (the official code): `opt.step(closure)`, `closure()` zeroing the gradients,
      computing the loss, calling `backward()` and returning the loss;
    - through `repro.train.train_classifier`: `objective=amp_objective(opt)` perturbs the weights
      inside the objective (`perturb`) and returns the loss at theta + Delta; the loop's
      `backward()` then leaves the gradient at theta + Delta in `.grad`, and its `opt.step()`
      restores theta and steps.

    Per parameter tensor with a gradient: `Delta <- clip_to_ball(Delta + inner_lr * grad, eps)`,
    `inner_iter` times, each gradient taken at theta + Delta (the first at theta); every gradient
    is first clipped to total l2 norm `clip_norm` (None: no clip) as the official closure does.
    `inner_iter = 0` is a plain base-optimiser step (with the clip): ERM through the same code.
    Extra keyword arguments go to the base optimiser (`momentum`, `weight_decay`, `nesterov`).
    """

    def __init__(
        self,
        params: object,
        lr: float,
        epsilon: float,
        inner_lr: float = 1.0,
        inner_iter: int = 1,
        base_optimizer: type[torch.optim.Optimizer] = torch.optim.SGD,
        clip_norm: float | None = 50.0,
        **kwargs: object,
    ) -> None:
        if epsilon < 0.0 or inner_lr < 0.0 or inner_iter < 0:
            raise ReproError(
                f"AMP: need epsilon >= 0, inner_lr >= 0, inner_iter >= 0; got {epsilon}, "
                f"{inner_lr}, {inner_iter}"
            )
        if clip_norm is not None and clip_norm <= 0:
            raise ReproError(f"AMP: clip_norm must be positive or None, got {clip_norm}")
        defaults = dict(lr=lr, epsilon=epsilon, inner_lr=inner_lr, **kwargs)
        super().__init__(params, defaults)  # type: ignore[arg-type]
        self.inner_iter = inner_iter
        self.clip_norm = clip_norm
        # The base optimiser works on the same group dicts, so a scheduler on AMP moves its lr.
        self.base_optimizer = base_optimizer(self.param_groups, lr=lr, **kwargs)  # type: ignore[arg-type]
        self.param_groups = self.base_optimizer.param_groups
        self._pending = False

    def _params(self) -> list[Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def _clip(self) -> None:
        if self.clip_norm is not None:
            grads = [p for p in self._params() if p.grad is not None]
            if grads:
                torch.nn.utils.clip_grad_norm_(grads, self.clip_norm)

    @torch.no_grad()
    def perturb(self, closure: Closure) -> Tensor:
        """Algorithm 1's inner loop: move the weights to theta + Delta; return the loss at theta.

        The weights stay at theta + Delta until `step()` (or `restore()`); theta is kept in the
        optimiser's state and Delta as `state[p]["dev"]`. With `inner_iter = 0` nothing moves
        and the returned loss is NaN (no evaluation was made).
        """
        if self._pending:
            raise ReproError("AMP.perturb: a perturbation is pending: call step() first")
        self._pending = True
        first = torch.tensor(math.nan)
        if self.inner_iter == 0:
            return first
        for p in self._params():
            state = self.state[p]
            if "theta" not in state:
                state["theta"] = torch.empty_like(p)
            state["theta"].copy_(p)
            state.pop("dev", None)
        for i in range(self.inner_iter):
            with torch.enable_grad():
                loss = closure()
            if i == 0:
                first = loss.detach()
            self._clip()
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    state = self.state[p]
                    dev = state.get("dev", torch.zeros_like(p)) + group["inner_lr"] * p.grad
                    state["dev"] = clip_to_ball(dev, group["epsilon"])
                    p.copy_(state["theta"] + state["dev"])
        return first

    @torch.no_grad()
    def restore(self) -> None:
        """Put theta back exactly (a copy of the saved tensors, not theta + Delta - Delta)."""
        if self.inner_iter > 0:
            for p in self._params():
                state = self.state[p]
                if "theta" in state:
                    p.copy_(state["theta"])
        self._pending = False

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> Tensor | None:  # type: ignore[override]
        """One AMP step. With `closure`: the inner loop, the gradient at theta + Delta, theta
        restored, the base step; returns the loss at theta. Without: the weights must have been
        perturbed by `perturb` (through `amp_objective`) and `.grad` must hold the gradient at
        theta + Delta (the loop's backward); restores theta and steps; returns None."""
        first: Tensor | None = None
        if closure is not None:
            first = self.perturb(closure)
            with torch.enable_grad():
                last = closure()  # the outer gradient, at theta + Delta
            if self.inner_iter == 0:
                first = last.detach()
        elif not self._pending:
            raise ReproError(
                "AMP.step() without a closure needs the weights perturbed first: use "
                "objective=amp_objective(optimizer) with train_classifier, or step(closure)"
            )
        self._clip()
        self.restore()
        self.base_optimizer.step()
        return first


def cross_entropy_loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """ERM's loss: the mean cross-entropy of the batch."""
    return F.cross_entropy(model(x), y)


def label_smoothing_loss(smoothing: float) -> Objective:
    """Cross-entropy against (1 - s) one-hot + s / K uniform targets (Szegedy et al., 2016)."""
    if not 0.0 <= smoothing < 1.0:
        raise ReproError(f"label smoothing must be in [0, 1), got {smoothing}")

    def loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(model(x), y, label_smoothing=smoothing)

    return loss


def mixup_loss(alpha: float, seed: int) -> Objective:
    """Mixup (Zhang et al., 2018): one lambda ~ Beta(alpha, alpha) per batch, the batch mixed
    with a random permutation of itself, lambda CE(y) + (1 - lambda) CE(y_perm).

    `seed` fixes the lambdas (numpy's generator: torch's Beta has no generator argument) and the
    permutations (a torch generator on the CPU), so a rerun gives the same batches.
    """
    if alpha <= 0:
        raise ReproError(f"mixup alpha must be positive, got {alpha}")
    rng = np.random.default_rng(seed)
    perm_gen = torch.Generator().manual_seed(seed)

    def loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        lam = float(rng.beta(alpha, alpha))
        perm = torch.randperm(x.shape[0], generator=perm_gen).to(x.device)
        logits = model(lam * x + (1.0 - lam) * x[perm])
        return lam * F.cross_entropy(logits, y) + (1.0 - lam) * F.cross_entropy(logits, y[perm])

    return loss


def amp_objective(optimizer: AMP, loss: Objective = cross_entropy_loss) -> Objective:
    """A `train_classifier` objective that perturbs the weights (`AMP.perturb`) on the batch
    and returns `loss` at theta + Delta; the loop's `optimizer.step()` restores theta and steps.

    `loss(model, x, y)` is called once per inner iteration and once more for the outer gradient
    (with `inner_iter = 0`, once: a plain training step).
    """

    def objective(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        def closure() -> Tensor:
            optimizer.zero_grad(set_to_none=True)
            value = loss(model, x, y)
            value.backward()
            return value

        optimizer.perturb(closure)
        return loss(model, x, y)

    return objective


class DropoutCNN(SmallCNN):
    """`repro.baselines.SmallCNN` with dropout on its 128 hidden units (before the last layer):
    the same parameters, so the same initialisation as the other methods."""

    def __init__(self, width: int = 32, p: float = 0.5) -> None:
        super().__init__(width)
        self.dropout = nn.Dropout(p)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.dropout(self.features(x)))


def step_schedule(
    epochs: int, milestones: Sequence[float] = (0.5, 0.75), gamma: float = 0.1
) -> Callable[[int], float]:
    """The official MultiStepLR (x0.1 at epochs 100 and 150 of 200) scaled to `epochs`: the
    factor of epoch e is gamma^(number of milestones m with e >= round(m * epochs))."""
    marks = [round(m * epochs) for m in milestones]
    return lambda epoch: gamma ** sum(epoch >= mark for mark in marks)


@dataclass(frozen=True)
class Settings:
    """One scale's recipe, the same for every method (the notebook fills it from repro.toml)."""

    epochs: int
    batch_size: int = 50
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 1e-4
    clip_norm: float = 50.0
    width: int = 32
    epsilon: float = 0.5
    inner_lr: float = 1.0
    inner_iter: int = 1
    dropout: float = 0.5
    smoothing: float = 0.1
    mixup_alpha: float = 1.0


class Trained(NamedTuple):
    """What `train_method` returns."""

    model: nn.Module
    seconds: float
    losses: list[float]


#: the compared methods, in the paper's table order (flooding, adversarial training, RMP not run)
METHODS = ("erm", "dropout", "label_smoothing", "mixup", "amp")


def train_method(
    method: str,
    x: Tensor,
    y: Tensor,
    settings: Settings,
    *,
    seed: int,
    desc: str | None = None,
) -> Trained:
    """Train `SmallCNN` (or `DropoutCNN`) with `method`: the model (in eval mode), its training
    wall time and the mean training loss of each epoch (for AMP, the loss at theta + Delta).

    `seed` fixes the initialisation and the batch order, the same for every method (a paired
    comparison: the methods differ only by what `method` changes). Every method steps through
    `AMP` (inner_iter 0 except for "amp"), SGD with Nesterov momentum and weight decay, the
    gradient clip, and `step_schedule`.
    """
    if method not in METHODS:
        raise ReproError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    s = settings
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model: nn.Module = SmallCNN(s.width)
        if method == "dropout":
            dropout = DropoutCNN(s.width, s.dropout)
            dropout.load_state_dict(model.state_dict())
            model = dropout
        model = model.to(x.device)
    loss: Objective = cross_entropy_loss
    if method == "label_smoothing":
        loss = label_smoothing_loss(s.smoothing)
    elif method == "mixup":
        loss = mixup_loss(s.mixup_alpha, seed)
    opt = AMP(
        model.parameters(),
        lr=s.lr,
        epsilon=s.epsilon,
        inner_lr=s.inner_lr,
        inner_iter=s.inner_iter if method == "amp" else 0,
        clip_norm=s.clip_norm,
        momentum=s.momentum,
        weight_decay=s.weight_decay,
        nesterov=True,
    )
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # dropout's masks
        losses = train_classifier(
            model, x, y, epochs=s.epochs, batch_size=s.batch_size, lr=s.lr, optimizer=opt,
            objective=amp_objective(opt, loss), lr_schedule=step_schedule(s.epochs),
            generator=torch.Generator().manual_seed(seed), desc=desc or method, progress=False,
        )  # fmt: skip
    seconds = time.perf_counter() - start
    model.eval()
    return Trained(model, seconds, losses)


@torch.no_grad()
def per_image_scores(
    model: nn.Module, x: Tensor, y: Tensor, *, batch_size: int = 1000
) -> tuple[Tensor, Tensor]:
    """Per test image: whether it is misclassified (bool) and its negative log-likelihood
    -log p(y | x) in nats, in eval mode (the model's mode is restored)."""
    was_training = model.training
    model.eval()
    wrong, nll = [], []
    try:
        for i in range(0, x.shape[0], batch_size):
            logits = model(x[i : i + batch_size])
            yb = y[i : i + batch_size]
            wrong.append(logits.argmax(dim=1) != yb)
            nll.append(F.cross_entropy(logits, yb, reduction="none"))
    finally:
        model.train(was_training)
    return torch.cat(wrong).cpu(), torch.cat(nll).cpu()


def seed_interval(values: Sequence[float], level: float = 0.95) -> Interval:
    """Mean of per-seed values (e.g. paired differences) and its t interval over the seeds
    (`repro.stats.t_interval`) as an `Interval`. Needs at least two seeds."""
    return Interval(*t_interval([float(v) for v in values], level), level)


def seeds_image_interval(a: Sequence[Tensor], b: Sequence[Tensor]) -> Interval:
    """mean_s(mean_i a_s) - mean_s(mean_i b_s) and its paired bootstrap interval over the test
    images (`repro.stats.means_interval`): a_s, b_s are per-image vectors (errors) of seed s,
    all on the same images; each resample weights the same images in every vector."""
    if len(a) != len(b) or not a:
        raise ReproError(f"need the same number (>= 1) of seeds, got {len(a)} and {len(b)}")
    k = len(a)
    return means_interval(list(a) + list(b), lambda m: m[:, :k].mean(1) - m[:, k:].mean(1))
