"""The architectures of Figure 2 (Section 5.2), at 28 × 28 px for Fashion-MNIST.

Gulrajani et al. train "six different GAN architectures" besides the DCGAN baseline with four
objectives, each with its own default optimiser settings held fixed across architectures; the
networks are `gan_64x64.py`'s (official code, commit fa66c57: `GeneratorAndDiscriminator`). The
28 px DCGAN pair is Radford et al.'s, from their folder (`repro.dcgan.Generator`,
`repro.dcgan.Discriminator`: project z to 4 × 4 × 4w, three 5 × 5 stride-2 transposed
convolutions 4 → 7 → 14 → 28, and the mirror image for the critic), which is also the layout of
this paper's own 28 px script (`gan_mnist.py`). Everything specific to Figure 2 is here:

Map (Figure 2's rows; tests/repro/test_paper_maps.py checks the names):
- "DCGAN" baseline: G and D of DCGAN with batch norm          -> `build("dcgan", ...)`
- "G: No BN and a constant number of filters, D: DCGAN" (the code's
  `WGANPaper_CrippledDCGANGenerator`)                         -> `ConstantFilterGenerator`
- "G: 4-layer 512-dim ReLU MLP, D: DCGAN" (the code's `FCGenerator`) -> `MLPGenerator`
- "No normalization in either G or D" (`DCGANGenerator(bn=False)`, `DCGANDiscriminator(bn=False)`)
                                                               -> `build("no_norm", ...)`
- "tanh nonlinearities everywhere in G and D" (`nonlinearity=tf.tanh` in both)
                                                               -> `TanhGenerator`, `use_tanh`
- Section 4, "we recommend layer normalization as a drop-in replacement for batch
  normalization" in the critic: the code's `Normalize` makes every critic batch norm a layer
  norm (over channels, height and width, one scale and offset per channel) when it trains
  WGAN-GP                                                      -> `layer_norm`, `LayerNorm2d`
- the prior: z ~ N(0, I) in 128 dimensions (`tf.random_normal([n, 128])`) -> `gaussian_latent`
- one builder for every (architecture, objective) cell         -> `build`

Not built: "gated multiplicative nonlinearities everywhere" and the "101-layer ResNet G and D"
(README: Deviations). Images are in [0, 1] outside the networks (the toolkit's convention); the
DCGAN networks map to and from tanh's [−1, 1] inside, and the two generators written here end in
the same (tanh + 1) / 2.

Initialisation as the code: the DCGAN networks N(0, 0.02) (`repro.dcgan.init_weights`; the code
draws uniform with that standard deviation); the constant-filter and MLP generators He-style, the
code's default for layers without `set_weights_stdev` (`kaiming_uniform_`, zero biases).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro import ReproError
from repro.dcgan.models import Discriminator, Generator
from repro.gan_loop import gaussian_latent as _gaussian_latent

__all__ = [
    "ARCHITECTURES",
    "LATENT_DIM",
    "ConstantFilterGenerator",
    "LayerNorm2d",
    "MLPGenerator",
    "TanhGenerator",
    "build",
    "gaussian_latent",
    "layer_norm",
    "use_tanh",
]

#: z ~ N(0, I_128), as every script of the official code draws it.
LATENT_DIM = 128
#: Figure 2's rows that are built here, in the figure's order.
ARCHITECTURES = ("dcgan", "g_constant_nobn", "g_mlp", "no_norm", "tanh")

_BASE = 4


#: n codes z ~ N(0, I_128) drawn from `rng` on its device: `gaussian_latent(n, rng)`.
gaussian_latent = _gaussian_latent(LATENT_DIM)


def _he_init(module: nn.Module) -> None:
    if isinstance(module, nn.Linear | nn.ConvTranspose2d | nn.Conv2d):
        nn.init.kaiming_uniform_(module.weight, nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class ConstantFilterGenerator(nn.Module):
    """Figure 2's "G: No BN and a constant number of filters" (the WGAN paper's crippled DCGAN G):
    z → dense → 4 × 4 × width (ReLU) → three 5 × 5 stride-2 transposed convolutions width →
    width → width → 1 (4 → 7 → 14 → 28; ReLU, ReLU, tanh), no normalisation anywhere."""

    def __init__(self, latent_dim: int = LATENT_DIM, width: int = 64) -> None:
        super().__init__()
        self.latent_dim, self.width = latent_dim, width
        self.project = nn.Linear(latent_dim, width * _BASE * _BASE)
        self.main = nn.Sequential(
            nn.ConvTranspose2d(width, width, 5, 2, 2, 0), nn.ReLU(True),
            nn.ConvTranspose2d(width, width, 5, 2, 2, 1), nn.ReLU(True),
            nn.ConvTranspose2d(width, 1, 5, 2, 2, 1), nn.Tanh(),
        )  # fmt: skip
        self.apply(_he_init)

    def forward(self, z: Tensor) -> Tensor:
        h = F.relu(self.project(z.reshape(z.shape[0], self.latent_dim)))
        return (self.main(h.view(-1, self.width, _BASE, _BASE)) + 1.0) / 2.0


class MLPGenerator(nn.Module):
    """Figure 2's "G: 4-layer 512-dim ReLU MLP" (the code's `FCGenerator`): four dense ReLU layers
    of `hidden` units, a dense output layer of 784 and tanh."""

    def __init__(self, latent_dim: int = LATENT_DIM, hidden: int = 512, size: int = 28) -> None:
        super().__init__()
        self.latent_dim, self.size = latent_dim, size
        layers: list[nn.Module] = []
        width = latent_dim
        for _ in range(4):
            layers += [nn.Linear(width, hidden), nn.ReLU(True)]
            width = hidden
        self.main = nn.Sequential(*layers, nn.Linear(hidden, size * size), nn.Tanh())
        self.apply(_he_init)

    def forward(self, z: Tensor) -> Tensor:
        out = self.main(z.reshape(z.shape[0], self.latent_dim))
        return (out.view(-1, 1, self.size, self.size) + 1.0) / 2.0


def use_tanh(module: nn.Module) -> nn.Module:
    """Replace every ReLU and LeakyReLU module of `module` by tanh, in place; returns `module`.
    (For a `repro.dcgan.Discriminator`, whose nonlinearities are all modules; its generator's
    first one is not: use `TanhGenerator`.)"""
    for name, child in module.named_children():
        if isinstance(child, nn.ReLU | nn.LeakyReLU):
            setattr(module, name, nn.Tanh())
        else:
            use_tanh(child)
    return module


class TanhGenerator(Generator):
    """`repro.dcgan.Generator` (batch norm kept) with tanh after every hidden layer instead of
    ReLU: Figure 2's "tanh nonlinearities everywhere" (`DCGANGenerator(nonlinearity=tf.tanh)`)."""

    def __init__(self, latent_dim: int = LATENT_DIM, width: int = 64) -> None:
        super().__init__(latent_dim, width, batch_norm=True)
        use_tanh(self.main)

    def forward(self, z: Tensor) -> Tensor:
        h = self.project(z.reshape(z.shape[0], self.latent_dim))
        h = torch.tanh(self.project_norm(h.view(-1, 4 * self.width, _BASE, _BASE)))
        return (self.main(h) + 1.0) / 2.0


class LayerNorm2d(nn.GroupNorm):
    """Layer normalisation of an (N, C, H, W) map as the code's `Layernorm(name, [1, 2, 3], x)`:
    each sample normalised over its channels, height and width together (eps 1e-5), then one
    scale and offset per channel (= `GroupNorm` with a single group)."""

    def __init__(self, channels: int) -> None:
        super().__init__(1, channels, eps=1e-5, affine=True)


def layer_norm(critic: nn.Module) -> nn.Module:
    """Replace every `BatchNorm2d` of `critic` by a `LayerNorm2d` of the same channels, in place;
    returns `critic`. A WGAN-GP critic must not use batch norm: the penalty is per sample, and
    batch norm makes each sample's output depend on the rest of the batch (Section 4)."""
    for name, child in critic.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(critic, name, LayerNorm2d(child.num_features))
        else:
            layer_norm(child)
    return critic


def build(
    architecture: str,
    *,
    width: int,
    mlp_hidden: int = 512,
    critic_layer_norm: bool = False,
    latent_dim: int = LATENT_DIM,
) -> tuple[nn.Module, nn.Module]:
    """(G, D) of one of Figure 2's rows (`ARCHITECTURES`), with `width` the DCGAN dimension (the
    code's DIM) and `mlp_hidden` the MLP generator's units; `critic_layer_norm` (the WGAN-GP
    cells) turns the critic's batch norms into layer norms. Initialised from the global RNG: seed
    it first."""
    if architecture not in ARCHITECTURES:
        raise ReproError(f"architecture {architecture!r}: use one of {', '.join(ARCHITECTURES)}")
    if architecture == "no_norm":
        gen: nn.Module = Generator(latent_dim, width, batch_norm=False)
        critic: nn.Module = Discriminator(width, batch_norm=False)
    elif architecture == "tanh":
        gen = TanhGenerator(latent_dim, width)
        critic = use_tanh(Discriminator(width, batch_norm=True))
    else:
        gen = {
            "dcgan": lambda: Generator(latent_dim, width, batch_norm=True),
            "g_constant_nobn": lambda: ConstantFilterGenerator(latent_dim, width),
            "g_mlp": lambda: MLPGenerator(latent_dim, mlp_hidden),
        }[architecture]()
        critic = Discriminator(width, batch_norm=True)
    if critic_layer_norm:
        layer_norm(critic)
    return gen, critic
