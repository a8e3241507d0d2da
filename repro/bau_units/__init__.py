"""Understanding the role of individual units in a deep neural network (Bau et al., PNAS 2020).

Paper: "Understanding the role of individual units in a deep neural network", David Bau, Jun-Yan
Zhu, Hendrik Strobelt, Agata Lapedriza, Bolei Zhou, Antonio Torralba, PNAS 117(48), 2020,
https://arxiv.org/abs/2009.05041 (catalog key `2020_Bau_D_j-pnas_uriudnn`). Official code:
github.com/davidbau/dissect (commit 9421eaa; read, not copied): `experiment/
intervention_experiment.py` (the classifier's unit removals) and `experiment/
generator_int_experiment.py` (the generator's dissection and unit removals).

Reproduces: the protocol of Fig. 2 (rank the units of a classifier's last convolutional layer per
class by single-unit ablation on the training split; on held-out images remove each class's most
important units, or all units but them, and measure the class's balanced accuracy; here also
against as many random units) and of Fig. 4a (remove a class's units from a GAN generator and
count what of the class is left in the samples), on Fashion-MNIST as the stated analogue of
Places365 and LSUN churches. Every number of the paper (Figs. 1-4: the ski-resort table, the
means over 365 classes, the tree pixels, the dissection counts) is kept in `expected.csv` and not
run: the data, the pretrained VGG-16 and Progressive GAN and the segmenter are not here.

Map from the paper to the code (tests/repro/test_paper_maps.py checks every name exists):
- "Units are removed by forcing the specified unit to output zero and leaving the rest of the
  network intact" (the code's `edit_layer` rule `x[:, units] = 0`)
                                            -> `ablation.ablate` (a forward-hook context manager)
- the same for many units or sets of units at once, one per copy of the batch, the layers
  before the edited one run once           -> `ablation.ablate_each`
- "Single-class accuracy is tested on the balanced two-way classification problem of
  discriminating the specified class from all the other classes" (the code's
  `balanced_accuracy` = (recall + true-negative rate) / 2)
                                            -> `classifier.balanced_accuracy`,
                                               `classifier.balanced_accuracy_vectors`
- "we rank the importance of units according to their individual impact on single-class ...
  accuracy on the training set" (`single_unit_ablation_ba[:, c].sort(0)`)
                                            -> `classifier.single_unit_ablation`,
                                               `classifier.rank_units`
- Fig. 2b-d: on held-out images, remove the N most important units of a class, or the
  512 − N least important ones (keep only the N), and measure single-class and all-class
  accuracy                                  -> `classifier.class_interventions`,
                                               `classifier.intervention_statistics`
- VGG-16's conv5_3 (512 units), the last convolutional layer -> `classifier.UnitCNN`,
  `classifier.LAYER` (its block conv3, 128 units)
- the threshold t_u, the top 1 % quantile of a_u over all positions of all images, on bilinearly
  upsampled activations; IoU_{u,c} = P[s_c(x,p) ∧ a_u(x,p) > t_u] / P[s_c(x,p) ∨ a_u(x,p) > t_u]
                                            -> `generator.dissect`
- the reference segmentation s_c (Unified Perceptual Parsing) -> `generator.segment` (stand-in:
  foreground pixels labelled with a Fashion-MNIST classifier's class of the image)
- Fig. 4a: "We rank units in layer4 according to IoU_{u,tree}" and remove the top 20; the tree
  pixels of the output are counted before and after (`test_generator_segclass_stats`)
                                            -> `generator.class_removals`,
                                               `generator.removal_statistics`,
                                               `generator.sample_outcomes`
- the causal ranking of generator units (ours; the brief's alternative to dissection: the drop
  of the classifier's probability of the class when the unit alone is zeroed)
                                            -> `generator.unit_class_effect`
- Progressive GAN layer4 (512 units at 8 × 8) -> `generator.GEN_LAYER` of `repro.dcgan.Generator`
  (2·width units at 7 × 7), trained by `repro.dcgan.train` (uses = ["dcgan"])
- the paired bootstrap intervals of every statistic (ours)  -> `intervals.MeanVectors`

Deviations (each also in README.md, with why):
- Fashion-MNIST instead of Places365 and LSUN: a small VGG-like CNN (three convolutions, two
  dense layers, no dropout) trained briefly by the toolkit's loop instead of the Places365
  VGG-16; a DCGAN (`repro.dcgan`) trained briefly instead of the Progressive GAN. k = 5 of 128
  units (3.9 %, the paper's 20 of 512) in the classifier, 3 of 64 (4.7 %) in the DCGAN at `small`.
- The ranking uses the first n_rank training images (the code: the whole training split), and
  the test uses Fashion-MNIST's test split (the code: Places365's validation split).
- Random units are added as a control (the paper removes the most and least important units
  only); every statistic has a paired bootstrap interval over the test images / samples.
- The generator's "segmentation" is a classifier's label painted on the foreground (pixels >
  `foreground`), since no segmenter of Fashion-MNIST exists; what is counted is both the share
  of a class's samples (the classifier's label) and the class's pixels (the paper's measure).
- The generator's units are also ranked by their causal effect on the classifier's class
  probability, on other codes than the evaluation's (the paper ranks by IoU only).
- The dissection of the classifier against concepts (Fig. 1, Fig. 2e), the GAN's dissection
  counts (Fig. 3) and the door insertion (Fig. 4c-d) are not reproduced (they need a segmenter).
"""

from __future__ import annotations

from repro.bau_units import ablation, classifier, generator, intervals
from repro.bau_units.ablation import ablate, ablate_each, layer_units, resolve_layer
from repro.bau_units.classifier import (
    LAYER,
    Intervention,
    UnitAblation,
    UnitCNN,
    balanced_accuracy,
    balanced_accuracy_vectors,
    class_interventions,
    intervention_statistics,
    predict_ablated,
    rank_units,
    single_unit_ablation,
)
from repro.bau_units.generator import (
    GEN_LAYER,
    ClassRemoval,
    Dissection,
    SampleOutcomes,
    class_removals,
    dissect,
    removal_statistics,
    sample_outcomes,
    segment,
    unit_class_effect,
)
from repro.bau_units.intervals import MeanVectors

__all__ = [
    "GEN_LAYER",
    "LAYER",
    "ClassRemoval",
    "Dissection",
    "Intervention",
    "MeanVectors",
    "SampleOutcomes",
    "UnitAblation",
    "UnitCNN",
    "ablate",
    "ablate_each",
    "ablation",
    "balanced_accuracy",
    "balanced_accuracy_vectors",
    "class_interventions",
    "class_removals",
    "classifier",
    "dissect",
    "generator",
    "intervals",
    "intervention_statistics",
    "layer_units",
    "predict_ablated",
    "rank_units",
    "removal_statistics",
    "resolve_layer",
    "sample_outcomes",
    "segment",
    "single_unit_ablation",
    "unit_class_effect",
]
