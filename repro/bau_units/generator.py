"""The generator side of Bau et al. (2020), on a DCGAN with a Fashion-MNIST classifier standing
in for the segmentation network.

The paper dissects layer4 of a Progressive GAN (davidbau/dissect
`experiment/generator_int_experiment.py`, read, not copied): each unit's upsampled activation
map is thresholded at its top-1 % quantile over all positions of 10,000 samples (`rq`,
`level_at_99`) and matched by IoU with the segmentation of the generated images (`condi99`,
`iou_from_conditional_indicator_mean`); the 20 units with the highest IoU for "tree" are zeroed
and the tree pixels of the output are counted before and after (`test_generator_segclass_stats`).

Without a segmenter of Fashion-MNIST, the "segmentation" of a generated image is its foreground
pixels (brighter than `foreground`) labelled with the class a Fashion-MNIST classifier gives the
image (`segment`): a Fashion-MNIST image holds one object on a black background. Units are ranked
for a class two ways: by that IoU (`dissect`, the paper's ranking) and by the causal effect of
zeroing the unit alone on the classifier's probability of the class (`unit_class_effect`).

Map from the paper to the code:
- t_u ≡ max t with P_{x,p}[a_u(x, p) > t] ≥ 0.01 on bilinearly upsampled activations, and
  IoU_{u,c} = P_{x,p}[s_c(x, p) ∧ a_u(x, p) > t_u] / P_{x,p}[s_c(x, p) ∨ a_u(x, p) > t_u]
  -> `dissect`, `Dissection`
- the reference segmentation s_c (a segmentation network in the paper) -> `segment`
- "We rank units in layer4 according to IoU_{u,tree} ... Removing the 20 most tree-specific
  units reduces the number of tree pixels in the generated output by 53.3%" (the code's
  `test_generator_segclass_stats` with `zeroed_units`) -> `class_removals`, `ClassRemoval`,
  `sample_outcomes`, `SampleOutcomes`, `removal_statistics`
- layer4 of the Progressive GAN (512 units at 8 × 8) -> `GEN_LAYER`
- (ours) a unit's causal tie to a class: the drop of the classifier's mean class probability
  when the unit alone is zeroed -> `unit_class_effect`
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro import ReproError
from repro.bau_units.ablation import ablate_each, layer_units, resolve_layer
from repro.bau_units.intervals import MeanVectors
from repro.stats import Interval

__all__ = [
    "GEN_LAYER",
    "ClassRemoval",
    "Dissection",
    "SampleOutcomes",
    "class_removals",
    "dissect",
    "removal_statistics",
    "sample_outcomes",
    "segment",
    "unit_class_effect",
]

#: The dissected layer of `repro.dcgan.Generator`: the ReLU after the first transposed
#: convolution, 2·width units at 7 × 7 (the paper's layer4 of the Progressive GAN: 512 units at
#: 8 × 8, early in the generator).
GEN_LAYER = "main.2"


def segment(images: Tensor, labels: Tensor, foreground: float) -> Tensor:
    """The stand-in segmentation: (n, H·W) bool foreground masks (pixel > `foreground`) of the
    images, each to be read as the class `labels[i]` the classifier gives image i."""
    if images.shape[0] != labels.shape[0]:
        raise ReproError(f"segment: {images.shape[0]} images but {labels.shape[0]} labels")
    return images.flatten(1) > foreground


@dataclass(frozen=True)
class SampleOutcomes:
    """What the classifier sees in the samples of each ablation set: class probabilities
    `prob` (S, n, K), and the foreground fraction of each image `foreground` (S, n)."""

    prob: Tensor
    foreground: Tensor

    @property
    def pred(self) -> Tensor:
        """The classifier's class of each sample, (S, n)."""
        return self.prob.argmax(-1)

    def hits(self, c: int) -> Tensor:
        """Per sample, whether the classifier sees class c: (S, n) floats."""
        return (self.pred == c).to(torch.float64)

    def class_pixels(self, c: int) -> Tensor:
        """Per sample, the fraction of its pixels segmented as class c (foreground pixels of an
        image the classifier calls c): (S, n) floats, the paper's "tree pixels" measure."""
        return self.hits(c) * self.foreground.to(torch.float64)


@torch.no_grad()
def sample_outcomes(
    generator: nn.Module,
    classifier: nn.Module,
    layer: str | nn.Module,
    z: Tensor,
    sets: Sequence[Sequence[int]],
    *,
    foreground: float = 0.1,
    batch_size: int = 250,
    sets_per_pass: int = 8,
) -> SampleOutcomes:
    """Generate from the codes `z` with each set of units `sets[j]` of `layer` zeroed (an empty
    set: the unchanged generator; `ablate_each`, so the layers before `layer` run once per
    batch) and classify the samples. Both networks are used in eval mode and restored."""
    modes = generator.training, classifier.training
    generator.eval()
    classifier.eval()
    try:
        probs, fgs = [], []
        for start in range(0, len(sets), sets_per_pass):
            chunk = [list(s) for s in sets[start : start + sets_per_pass]]
            p_parts, f_parts = [], []
            with ablate_each(generator, layer, chunk):
                for i in range(0, len(z), batch_size):
                    images = generator(z[i : i + batch_size])
                    p = F.softmax(classifier(images), dim=-1)
                    f = (images.flatten(1) > foreground).to(torch.float32).mean(1)
                    p_parts.append(p.view(len(chunk), -1, p.shape[-1]))
                    f_parts.append(f.view(len(chunk), -1))
            probs.append(torch.cat(p_parts, dim=1))
            fgs.append(torch.cat(f_parts, dim=1))
        return SampleOutcomes(torch.cat(probs), torch.cat(fgs))
    finally:
        generator.train(modes[0])
        classifier.train(modes[1])


@torch.no_grad()
def unit_class_effect(
    generator: nn.Module,
    classifier: nn.Module,
    layer: str | nn.Module,
    z: Tensor,
    *,
    batch_size: int = 250,
    sets_per_pass: int = 8,
) -> Tensor:
    """How much each unit of `layer` makes the samples look like each class: the drop in the
    classifier's mean probability of class c over the samples of `z` when the unit alone is
    zeroed, (U, K) (higher: more tied to the class; rank with `rank_units(..., descending=True)`).
    """
    units = layer_units(generator, layer, z[:1])
    sets = [[], *([u] for u in range(units))]
    out = sample_outcomes(generator, classifier, layer, z, sets, batch_size=batch_size,
                          sets_per_pass=sets_per_pass)  # fmt: skip
    mean = out.prob.mean(1)  # (1 + U, K)
    return mean[0][None, :] - mean[1:]


@dataclass(frozen=True)
class Dissection:
    """The dissection of a generator layer against the stand-in segmentation: `iou` (U, K), each
    unit's IoU with each class; `threshold` (U,), each unit's top-quantile activation level;
    `class_share` (K,), the fraction of samples the classifier gives each class."""

    iou: Tensor
    threshold: Tensor
    class_share: Tensor


@torch.no_grad()
def dissect(
    generator: nn.Module,
    classifier: nn.Module,
    layer: str | nn.Module,
    z: Tensor,
    *,
    quantile: float = 0.01,
    foreground: float = 0.1,
    classes: int = 10,
    batch_size: int = 250,
) -> Dissection:
    """Network dissection of `layer` on the samples G(z): each unit's activation map, upsampled
    (bilinear) to the image size, is thresholded at its top-`quantile` level over all positions
    of all samples, and the IoU of that mask with each class's segmentation (`segment`) is
    summed over the samples: IoU(u, c) = |M_u ∩ S_c| / |M_u ∪ S_c|."""
    if not 0.0 < quantile < 1.0:
        raise ReproError(f"dissect: quantile {quantile} must be in (0, 1)")
    module = resolve_layer(generator, layer)
    modes = generator.training, classifier.training
    generator.eval()
    classifier.eval()
    acts: list[Tensor] = []
    handle = module.register_forward_hook(lambda _m, _i, out: acts.append(out.detach().clone()))
    try:
        images, preds = [], []
        for i in range(0, len(z), batch_size):
            img = generator(z[i : i + batch_size])
            images.append(img)
            preds.append(classifier(img).argmax(1))
    finally:
        handle.remove()
        generator.train(modes[0])
        classifier.train(modes[1])
    image = torch.cat(images)
    a, pred = torch.cat(acts), torch.cat(preds)
    size = image.shape[-2:]
    seg = segment(image, pred, foreground)  # (n, P)
    onehot = F.one_hot(pred, classes).to(torch.float64)  # (n, K)
    seg_area = seg.sum(1).to(torch.float64) @ onehot  # |S_c|, (K,)
    units = a.shape[1]
    iou = torch.zeros(units, classes, dtype=torch.float64, device=a.device)
    threshold = torch.zeros(units, dtype=a.dtype, device=a.device)
    for u in range(units):
        up = F.interpolate(a[:, u : u + 1], size=size, mode="bilinear", align_corners=False)
        up = up.flatten(1)  # (n, P)
        threshold[u] = torch.quantile(up.flatten().float(), 1.0 - quantile)
        mask = up > threshold[u]
        inter = (mask & seg).sum(1).to(torch.float64) @ onehot  # (K,)
        iou[u] = inter / (mask.sum().to(torch.float64) + seg_area - inter).clamp_min(1.0)
    share = torch.bincount(pred, minlength=classes).to(torch.float64) / len(pred)
    return Dissection(iou, threshold, share)


@dataclass(frozen=True)
class ClassRemoval:
    """The samples of the codes z under each class's removals: for every class c, its top k units
    of each ranked arm (`units[arm]`, (K, k)) removed, and `draws` random sets of k units
    (`units["random"]`, (K, R, k)); `outcomes` holds, in order, the unchanged generator, then per
    class one set per arm and the R random sets."""

    arms: tuple[str, ...]
    units: dict[str, Tensor]
    draws: int
    outcomes: SampleOutcomes

    def _rows(self, arm: str, c: int) -> list[int]:
        if arm == "baseline":
            return [0]
        width = len(self.arms) + self.draws
        start = 1 + c * width
        if arm == "random":
            return list(range(start + len(self.arms), start + width))
        return [start + self.arms.index(arm)]

    def hits(self, arm: str, c: int) -> Tensor:
        """Per sample, whether the classifier sees class c with c's `arm` units removed
        ("baseline": nothing removed; "random": averaged over the draws), (n,)."""
        return self.outcomes.hits(c)[self._rows(arm, c)].mean(0)

    def pixels(self, arm: str, c: int) -> Tensor:
        """Per sample, the fraction of its pixels segmented as class c, the same way, (n,)."""
        return self.outcomes.class_pixels(c)[self._rows(arm, c)].mean(0)


def class_removals(
    generator: nn.Module,
    classifier: nn.Module,
    layer: str | nn.Module,
    z: Tensor,
    rankings: dict[str, Tensor],
    k: int,
    *,
    draws: int,
    rng: torch.Generator,
    foreground: float = 0.1,
    batch_size: int = 250,
    sets_per_pass: int = 8,
) -> ClassRemoval:
    """The paper's generator test: for each class c and each ranking (arm -> (K, U) units in
    order of importance), the samples of `z` with c's first k units removed, and with k units
    drawn uniformly without replacement (`draws` times per class, from `rng` on the CPU)
    removed."""
    arms = tuple(rankings)
    n_classes, n_units = next(iter(rankings.values())).shape
    if not 1 <= k < n_units or draws < 1:
        raise ReproError(f"class_removals: need 1 <= k < {n_units} units and draws >= 1")
    units = {arm: r[:, :k].cpu() for arm, r in rankings.items()}
    units["random"] = torch.stack(
        [
            torch.stack([torch.randperm(n_units, generator=rng)[:k] for _ in range(draws)])
            for _ in range(n_classes)
        ]
    )
    sets: list[list[int]] = [[]]
    for c in range(n_classes):
        sets.extend(units[arm][c].tolist() for arm in arms)
        sets.extend(r.tolist() for r in units["random"][c])
    outcomes = sample_outcomes(generator, classifier, layer, z, sets, foreground=foreground,
                               batch_size=batch_size, sets_per_pass=sets_per_pass)  # fmt: skip
    return ClassRemoval(arms, units, draws, outcomes)


def removal_statistics(removal: ClassRemoval, classes: int = 10) -> dict[str, Interval]:
    """The generator side's statistics with 95 % paired bootstrap intervals over the samples:

    - `removed_<arm>` (arm: each ranked arm and "random"): the share of the samples of a class
      that no longer look like it when its units are removed, pooled over the classes:
      1 − Σ_c P(c | c's units removed) / Σ_c P(c);
    - `<arm>_minus_random`: the margin over random units (claims 4-5);
    - `pixels_removed_<arm>`: the same for class pixels (Fig. 4's tree pixels);
    - per class c that the generator makes: `class{c}_share` (P(c), nothing removed) and
      `class{c}_removed_<arm>` (1 − P(c | removed) / P(c)).
    """
    v = MeanVectors()
    arms = (*removal.arms, "random")
    for c in range(classes):
        for arm in ("baseline", *arms):
            v.add(f"{arm}_hit{c}", removal.hits(arm, c))
            v.add(f"{arm}_pix{c}", removal.pixels(arm, c))
    every = list(v.vectors)
    ks = range(classes)

    def removed(arm: str, kind: str = "hit") -> Callable[[dict], np.ndarray]:
        return lambda m: (
            1.0 - sum(m[f"{arm}_{kind}{c}"] for c in ks) / sum(m[f"baseline_{kind}{c}"] for c in ks)
        )

    out: dict[str, Interval] = {}
    for arm in arms:
        out[f"removed_{arm}"] = v.interval(removed(arm), every)
        out[f"pixels_removed_{arm}"] = v.interval(removed(arm, "pix"), every)
    for arm in removal.arms:
        out[f"{arm}_minus_random"] = v.interval(
            lambda m, a=arm: (
                sum(m[f"random_hit{c}"] - m[f"{a}_hit{c}"] for c in ks)
                / sum(m[f"baseline_hit{c}"] for c in ks)
            ),
            every,
        )
    for c in ks:
        if v.mean(f"baseline_hit{c}") == 0.0:
            continue  # the generator never makes class c: nothing to remove
        out[f"class{c}_share"] = v.interval(lambda m, c=c: m[f"baseline_hit{c}"],
                                            [f"baseline_hit{c}"])  # fmt: skip
        for arm in arms:
            names = [f"baseline_hit{c}", f"{arm}_hit{c}"]
            out[f"class{c}_removed_{arm}"] = v.interval(
                lambda m, c=c, a=arm: 1.0 - _ratio(m[f"{a}_hit{c}"], m[f"baseline_hit{c}"]), names
            )
    return out


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b, NaN where a resample holds none of the class (the bootstrap drops those)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return a / b
