"""The standard GAN baseline of Arjovsky et al.'s Section 4, and Figure 4's JS estimate.

Section 4.1: "Our baseline comparison is DCGAN [18], a GAN with a convolutional architecture
trained with the standard GAN procedure using the −log D trick [4]". The loss is Goodfellow et
al.'s and lives in their folder: `repro.gan.NonSaturating` (the discriminator minimises
−L(D, g_θ) = BCE(D(x), 1) + BCE(D(G(z)), 0) on logits, the generator −E[log D(G(z))]). Its
discriminator here is the WGAN critic's network (`repro.wgan.models.DCGANCritic`, a logit), as in
the paper. What belongs to this paper is the quantity Figure 4 plots: ½ L(D, g_θ) + log 2, "a
lower bound of the JS distance", computed from the discriminator's loss that the toolkit's loop
logs (`repro.gan_loop.GANRun.critic_loss`).

Map:
- Section 4.1's baseline, the standard GAN with the −log D trick       -> `repro.gan.NonSaturating`
- Section 4.2, Figure 4: ½ L(D, g_θ) + log 2, from the loss −L(D, g_θ)  -> `js_estimate`
"""

from __future__ import annotations

import math

from torch import Tensor

__all__ = ["js_estimate"]


def js_estimate(critic_loss: float | Tensor) -> float | Tensor:
    """½ L(D, g_θ) + log 2 from the discriminator's loss −L(D, g_θ) (Figure 4's JS estimate):
    0 when D outputs ½ everywhere, log 2 ≈ 0.693 (the largest JS value) when D is perfect."""
    return math.log(2.0) - critic_loss / 2.0
