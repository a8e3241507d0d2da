"""Adversarial Learning with Margin-based Triplet Embedding Regularization (Zhong & Deng, ICCV
2019).

Paper: "Adversarial Learning with Margin-based Triplet Embedding Regularization", Yaoyao Zhong,
Weihong Deng, https://arxiv.org/abs/1909.09481 (catalog key `2019_Zhong_Y_p-iccv_almter`);
official code zhongyy/Adversarial_MTER (MXNet, built on InsightFace; read, not copied).

Reproduces: the protocol of Table 4 (face recognition: hit rates of the feature-level attacks
FTGSM / IFTGSM and the label-level ITGSM against the plain model, the model adversarially trained
with the feature attack's examples ("+adv.") and MTER, with the clean verification accuracy) and
of Table 1 (MNIST: clean, FGSM, BIM and ITGSM accuracy) on Fashion-MNIST, the stated analogue:
no face data and no MNIST training split are here, so every printed number is recorded as not run
(`expected.csv`). At `full` the Table 1 protocol also runs on MNIST-8k (the first 8,000 MNIST test
images for training, the last 2,000 for evaluation), never compared with the paper.

Map from the paper to the code:
- The embedding f̂(x) = f(x) / ‖f(x)‖ (L2-normalised features before the softmax layer) ->
  `embed` (the 128-d hidden layer of `repro.baselines.SmallCNN`, the project's shared
  architecture).
- Section 3.2, vulnerability exploitation (Eqs. 3 and 5): x' ← clip_{x,σ}(x' − λ·sign(∇_x'
  ‖f̂(x') − f̂(x_tar)‖)), sign steps of λ = 1/255 for up to `adv_round` rounds, stopped once the
  largest cosine distance of the batch is below `adv_thd` (the official iterator) ->
  `vulnerability_exploitation` (the loop: `feature_attack`).
- Algorithm 1, each epoch C/2 random classes are the sources and the others the targets; a
  mini-batch holds K/2 sources and K/2 targets -> `class_split`, `pair_indices`.
- Eq. 6, R_MTER = Σ max(0, ‖f̂(x_adv) − f̂(x_src)‖ − ‖f̂(x_adv) − f̂(x_tar)‖ + α) with α = 0.2 ->
  `triplet_regulariser`.
- Algorithm 1, θ ← θ − η∇(L_ori + R_MTER) with L_ori the softmax loss on sources and targets
  (the batch is [sources, targets, adversarials]) -> `MTERObjective` with variant "mter",
  passed as `objective` in `repro.train.train_classifier`.
- The "+adv." rows of Table 4: adversarial training with the same exploitation's examples, the
  softmax loss on [sources, targets, adversarials] -> `MTERObjective` with variant "adv".
- Section 4 attacks: FTGSM (one feature-level targeted sign step of ε) -> `ftgsm`; IFTGSM (the
  iterative version, steps of 1/255) -> `iftgsm`; ITGSM (label-level targeted iterative sign
  method) -> `itgsm` (through `repro.madry_pgd.pgd_linf` with the targeted loss `targeted_ce`).
- Table 4's hit rate: an attack hits when the cosine distance between f̂(x_adv) and f̂(x_tar) is
  below the verification threshold at FAR = 1e-3, set on clean impostor pairs ->
  `verification_threshold`, `feature_hits`; ITGSM hits when the label becomes the target's ->
  `label_hits`. Verification rate of clean genuine pairs at that threshold (the LFW / YTF
  columns' analogue beside clean accuracy) -> `verification_rate`; the distances behind the hits
  (a diagnostic added after the first development run: how far IFTGSM closes the distance, and
  its hit rate at looser thresholds, FAR = 1e-2 and 1e-1) -> `pair_distances`.
- Table 1's FGSM and BIM columns -> `repro.fgsm.fgsm`, `repro.iterative.bim_linf`.

Deviations (each also in README.md, with why):
- Data and model: Fashion-MNIST and `SmallCNN` (the project's shared baselines' architecture and
  data, so natural and PGD-AT training come from `repro.baselines`), not ResNet-18 / ArcFace-R50
  on MNIST / faces. The embedding is SmallCNN's 128-d hidden layer after its ReLU, so cosine
  distances lie in [0, 1] (no negative cosines), for every model alike.
- Batches: `train_classifier` draws K images from the whole training set; the epoch's class split
  divides them into sources and targets and the first min(#sources, #targets) of each side are
  paired (the official iterator walks the two halves separately, K/2 from each). Cross-entropy is
  the mean over the K clean images plus `weight` times the mean triplet term (the official symbol
  divides the summed cross-entropy by 3/2 of the per-device batch and sums over devices).
- The exploitation runs with the model in eval mode (`frozen`; SmallCNN has no batch norm or
  dropout, so the same numbers as the official `is_train=True`). The target embeddings are
  computed once per batch (the targets are never perturbed). The early stop reads the batch's
  largest distance once per round (one host sync per round: the algorithm needs it).
- σ and the step: σ = ε of the evaluation (0.1 on Fashion-MNIST; the paper trains MNIST at 0.35
  for a test ε of 0.3); at `small` the step is 2.5σ/rounds with few rounds (the PGD-AT baseline's
  rule and budget) instead of 1/255 × 50-100 rounds, to fit two CPU cores.
- The paper's attack settings are not confirmed (the notes have only the tables): IFTGSM and
  ITGSM take steps of 1/255, min(ε·255 + 4, 1.25·ε·255) of them (Kurakin et al.'s rule); FTGSM
  is one step of ε; BIM is `bim_linf` with 10 steps of ε/10. Source→target pairs are drawn at
  random among test images of different classes.
- The threshold is the FAR = 1e-3 quantile of the cosine distances of all clean impostor pairs
  (different classes) among the evaluation images (the official code interpolates it per fold
  on LFW pairs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro.madry_pgd import pgd_linf
from repro.train import frozen

__all__ = [
    "STEP",
    "MTERObjective",
    "class_split",
    "cosine_distance",
    "embed",
    "feature_attack",
    "feature_hits",
    "ftgsm",
    "iftgsm",
    "itgsm",
    "kurakin_steps",
    "label_hits",
    "pair_distances",
    "pair_indices",
    "random_pairs",
    "targeted_ce",
    "triplet_regulariser",
    "verification_rate",
    "verification_threshold",
    "vulnerability_exploitation",
]

STEP = 1.0 / 255.0  # the paper's step: one grey level


def embed(model: nn.Module, x: Tensor) -> Tensor:
    """f̂(x): the L2-normalised embedding. `model.features` (SmallCNN's 128-d hidden layer) when
    the model has one, else its output (any classifier: its logits)."""
    features = model.features(x) if hasattr(model, "features") else model(x)
    return F.normalize(features.flatten(1), dim=1)


def cosine_distance(a: Tensor, b: Tensor) -> Tensor:
    """1 − cos(a, b) per row, for L2-normalised rows (= ‖a − b‖² / 2)."""
    return 1.0 - (a * b).sum(dim=1)


def feature_attack(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    *,
    eps: float,
    step_size: float,
    steps: int,
    threshold: float | None = None,
) -> Tensor:
    """Feature-level targeted sign steps: x' ← clip(x' − step·sign(∇ d(f̂(x'), target))), d the
    cosine distance (the gradient's sign is that of ‖f̂(x') − target‖, which is monotone in it),
    projected to the ℓ∞ ball of radius `eps` around x and to [0, 1]. `target`: the (n, d)
    normalised target embeddings. With `threshold`, stop after a round once the batch's largest
    distance is below it (the official exploitation's early stop; the first step is always
    taken). Returns a detached tensor like x; the model is left as it was."""
    if eps < 0 or step_size < 0 or steps < 0:
        raise ValueError(f"feature_attack: eps, step_size, steps must be >= 0, got {eps}, "
                         f"{step_size}, {steps}")  # fmt: skip
    if target.shape[0] != x.shape[0]:
        raise ValueError(f"feature_attack: {x.shape[0]} images but {target.shape[0]} targets")
    x = x.detach()
    target = target.detach()
    lo, hi = (x - eps).clamp(min=0.0), (x + eps).clamp(max=1.0)
    x_adv = x.clone()
    with frozen(model):
        for step in range(steps):
            x_adv.requires_grad_(True)
            dist = cosine_distance(embed(model, x_adv), target)
            if threshold is not None and step > 0 and float(dist.detach().max()) < threshold:
                break
            (grad,) = torch.autograd.grad(dist.sum(), x_adv)
            x_adv = torch.clamp(x_adv.detach() - step_size * grad.sign(), lo, hi)
    return x_adv.detach()


def vulnerability_exploitation(
    model: nn.Module,
    x_src: Tensor,
    x_tar: Tensor,
    *,
    sigma: float,
    rounds: int,
    step_size: float = STEP,
    threshold: float = 0.05,
) -> Tensor:
    """Section 3.2 (Eqs. 3, 5): push each source toward its paired target's embedding within the
    ℓ∞ ball σ, `rounds` sign steps at most, stopped early at `threshold` (adv_thd)."""
    with frozen(model), torch.no_grad():
        target = embed(model, x_tar)
    return feature_attack(model, x_src, target, eps=sigma, step_size=step_size, steps=rounds,
                          threshold=threshold)  # fmt: skip


def kurakin_steps(eps: float, step_size: float = STEP) -> int:
    """⌊min(ε/λ + 4, 1.25·ε/λ)⌋ iterations (Kurakin et al.'s rule, ε in steps of λ), at least 1."""
    units = eps / step_size
    return max(1, math.floor(min(units + 4.0, 1.25 * units) + 1e-9))


def ftgsm(model: nn.Module, x: Tensor, x_tar: Tensor, *, eps: float) -> Tensor:
    """FTGSM: one feature-level targeted sign step of ε toward f̂(x_tar)."""
    with frozen(model), torch.no_grad():
        target = embed(model, x_tar)
    return feature_attack(model, x, target, eps=eps, step_size=eps, steps=1)


def iftgsm(
    model: nn.Module,
    x: Tensor,
    x_tar: Tensor,
    *,
    eps: float,
    steps: int | None = None,
    step_size: float = STEP,
) -> Tensor:
    """IFTGSM: iterative feature-level targeted sign steps of `step_size` (1/255) toward
    f̂(x_tar) within the ℓ∞ ball ε; `steps` defaults to `kurakin_steps(eps)`."""
    with frozen(model), torch.no_grad():
        target = embed(model, x_tar)
    n = kurakin_steps(eps, step_size) if steps is None else steps
    return feature_attack(model, x, target, eps=eps, step_size=step_size, steps=n)


def targeted_ce(logits: Tensor, target: Tensor) -> Tensor:
    """−CE(logits, target) per example: maximising it moves the prediction toward `target`."""
    return -F.cross_entropy(logits, target, reduction="none")


def itgsm(
    model: nn.Module,
    x: Tensor,
    y_target: Tensor,
    *,
    eps: float,
    steps: int | None = None,
    step_size: float = STEP,
) -> Tensor:
    """ITGSM: label-level targeted iterative sign method, x' ← clip(x' − λ·sign(∇ CE(f(x'),
    y_target))) from x itself (`repro.madry_pgd.pgd_linf` on `targeted_ce`, no random start)."""
    n = kurakin_steps(eps, step_size) if steps is None else steps
    return pgd_linf(model, x, y_target, eps=eps, step_size=step_size, steps=n,
                    random_start=False, loss=targeted_ce)  # fmt: skip


# --------------------------------------------------------------------------- hit rate


@torch.no_grad()
def _embeddings(model: nn.Module, x: Tensor, batch_size: int = 1000) -> Tensor:
    with frozen(model), torch.no_grad():
        return torch.cat(
            [embed(model, x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        )


@torch.no_grad()
def verification_threshold(model: nn.Module, x: Tensor, y: Tensor, *, far: float = 1e-3) -> float:
    """The cosine distance below which a fraction `far` of the clean impostor pairs (every pair
    of images of different classes in x) fall: the threshold at FAR = `far`."""
    if not 0 < far < 1:
        raise ValueError(f"verification_threshold: far must be in (0, 1), got {far}")
    e = _embeddings(model, x)
    dist = 1.0 - e @ e.T
    upper = torch.triu(torch.ones_like(dist, dtype=torch.bool), diagonal=1)
    impostor = dist[upper & (y[:, None] != y[None, :])]
    if impostor.numel() == 0:
        raise ValueError("verification_threshold: no impostor pair (one class only)")
    k = max(1, math.ceil(far * impostor.numel()))
    return float(impostor.kthvalue(k).values)


@torch.no_grad()
def verification_rate(model: nn.Module, x: Tensor, y: Tensor, threshold: float) -> float:
    """The fraction of clean genuine pairs (same class, every pair in x) closer than `threshold`
    (the true-accept rate at the threshold's FAR)."""
    e = _embeddings(model, x)
    dist = 1.0 - e @ e.T
    upper = torch.triu(torch.ones_like(dist, dtype=torch.bool), diagonal=1)
    genuine = dist[upper & (y[:, None] == y[None, :])]
    return float((genuine < threshold).float().mean()) if genuine.numel() else math.nan


@torch.no_grad()
def pair_distances(model: nn.Module, x_a: Tensor, x_b: Tensor) -> Tensor:
    """Per pair: the cosine distance between the embeddings of x_a[i] and x_b[i]."""
    return cosine_distance(_embeddings(model, x_a), _embeddings(model, x_b))


@torch.no_grad()
def feature_hits(model: nn.Module, x_adv: Tensor, x_tar: Tensor, threshold: float) -> Tensor:
    """Per pair: the attacked source is verified as its target (cosine distance < threshold)."""
    return pair_distances(model, x_adv, x_tar) < threshold


@torch.no_grad()
def label_hits(model: nn.Module, x_adv: Tensor, y_target: Tensor) -> Tensor:
    """Per example: the attacked image is classified as the target label."""
    with frozen(model), torch.no_grad():
        return model(x_adv).argmax(dim=1) == y_target


def random_pairs(y: Tensor, *, generator: torch.Generator) -> Tensor:
    """For each example i, the index of a random other example of a different class (the
    attack's target), drawn with `generator` (CPU)."""
    n = y.shape[0]
    labels = y.cpu()
    out = torch.empty(n, dtype=torch.long)
    for cls in labels.unique():
        mine = (labels == cls).nonzero().squeeze(1)
        others = (labels != cls).nonzero().squeeze(1)
        if others.numel() == 0:
            raise ValueError("random_pairs: every example has the same class")
        pick = torch.randint(0, others.numel(), (mine.numel(),), generator=generator)
        out[mine] = others[pick]
    return out.to(y.device)


# --------------------------------------------------------------------------- training


def class_split(classes: int, *, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Algorithm 1: a random half of the classes are the sources, the rest the targets."""
    perm = torch.randperm(classes, generator=generator)
    return perm[: classes // 2], perm[classes // 2 :]


def pair_indices(y: Tensor, sources: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Indices of the batch's source-class and target-class examples, the first min(#, #) of
    each side, in batch order (source i is attacked toward target i)."""
    is_src = torch.isin(y, sources.to(y.device))
    is_tar = torch.isin(y, targets.to(y.device))
    src, tar = is_src.nonzero().squeeze(1), is_tar.nonzero().squeeze(1)
    m = min(src.numel(), tar.numel())
    return src[:m], tar[:m]


def triplet_regulariser(
    e_adv: Tensor, e_src: Tensor, e_tar: Tensor, *, alpha: float = 0.2
) -> Tensor:
    """Eq. 6 per triplet: max(0, ‖f̂(x_adv) − f̂(x_src)‖ − ‖f̂(x_adv) − f̂(x_tar)‖ + α)."""
    ap = (e_adv - e_src).norm(dim=1)
    an = (e_adv - e_tar).norm(dim=1)
    return F.relu(ap - an + alpha)


@dataclass
class MTERObjective:
    """Algorithm 1 as a `train_classifier` objective (`(model, x, y) -> loss`).

    Every `steps_per_epoch` calls (one epoch of `train_classifier`) the classes are split anew
    into sources and targets. Per batch: the paired sources are pushed toward their targets'
    embeddings (`vulnerability_exploitation`), then
    - `variant="mter"`: loss = CE(sources + targets) + `weight` · mean R_MTER (Eq. 6);
    - `variant="adv"` (the paper's "+adv."): loss = CE over [sources, targets, adversarials],
      the adversarials labelled as their sources.
    The model needs `features` (the embedding layer) and `head` (the softmax layer), as
    `repro.baselines.SmallCNN` has. `triplet_log` keeps each batch's mean R_MTER (on the
    device; read it after training)."""

    steps_per_epoch: int
    sigma: float
    rounds: int
    step_size: float = STEP
    threshold: float = 0.05
    alpha: float = 0.2
    weight: float = 1.0
    variant: Literal["mter", "adv"] = "mter"
    classes: int = 10
    generator: torch.Generator | None = None
    calls: int = 0
    split: tuple[Tensor, Tensor] | None = None
    triplet_log: list[Tensor] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.steps_per_epoch < 1 or self.rounds < 1:
            raise ValueError("MTERObjective: steps_per_epoch and rounds must be >= 1")
        if self.variant not in ("mter", "adv"):
            raise ValueError(
                f"MTERObjective: variant must be 'mter' or 'adv', got {self.variant!r}"
            )
        if self.generator is None:
            self.generator = torch.Generator().manual_seed(0)

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        if self.split is None or self.calls % self.steps_per_epoch == 0:
            assert self.generator is not None
            self.split = class_split(self.classes, generator=self.generator)
        self.calls += 1
        src, tar = pair_indices(y, *self.split)
        if src.numel() == 0:
            return F.cross_entropy(model(x), y)
        x_adv = vulnerability_exploitation(model, x[src], x[tar], sigma=self.sigma,
                                           rounds=self.rounds, step_size=self.step_size,
                                           threshold=self.threshold)  # fmt: skip
        if self.variant == "adv":
            return F.cross_entropy(model(torch.cat([x, x_adv])), torch.cat([y, y[src]]))
        hidden = model.features(torch.cat([x, x_adv]))
        ce = F.cross_entropy(model.head(hidden[: x.shape[0]]), y)
        e = F.normalize(hidden.flatten(1), dim=1)
        reg = triplet_regulariser(e[x.shape[0] :], e[src], e[tar], alpha=self.alpha)
        self.triplet_log.append(reg.detach().mean())
        return ce + self.weight * reg.mean()
