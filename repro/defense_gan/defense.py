"""The Defense-GAN defended classifier, its white-box views, and the reconstruction-MSE detector.

Paper: Samangouei, Kabkab & Chellappa, ICLR 2018, https://arxiv.org/abs/1805.06605 (v2).
Reproduces: the "Defense-GAN-Rec" and "Defense-GAN-Orig" columns of Tables 1-4 and 8-11, and the
attack detector of Section 3.3 / Figures 4-5 (ROC AUC of the reconstruction error).

Map:
- Section 3.2, "the classifier is applied to G(z*)": f(x) = C(project(x).reconstruction)
  -> `DefenseGAN` (a module: forward returns logits of the reconstruction).
- "Defense-GAN-Orig": C trained on the original images; "Defense-GAN-Rec": C trained on
  reconstructions G(z*) of the training images -> the same `DefenseGAN` around either classifier
  (the notebook trains both).
- Section 3.3, detection: flag x when ||G(z*) - x||^2 > theta; the ROC over theta of clean vs
  adversarial inputs and its area -> `roc_curve`, `roc_auc` (rank statistic, ties counted half;
  no sklearn).

- the white-box attacker "is given the random initializations of z" (Section 4): the defense
  with a fixed draw of R starts, shared by every image -> `z_init` in `DefenseGAN`.
- the gradient the official attack asked for, through the L unrolled descent steps (its
  reconstruction layer is a `tf.while_loop` with back_prop=True) -> `UnrolledDefense`.

What a white-box attacker sees (README.md "Threat model"): `DefenseGAN.forward` classifies a
*detached* reconstruction joined to x with a zero Jacobian, so an attack on the defense as a whole
gets an input gradient of exactly zero. That is what we read the official graph to give its
attack: its latent is a `tf.Variable` updated by optimiser assignments inside the loop, and the
input reaches the classifier only through those assignments and through the argmin that picks the
restart, neither of which carries a gradient (README.md: run under TensorFlow's v1 mode, the graph
gives no gradient at all; issue #14 reports zero distortion; the authors speak of vanishing
gradients, issue #1). FGSM on that model returns x unchanged. The reproduction's protocol rows
therefore attack the bare classifier behind the projection and then defend (a gray-box attack,
stronger than the official one); `bpda_view` gives the adaptive attacker's view: the projection in
the forward pass and the identity in the backward pass (Athalye et al. 2018, BPDA), from
`repro.obfuscated_gradients`; `UnrolledDefense` the true gradient through the unrolled steps.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from repro.defense_gan.projection import DECAY, MAX_ROWS, MOMENTUM, REC_LR, Projection, project
from repro.train import predict


class DefenseGAN(nn.Module):
    """x -> classifier(G(z*(x))): the defended classifier with projection settings L, R, lr.

    Without `z_init`, each forward pass draws fresh restarts from `generator_rng` (the defense is
    randomised, as in the paper). With `z_init` (R, k), the R starts are that fixed draw for every
    image, so the defense is deterministic and any subset of a batch is projected as it would be
    alone (what a white-box attacker who "is given the random initializations" attacks; Square's
    queries on subsets). `last_projection` keeps the most recent projection (for the detector).
    """

    def __init__(
        self,
        generator: nn.Module,
        classifier: nn.Module,
        *,
        steps: int,
        restarts: int,
        lr: float = REC_LR,
        momentum: float = MOMENTUM,
        decay: float = DECAY,
        generator_rng: torch.Generator | None = None,
        z_init: Tensor | None = None,
        max_rows: int = MAX_ROWS,
    ) -> None:
        super().__init__()
        self.generator = generator
        self.classifier = classifier
        self.steps = steps
        self.restarts = restarts
        self.lr = lr
        self.momentum = momentum
        self.decay = decay
        self.generator_rng = generator_rng
        if z_init is not None and z_init.dim() != 2:
            raise ValueError(f"DefenseGAN: z_init must be (R, k), got {tuple(z_init.shape)}")
        self.z_init = z_init
        self.max_rows = max_rows
        self.last_projection: Projection | None = None

    def project(self, x: Tensor, *, fresh: bool = False) -> Projection:
        """The projection with this defense's settings (detached); `fresh` ignores `z_init` and
        draws new restarts."""
        z_init = None if fresh or self.z_init is None else self.z_init.to(x.device)
        proj = project(
            self.generator, x, steps=self.steps, restarts=self.restarts, lr=self.lr,
            momentum=self.momentum, decay=self.decay, generator_rng=self.generator_rng,
            z_init=z_init, max_rows=self.max_rows,
        )  # fmt: skip
        self.last_projection = proj
        return proj

    def purify(self, x: Tensor) -> Tensor:
        """G(z*(x)), detached: the preprocessing step alone (what BPDA wraps)."""
        return self.project(x).reconstruction

    def purify_fresh(self, x: Tensor) -> Tensor:
        """G(z*(x)) from freshly drawn restarts (one draw of the randomness EOT averages over)."""
        return self.project(x, fresh=True).reconstruction

    def forward(self, x: Tensor) -> Tensor:
        # `0 * x` keeps x in the graph with a zero Jacobian: gradients exist and are exactly zero,
        # as the official attack received them, instead of autograd refusing an unused input.
        return self.classifier(self.purify(x) + 0.0 * x)

    def bpda_view(self, *, fresh: bool = False) -> nn.Module:
        """The adaptive attacker's model: projection forward, identity backward (BPDA); with
        `fresh`, every call draws new restarts (the randomised model EOT averages over)."""
        from repro.obfuscated_gradients import BPDAWrapper

        return BPDAWrapper(self.purify_fresh if fresh else self.purify, self.classifier)


class UnrolledDefense(nn.Module):
    """classifier(G(z_L(x))) with z_L the L momentum-descent steps *as a differentiable function
    of x*, from the fixed starts `z_init` (R, k): the deterministic defense, differentiated the way
    the official attack meant to (its reconstruction layer was built with back_prop=True).

    The forward value equals `DefenseGAN(..., z_init=z_init)` (same updates, the best restart by
    ||G(z_L) - x||^2; the argmin itself carries no gradient). Memory grows with L x R x N: every
    step keeps its graph (second-order terms included), so attack a few images at a time.
    """

    def __init__(
        self,
        generator: nn.Module,
        classifier: nn.Module,
        *,
        steps: int,
        z_init: Tensor,
        lr: float = REC_LR,
        momentum: float = MOMENTUM,
        decay: float = DECAY,
    ) -> None:
        super().__init__()
        if z_init.dim() != 2:
            raise ValueError(f"UnrolledDefense: z_init must be (R, k), got {tuple(z_init.shape)}")
        self.generator = generator
        self.classifier = classifier
        self.steps = steps
        self.z_init = z_init
        self.lr = lr
        self.momentum = momentum
        self.decay = decay

    def reconstruct(self, x: Tensor) -> Tensor:
        """G(z_L(x)) of the best restart, differentiable in x."""
        from repro.defense_gan.projection import lr_schedule

        r, n = self.z_init.shape[0], x.shape[0]
        target = x.unsqueeze(0).expand(r, *x.shape).reshape(r * n, *x.shape[1:])
        z = self.z_init.to(x.device).unsqueeze(1).expand(r, n, -1).reshape(r * n, -1)
        z = z.detach().clone().requires_grad_(True)
        v = torch.zeros_like(z)
        dims = tuple(range(1, target.dim()))
        with torch.enable_grad():
            for rate in lr_schedule(self.steps, self.lr, self.decay):
                loss = (self.generator(z) - target).square().mean(dim=dims).sum()
                (g,) = torch.autograd.grad(loss, z, create_graph=True)
                v = self.momentum * v + g
                z = z - rate * v
            recon = self.generator(z)
        mse = (recon - target).square().mean(dim=dims).view(r, n)
        best = mse.detach().argmin(dim=0)
        return recon.view(r, n, *x.shape[1:])[best, torch.arange(n, device=x.device)]

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.reconstruct(x))


def classify_reconstructions(
    classifier: nn.Module, recon: Tensor, batch_size: int = 1000
) -> Tensor:
    """Labels the classifier gives to reconstructions G(z*) (`repro.train.predict`: eval mode,
    restored)."""
    return predict(classifier, recon, batch_size=batch_size)


def roc_auc(negatives: Tensor, positives: Tensor) -> float:
    """Area under the ROC curve for scores where higher means "adversarial".

    Equals P(score(pos) > score(neg)) + 0.5 P(equal) (the Mann-Whitney statistic), which is the
    trapezoidal area under the empirical ROC curve; computed with ranks in O(n log n).
    """
    neg = negatives.detach().double().flatten().cpu()
    pos = positives.detach().double().flatten().cpu()
    if neg.numel() == 0 or pos.numel() == 0:
        raise ValueError("roc_auc needs at least one negative and one positive score")
    scores = torch.cat([neg, pos])
    ranks = _average_ranks(scores)
    rank_sum = ranks[neg.numel() :].sum()
    n_pos, n_neg = pos.numel(), neg.numel()
    u = rank_sum - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _average_ranks(values: Tensor) -> Tensor:
    """1-based ranks with ties given their average rank."""
    order = torch.argsort(values, stable=True)
    sorted_vals = values[order]
    n = values.numel()
    # Group equal values: start index of each run of ties.
    new_group = torch.ones(n, dtype=torch.bool)
    new_group[1:] = sorted_vals[1:] != sorted_vals[:-1]
    group_id = torch.cumsum(new_group.long(), 0) - 1
    positions = torch.arange(1, n + 1, dtype=torch.float64)
    groups = int(group_id[-1]) + 1
    sums = torch.zeros(groups, dtype=torch.float64).index_add_(0, group_id, positions)
    counts = torch.zeros(groups, dtype=torch.float64).index_add_(
        0, group_id, torch.ones(n, dtype=torch.float64)
    )
    ranks = torch.empty(n, dtype=torch.float64)
    ranks[order] = (sums / counts)[group_id]
    return ranks


def roc_curve(negatives: Tensor, positives: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(false-positive rate, true-positive rate, thresholds) of "score >= threshold is adversarial",
    from the strictest threshold (+inf: nothing flagged) down to the loosest (everything flagged).
    """
    neg = negatives.detach().double().flatten().cpu()
    pos = positives.detach().double().flatten().cpu()
    scores = torch.cat([neg, pos])
    labels = torch.cat([torch.zeros(neg.numel()), torch.ones(pos.numel())]).double()
    order = torch.argsort(scores, descending=True, stable=True)
    s, lab = scores[order], labels[order]
    # Keep the last index of each run of equal scores: a threshold flags all ties together.
    last = torch.ones(s.numel(), dtype=torch.bool)
    last[:-1] = s[:-1] != s[1:]
    tp = torch.cumsum(lab, 0)[last]
    fp = torch.cumsum(1 - lab, 0)[last]
    zero = torch.zeros(1, dtype=torch.float64)
    tpr = torch.cat([zero, tp / max(pos.numel(), 1)])
    fpr = torch.cat([zero, fp / max(neg.numel(), 1)])
    thresholds = torch.cat([torch.full((1,), float("inf"), dtype=torch.float64), s[last]])
    return fpr, tpr, thresholds
