"""Stochastic Activation Pruning for Robust Adversarial Defense (Dhillon et al., ICLR 2018).

Paper: "Stochastic Activation Pruning for Robust Adversarial Defense", Guneet S. Dhillon, Kamyar
Azizzadenesheli, Zachary C. Lipton, Jeremy Bernstein, Jean Kossaifi, Aran Khanna, Anima Anandkumar,
https://arxiv.org/abs/1803.01442 (catalog key `2018_Dhillon_G_p-iclr_saprad`); official tutorial
Guneet-Dhillon/Stochastic-Activation-Pruning `SAP.ipynb` (MXNet) with the operator
`StochasticActivationPruning` of the author's MXNet fork (`src/operator/stochastic_activation_pruning-inl.h`).

Reproduces: Section 4.1 (DENSE against SAP-100 under FGSM over lambda in {0, 1, ..., 64}, the
attack gradient and the prediction averaged over Monte-Carlo draws; SAP-50 and SAP-30 beside it)
and Section 4.5 (the iterative attack through SAP-100 itself and transferred from DENSE), for the
ResNet-20 of the official notebook on CIFAR-10 (`full`; not run where CIFAR-10 is not here) and a
small pre-activation ResNet on Fashion-MNIST as the stated analogue; beside them the adaptive
attack the paper did not run: EOT-PGD (`repro.obfuscated_gradients.eot_pgd_linf`), Athalye et
al.'s break. The adversarially trained model (Section 4.1.3) and the Atari agents (Table 1) are not
reproduced (their rows are kept in `expected.csv`, not run).

Map from the paper to the code:
- Section 3, the sampling distribution of layer i, p_j = |h_j| / sum_k |h_k| (per example, over
  the flattened activation map) -> `sap_mask`
- Section 3, r draws with replacement, r = k% of the layer's activation count ("SAP-k"; the
  operator's `int(frac * a)`) -> `frac` in `sap_mask`
- Section 3, M_p(h)_j = h_j 1{j drawn at least once} / (1 - (1 - p_j)^r), which keeps
  E[M_p(h)] = h -> `sap_mask`, `StochasticActivationPruning`
- the operator's backward pass: the incoming gradient times the same mask (no gradient through
  p) -> `StochasticActivationPruning.forward`
- SAP after every ReLU of a pretrained network, no fine-tuning -> `with_sap`
- the notebook's ResNet-20 (input BN, conv 3x3 16, 3 stages x 3 pre-activation BN-ReLU units of
  16 / 32 / 64 filters, BN-ReLU, global average pool, FC 10; Xavier-gaussian magnitude 2, i.e.
  He init) -> `preact_resnet`, `PreActUnit`, `PreActResNet`
- the dense training recipe (SGD, momentum 0.9, weight decay 1e-4, piecewise-constant rate)
  through the toolkit's loop -> `train_piecewise` (`repro.train.train_classifier`)
- the prediction of a stochastic model: the mean of the softmax over `mc_samples_output`
  forward passes, then argmax -> `mc_probabilities`, `mc_correct`
- FGSM whose gradient is the mean over `mc_samples_gradient` draws, one gradient for every lambda
  of the grid, x' = clip_[0, 1](x + lambda sign(mean grad)) -> `fgsm_mc_grid` (`repro.fgsm.fgsm`
  on `Draws`)
- Section 4.5, the iterative attack (ceil(lambda / k) steps of size k, 10 draws per step through
  SAP-100 itself) -> `iterative_attack` (`repro.obfuscated_gradients.eot_pgd_linf`, no random
  start)
- ours, not the paper's: EOT-PGD (random start, gradients averaged over `samples` draws per step)
  -> `repro.obfuscated_gradients.eot_pgd_linf`

Deviations (each also in README.md, with why):
- `sampler="bernoulli"` (smoke and small) keeps unit j with probability 1 - (1 - p_j)^r
  independently of the others: the exact marginal of the r draws with replacement, without their
  (weak, negative) dependence; `sampler="multinomial"` draws the r indices as the operator does and
  is the default at `full`. Drawing r = 10^4 indices per example and layer costs ten times more on
  a CPU.
- Images are in [0, 1] and lambda is in 1/255 units (the paper's 0-255 pixels); the notebook's
  per-channel mean subtraction is left to the input batch normalisation (`bn_data`, as in its
  symbol), so x is fed unnormalised.
- The attack gradient is taken with batch normalisation in eval mode (running statistics); the
  notebook's attack module was bound `for_training=True`, so its BN used the batch's statistics.
- `iterative_attack` keeps, per image, the iterate with the highest loss (averaged over the draws)
  rather than the last one (`eot_pgd_linf`); it is never weaker in loss.
- The small scale's ResNet has one unit per stage and a stride-2 first convolution (14x14 maps),
  so that SAP's sampling stays affordable on 1 CPU thread; `full` is the notebook's ResNet-20.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro.fgsm import fgsm
from repro.obfuscated_gradients import eot_pgd_linf
from repro.train import frozen, train_classifier

__all__ = [
    "SAMPLERS",
    "Draws",
    "PreActResNet",
    "PreActUnit",
    "StochasticActivationPruning",
    "fgsm_mc_grid",
    "iterative_attack",
    "mc_correct",
    "mc_probabilities",
    "preact_resnet",
    "sap_layers",
    "sap_mask",
    "train_piecewise",
    "with_sap",
]

Sampler = Literal["bernoulli", "multinomial"]
SAMPLERS = ("bernoulli", "multinomial")


# --------------------------------------------------------------------------- the method


def _draw(shape: torch.Size, generator: torch.Generator | None, like: Tensor) -> Tensor:
    """Uniform [0, 1) numbers of `shape`, drawn on the generator's device, moved to `like`'s."""
    device = generator.device if generator is not None else like.device
    return torch.rand(shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


@torch.no_grad()
def sap_mask(
    h: Tensor,
    frac: float = 1.0,
    *,
    sampler: Sampler = "bernoulli",
    generator: torch.Generator | None = None,
) -> Tensor:
    """The SAP mask m of an activation map h (N, ...): M_p(h) = h * m.

    Per example, p_j = |h_j| / sum_k |h_k| over the flattened map of a units, r = int(frac * a)
    draws with replacement from p, and m_j = 1 / (1 - (1 - p_j)^r) where j was drawn at least once,
    0 elsewhere (Section 3; the operator's `mask`). `sampler`: "multinomial" draws the r indices;
    "bernoulli" keeps each j with its exact marginal probability 1 - (1 - p_j)^r, independently.
    A map of zeros gets a zero mask. The mask carries no gradient (the operator's backward treats
    it as a constant).
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sap_mask: sampler must be one of {SAMPLERS}, got {sampler!r}")
    if not frac > 0:
        raise ValueError(f"sap_mask: frac must be > 0, got {frac}")
    flat = h.detach().flatten(1).abs()
    a = flat.shape[1]
    r = int(frac * a)
    if r < 1 or flat.numel() == 0:
        return torch.zeros_like(h)
    total = flat.sum(dim=1, keepdim=True)
    alive = total > 0
    p = flat / torch.where(alive, total, torch.ones_like(total))
    keep_prob = -torch.expm1(r * torch.log1p(-p))  # 1 - (1 - p)^r, accurate for small p
    if sampler == "multinomial":
        rows = torch.where(alive, p, torch.full_like(p, 1.0 / a))  # all-zero rows: any draw
        device = generator.device if generator is not None else rows.device
        index = torch.multinomial(rows.to(device), r, replacement=True, generator=generator)
        drawn = torch.zeros(flat.shape, dtype=torch.bool, device=device)
        drawn.scatter_(1, index, True)
        drawn = drawn.to(h.device) & alive
    else:
        drawn = _draw(flat.shape, generator, flat) < keep_prob
    scale = torch.where(drawn, keep_prob, torch.ones_like(keep_prob)).reciprocal()
    return torch.where(drawn, scale, torch.zeros_like(scale)).view_as(h)


class StochasticActivationPruning(nn.Module):
    """SAP-k as a layer: h -> h * `sap_mask(h)` with a fresh draw at every call (train or eval).

    `frac` = k / 100 (SAP-100: r equals the layer's activation count). The gradient with respect
    to h is the incoming gradient times the mask, as the operator's backward pass computes it.
    `generator` (on the activations' device, or None for the global stream) makes the draws
    reproducible.
    """

    def __init__(
        self,
        frac: float = 1.0,
        *,
        sampler: Sampler = "bernoulli",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        self.frac = float(frac)
        self.sampler: Sampler = sampler
        self.generator = generator

    def forward(self, h: Tensor) -> Tensor:
        return h * sap_mask(h, self.frac, sampler=self.sampler, generator=self.generator)

    def extra_repr(self) -> str:
        return f"frac={self.frac}, sampler={self.sampler}"


def with_sap(
    model: nn.Module,
    frac: float = 1.0,
    *,
    sampler: Sampler = "bernoulli",
    generator: torch.Generator | None = None,
) -> nn.Module:
    """A copy of the pretrained `model` with SAP-k after every `nn.ReLU` (no fine-tuning).

    Each `nn.ReLU` module becomes `nn.Sequential(ReLU, StochasticActivationPruning(frac))`, so
    whatever reads the ReLU's output (a residual unit's convolution and its projection shortcut,
    as in the notebook's symbol) reads the pruned map. The weights are copied; `model` is left as
    it was. All SAP layers share `generator`. Functional ReLUs (`F.relu`) are not found: the
    networks here use modules.
    """
    pruned = copy.deepcopy(model)
    replaced = 0
    for parent in list(pruned.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.ReLU):
                layer = StochasticActivationPruning(frac, sampler=sampler, generator=generator)
                setattr(parent, name, nn.Sequential(child, layer))
                replaced += 1
    if replaced == 0:
        raise ValueError("with_sap: the model has no nn.ReLU module to prune after")
    return pruned


def sap_layers(model: nn.Module) -> list[StochasticActivationPruning]:
    """The SAP layers of a model made by `with_sap`, in forward order of registration."""
    return [m for m in model.modules() if isinstance(m, StochasticActivationPruning)]


# --------------------------------------------------------------------------- the network


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=2e-5, momentum=0.1)  # MXNet momentum 0.9


class PreActUnit(nn.Module):
    """The notebook's `residual_unit`: BN-ReLU-conv3x3(stride)-BN-ReLU-conv3x3, plus a shortcut
    that is the input itself or, when `project` (the first unit of a stage), a 1x1 convolution of
    the first ReLU's output."""

    def __init__(self, cin: int, cout: int, stride: int, project: bool) -> None:
        super().__init__()
        self.bn1, self.relu1 = _bn(cin), nn.ReLU()
        self.conv1 = _conv3x3(cin, cout, stride)
        self.bn2, self.relu2 = _bn(cout), nn.ReLU()
        self.conv2 = _conv3x3(cout, cout)
        if not project and (cin != cout or stride != 1):
            raise ValueError("PreActUnit: an identity shortcut needs cin == cout and stride 1")
        self.shortcut = nn.Conv2d(cin, cout, 1, stride=stride, bias=False) if project else None

    def forward(self, x: Tensor) -> Tensor:
        a1 = self.relu1(self.bn1(x))
        out = self.conv2(self.relu2(self.bn2(self.conv1(a1))))
        return out + (x if self.shortcut is None else self.shortcut(a1))


class PreActResNet(nn.Module):
    """The notebook's `get_symbol`: BN on the input (gamma fixed at 1), conv3x3 to `filters[0]`,
    three stages of `units` units (`filters[1:]`, stride 1, 2, 2), BN-ReLU, global average pool,
    FC. `stem_stride` 2 halves the maps before the first stage (the small scale's network)."""

    def __init__(
        self,
        in_channels: int = 3,
        classes: int = 10,
        *,
        filters: Sequence[int] = (16, 16, 32, 64),
        units: int = 3,
        stem_stride: int = 1,
    ) -> None:
        super().__init__()
        if len(filters) != 4 or units < 1:
            raise ValueError("PreActResNet: need four filter counts and units >= 1")
        self.bn_data = nn.BatchNorm2d(in_channels, eps=2e-5, momentum=0.1)
        self.bn_data.weight.requires_grad_(False)  # fix_gamma=True
        self.conv0 = _conv3x3(in_channels, filters[0], stem_stride)
        blocks: list[nn.Module] = []
        cin = filters[0]
        for stage, cout in enumerate(filters[1:]):
            for unit in range(units):
                stride = 2 if stage > 0 and unit == 0 else 1
                blocks.append(PreActUnit(cin, cout, stride, project=unit == 0))
                cin = cout
        self.stages = nn.Sequential(*blocks)
        self.bn1, self.relu1 = _bn(cin), nn.ReLU()
        self.fc = nn.Linear(cin, classes)
        for module in self.modules():  # Xavier(gaussian, in, magnitude 2) = He normal, fan in
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu1(self.bn1(self.stages(self.conv0(self.bn_data(x)))))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


def preact_resnet(
    in_channels: int = 3,
    classes: int = 10,
    *,
    filters: Sequence[int] = (16, 16, 32, 64),
    units: int = 3,
    stem_stride: int = 1,
) -> PreActResNet:
    """ResNet-20 of the notebook by default (3 units per stage: 6n + 2 = 20 layers)."""
    return PreActResNet(in_channels, classes, filters=filters, units=units, stem_stride=stem_stride)


def train_piecewise(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    schedule: Sequence[tuple[float, int]],
    batch_size: int,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    augment: Callable[[Tensor], Tensor] | None = None,
    generator: torch.Generator | None = None,
    desc: str = "train",
    progress: bool = False,
) -> list[float]:
    """The dense model's recipe: SGD (momentum, weight decay) with a piecewise-constant rate,
    `schedule` = [(lr, epochs), ...] (the paper: (0.5, 100), (0.05, 30), (0.005, 20)), through
    `repro.train.train_classifier` with one optimizer kept across the pieces.

    `augment(x) -> x'`, when given, makes a new augmented copy of the training set for every epoch
    (the notebook's random crops; it carries its own generator), and the loop runs epoch by epoch.
    `generator` (on the CPU, as `train_classifier` wants it) orders the batches. Returns the mean
    loss of every epoch.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=schedule[0][0], momentum=momentum, weight_decay=weight_decay)
    losses: list[float] = []
    for lr, epochs in schedule:
        for group in opt.param_groups:
            group["lr"] = lr
        # with augmentation: a new augmented copy of the training set for every epoch
        pieces = [(x, epochs)] if augment is None else ((augment(x), 1) for _ in range(epochs))
        for xs, n in pieces:
            losses += train_classifier(model, xs, y, epochs=n, batch_size=batch_size, lr=lr,
                                       optimizer=opt, generator=generator, desc=desc,
                                       progress=progress)  # fmt: skip
    return losses


# --------------------------------------------------------------------------- evaluation


@torch.no_grad()
def mc_probabilities(
    model: nn.Module, x: Tensor, *, samples: int = 1, batch_size: int = 500
) -> Tensor:
    """The mean of softmax(model(x)) over `samples` forward passes (each a fresh SAP draw), in
    eval mode; the model's mode is restored. (N, classes) float32."""
    if samples < 1:
        raise ValueError(f"mc_probabilities: samples must be >= 1, got {samples}")
    was_training = model.training
    model.eval()
    try:
        out = []
        for i in range(0, x.shape[0], batch_size):
            xb = x[i : i + batch_size]
            total = model(xb).softmax(dim=1)
            for _ in range(samples - 1):
                total += model(xb).softmax(dim=1)
            out.append(total / samples)
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, 10, device=x.device)


def mc_correct(
    model: nn.Module, x: Tensor, y: Tensor, *, samples: int = 1, batch_size: int = 500
) -> Tensor:
    """Per image, whether the Monte-Carlo prediction (argmax of the mean softmax over `samples`
    passes) is `y`: the bool vector behind an accuracy and its bootstrap interval."""
    probs = mc_probabilities(model, x, samples=samples, batch_size=batch_size)
    return probs.argmax(dim=1) == y


class Draws(nn.Module):
    """`samples` forward passes of a (stochastic) model on the same batch, stacked draw-major:
    (samples * N, classes). The summed cross-entropy over these rows, with the labels repeated
    (`y.repeat(samples)`), has as input gradient `samples` times the mean of the draws'
    gradients: what the notebook's `AdversaryIter` accumulates."""

    def __init__(self, model: nn.Module, samples: int) -> None:
        super().__init__()
        if samples < 1:
            raise ValueError(f"Draws: samples must be >= 1, got {samples}")
        self.model = model
        self.samples = samples

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.model(x) for _ in range(self.samples)])


def fgsm_mc_grid(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: Sequence[float],
    samples: int = 1,
    clip: tuple[float, float] = (0.0, 1.0),
) -> list[Tensor]:
    """FGSM at every eps of the grid from one Monte-Carlo gradient: x + eps sign(g), clipped,
    where g is the mean input gradient of the cross-entropy over `samples` draws.

    The sign is `repro.fgsm.fgsm` on `Draws(model, samples)` with unit step and no clipping,
    minus x; one gradient serves every eps, as in the notebook (`samples=1` on a deterministic
    model is plain FGSM). The model is left as it was; the outputs are detached.
    """
    x = x.detach()
    if x.shape[0] == 0:
        return [x.clone() for _ in eps]
    with frozen(model):
        stepped = fgsm(Draws(model, samples), x, y.repeat(samples), eps=1.0, clip=None)
    direction = (stepped - x).sign()
    return [(x + e * direction).clamp(clip[0], clip[1]).detach() for e in eps]


def iterative_attack(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    step: float,
    samples: int = 1,
) -> Tensor:
    """Section 4.5's iterative attack: ceil(eps / step) sign steps of size `step`, projected on
    the eps-ball and [0, 1], from x itself, each step's gradient averaged over `samples` draws
    (`repro.obfuscated_gradients.eot_pgd_linf` without a random start). eps = 0 returns x."""
    if eps <= 0:
        return x.detach().clone()
    steps = math.ceil(eps / step - 1e-9)
    return eot_pgd_linf(model, x, y, eps=eps, step_size=step, steps=steps, samples=samples,
                        random_start=False)  # fmt: skip


# --------------------------------------------------------------------------- CIFAR-10 input


def center_crop(x: Tensor, size: int = 28) -> Tensor:
    """The central size x size window of every image (the notebook's validation iterator: CIFAR-10's
    32 x 32 images cut to the 28 x 28 the network is bound to)."""
    h, w = x.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top : top + size, left : left + size]


def random_crop_mirror(
    x: Tensor,
    generator: torch.Generator | None = None,
    *,
    size: int = 28,
    pad: int = 4,
    fill: float = 127 / 255,
) -> Tensor:
    """The notebook's training augmentation (without its HSL jitter): pad by `pad` with the grey
    `fill`, a random size x size crop per image, and a horizontal mirror with probability 1/2."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), value=fill)
    device = generator.device if generator is not None else x.device
    top = torch.randint(0, h + 2 * pad - size + 1, (n,), generator=generator, device=device)
    left = torch.randint(0, w + 2 * pad - size + 1, (n,), generator=generator, device=device)
    flip = torch.rand(n, generator=generator, device=device) < 0.5
    top, left, flip = top.to(x.device), left.to(x.device), flip.to(x.device)
    offsets = torch.arange(size, device=x.device)
    rows = (top[:, None] + offsets)[:, :, None]
    cols = left[:, None] + torch.where(flip[:, None], offsets.flip(0), offsets)
    images = torch.arange(n, device=x.device)[:, None, None]
    return (
        padded.permute(0, 2, 3, 1)[images, rows, cols[:, None, :]].permute(0, 3, 1, 2).contiguous()
    )
