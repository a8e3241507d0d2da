"""Metrics of a saliency map that need no segmentation: insertion and deletion curves and their
areas, the pointing game, the share of a map's mass in a box, and a sparsity index.

Written for the perceptual ball's evaluation (Elliott, Law & Russell, CVPR 2021, Section 5), as
plain typed functions on whole batches, so that any reproduction that scores saliency maps can use
them (candidates for the toolkit). Maps are (N, H, W) tensors, non-negative, one per image of an
(N, C, H, W) batch; a pixel of a map stands for all channels of that pixel.

Map from the papers that define the metrics to the code:
- deletion (Petsiuk, Das & Saenko, RISE, BMVC 2018, Section 4.1): remove the pixels from the most
  to the least salient, replacing them with a baseline (here a constant, 0 = black), and record the
  probability of the explained class after every `1 / steps` of the pixels; a good map makes it
  fall fast -> `deletion_curve`, its pixel order `pixel_ranks`
- insertion (the same paper): start from the baseline image and insert the pixels in the same
  order; a good map makes the probability rise fast -> `insertion_curve`
- the area under either curve, the fraction of pixels on [0, 1] (trapezoids) -> `curve_auc`
- the pointing game (Zhang et al., ECCV 2016): a hit when the map's maximum falls in the object's
  box (no tolerance margin here) -> `pointing_hits`
- the energy-based pointing game (Wang et al., Score-CAM, CVPRW 2020): the share of the map's mass
  inside the box -> `box_energy`
- sparsity: the Gini index of the map's values (Hurley & Rickard, 2009; used for attributions by
  Chalasani et al., ICML 2020): 0 for a flat map, 1 - 1/P for a single pixel -> `gini`
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = [
    "box_energy",
    "curve_auc",
    "deletion_curve",
    "gini",
    "insertion_curve",
    "pixel_ranks",
    "pointing_hits",
]


def pixel_ranks(saliency: Tensor) -> Tensor:
    """Each pixel's place in the order of decreasing saliency (0 = the most salient), (N, H, W).

    Ties keep the pixels' raster order (a stable sort), so the order is deterministic."""
    flat = saliency.detach().flatten(1)
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    positions = torch.arange(flat.shape[1], device=flat.device).expand_as(order)
    ranks.scatter_(1, order, positions)
    return ranks.view(saliency.shape)


@torch.no_grad()
def _curve(
    model: nn.Module,
    start: Tensor,
    end: Tensor,
    ranks: Tensor,
    target: Tensor,
    steps: int,
    batch_size: int,
) -> Tensor:
    """Probability of `target` as the pixels go from `start` to `end` in rank order: (N, steps + 1);
    at point k the first round(k P / steps) pixels of the order are `end`'s, the rest `start`'s."""
    if steps < 1:
        raise ValueError(f"a curve needs steps >= 1, got {steps}")
    was_training = model.training
    model.eval()
    n, pixels = ranks.shape[0], ranks[0].numel()
    counts = [round(k * pixels / steps) for k in range(steps + 1)]
    out = torch.empty(n, steps + 1, device=start.device)
    try:
        for i in range(0, n, batch_size):
            s, e = start[i : i + batch_size], end[i : i + batch_size]
            r, t = ranks[i : i + batch_size, None], target[i : i + batch_size]
            for k, count in enumerate(counts):
                image = torch.where(r < count, e, s)
                probs = model(image).softmax(dim=1)
                out[i : i + batch_size, k] = probs.gather(1, t[:, None]).squeeze(1)
    finally:
        model.train(was_training)
    return out


def deletion_curve(
    model: nn.Module,
    x: Tensor,
    saliency: Tensor,
    target: Tensor,
    *,
    steps: int = 28,
    baseline: float = 0.0,
    batch_size: int = 500,
) -> Tensor:
    """The deletion curve of each image: the probability of `target` after deleting (setting to
    `baseline`) the first 0, 1/steps, ..., all of the pixels in decreasing saliency:
    (N, steps + 1)."""
    return _curve(model, x.detach(), torch.full_like(x, baseline), pixel_ranks(saliency),
                  target, steps, batch_size)  # fmt: skip


def insertion_curve(
    model: nn.Module,
    x: Tensor,
    saliency: Tensor,
    target: Tensor,
    *,
    steps: int = 28,
    baseline: float = 0.0,
    batch_size: int = 500,
) -> Tensor:
    """The insertion curve of each image: from the constant `baseline` image, the probability of
    `target` after inserting the first 0, 1/steps, ..., all of x's pixels in decreasing
    saliency, (N, steps + 1)."""
    return _curve(model, torch.full_like(x, baseline), x.detach(), pixel_ranks(saliency),
                  target, steps, batch_size)  # fmt: skip


def curve_auc(curve: Tensor) -> Tensor:
    """The area under each curve of (N, K + 1) points evenly spaced on [0, 1] (trapezoids), (N,)."""
    if curve.shape[1] < 2:
        raise ValueError("curve_auc needs at least two points per curve")
    k = curve.shape[1] - 1
    return (curve[:, 1:] + curve[:, :-1]).sum(dim=1) / (2 * k)


def pointing_hits(saliency: Tensor, boxes: Tensor) -> Tensor:
    """Whether each map's maximum (the first in raster order on ties) lies in its box (top, left,
    height, width), (N,) bool."""
    w = saliency.shape[2]
    flat = saliency.detach().flatten(1).argmax(dim=1)
    row, col = flat // w, flat % w
    top, left, height, width = boxes.unbind(dim=1)
    return (row >= top) & (row < top + height) & (col >= left) & (col < left + width)


def _box_mask(shape: torch.Size, boxes: Tensor) -> Tensor:
    h, w = shape[1], shape[2]
    rows = torch.arange(h, device=boxes.device)[None, :, None]
    cols = torch.arange(w, device=boxes.device)[None, None, :]
    top, left, height, width = (b[:, None, None] for b in boxes.unbind(dim=1))
    return (rows >= top) & (rows < top + height) & (cols >= left) & (cols < left + width)


def box_energy(saliency: Tensor, boxes: Tensor) -> Tensor:
    """The share of each map's total mass inside its box, (N,) in [0, 1] (0 for an empty map)."""
    s = saliency.detach()
    inside = (s * _box_mask(s.shape, boxes)).flatten(1).sum(dim=1)
    total = s.flatten(1).sum(dim=1)
    return torch.where(total > 0, inside / total.clamp_min(torch.finfo(s.dtype).tiny), 0.0)


def gini(saliency: Tensor) -> Tensor:
    """The Gini index of each map's values, (N,): 1 - 2 sum_k (c_(k) / ||c||_1) (P - k + 1/2) / P
    over the values sorted in increasing order (Hurley & Rickard's form); 0 for an all-zero map."""
    c = saliency.detach().flatten(1).abs().double()
    p = c.shape[1]
    ordered = torch.sort(c, dim=1).values
    k = torch.arange(1, p + 1, device=c.device, dtype=c.dtype)
    total = ordered.sum(dim=1)
    weights = (p - k + 0.5) / p
    g = 1.0 - 2.0 * (ordered * weights).sum(dim=1) / total.clamp_min(1e-300)
    return torch.where(total > 0, g, 0.0).to(saliency.dtype)
