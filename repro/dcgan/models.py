"""The DCGAN networks (Radford, Metz & Chintala, ICLR 2016), for 28 px and 32 px grey images.

Paper: https://arxiv.org/abs/1511.06434 — Section 3's architecture guidelines and Section 4's
training details; official code github.com/Newmu/dcgan_code (Theano, commit ee12b2d; read, not
copied): the 32 px SVHN discriminator of `svhn/svhn_semisup_analysis.py` is the model this
follows, `faces/train_uncond_dcgan.py` the generator's layers.

This is the module other folders import (`wgan`, `wgan_gp`, `bau_units`); its API is stable:

- `Generator(latent_dim=100, width=64, batch_norm=True, out_size=28, channels=1)`: z (N, latent)
  -> images (N, channels, out_size, out_size) in [0, 1].
- `Discriminator(width=64, batch_norm=True, channels=1)`: images (N, channels, 28 or 32, same)
  in [0, 1] -> one logit per image, shape (N,) (the sigmoid is in the loss: `repro.gan`).
  `Discriminator.features(x)` returns the feature map of every convolutional layer (after its
  nonlinearity), for Table 1's protocol (`repro.dcgan.pooled_features`).
- `init_weights` (the paper's N(0, 0.02)), `uniform_latent` (the paper's prior), `LATENT_DIM`.

Map (Section 3's architecture guidelines and Section 4's details -> the code):
- "Replace any pooling layers with strided convolutions (discriminator) and fractional-strided
  convolutions (generator)": three 5 × 5 convolutions of stride 2 and padding 2 (the code's
  kernels), 28 -> 14 -> 7 -> 4 or 32 -> 16 -> 8 -> 4      -> `Discriminator`; three 5 × 5
  transposed convolutions, 4 -> 7 -> 14 -> 28 or 4 -> 8 -> 16 -> 32 -> `Generator`
- "Use batchnorm in both the generator and the discriminator", "not applying batchnorm to the
  generator output layer and the discriminator input layer" (switched off for the no-batch-norm
  arms of WGAN / WGAN-GP)                                   -> `batch_norm` in `Generator`
- "Remove fully connected hidden layers": Figure 1's "project and reshape" of z to
  4 × 4 × (4·width)                                         -> `Generator.forward`;
  "the last convolution layer is flattened and then fed into a single sigmoid output" (the
  sigmoid is in the loss, `repro.gan`)                      -> `Discriminator.forward`
- "ReLU activation in generator for all layers except for the output, which uses Tanh";
  "LeakyReLU activation in the discriminator for all layers", slope 0.2 (Section 4)
                                                            -> `Generator`, `Discriminator`
- Section 4: "All weights were initialized from a zero-centered Normal distribution with
  standard deviation 0.02" (batch-norm gains N(1, 0.02), shifts 0, as the code) -> `init_weights`
- Section 4 / Figure 1: a 100-dimensional uniform noise distribution Z -> `uniform_latent`,
  `LATENT_DIM`
- Table 1's protocol reads "the discriminator's convolutional features from all layers"
                                                            -> `Discriminator.features`

Widths follow the code's pyramid: G 4·width -> 2·width -> width -> channels, D width -> 2·width
-> 4·width (the SVHN discriminator has 64, 128 and 256 maps at 32 px: width 64; the 64 px faces
model has one layer more each side, 1024 -> 512 -> 256 -> 128 in G).

Pixels: the toolkit's images are in [0, 1]; the paper scales them to tanh's [−1, 1]. G maps its
tanh output t to (t + 1) / 2 and D maps its input x back to 2x − 1: the same computation, with
the toolkit's convention outside (FID, sample grids and the data loaders all use [0, 1]).

Deviations from the code (each also in README.md): a layer followed by batch norm has no bias (as
the code); a layer whose batch norm is switched off gets a bias (the code has no such arm);
the code's G projects z with a dense layer and a batch norm over its 4·4·4·width outputs; here
the same dense layer is followed by a per-channel batch norm after the reshape (the convention of
every later DCGAN implementation, and of the convolutional layers); D's output unit has a bias
(the code's `wy` has none). The code's L2 weight decay of 1e-5 on both networks is an optimiser
setting (`repro.dcgan.PAPER`), not the networks'.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro import ReproError

__all__ = [
    "LATENT_DIM",
    "Discriminator",
    "Generator",
    "count_parameters",
    "init_weights",
    "uniform_latent",
]

#: z has 100 dimensions (Figure 1; the code's nz = 100).
LATENT_DIM = 100
#: D's last feature map is 4 × 4 for 28 px and 32 px inputs alike (5 × 5 kernels, stride 2, pad 2).
_BASE = 4
_SIZES = (28, 32)


def init_weights(module: nn.Module) -> None:
    """Section 4's initialisation, applied with `module.apply`: conv, transposed-conv and dense
    weights N(0, 0.02), biases 0; batch-norm gains N(1, 0.02), shifts 0 (the code's `gain_ifn`,
    `bias_ifn`). Draws from the global torch RNG (seed it before building a network)."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def uniform_latent(n: int, rng: torch.Generator, dim: int = LATENT_DIM) -> Tensor:
    """n codes z ~ U[−1, 1]^dim on `rng`'s device (Section 4: "a uniform noise distribution Z";
    the code draws `np_rng.uniform(-1., 1., size=(n, nz))`)."""
    return torch.rand(n, dim, generator=rng, device=rng.device) * 2.0 - 1.0


def _norm(channels: int, on: bool) -> list[nn.Module]:
    return [nn.BatchNorm2d(channels)] if on else []


class Generator(nn.Module):
    """z (N, latent_dim) -> images (N, channels, out_size, out_size) in [0, 1].

    Project and reshape z to 4 × 4 × (4·width) (batch norm, ReLU), then three 5 × 5 transposed
    convolutions of stride 2 to 2·width, width and `channels` maps (batch norm and ReLU after the
    first two, tanh after the last). `out_size` 28 (4 -> 7 -> 14 -> 28) or 32 (4 -> 8 -> 16 -> 32).
    """

    def __init__(
        self,
        latent_dim: int = LATENT_DIM,
        width: int = 64,
        batch_norm: bool = True,
        out_size: int = 28,
        channels: int = 1,
    ) -> None:
        super().__init__()
        if out_size not in _SIZES:
            raise ReproError(f"dcgan.Generator: out_size {out_size} must be one of {_SIZES}")
        if width < 1 or latent_dim < 1:
            raise ReproError(
                f"dcgan.Generator: width {width}, latent_dim {latent_dim} must be >= 1"
            )
        self.latent_dim, self.width, self.batch_norm = latent_dim, width, batch_norm
        self.out_size, self.channels = out_size, channels
        top = 4 * width
        self.project = nn.Linear(latent_dim, top * _BASE * _BASE, bias=not batch_norm)
        self.project_norm = nn.BatchNorm2d(top) if batch_norm else nn.Identity()
        first_pad = 0 if out_size == 28 else 1  # 4 -> 7 for 28 px, 4 -> 8 for 32 px

        def up(c_in: int, c_out: int, output_padding: int, bias: bool) -> nn.ConvTranspose2d:
            return nn.ConvTranspose2d(c_in, c_out, 5, 2, 2, output_padding, bias=bias)

        self.main = nn.Sequential(
            up(top, 2 * width, first_pad, not batch_norm), *_norm(2 * width, batch_norm),
            nn.ReLU(True),
            up(2 * width, width, 1, not batch_norm), *_norm(width, batch_norm), nn.ReLU(True),
            up(width, channels, 1, False), nn.Tanh(),
        )  # fmt: skip
        self.apply(init_weights)

    def forward(self, z: Tensor) -> Tensor:
        h = self.project(z.reshape(z.shape[0], self.latent_dim))
        h = F.relu(self.project_norm(h.view(-1, 4 * self.width, _BASE, _BASE)))
        return (self.main(h) + 1.0) / 2.0


class Discriminator(nn.Module):
    """Images (N, channels, 28 or 32, same) in [0, 1] -> one logit per image, shape (N,).

    Three 5 × 5 convolutions of stride 2 (width, 2·width, 4·width maps; LeakyReLU 0.2 after each,
    batch norm before the second and third), the last 4 × 4 map flattened into one output
    (Section 3: "the last convolution layer is flattened and then fed into a single sigmoid
    output"; the sigmoid is in the loss). `features(x)` returns the three maps.
    """

    def __init__(self, width: int = 64, batch_norm: bool = True, channels: int = 1) -> None:
        super().__init__()
        if width < 1:
            raise ReproError(f"dcgan.Discriminator: width {width} must be >= 1")
        self.width, self.batch_norm, self.channels = width, batch_norm, channels

        def down(c_in: int, c_out: int, bias: bool) -> nn.Conv2d:
            return nn.Conv2d(c_in, c_out, 5, 2, 2, bias=bias)

        self.blocks = nn.ModuleList(
            [
                nn.Sequential(down(channels, width, True), nn.LeakyReLU(0.2)),
                nn.Sequential(
                    down(width, 2 * width, not batch_norm), *_norm(2 * width, batch_norm),
                    nn.LeakyReLU(0.2),
                ),
                nn.Sequential(
                    down(2 * width, 4 * width, not batch_norm), *_norm(4 * width, batch_norm),
                    nn.LeakyReLU(0.2),
                ),
            ]
        )  # fmt: skip
        self.out = nn.Linear(4 * width * _BASE * _BASE, 1, bias=True)
        self.apply(init_weights)

    def features(self, x: Tensor) -> list[Tensor]:
        """The feature map of every convolutional layer after its LeakyReLU, first to last:
        (N, width, s/2, s/2), (N, 2·width, s/4, s/4), (N, 4·width, 4, 4) for s = 28 or 32."""
        if x.shape[-1] not in _SIZES or x.shape[-2] != x.shape[-1]:
            raise ReproError(
                f"dcgan.Discriminator: images must be 28 × 28 or 32 × 32, got {tuple(x.shape)}"
            )
        h = 2.0 * x - 1.0
        maps = []
        for block in self.blocks:
            h = block(h)
            maps.append(h)
        return maps

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.features(x)[-1].flatten(1)).reshape(x.shape[0])


def count_parameters(module: nn.Module) -> int:
    """The number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
