"""Defense-GAN (Samangouei, Kabkab & Chellappa, ICLR 2018), reproduced end to end.

Paper: "Defense-GAN: Protecting Classifiers Against Adversarial Attacks Using Generative Models",
https://arxiv.org/abs/1805.06605 (v2); official code kabkabm/defensegan.
Reproduces: Tables 1-4 (black-box and white-box attacks on MNIST and Fashion-MNIST), Tables 8-11
and Figures 3-5 (the L and R sweeps, the reconstruction-MSE detector), Table 13 (timing), plus an
adaptive BPDA attack that the paper did not run (README.md).

Map (paper -> module; each module maps its own part further):
- the WGAN-GP generator/critic and classifiers A-F (Tables 5-6; the released code) -> `models`.
- WGAN-GP training (Section 3; Gulrajani et al. 2017: the loss from `repro.wgan_gp`, the loop
  `repro.gan_loop.train_gan`), with resumable checkpoints -> `gan`.
- z* = argmin ||G(z) - x||^2 with L steps and R restarts (Section 3.2, Algorithm 1)
  -> `projection`.
- the defended classifier C(G(z*)), Defense-GAN-Orig/-Rec, the MSE detector (Section 3.3)
  -> `defense`.
- the tables' protocols, called by the notebook `reproduce.py` -> `experiment`.
"""

from repro.defense_gan.defense import DefenseGAN, roc_auc, roc_curve
from repro.defense_gan.gan import GANResult, load_generator, train_wgan_gp
from repro.defense_gan.models import CLASSIFIERS, Critic, Generator, classifier
from repro.defense_gan.projection import Projection, project

__all__ = [
    "CLASSIFIERS",
    "Critic",
    "DefenseGAN",
    "GANResult",
    "Generator",
    "Projection",
    "classifier",
    "load_generator",
    "project",
    "roc_auc",
    "roc_curve",
    "train_wgan_gp",
]
