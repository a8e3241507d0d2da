"""Explaining Classifiers using Adversarial Perturbations on the Perceptual Ball (Elliott, Law &
Russell, CVPR 2021).

Paper: "Explaining Classifiers using Adversarial Perturbations on the Perceptual Ball", Andrew
Elliott, Stephen Law, Chris Russell, https://arxiv.org/abs/1912.09405 (catalog key
`2021_Elliott_A_p-cvpr_ecuappb`); official code alan-turing-institute/perceptualBall (commit
2ff5680: `common_code/mul_perceptualFunc_Final.py`, `example.py`), which is where every setting
below was read: no copy of the paper's text or tables was available (research notes,
defense-papers.md section 5, "UNCONFIRMED").

Reproduces: the method (an adversarial perturbation regularised by a perceptual loss over several
ReLU layers, minimised by L-BFGS, its pixelwise magnitude as a saliency map) and the paper's
evaluation that needs no segmentation data (insertion and deletion curves and their areas; the
pointing game) against the plain gradient, Integrated Gradients and the same perturbation
without the perceptual term (gamma = 0), on Fashion-MNIST as the stated analogue: ImageNet,
PASCAL VOC 2007, COCO 2014 and the pretrained networks are not here, and the paper's own numbers
were not recovered (expected.csv keeps its rows as not run). The pointing game's analogue is built
from Fashion-MNIST: `pointing_canvases`.

Map from the paper to the code:
- the perceptual-ball loss of one image x with class t = argmax f(x) (`create_perceptual_loss2`):
  L(x') = gamma * sum_l MSE(F_l(x'), F_l(x)) + s * MSE(x', x) + (m_t(x') - v)^2 with the margin
  m_t(x') = f_t(x') - max_{j != t} f_j(x'), F_l the ReLU layers' outputs, defaults gamma = 10000,
  s = 1, v = -2 -> `perceptual_ball_loss`, the margin `class_margin`, the layers' outputs by
  `capture`
- the adversarial perturbation on the perceptual ball: x' = argmin L(x') from x' = x by L-BFGS
  (`find_direction`: `torch.optim.LBFGS`, max_iter 100 in the example, 200 by default, no box)
  -> `perceptual_ball`, with `repro.perceptual_ball.lbfgs.lbfgs_batched`
- the unregularised adversarial perturbation the paper contrasts it with: the same loss with
  gamma = 0 -> `gamma` in `perceptual_ball`, set to 0
- the saliency map: sqrt(mean over channels (x' - x)^2), then a Gaussian blur (sigma 2 on 224 px,
  scipy's `gaussian_filter`) -> `perturbation_saliency`, `gaussian_blur`
- the baselines: the plain gradient (Simonyan et al.) and Integrated Gradients (Sundararajan et
  al.), through captum -> `gradient_saliency`, `integrated_gradients_saliency`; a random map as
  the chance level -> `random_saliency`
- the insertion and deletion curves and their areas (Petsiuk et al.'s metrics), the pointing game
  (Zhang et al.) and a sparsity index -> `repro.perceptual_ball.metrics`
- the paper's VGG-like networks (blocks of conv-BN-ReLU, the ReLUs regularised) at our scale
  -> `small_vgg`, its ReLU layers `RELU_LAYERS`
- the pointing game's analogue: one garment per 2 x 2 canvas, its cell the box to point at
  -> `pointing_canvases`

Deviations (each also in README.md, with why):
- Fashion-MNIST (28 x 28, grey) and a small VGG-like network trained here (4 conv-BN-ReLU layers,
  16/32 channels) instead of ImageNet/VOC/COCO images and pretrained VGG19-bn/VGG16/ResNet50. The
  regularised layers are its four ReLUs, spanning the feature extractor as the official default
  list does. The network takes pixels in [0, 1] (no ImageNet standardisation).
- gamma and s are the official weights per element: the loss's MSEs are means over a layer's (or
  the image's) elements, and our layers have 1/64 of the elements of the official example's
  (16 x 28 x 28 against 256 x 56 x 56; 32 x 14 x 14 against 512 x 28 x 28), so gamma = 10000 / 64
  = 156.25; our 784 pixels in [0, 1] against 150,528 standardised values (std 0.226) give
  s = 784 / (150,528 x 0.226^2) = 0.102. With the literal gamma = 10000 the perturbation hardly
  moves on our network (the notebook runs it too, as `perceptual_ball_literal`).
- The blur keeps the paper's scale relative to the image: sigma = 2 px at 224 px is 0.25 px at
  28 px (practically no blur). The same blur is applied to every method's map, so the comparison
  is between orderings of the same post-processing.
- L-BFGS runs on the whole batch, but as independent problems (`lbfgs_batched`: each image ends
  where `torch.optim.LBFGS` alone on it ends); the official code runs one image at a time.
- The pointing game is an analogue (`pointing_canvases`): a garment (downsampled to 14 x 14) in
  one cell of a 2 x 2 canvas, a patch-shuffled other garment as a distractor in another cell,
  uniform noise everywhere; the box is the garment's cell (chance 25%). A second network of the
  same architecture is trained on such canvases. The paper's pointing game is on VOC07/COCO14
  with object boxes and a 15 px tolerance.
- Every explanation is of the class the network predicts, and only correctly classified images
  (and canvases) are explained, so that the predicted and the true class are the same.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro.perceptual_ball.lbfgs import lbfgs_batched
from repro.train import frozen

__all__ = [
    "RELU_LAYERS",
    "Canvases",
    "PerturbationResult",
    "SmallVGG",
    "capture",
    "class_margin",
    "gaussian_blur",
    "gradient_saliency",
    "integrated_gradients_saliency",
    "lbfgs_batched",
    "perceptual_ball",
    "perceptual_ball_loss",
    "perturbation_saliency",
    "pointing_canvases",
    "random_saliency",
    "small_vgg",
]

#: the ReLU outputs of `small_vgg`'s feature extractor (module names), regularised by default
RELU_LAYERS = ("features.2", "features.5", "features.9", "features.12")


# --------------------------------------------------------------------------- the network


class SmallVGG(nn.Module):
    """A VGG-like network at Fashion-MNIST scale: `features` (two blocks of two conv-BN-ReLU and a
    max-pool) then `classifier` (a hidden ReLU layer and the logits), as torchvision's VGGs."""

    def __init__(
        self,
        image_size: int = 28,
        channels: tuple[int, int] = (16, 32),
        hidden: int = 128,
        classes: int = 10,
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        if image_size % 4:
            raise ValueError(f"small_vgg: image_size must be a multiple of 4, got {image_size}")
        c1, c2 = channels

        def block(c_in: int, c_out: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]

        self.features = nn.Sequential(
            *block(in_channels, c1), *block(c1, c1), nn.MaxPool2d(2),
            *block(c1, c2), *block(c2, c2), nn.MaxPool2d(2),
        )  # fmt: skip
        side = image_size // 4
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(c2 * side * side, hidden), nn.ReLU(), nn.Linear(hidden, classes)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def small_vgg(image_size: int = 28, channels: tuple[int, int] = (16, 32)) -> SmallVGG:
    """The network of this reproduction (its ReLU outputs are `RELU_LAYERS`)."""
    return SmallVGG(image_size=image_size, channels=channels)


# --------------------------------------------------------------------------- the method


@contextmanager
def capture(model: nn.Module, layers: Sequence[str]) -> Iterator[dict[str, Tensor]]:
    """Record the outputs of the named submodules during the forward passes inside the block.

    Yields a dict, filled with `name -> output` by every forward pass (the last pass wins). The
    official `FeatureExtractor` walks a VGG's `features` by index; hooks work for any network.
    """
    modules = dict(model.named_modules())
    missing = [name for name in layers if name not in modules]
    if missing:
        raise ValueError(f"capture: the model has no module(s) {missing}")
    store: dict[str, Tensor] = {}
    handles = []
    for name in layers:

        def hook(_m: nn.Module, _i: object, out: Tensor, name: str = name) -> None:
            store[name] = out

        handles.append(modules[name].register_forward_hook(hook))
    try:
        yield store
    finally:
        for handle in handles:
            handle.remove()


def class_margin(logits: Tensor, target: Tensor) -> Tensor:
    """f_t(x) - max_{j != t} f_j(x) per row: positive while the class t is still predicted."""
    own = logits.gather(1, target[:, None]).squeeze(1)
    others = logits.scatter(1, target[:, None], float("-inf")).amax(dim=1)
    return own - others


def perceptual_ball_loss(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    *,
    layers: Sequence[str],
    gamma: float = 1e4,
    pixel_weight: float = 1.0,
    margin_target: float = -2.0,
) -> Callable[[Tensor], Tensor]:
    """The loss L(x') of `create_perceptual_loss2`, for a batch: one value per image.

    L_i(x') = gamma * sum_l mean((F_l(x'_i) - F_l(x_i))^2) + pixel_weight * mean((x'_i - x_i)^2)
              + (class_margin(f(x'_i), t_i) - margin_target)^2,
    the means over each layer's (or the image's) elements, as `torch.nn.MSELoss` of one image.
    `model` must be in eval mode (each image's loss then depends on that image only).
    """
    x = x.detach()
    layers = tuple(layers) if gamma else ()
    with torch.no_grad(), capture(model, layers) as feats:
        model(x)
        reference = {name: feats[name].detach() for name in layers}

    def loss(x_new: Tensor) -> Tensor:
        with capture(model, layers) as out:
            logits = model(x_new)
        total = pixel_weight * (x_new - x).flatten(1).pow(2).mean(dim=1)
        for name in layers:
            total = total + gamma * (out[name] - reference[name]).flatten(1).pow(2).mean(dim=1)
        return total + (class_margin(logits, target) - margin_target).pow(2)

    return loss


class PerturbationResult(NamedTuple):
    """What `perceptual_ball` returns: the perturbed images x', their margin f_t(x') -
    max_{j != t} f_j(x') (negative: the class changed), and the L-BFGS steps per image."""

    x_adv: Tensor
    margin: Tensor
    iterations: Tensor


def perceptual_ball(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    *,
    layers: Sequence[str] = RELU_LAYERS,
    gamma: float = 1e4,
    pixel_weight: float = 1.0,
    margin_target: float = -2.0,
    max_iter: int = 100,
    batch_size: int = 100,
) -> PerturbationResult:
    """The adversarial perturbation on the perceptual ball: x' = argmin `perceptual_ball_loss`,
    by L-BFGS from x' = x (`find_direction`), `batch_size` independent problems at a time.

    Args:
        model: the classifier (eval mode, frozen parameters during the call; both restored).
        x: the images (NCHW); target: the class t of each image (the paper: argmax f(x)).
        layers: the ReLU modules regularised; gamma, pixel_weight (s), margin_target (v): the
            loss's weights and target margin (the official defaults 10000, 1, -2); gamma = 0 is
            the unregularised adversarial perturbation.
        max_iter: L-BFGS iterations (the official example 100, the function's default 200).

    x' is not clipped to the image box, as in the official code (no `mins` / `maxs`).
    """
    if x.shape[0] != target.shape[0]:
        raise ValueError(f"perceptual_ball: {x.shape[0]} images but {target.shape[0]} targets")
    outs, margins, iters = [], [], []
    with frozen(model):
        for i in range(0, x.shape[0], batch_size):
            xb, tb = x[i : i + batch_size].detach(), target[i : i + batch_size]
            loss = perceptual_ball_loss(
                model, xb, tb, layers=layers, gamma=gamma, pixel_weight=pixel_weight,
                margin_target=margin_target,
            )  # fmt: skip
            res = lbfgs_batched(loss, xb, max_iter=max_iter)
            with torch.no_grad():
                margins.append(class_margin(model(res.x), tb))
            outs.append(res.x)
            iters.append(res.iterations)
    return PerturbationResult(torch.cat(outs), torch.cat(margins), torch.cat(iters))


def gaussian_blur(maps: Tensor, sigma: float) -> Tensor:
    """Each map (N, H, W) blurred by scipy's `gaussian_filter` (reflecting borders, truncated at
    4 sigma), as the official example blurs its map; sigma = 0 returns the maps unchanged."""
    if sigma <= 0:
        return maps.detach().clone()
    from scipy.ndimage import gaussian_filter

    arr = maps.detach().cpu().double().numpy()
    out = gaussian_filter(arr, sigma=(0, sigma, sigma))
    return torch.from_numpy(out).to(device=maps.device, dtype=maps.dtype)


def perturbation_saliency(x: Tensor, x_adv: Tensor, blur_sigma: float = 0.0) -> Tensor:
    """The paper's map: sqrt(mean over channels of (x' - x)^2) per pixel, blurred; (N, H, W)."""
    return gaussian_blur((x_adv - x).detach().pow(2).mean(dim=1).sqrt(), blur_sigma)


# --------------------------------------------------------------------------- the baselines


def gradient_saliency(model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
    """The plain gradient (captum's `Saliency`): |d f_t / d x|, its maximum over channels;
    (N, H, W)."""
    from captum.attr import Saliency

    with frozen(model):
        attr = Saliency(model).attribute(x.detach().requires_grad_(True), target=target, abs=True)
    return attr.detach().amax(dim=1)


def integrated_gradients_saliency(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    *,
    steps: int = 50,
    baseline: float = 0.0,
    internal_batch_size: int = 1000,
) -> Tensor:
    """|Integrated Gradients| of f_t from a constant `baseline` image (captum, Gauss-Legendre,
    `steps` points), the maximum over channels, (N, H, W)."""
    from captum.attr import IntegratedGradients

    with frozen(model):
        attr = IntegratedGradients(model).attribute(
            x.detach(), baselines=baseline, target=target, n_steps=steps,
            internal_batch_size=internal_batch_size,
        )  # fmt: skip
    return attr.detach().abs().amax(dim=1)


def random_saliency(x: Tensor, generator: torch.Generator) -> Tensor:
    """A uniformly random map per image (N, H, W): the chance level of every metric."""
    n, _, h, w = x.shape
    return torch.rand(n, h, w, generator=generator).to(x.device)


# --------------------------------------------------------------------------- the pointing game


class Canvases(NamedTuple):
    """Pointing-game canvases: the images, the garment's label, its cell, and its box (top, left,
    height, width) in pixels; the distractor's cell."""

    x: Tensor
    y: Tensor
    cell: Tensor
    boxes: Tensor
    distractor_cell: Tensor


def pointing_canvases(
    x: Tensor, y: Tensor, *, generator: torch.Generator, noise: float = 0.2
) -> Canvases:
    """One 2 x 2 canvas (the size of `x`'s images) per image of `x`.

    The image, average-pooled to half its side, goes into a random cell; another image of the
    batch, pooled the same way and with its four quarters rotated one to three places (every
    quarter moved, so its shape is broken but its strokes are those of a garment), goes into
    another random cell as a distractor; every pixel is the maximum of these and of uniform
    noise in [0, `noise`]. The box to point at is the image's cell. Draws from `generator` (CPU).
    """
    n, c, h, w = x.shape
    if n < 2 or h % 4 or w % 4:
        raise ValueError("pointing_canvases: need 2+ images whose sides are multiples of 4")
    ch, cw = h // 2, w // 2
    dev = x.device

    def draw(high: int, low: int = 0) -> Tensor:
        return torch.randint(low, high, (n,), generator=generator).to(dev)

    cell = draw(4)
    distractor_cell = (cell + draw(4, 1)) % 4
    other = (torch.arange(n, device=dev) + draw(n, 1)) % n
    small = F.avg_pool2d(x.detach(), 2)
    quarters = small.unfold(2, ch // 2, ch // 2).unfold(3, cw // 2, cw // 2)  # n,c,2,2,qh,qw
    quarters = quarters[other].reshape(n, c, 4, ch // 2, cw // 2)
    shift = draw(4, 1)
    order = (torch.arange(4, device=dev)[None, :] + shift[:, None]) % 4
    quarters = quarters.gather(2, order[:, None, :, None, None].expand_as(quarters))
    distractor = quarters.reshape(n, c, 2, 2, ch // 2, cw // 2).permute(0, 1, 2, 4, 3, 5)
    distractor = distractor.reshape(n, c, ch, cw)
    canvas = torch.rand(n, c, h, w, generator=generator).to(dev) * noise
    boxes = torch.stack([(cell // 2) * ch, (cell % 2) * cw], dim=1)
    d_boxes = torch.stack([(distractor_cell // 2) * ch, (distractor_cell % 2) * cw], dim=1)
    rows = torch.arange(n, device=dev)
    for part, at in ((small, boxes), (distractor, d_boxes)):
        placed = torch.zeros_like(canvas)
        for cell_id in range(4):
            sel = rows[(at[:, 0] == (cell_id // 2) * ch) & (at[:, 1] == (cell_id % 2) * cw)]
            top, left = (cell_id // 2) * ch, (cell_id % 2) * cw
            placed[sel, :, top : top + ch, left : left + cw] = part[sel]
        canvas = torch.maximum(canvas, placed)
    sizes = torch.tensor([ch, cw], device=dev).expand(n, 2)
    return Canvases(canvas, y, cell, torch.cat([boxes, sizes], dim=1), distractor_cell)
