"""The networks of Arjovsky et al.'s experiments (Section 4), at 28 × 28 px for Fashion-MNIST.

The official code (`models/dcgan.py`, `models/mlp.py` of martinarjovsky/WassersteinGAN, commit
f7a01e8) builds DCGAN networks for 64 px images (sizes must be multiples of 16). At 28 px the
same design takes one 7 × 7 first/last layer instead of the 4 × 4 start of the pyramid:

- `DCGANGenerator` (Figure 5): z → 7 × 7 (transposed conv 7, stride 1) → 14 → 28 (transposed
  conv 4, stride 2, padding 1), filters halving as the resolution doubles (2·ngf, ngf, 1),
  batch norm and ReLU after every layer but the last, tanh out.
- `DCGANGenerator(batch_norm=False, constant_filters=True)` (Figure 6): the same without batch
  norm and with ngf filters at every layer ("without batch normalization and constant number of
  filters at every layer").
- `MLPGenerator` (Figure 7): 4 ReLU layers of 512 units (the code's `MLP_G`: three hidden
  layers of `ngf` units and a linear output layer; the paper: "4-layer ReLU-MLP with 512 hidden
  units").
- `DCGANCritic`: 28 → 14 (conv 4, stride 2, LeakyReLU 0.2) → 7 (conv 4, stride 2, batch norm,
  LeakyReLU) → 1 (conv 7), no sigmoid; the WGAN critic and the GAN discriminator (whose sigmoid
  is in the loss) share it, as in the paper ("We keep the convolutional DCGAN architecture for
  the WGAN critic or the GAN discriminator"). Batch norm is in the critic, as in the code's
  `DCGAN_D` (its `--noBN` flag changes the generator only).

Map (Section 4's architectures; tests/repro/test_paper_maps.py checks the names):
- Section 4.3 (1), the convolutional DCGAN generator (Figure 5)        -> `DCGANGenerator`
- Section 4.3 (2), "without batch normalization and with a constant number of filters" (Figure 6)
                                                                        -> `DCGANGenerator`
- Section 4.3 (3), "a 4-layer ReLU-MLP with 512 hidden units" (Figure 7) -> `MLPGenerator`
- "We keep the convolutional DCGAN architecture for the WGAN critic or the GAN discriminator"
                                                                        -> `DCGANCritic`
- the code's `weights_init`                                             -> `init_weights`

Pixels: the toolkit's images are in [0, 1]; the code normalises images to [-1, 1] and ends G in
tanh. Here a generator maps its tanh output to [0, 1] ((t + 1) / 2) and the critic maps its input
back (2x − 1), which is the same computation with the toolkit's convention on the outside.
Initialisation as the code's `weights_init`: conv weights N(0, 0.02), batch-norm scales N(1, 0.02)
and shifts 0; linear layers keep PyTorch's default (the code's MLPs are not re-initialised).
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = [
    "LATENT_DIM",
    "DCGANCritic",
    "DCGANGenerator",
    "MLPGenerator",
    "count_parameters",
    "init_weights",
]

#: z ~ N(0, I) in 100 dimensions (the code's `nz`, `noise.normal_(0, 1)`).
LATENT_DIM = 100


def init_weights(module: nn.Module) -> None:
    """The code's `weights_init`, applied with `module.apply`: conv N(0, 0.02); batch norm scale
    N(1, 0.02), shift 0. Draws from the global torch RNG."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def _to_unit(t: Tensor) -> Tensor:
    """tanh output in [-1, 1] -> image in [0, 1]."""
    return (t + 1.0) / 2.0


class DCGANGenerator(nn.Module):
    """z (N, nz) -> images (N, 1, 28, 28) in [0, 1]; see the module docstring."""

    def __init__(
        self,
        nz: int = LATENT_DIM,
        ngf: int = 64,
        *,
        batch_norm: bool = True,
        constant_filters: bool = False,
    ) -> None:
        super().__init__()
        wide = ngf if constant_filters else 2 * ngf
        self.nz, self.ngf, self.batch_norm = nz, ngf, batch_norm
        self.constant_filters = constant_filters

        def norm(c: int) -> list[nn.Module]:
            return [nn.BatchNorm2d(c)] if batch_norm else []

        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, wide, 7, 1, 0, bias=False), *norm(wide), nn.ReLU(True),
            nn.ConvTranspose2d(wide, ngf, 4, 2, 1, bias=False), *norm(ngf), nn.ReLU(True),
            nn.ConvTranspose2d(ngf, 1, 4, 2, 1, bias=False), nn.Tanh(),
        )  # fmt: skip
        self.apply(init_weights)

    def forward(self, z: Tensor) -> Tensor:
        return _to_unit(self.main(z.view(z.shape[0], self.nz, 1, 1)))


class MLPGenerator(nn.Module):
    """z (N, nz) -> images (N, 1, 28, 28) in [0, 1]: `hidden` units in 3 ReLU layers, then a
    linear output layer and tanh (the code's `MLP_G` has no output nonlinearity: its images are
    unbounded; the tanh keeps them in the pixel range the critic and FID see)."""

    def __init__(self, nz: int = LATENT_DIM, hidden: int = 512, size: int = 28) -> None:
        super().__init__()
        self.nz, self.size = nz, size
        self.main = nn.Sequential(
            nn.Linear(nz, hidden), nn.ReLU(True),
            nn.Linear(hidden, hidden), nn.ReLU(True),
            nn.Linear(hidden, hidden), nn.ReLU(True),
            nn.Linear(hidden, size * size), nn.Tanh(),
        )  # fmt: skip

    def forward(self, z: Tensor) -> Tensor:
        out = self.main(z.view(z.shape[0], self.nz))
        return _to_unit(out.view(-1, 1, self.size, self.size))


class DCGANCritic(nn.Module):
    """images (N, 1, 28, 28) in [0, 1] -> one real number per image (no sigmoid).

    The code's critic returns the batch mean; this one returns per-image values (N,) and the
    losses take the means, which is the same number.
    """

    def __init__(self, ndf: int = 64) -> None:
        super().__init__()
        self.ndf = ndf
        self.main = nn.Sequential(
            nn.Conv2d(1, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, 2 * ndf, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * ndf),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(2 * ndf, 1, 7, 1, 0, bias=False),
        )  # fmt: skip
        self.apply(init_weights)

    def forward(self, x: Tensor) -> Tensor:
        return self.main(2.0 * x - 1.0).flatten()


def count_parameters(module: nn.Module) -> int:
    """The number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
