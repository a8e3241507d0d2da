"""Exploiting Explanations for Model Inversion Attacks (Zhao, Zhang, Xiao & Lim, ICCV 2021).

Paper: "Exploiting Explanations for Model Inversion Attacks", Xuejun Zhao, Wencan Zhang, Xiaokui
Xiao, Brian Y. Lim, https://arxiv.org/abs/2104.12669 (catalog key `2021_Zhao_X_p-iccv_eemia`). No
official code was found (`../shared/papers/defense-papers.md`, section 7).

Reproduces: the protocol of the paper's inversion experiments (Figure 2's architectures, its
explanation types, reconstruction quality by MSE, SSIM and re-classification accuracy) and its
attention-transfer attack on a target that releases no explanation. The paper's numbers are on
CelebA and were not recovered (every `celeba` row of `expected.csv` is kept, unverified and not
run); the protocol runs on Fashion-MNIST as the stated analogue: the target CNN is trained on a
private split of the 60,000 training images, the attacker trains its inversion networks on a
disjoint split, and the reconstructions of the test images (never seen by either) are
scored against the private originals.

Map from the paper to the code:
- the target model M_t and the surrogate M_s (a small CNN with a global-average-pooling head,
  whose last convolution is Grad-CAM's layer) -> `TargetCNN`; the independent evaluation classifier -> `evaluation_mlp`
- the released prediction, the confidence vector y = softmax(M_t(x)) -> `confidences`
- the released explanation e = E(M_t, x) for the predicted class -> `explain`, with captum:
  gradients |dy_c/dx| (Simonyan et al.) -> `captum.attr.Saliency`; Grad-CAM on the last
  convolution, upsampled to the image -> `captum.attr.LayerGradCam`,
  `captum.attr.LayerAttribution.interpolate`; gradient x input -> `captum.attr.InputXGradient`;
  each map scaled to max |e| = 1 per image -> `normalize_explanation`
- Figure 2(d), prediction-only inversion: a transposed CNN from y to x -> `InversionNet`
  ("prediction")
- Figure 2(e), the flattened explanation concatenated with y -> `InversionNet` ("flatten")
- Figure 2(f), a U-Net over the explanation, y joined at its bottleneck -> `InversionNet`
  ("unet")
- Figure 2(g), flatten and U-Net combined -> `InversionNet` ("flatten_unet")
- the training objective, min E ||M^-1(y, e) - x||^2 over the attacker's data -> `train_inversion`
  (the reconstruction itself -> `reconstruct`)
- Figure 2(c), attention transfer for a target without explanations: the surrogate's explanation
  e_s is inverted from the target's prediction by M_e^-1, then the image by an XAI-aware M^-1:
  x^ = M^-1(y, M_e^-1(y)) -> `AttentionTransfer` (trained end to end on
  ||x^ - x||^2 + ||e^ - e_s||^2 by `train_inversion` with two targets), `attention_transfer`
- the private/attacker split of the training data (disjoint) -> `disjoint_splits`
- reconstruction quality: mean squared error per image -> `mse_per_image`; SSIM (Wang et al.
  2004, 11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03) -> `ssim`, `gaussian_window`

Deviations (each also in README.md, with why):
- Fashion-MNIST 28x28 grey images and a 3-convolution CNN with global average pooling instead of
  CelebA faces and the paper's target networks; the target predicts the 10 clothing classes (the
  paper's target predicts emotions from faces). Grad-CAM's layer is 7x7 (the last convolution),
  upsampled bilinearly.
- Inversion networks are small (a 7x7 bottleneck of `width` channels: 32 at `small`, 64 at
  `full`; two transposed convolutions; batch norm), trained with Adam at lr 1e-3 for a few epochs
  without early stopping (the third-party ExpMI re-implementation: bottleneck 2048, Adam 1e-4, up
  to 300 epochs with early stopping).
- Explanations are those captum computes (gradient magnitude, Grad-CAM with ReLU, gradient x
  input), for the target's predicted class, each scaled to max |e| = 1 per image; LRP and the
  paper's other explanation types are not run.
- Attention transfer: how the paper trains the two stages was not recovered. We train them end to
  end, the image loss plus the explanation loss (weight 1) on the surrogate's explanation as an
  intermediate target, as "attention transfer" reads (a first development run trained M^-1 on
  the surrogate's true explanations and fed it the inverted ones at test time: that
  reconstructed worse than the prediction alone, MSE 0.078 against 0.049, README.md). The
  surrogate has the target's architecture, trained on the attacker's split with its labels, and
  explains the target's predicted class.
- SSIM uses the valid part of the filtered image (no padding), as Wang et al.'s reference code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro import ReproError
from repro.env import progress_bar
from repro.train import frozen

__all__ = [
    "ARCHITECTURES",
    "EXPLANATIONS",
    "AttentionTransfer",
    "InversionNet",
    "TargetCNN",
    "attention_transfer",
    "confidences",
    "disjoint_splits",
    "evaluation_mlp",
    "explain",
    "gaussian_window",
    "mse_per_image",
    "normalize_explanation",
    "reconstruct",
    "ssim",
    "train_inversion",
]

Explanation = Literal["gradient", "gradcam", "gradient_x_input"]
Architecture = Literal["prediction", "flatten", "unet", "flatten_unet"]
EXPLANATIONS: tuple[str, ...] = ("gradient", "gradcam", "gradient_x_input")
ARCHITECTURES: tuple[str, ...] = ("prediction", "flatten", "unet", "flatten_unet")


# --------------------------------------------------------------------------- data


def disjoint_splits(
    n: int, sizes: Sequence[int], generator: torch.Generator | None = None
) -> list[Tensor]:
    """Disjoint index sets of `range(n)` of the given sizes, from one seeded permutation (the
    private split of the target and the attacker's split, in that order)."""
    if any(s < 0 for s in sizes) or sum(sizes) > n:
        raise ReproError(f"disjoint_splits: sizes {list(sizes)} do not fit in {n} examples")
    order = torch.randperm(n, generator=generator)
    out, start = [], 0
    for size in sizes:
        out.append(order[start : start + size])
        start += size
    return out


# --------------------------------------------------------------------------- models


class TargetCNN(nn.Module):
    """The target (and surrogate) classifier: three 3x3 convolutions with batch norm and ReLU
    (`width` / 2, `width`, 2 `width` channels; max-pooling after the first two, so the last is
    7x7 on 28x28 images), global average pooling and a linear layer. `cam_layer` is the last
    convolution's ReLU, Grad-CAM's layer.

    The global-average-pooling head (as ResNets have) makes Grad-CAM the class activation map of
    the predicted class. With a flattened linear head instead, Grad-CAM's channel weights (the
    spatial means of position-specific gradients) made 80% of the ReLU'd maps all zero in a
    development run: no explanation at all for most images."""

    def __init__(self, channels: int = 1, classes: int = 10, width: int = 32) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

        half = width // 2
        self.features = nn.Sequential(
            *block(channels, half),
            nn.MaxPool2d(2),
            *block(half, width),
            nn.MaxPool2d(2),
            *block(width, 2 * width),
        )
        self.head = nn.Linear(2 * width, classes)

    @property
    def cam_layer(self) -> nn.Module:
        """The module whose output Grad-CAM weighs (the last convolution, after its ReLU)."""
        return self.features[-1]

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def evaluation_mlp(in_features: int = 784, classes: int = 10, hidden: int = 256) -> nn.Module:
    """The independent evaluation classifier (another architecture than the target's): it scores
    whether a reconstruction is still recognisably of its class."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_features, hidden),
        nn.ReLU(),
        nn.Linear(hidden, classes),
    )


def _conv(cin: int, cout: int, *, stride: int = 1, up: bool = False) -> nn.Sequential:
    """conv 3x3 (or a 4x4 stride-2 convolution / transposed convolution) - batch norm - ReLU."""
    if up:
        conv: nn.Module = nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=False)
    elif stride == 2:
        conv = nn.Conv2d(cin, cout, 4, stride=2, padding=1, bias=False)
    else:
        conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU())


class InversionNet(nn.Module):
    """An inversion network M^-1 of Figure 2: (prediction y, explanation e) -> image x^ in [0, 1].

    `arch`:
    - "prediction" (2d): y -> FC -> 64x7x7 -> transposed CNN (e is not used);
    - "flatten" (2e): the explanation's encoder features (7x7) flattened and concatenated with y,
      through FC layers to the 64x7x7 bottleneck, then the same decoder;
    - "unet" (2f): the explanation's encoder (28x28, 14x14, 7x7 features) is a U-Net's
      contracting path: its 7x7 features join y's FC map at the bottleneck, and the 28x28 and
      14x14 features are skip connections into the decoder;
    - "flatten_unet" (2g): both, the flattened path at the bottleneck and the U-Net's skips.

    `classes` is y's length, `size` the image side (a multiple of 4), `channels` the image's and
    the explanation's channels; `output` "sigmoid" for images and maps in [0, 1], "tanh" for
    signed maps in [-1, 1] (an explanation inverter of gradient x input).
    """

    def __init__(
        self,
        arch: Architecture,
        *,
        classes: int = 10,
        size: int = 28,
        channels: int = 1,
        width: int = 64,
        hidden: int = 256,
        output: Literal["sigmoid", "tanh"] = "sigmoid",
    ) -> None:
        super().__init__()
        if arch not in ARCHITECTURES:
            raise ReproError(f"InversionNet: arch must be one of {ARCHITECTURES}, got {arch!r}")
        if size % 4:
            raise ReproError(f"InversionNet: size {size} is not a multiple of 4")
        self.arch, self.output, self.side = arch, output, size // 4
        w1, w2 = width // 4, width // 2  # 28x28 and 14x14 channels
        cells = width * self.side * self.side
        self.uses_explanation = arch != "prediction"
        self.skips = arch in ("unet", "flatten_unet")
        self.flat = arch in ("flatten", "flatten_unet")
        if self.uses_explanation:
            self.enc0 = _conv(channels, w1)
            self.enc1 = _conv(w1, w2, stride=2)
            self.enc2 = _conv(w2, width, stride=2)
        fc_in = classes + (cells if self.flat else 0)
        self.fc = nn.Sequential(
            nn.Linear(fc_in, hidden), nn.ReLU(), nn.Linear(hidden, cells), nn.ReLU()
        )
        self.bottleneck = _conv(width * (2 if self.skips else 1), width)
        self.up1 = _conv(width, w2, up=True)
        self.dec1 = _conv(w2 * (2 if self.skips else 1), w2)
        self.up0 = _conv(w2, w1, up=True)
        self.dec0 = _conv(w1 * (2 if self.skips else 1), w1)
        self.out = nn.Conv2d(w1, channels, 3, padding=1)

    def forward(self, y: Tensor, e: Tensor | None = None) -> Tensor:
        if self.uses_explanation:
            if e is None:
                raise ReproError(f"InversionNet({self.arch!r}) needs the explanation")
            s0 = self.enc0(e)
            s1 = self.enc1(s0)
            s2 = self.enc2(s1)
        z = torch.cat([y, s2.flatten(1)], dim=1) if self.flat else y
        h = self.fc(z).view(y.shape[0], -1, self.side, self.side)
        if self.skips:
            h = torch.cat([h, s2], dim=1)
        h = self.up1(self.bottleneck(h))
        h = self.dec1(torch.cat([h, s1], dim=1) if self.skips else h)
        h = self.up0(h)
        h = self.dec0(torch.cat([h, s0], dim=1) if self.skips else h)
        h = self.out(h)
        return torch.sigmoid(h) if self.output == "sigmoid" else torch.tanh(h)


# --------------------------------------------------------------------------- what the target releases


@torch.no_grad()
def confidences(model: nn.Module, x: Tensor, *, batch_size: int = 1000) -> Tensor:
    """The released prediction: the softmax confidence vector of every image (eval mode; the
    model's mode is restored)."""
    was_training = model.training
    model.eval()
    try:
        out = [F.softmax(model(x[i : i + batch_size]), dim=1) for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(out).detach() if out else x.new_zeros(0, 0)


def normalize_explanation(e: Tensor, eps: float = 1e-12) -> Tensor:
    """Each map divided by its largest magnitude (max |e| = 1 per image; an all-zero map stays
    zero): the inversion model sees the map's shape, not the scale of the target's gradients."""
    scale = e.detach().flatten(1).abs().amax(dim=1).clamp_min(eps)
    return (e.detach() / scale.view(-1, *([1] * (e.dim() - 1)))).detach()


def explain(
    model: nn.Module,
    x: Tensor,
    kind: Explanation,
    *,
    target: Tensor | None = None,
    batch_size: int = 500,
    normalize: bool = True,
) -> Tensor:
    """The explanation the target releases with its prediction, for each image of `x` (N, C, H, W
    in [0, 1]), of the class `target` (default: the predicted class), computed by captum:

    - "gradient": |d y_c / d x| (captum `Saliency`, Simonyan et al.'s saliency map);
    - "gradcam": Grad-CAM on `model.cam_layer` with ReLU (captum `LayerGradCam`), averaged over
      nothing else and upsampled bilinearly to the image (`LayerAttribution.interpolate`);
    - "gradient_x_input": x * d y_c / d x (captum `InputXGradient`), signed.

    Returns a detached (N, 1, H, W) tensor (the channels of "gradient" / "gradient_x_input" are
    summed, as Grad-CAM's are), scaled by `normalize_explanation` unless `normalize=False`. The
    model is left as it was (`repro.train.frozen`).
    """
    from captum.attr import InputXGradient, LayerAttribution, LayerGradCam, Saliency

    if kind not in EXPLANATIONS:
        raise ReproError(f"explain: kind must be one of {EXPLANATIONS}, got {kind!r}")
    maps = []
    with frozen(model):
        for i in range(0, len(x), batch_size):
            xb = x[i : i + batch_size].detach().clone().requires_grad_(True)
            cls = model(xb).argmax(dim=1) if target is None else target[i : i + batch_size]
            if kind == "gradient":
                m = Saliency(model).attribute(xb, target=cls, abs=True)
            elif kind == "gradient_x_input":
                m = InputXGradient(model).attribute(xb, target=cls)
            else:
                cam = LayerGradCam(model, model.cam_layer).attribute(
                    xb, target=cls, relu_attributions=True
                )
                m = LayerAttribution.interpolate(cam, tuple(xb.shape[-2:]), "bilinear")
            maps.append(m.sum(dim=1, keepdim=True).detach())
    out = torch.cat(maps) if maps else x.new_zeros(0, 1, *x.shape[-2:])
    return normalize_explanation(out) if normalize else out


# --------------------------------------------------------------------------- inversion


def train_inversion(
    model: nn.Module,
    inputs: Sequence[Tensor],
    targets: Tensor | Sequence[Tensor],
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weights: Sequence[float] | None = None,
    generator: torch.Generator | None = None,
    desc: str = "inversion",
    progress: bool = False,
) -> list[float]:
    """Train `model(*inputs) -> targets` by mean squared error with Adam; the mean loss per epoch.

    The attacker's objective: `inputs` are what the target released for the attacker's own
    images (y, or (y, e)), `targets` the images themselves. With several targets the model
    returns one output per target and the loss is sum_i weights[i] * MSE_i (default weights 1):
    attention transfer's image and explanation terms. Batches are slices of a permutation drawn
    from `generator` (as `repro.train.train_classifier`'s); the model's mode is restored.
    """
    several = not isinstance(targets, Tensor)
    targets = list(targets) if several else [targets]  # type: ignore[list-item]
    weights = list(weights) if weights is not None else [1.0] * len(targets)
    if epochs < 0 or batch_size <= 0 or len(weights) != len(targets) or not targets:
        raise ReproError(f"{desc}: need epochs >= 0, batch_size > 0 and one weight per target")
    n = int(targets[0].shape[0])
    if any(int(t.shape[0]) != n for t in [*inputs, *targets]):
        raise ReproError(f"{desc}: inputs and targets differ in length")
    device = targets[0].device
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    was_training = model.training
    losses: list[float] = []
    steps = (n + batch_size - 1) // batch_size
    bar = progress_bar(total=epochs * steps, desc=desc, enabled=progress, unit="step")
    try:
        model.train()
        for _ in range(epochs):
            order = torch.randperm(n, generator=generator).to(device)
            total = torch.zeros((), device=device)
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                out = model(*(t[idx] for t in inputs))
                outs = list(out) if several else [out]
                loss = sum(
                    (
                        w * F.mse_loss(o, t[idx])
                        for w, o, t in zip(weights, outs, targets, strict=True)
                    ),
                    torch.zeros((), device=device),
                )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.detach() * idx.numel()
                bar.update(1)
            losses.append(float(total) / n)
    finally:
        bar.close()
        model.train(was_training)
    return losses


@torch.no_grad()
def reconstruct(model: nn.Module, inputs: Sequence[Tensor], *, batch_size: int = 1000) -> Tensor:
    """`model(*inputs)` batch by batch in eval mode (the mode is restored), detached; for a model
    with several outputs (`AttentionTransfer`), the first (the image)."""
    was_training = model.training
    model.eval()
    try:
        n = int(inputs[0].shape[0])
        out = []
        for i in range(0, n, batch_size):
            o = model(*(t[i : i + batch_size] for t in inputs))
            out.append(o if isinstance(o, Tensor) else o[0])
    finally:
        model.train(was_training)
    return torch.cat(out).detach()


class AttentionTransfer(nn.Module):
    """Figure 2(c), for a target that releases no explanation: x^ = M^-1(y, M_e^-1(y)).

    `explanation_inverter` M_e^-1 maps the target's prediction y to an explanation map e^ (an
    `InversionNet` "prediction"); `image_inverter` M^-1 is an XAI-aware `InversionNet` fed y and
    e^. `forward(y)` returns (x^, e^): trained end to end by `train_inversion` with two targets,
    the attacker's images and its surrogate's explanations of them, so that e^ is the surrogate's
    attention transferred to the inversion (and M^-1 trains on the e^ it will see).
    """

    def __init__(self, explanation_inverter: nn.Module, image_inverter: nn.Module) -> None:
        super().__init__()
        self.explanation_inverter = explanation_inverter
        self.image_inverter = image_inverter

    def forward(self, y: Tensor) -> tuple[Tensor, Tensor]:
        e_hat = self.explanation_inverter(y)
        return self.image_inverter(y, e_hat), e_hat


@torch.no_grad()
def attention_transfer(
    model: AttentionTransfer, y: Tensor, *, batch_size: int = 1000
) -> tuple[Tensor, Tensor]:
    """The reconstructions x^ = M^-1(y, M_e^-1(y)) and the inverted explanations e^ of a batch
    of target predictions, in eval mode (the mode is restored)."""
    was_training = model.training
    model.eval()
    try:
        parts = [model(y[i : i + batch_size]) for i in range(0, len(y), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat([p[0] for p in parts]).detach(), torch.cat([p[1] for p in parts]).detach()


# --------------------------------------------------------------------------- quality


def mse_per_image(x_hat: Tensor, x: Tensor) -> Tensor:
    """The mean squared pixel error of each reconstruction, shape (N,)."""
    if x_hat.shape != x.shape:
        raise ReproError(f"mse_per_image: shapes {tuple(x_hat.shape)} and {tuple(x.shape)}")
    return (x_hat.detach() - x.detach()).pow(2).flatten(1).mean(dim=1)


def gaussian_window(size: int = 11, sigma: float = 1.5) -> Tensor:
    """The normalised 2-D Gaussian window of SSIM, shape (size, size), summing to 1."""
    if size < 1 or sigma <= 0:
        raise ReproError(f"gaussian_window: need size >= 1 and sigma > 0, got {size}, {sigma}")
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g)


def ssim(
    x: Tensor,
    y: Tensor,
    *,
    data_range: float = 1.0,
    window_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> Tensor:
    """The structural similarity of each pair of images (Wang et al. 2004), shape (N,).

    SSIM = mean over the valid window positions of
    (2 mu_x mu_y + C1)(2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2)),
    local statistics weighted by a Gaussian window (11x11, sigma 1.5), C1 = (K1 L)^2,
    C2 = (K2 L)^2 with L = `data_range`; channels are averaged. 1 for identical images.
    """
    if x.shape != y.shape or x.dim() != 4:
        raise ReproError(f"ssim: need two NCHW tensors of one shape, got {x.shape}, {y.shape}")
    if min(x.shape[-2:]) < window_size:
        raise ReproError(f"ssim: images {tuple(x.shape[-2:])} smaller than the window")
    channels = x.shape[1]
    w = gaussian_window(window_size, sigma).to(device=x.device, dtype=torch.float64)
    w = w.expand(channels, 1, window_size, window_size)
    a, b = x.detach().to(torch.float64), y.detach().to(torch.float64)

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(t, w, groups=channels)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return (num / den).flatten(1).mean(dim=1).to(x.dtype)
