"""Robust Physical Perturbations, RP2 (Eykholt, Evtimov, Fernandes, Li, Rahmati, Xiao, Prakash,
Kohno & Song, CVPR 2018).

Paper: "Robust Physical-World Attacks on Deep Learning Visual Classification",
https://arxiv.org/abs/1707.08945 (catalog key `2018_Eykholt_K_p-cvpr_rpadlvc`); official code
evtimovi/robust_physical_perturbations (commit 3810af0: `lisa-cnn-attack/utils.py`,
`gtsrb-cnn-attack/utils/attack.py`, `imagenet-attack/attack_util.py`).

Reproduces: the protocol of Table 1 (lab test: targeted-attack success of stickers photographed
at several distances and angles), Table 5 (as the lecture captions it: the camouflage-art attack
on GTSRB-CNN, top class and confidence per distance x angle) and Table 3's comparison of a
sticker attack with a whole-surface poster, digitally on Fashion-MNIST (a "Sneaker" stickered to
read "Sandal"), as a stated analogue; the paper's physical tests are kept in `expected.csv` and
not run (no stop signs, LISA or GTSRB here).

Map from the paper to the code:
- the perturbed object, x' = x + M_x·δ inside the valid pixel range (the official code's clip
  of the noise to ±20 and of x + M·δ to [0, 1]) -> `apply_sticker`
- the RP2 objective: argmin_δ λ‖M_x·δ‖_p + NPS + E_{x_i ~ X^V} J(f(T_i(x_i + M_x·δ)), y*),
  Adam (lr 0.1, β 0.9 / 0.999), J the cross-entropy to the target -> `rp2`; the expectation is
  EOT's (Athalye et al., whose folder it lives in): a batched mean over the views sampled per
  image and step from a `repro.transforms.TransformDistribution` -> `repro.eot.transformed_loss`
- X^V, the distribution of physical conditions: distance (`repro.transforms.scaling`), viewing
  angle (`repro.transforms.tilt`), lighting (`brighten`) and focus (`blur`) -> a
  `repro.transforms.TransformDistribution` given to `rp2` (the notebook's CONDITIONS)
- the total-variation term of the official code (`imagenet-attack`, reglosses "tv,l2norm") ->
  `total_variation` (weight `tv_weight` in `rp2`)
- the non-printability score, NPS = Σ_{p̂ ∈ R(δ)} Π_{p' ∈ P} |p̂ − p'| (Sharif et al.), with P a
  palette of printable grey levels -> `non_printability`; printing the sticker (every pixel of
  it snapped to the nearest printable level) -> `print_sticker`
- the mask pipeline: an l1 attack over the whole object surface finds where the perturbation
  concentrates -> `rp2` with norm "l1" on `object_surface`; rectangles placed there (the
  official mask_l1loss_uniform_rectangles.png) -> `rectangle_mask`; then the l2 attack inside
  that mask -> `rp2` with norm "l2"; the whole pipeline as an attack -> `sticker_attack`
- the control of the same stickers at random places on the object -> `random_rectangle_mask`
- the lab test's attack success rate: among the views where the clean object is classified as its
  class, the fraction where the perturbed one is classified as the target ->
  `attack_success_rate`; the held-out distance x angle views (Tables 1 and 5) ->
  `view_matrices`, `view_probabilities`
- LISA-CNN, the victim network (cleverhans' `cnn_model`: three convolutions and a dense layer)
  -> `lisa_cnn`

Deviations (each also in README.md):
- Fashion-MNIST instead of road signs, every "photo" synthetic: X^V is sampled from
  `repro.transforms` (scaling for distance, a pinhole tilt for the angle, brightness, blur), not
  photographed; the held-out views are a grid of the paper's Table 5 shape (distances mapped to
  apparent sizes by `view_scale`, angles as yaw) with held-out lighting and blur draws.
- One sticker per source image (each Sneaker is its own "sign"), all images optimised at once on
  the batch dimension (their objectives are independent: a sum of per-image objectives, which
  Adam optimises coordinate by coordinate exactly as it would one at a time).
- The palette is greyscale (`PALETTE`, four levels) instead of the paper's 30 printer RGB triples;
  NPS acts on the pixel values that end up on the object (x + M·δ clipped), which are what gets
  printed.
- δ starts at 0 (the official code draws it uniformly in [0, 1]), so that the l1 attack starts
  from "no sticker"; the official noise clip of ±20 is kept.
- Where the l1 attack's rectangles go is automated (greedy: the rectangle with the largest
  sum of |δ| on the object, then the next one not overlapping it); the paper placed them by
  looking at the l1 perturbation.
- The victim is the LISA-CNN architecture at a reduced width (`nb_filters`) on 28x28 inputs,
  trained with random views of X^V's family as augmentation (the paper's LISA-CNN was trained on
  real photos, which vary in the same way).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro import ReproError
from repro.eot import transformed_loss
from repro.train import frozen
from repro.transforms import (
    TransformDistribution,
    Transforms,
    scaling,
    tilt,
)

__all__ = [
    "PALETTE",
    "RP2Result",
    "apply_sticker",
    "attack_success_rate",
    "lisa_cnn",
    "non_printability",
    "object_surface",
    "print_sticker",
    "random_rectangle_mask",
    "rectangle_mask",
    "rp2",
    "sticker_attack",
    "total_variation",
    "view_matrices",
    "view_probabilities",
    "view_scale",
]

#: the printable grey levels (the NPS palette and what `print_sticker` snaps to)
PALETTE: tuple[float, ...] = (0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0)

Norm = Literal["l1", "l2"]


def lisa_cnn(
    nb_filters: int = 64, channels: int = 1, classes: int = 10, size: int = 28
) -> nn.Module:
    """LISA-CNN's architecture (cleverhans' `cnn_model`, which the official code loads): conv
    8x8 stride 2 "same", conv 6x6 stride 2, conv 5x5, each with ReLU, then a dense layer. On
    `size` = 28 pixels the maps are 14x14, 5x5 and 1x1 (on the paper's 32: 16, 6 and 2). The
    paper's width is `nb_filters` = 64."""
    first = (size + 1) // 2  # "same" at stride 2
    third = (first - 6) // 2 + 1 - 4
    if third < 1:
        raise ReproError(f"lisa_cnn: {size}-pixel inputs are too small for its three convolutions")
    pad = max((first - 1) * 2 + 8 - size, 0)
    return nn.Sequential(
        nn.ZeroPad2d((pad // 2, pad - pad // 2, pad // 2, pad - pad // 2)),
        nn.Conv2d(channels, nb_filters, 8, stride=2),
        nn.ReLU(),
        nn.Conv2d(nb_filters, 2 * nb_filters, 6, stride=2),
        nn.ReLU(),
        nn.Conv2d(2 * nb_filters, 2 * nb_filters, 5),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(2 * nb_filters * third * third, classes),
    )


# --------------------------------------------------------------------------- the sticker


def object_surface(x: Tensor, threshold: float = 0.05) -> Tensor:
    """The object's surface, where a sticker may go: pixels brighter than `threshold`, with the
    holes between them filled (a pixel is on the surface when it has object pixels to its left
    and right and above and below it). A float mask (B, 1, H, W) of 0/1."""
    on = (x.amax(dim=1, keepdim=True) > threshold).to(torch.int8)
    left = on.cummax(dim=3).values
    right = on.flip(3).cummax(dim=3).values.flip(3)
    top = on.cummax(dim=2).values
    bottom = on.flip(2).cummax(dim=2).values.flip(2)
    return (left & right & top & bottom).to(x.dtype)


def apply_sticker(x: Tensor, delta: Tensor, mask: Tensor, noise_clip: float = 20.0) -> Tensor:
    """x' = clip(x + M·clip(δ, ±noise_clip), 0, 1): the perturbed object (differentiable in δ)."""
    return (x + mask * delta.clamp(-noise_clip, noise_clip)).clamp(0.0, 1.0)


def _palette(palette: Sequence[float], like: Tensor) -> Tensor:
    levels = torch.as_tensor(list(palette), dtype=like.dtype, device=like.device)
    if levels.numel() == 0:
        raise ReproError("the printable palette is empty")
    return levels


def print_sticker(
    x_adv: Tensor, x: Tensor, mask: Tensor, palette: Sequence[float] = PALETTE
) -> Tensor:
    """The sticker as printed: every pixel under the mask snapped to the nearest printable level,
    the rest of the object as it was."""
    levels = _palette(palette, x_adv)
    nearest = (x_adv.unsqueeze(-1) - levels).abs().argmin(dim=-1)
    printed = levels[nearest]
    return (mask * printed + (1 - mask) * x).detach()


def non_printability(x_adv: Tensor, mask: Tensor, palette: Sequence[float] = PALETTE) -> Tensor:
    """NPS per image (B,): Σ over the sticker's pixels of Π over printable levels |p − p'|.

    Zero when every sticker pixel is a printable level; Sharif et al.'s score with grey levels for
    RGB triples. Differentiable in `x_adv`."""
    levels = _palette(palette, x_adv)
    distance = (x_adv.unsqueeze(-1) - levels).abs().prod(dim=-1)
    return (mask * distance).flatten(1).sum(dim=1)


def total_variation(p: Tensor) -> Tensor:
    """Anisotropic total variation per image (B,): Σ |p(i+1, j) − p(i, j)| + |p(i, j+1) − p(i, j)|
    over every channel (tf.image.total_variation, which the official code uses)."""
    down = (p[..., 1:, :] - p[..., :-1, :]).abs().flatten(1).sum(dim=1)
    across = (p[..., :, 1:] - p[..., :, :-1]).abs().flatten(1).sum(dim=1)
    return down + across


# --------------------------------------------------------------------------- the RP2 objective


def _targets(target: int | Tensor, n: int, device: torch.device) -> Tensor:
    t = torch.as_tensor(target, device=device, dtype=torch.long).reshape(-1)
    if t.numel() == 1:
        return t.expand(n)
    if t.numel() != n:
        raise ReproError(f"{n} images but {t.numel()} targets")
    return t


class RP2Result(NamedTuple):
    """What `rp2` returns: δ (B, C, H, W), the perturbed objects x' = clip(x + M·δ) before and
    after printing, and the mean objective over the images at every step."""

    delta: Tensor
    x_adv: Tensor
    x_printed: Tensor
    objective: Tensor


def rp2(
    model: nn.Module,
    x: Tensor,
    target: int | Tensor,
    mask: Tensor,
    *,
    conditions: TransformDistribution | None,
    samples: int,
    steps: int,
    lr: float = 0.1,
    norm: Norm = "l2",
    lam: float = 0.02,
    nps_weight: float = 1.0,
    tv_weight: float = 0.0,
    palette: Sequence[float] = PALETTE,
    noise_clip: float = 20.0,
    generator: torch.Generator | None = None,
) -> RP2Result:
    """The RP2 objective for each image of the batch: one sticker δ per image, under its mask.

    Each Adam step (official settings: lr 0.1, β 0.9 / 0.999, ε 1e-8) samples `samples` views
    per image from `conditions` (None: the image as it is, one view) and minimises, summed over
    the images, λ‖M·δ‖_p + nps_weight·NPS(x') + tv_weight·TV(x' − x) + the mean cross-entropy
    of the views to the target. The views are drawn from `generator` (so a seed fixes the
    result); `mask` is (B, 1, H, W) or (1, 1, H, W); `target` an int or one per image.

    Args:
        norm: "l1" (the mask-finding attack) or "l2" (the sticker attack).
        lam: λ (the official LISA sticker run: 0.02).
        nps_weight, palette: the printability term and the printable levels.
        tv_weight: the total-variation term on the perturbation x' − x (0: none).
        noise_clip: δ is clipped to ±noise_clip (the official ±20).
    """
    if norm not in ("l1", "l2"):
        raise ReproError(f"rp2: norm must be 'l1' or 'l2', got {norm!r}")
    if samples < 1 or steps < 0:
        raise ReproError("rp2: need samples >= 1 and steps >= 0")
    if conditions is None and samples != 1:
        raise ReproError("rp2: without conditions there is one view (samples = 1)")
    x = x.detach()
    b = x.shape[0]
    y_star = _targets(target, b, x.device)
    mask = mask.to(dtype=x.dtype, device=x.device).expand(b, 1, *x.shape[-2:])
    delta = torch.zeros_like(x, requires_grad=True)
    opt = torch.optim.Adam([delta], lr=lr, betas=(0.9, 0.999), eps=1e-8)
    history = torch.zeros(steps, device=x.device)
    # E_{x_i ~ X^V} J(f(T_i(x + M·δ)), y*): EOT's per-image expectation (Athalye et al.), fresh
    # `samples` views per image and step, all in one batch
    expectation = None
    if conditions is not None:
        expectation = transformed_loss(
            model, y_star, conditions, draws=samples, generator=generator
        )
    with frozen(model):
        for step in range(steps):
            x_adv = apply_sticker(x, delta, mask, noise_clip)
            if expectation is None:
                per_image = F.cross_entropy(model(x_adv), y_star, reduction="none")
            else:
                per_image = expectation(x_adv)
            masked = (mask * delta.clamp(-noise_clip, noise_clip)).flatten(1)
            size = masked.abs().sum(dim=1) if norm == "l1" else masked.norm(dim=1)
            per_image = per_image + lam * size
            if nps_weight:
                per_image = per_image + nps_weight * non_printability(x_adv, mask, palette)
            if tv_weight:
                per_image = per_image + tv_weight * total_variation(x_adv - x)
            total = per_image.sum()
            opt.zero_grad(set_to_none=True)
            (grad,) = torch.autograd.grad(total, delta)
            delta.grad = grad
            opt.step()
            history[step] = total.detach() / b
    delta = delta.detach()
    x_adv = apply_sticker(x, delta, mask, noise_clip).detach()
    return RP2Result(delta, x_adv, print_sticker(x_adv, x, mask, palette), history)


# --------------------------------------------------------------------------- the masks


def _box_sums(values: Tensor, height: int, width: int) -> Tensor:
    """Sum of `values` (B, 1, H, W) over every height x width window: (B, 1, H-h+1, W-w+1)."""
    return F.avg_pool2d(values, (height, width), stride=1) * (height * width)


def _rectangles(
    top: Tensor, left: Tensor, height: int, width: int, shape: tuple[int, int]
) -> Tensor:
    """The 0/1 masks (B, 1, H, W) of one rectangle per image with these top-left corners."""
    h, w = shape
    rows = torch.arange(h, device=top.device).reshape(1, h, 1)
    cols = torch.arange(w, device=top.device).reshape(1, 1, w)
    t, lft = top.reshape(-1, 1, 1), left.reshape(-1, 1, 1)
    inside = (rows >= t) & (rows < t + height) & (cols >= lft) & (cols < lft + width)
    return inside.unsqueeze(1)


def _check_rectangles(shape: tuple[int, ...], count: int, height: int, width: int) -> None:
    h, w = shape[-2:]
    if count < 1 or not (0 < height <= h and 0 < width <= w):
        raise ReproError(f"rectangles: need count >= 1 and {height}x{width} to fit in {h}x{w}")


def rectangle_mask(scores: Tensor, *, count: int, height: int, width: int) -> Tensor:
    """`count` non-overlapping height x width rectangles per image where `scores` (B, 1, H, W)
    sums highest: greedily, the best rectangle, then the best one that does not overlap it, ...
    (the paper's mask pipeline: stickers where the l1 perturbation concentrates). A 0/1 mask."""
    _check_rectangles(scores.shape, count, height, width)
    b, _, h, w = scores.shape
    taken = torch.zeros(b, 1, h, w, dtype=torch.bool, device=scores.device)
    free_w = w - width + 1
    for _ in range(count):
        blocked = _box_sums(taken.to(scores.dtype), height, width) > 0
        sums = _box_sums(scores, height, width).masked_fill(blocked, -float("inf"))
        best = sums.flatten(1).argmax(dim=1)
        taken |= _rectangles(best // free_w, best % free_w, height, width, (h, w))
    return taken.to(scores.dtype)


def random_rectangle_mask(
    surface: Tensor,
    *,
    count: int,
    height: int,
    width: int,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The same `count` rectangles at random places: each uniformly among the positions whose
    centre pixel is on `surface` (B, 1, H, W) and that do not overlap the ones already placed
    (any free position when none is left). A float 0/1 mask with the area of `rectangle_mask`."""
    _check_rectangles(surface.shape, count, height, width)
    b, _, h, w = surface.shape
    free_w = w - width + 1
    centre = surface[..., height // 2 : h - (height - 1) + height // 2,
                     width // 2 : w - (width - 1) + width // 2] > 0  # fmt: skip
    taken = torch.zeros(b, 1, h, w, dtype=torch.bool, device=surface.device)
    gen_device = generator.device if generator is not None else torch.device("cpu")
    for _ in range(count):
        free = _box_sums(taken.to(surface.dtype), height, width) == 0
        allowed = free & centre
        allowed = torch.where(allowed.flatten(1).any(dim=1).reshape(b, 1, 1, 1), allowed, free)
        u = torch.rand(allowed.shape, generator=generator, device=gen_device).to(surface.device)
        pick = u.masked_fill(~allowed, -1.0).flatten(1).argmax(dim=1)
        taken |= _rectangles(pick // free_w, pick % free_w, height, width, (h, w))
    return taken.to(surface.dtype)


def sticker_attack(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    target: int | Tensor,
    conditions: TransformDistribution | None,
    samples: int,
    l1_steps: int,
    steps: int,
    rectangles: int = 4,
    height: int = 4,
    width: int = 5,
    lam_l1: float = 0.01,
    lam: float = 0.02,
    nps_weight: float = 1.0,
    tv_weight: float = 0.0,
    lr: float = 0.1,
    palette: Sequence[float] = PALETTE,
    generator: torch.Generator | None = None,
) -> Tensor:
    """RP2's sticker pipeline as an attack `(model, x, y) -> x_adv`, the stickers printed.

    An l1 attack over the whole object surface (`l1_steps`), rectangles where its |δ| sums
    highest on the surface, then the l2 attack inside them (`steps`). `y` (the true labels) is not
    used by the optimisation (a targeted attack); it is in the signature as every attack's."""
    del y
    surface = object_surface(x)
    found = rp2(model, x, target, surface, conditions=conditions, samples=samples,
                steps=l1_steps, lr=lr, norm="l1", lam=lam_l1, nps_weight=0.0,
                generator=generator)  # fmt: skip
    mask = rectangle_mask(found.delta.abs().sum(dim=1, keepdim=True) * surface,
                          count=rectangles, height=height, width=width)  # fmt: skip
    result = rp2(model, x, target, mask, conditions=conditions, samples=samples, steps=steps,
                 lr=lr, norm="l2", lam=lam, nps_weight=nps_weight, tv_weight=tv_weight,
                 palette=palette, generator=generator)  # fmt: skip
    return result.x_printed


# --------------------------------------------------------------------------- evaluation


def view_scale(distance: Tensor | float, *, near: float = 5.0, offset: float = 30.0) -> Tensor:
    """The apparent size of the object at `distance` (the paper's feet) relative to `near`:
    (near + offset) / (distance + offset). The offset puts the camera behind the reference point
    so that the paper's 5'-40' range maps to sizes 1-0.5 of a 28-pixel image (a 28-pixel object
    at 5' would be 3.5 pixels at 40' with no offset: unreadable for any classifier)."""
    d = torch.as_tensor(distance, dtype=torch.float32)
    if bool((d + offset <= 0).any()):
        raise ReproError("view_scale: distance + offset must be positive")
    return (near + offset) / (d + offset)


def view_matrices(
    distances: Sequence[float],
    angles: Sequence[float],
    *,
    near: float = 5.0,
    offset: float = 30.0,
    focal: float = 56.0,
) -> Tensor:
    """One (3, 3) matrix per (distance, angle) pair (the two sequences have one entry per view):
    the object turned by `angle` degrees about its vertical axis (`repro.transforms.tilt`) and
    seen at `distance` (`repro.transforms.scaling` by `view_scale`). (G, 3, 3)."""
    if len(distances) != len(angles) or not distances:
        raise ReproError("view_matrices: give one angle per distance (at least one view)")
    scale = view_scale(torch.tensor(distances, dtype=torch.float32), near=near, offset=offset)
    yaw = torch.tensor(angles, dtype=torch.float32)
    return scaling(scale) @ tilt(yaw, torch.zeros_like(yaw), focal)


@torch.no_grad()
def view_probabilities(
    model: nn.Module,
    x: Tensor,
    matrices: Tensor,
    *,
    brightness: Tensor | None = None,
    blur: Tensor | None = None,
    batch_size: int = 2000,
) -> Tensor:
    """Softmax outputs (B, G, R, classes) of every image under every view (G matrices) and every
    one of R lighting/focus draws: `brightness` and `blur` are (B, G, R) (None: R = 1, no change).
    The same draws given to two calls make their results paired, view for view."""
    b, g = x.shape[0], matrices.shape[0]
    drawn = [t for t in (brightness, blur) if t is not None]
    r = drawn[0].shape[-1] if drawn else 1
    if any(tuple(t.shape) != (b, g, r) for t in drawn):
        raise ReproError(f"view_probabilities: the draws must both be ({b}, {g}, R)")
    m = matrices.to(x.device, x.dtype).reshape(1, g, 1, 3, 3).expand(b, g, r, 3, 3)
    m = m.reshape(-1, 3, 3)
    images = x.unsqueeze(1).unsqueeze(1).expand(b, g, r, *x.shape[1:]).reshape(-1, *x.shape[1:])
    flat = Transforms(
        m,
        brightness.reshape(-1).to(x.device) if brightness is not None else None,
        blur.reshape(-1).to(x.device) if blur is not None else None,
    )
    was_training = model.training
    model.eval()
    try:
        out = [F.softmax(model(flat[i : i + batch_size].apply(images[i : i + batch_size])), dim=1)
               for i in range(0, images.shape[0], batch_size)]  # fmt: skip
    finally:
        model.train(was_training)
    return torch.cat(out).reshape(b, g, r, -1)


def attack_success_rate(
    clean_pred: Tensor, adv_pred: Tensor, label: int | Tensor, target: int | Tensor
) -> tuple[Tensor, Tensor]:
    """The paper's attack success rate, per image: (successes, clean-correct views), each (B,).

    Over the views of image b (any trailing dimensions of the (B, ...) predictions), a success is a
    view where the clean object is classified as `label` and the perturbed one as `target`; the
    rate is Σ successes / Σ clean-correct (over images: a ratio of sums, so images weigh by their
    correctly seen views, as the paper's count over photos does)."""
    b = clean_pred.shape[0]
    lab = _targets(label, b, clean_pred.device).reshape(b, *([1] * (clean_pred.dim() - 1)))
    tgt = _targets(target, b, clean_pred.device).reshape(b, *([1] * (clean_pred.dim() - 1)))
    correct = clean_pred == lab
    success = correct & (adv_pred == tgt)
    return success.flatten(1).sum(dim=1).float(), correct.flatten(1).sum(dim=1).float()
