"""Progressive GAN's generator and discriminator (Karras et al., ICLR 2018), at any final size.

Paper: https://arxiv.org/abs/1710.10196, Sections 2-4 and Appendix A.1; the official code's
`networks.py` (github.com/tkarras/progressive_growing_of_gans, commit 2504c3f: `G_paper`,
`D_paper` and their layers), read, not copied.

Both networks are built whole (every resolution from 4×4 up to the final one) and read a level
of detail `lod` (a float attribute, set by the training schedule) as the code's `lod` variable:
`lod = log2(final / r)` while the resolution r is trained, fractional while the next one fades
in. The generator always returns final-size images (a low-resolution output is upscaled by
nearest-neighbour duplication) and the discriminator always takes them (it average-pools down to
the trained resolution), as in the code, so the loss, the gradient penalty and the sample
quality metric see images of one size throughout training.

Map from the paper to the code:
- Section 2 / Figure 2, the generator's fade-in: the new block's toRGB output blended with the
  2× nearest-upscaled toRGB of the previous block, weight α from 0 to 1 -> `Generator.forward`,
  with α = `alpha` in `Generator.forward`
- Figure 2, the discriminator's fade-in: fromRGB of the 0.5× average-pooled image blended with
  the new block's output                                           -> `Discriminator.forward`
- Figure 2, 2× and 0.5×: nearest-neighbour duplication and average pooling
                                                                   -> `upscale2d`, `downscale2d`
- Section 3, minibatch standard deviation (standard deviation of every feature at every pixel
  over a group of the minibatch, averaged to one number per group, appended as a constant
  feature map) near the end of D                                   -> `minibatch_stddev`
- Section 4.1, equalized learning rate: ŵ_i = w_i / c with w_i ~ N(0, 1) and c He's per-layer
  constant, applied at run time                                    -> `EqualizedConv2d`,
  `EqualizedLinear`
- Section 4.2, pixelwise feature vector normalisation b_xy = a_xy / sqrt(mean_j (a^j_xy)² + ε),
  ε = 1e-8, after every convolution of G (and on the latent code)  -> `pixel_norm`
- Appendix A.1, Table 2's structure: G = latent → 4×4 (dense, conv 3×3) → per resolution
  (upscale, conv 3×3, conv 3×3) → toRGB 1×1; D = fromRGB 1×1 → per resolution (conv 3×3,
  conv 3×3, average pool) → 4×4 (minibatch stddev, conv 3×3, dense, dense); leaky ReLU 0.2;
  linear output layers                                             -> `Generator`,
  `Discriminator`, `GBlock`, `DBlock`, `DFinal`
- the code's switches `use_wscale`, `use_pixelnorm`, `mbstd_group_size` (Table 1's rows and
  config.py's -nowscale / -nopixelnorm)                           -> `Architecture`

Deviations:
- The code's fused upscale+conv (a transposed convolution with a summed 4×4 kernel) and fused
  conv+downscale are written unfused (upscale then conv, conv then average pool), the code's
  `fused_scale=False` path; with the same weights they compute the same function (the fused forms
  are the code's speed-up).
- Channels per resolution are a parameter (`Architecture.channels`): the paper's CIFAR-10 and
  CelebA networks have 512 maps at 4-32 px; our scales use far fewer (repro.toml).
- A grayscale image (one channel) is what toRGB / fromRGB produce / read (Fashion-MNIST).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro import ReproError

__all__ = [
    "Architecture",
    "DBlock",
    "DFinal",
    "Discriminator",
    "EqualizedConv2d",
    "EqualizedLinear",
    "GBlock",
    "Generator",
    "downscale2d",
    "minibatch_stddev",
    "pixel_norm",
    "upscale2d",
]

SLOPE = 0.2  # leaky ReLU's negative slope (Appendix A.1)
SQRT2 = math.sqrt(2.0)


@dataclass(frozen=True)
class Architecture:
    """The networks' settings: `channels[k]` feature maps at resolution 4·2^k (so the final size is
    4·2^(len(channels) − 1)), the latent size (the code: the channels at 4×4), the number of image
    channels, and the three switches of Table 1 (all on is the paper's configuration)."""

    channels: tuple[int, ...] = (64, 64, 32, 16)
    latent_dim: int = 0  # 0 = channels[0], as the code's latent_size = nf(0)
    image_channels: int = 1
    use_wscale: bool = True  # Section 4.1, equalized learning rate (G and D)
    use_pixelnorm: bool = True  # Section 4.2, in G
    mbstd_group_size: int = 4  # Section 3, in D (0 or 1 = off); the code's default group of 4
    normalize_latents: bool = True  # the code normalises z with pixel_norm, whatever use_pixelnorm

    @property
    def resolution(self) -> int:
        """The final image size."""
        return 4 * 2 ** (len(self.channels) - 1)

    @property
    def z_dim(self) -> int:
        """The latent code's size."""
        return self.latent_dim or self.channels[0]


def upscale2d(x: Tensor, factor: int = 2) -> Tensor:
    """Nearest-neighbour upscaling: every pixel repeated factor × factor times (Figure 2's 2×)."""
    if factor == 1:
        return x
    return x.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3)


def downscale2d(x: Tensor, factor: int = 2) -> Tensor:
    """Box-filter downscaling: the mean of every factor × factor block (Figure 2's 0.5×)."""
    if factor == 1:
        return x
    return F.avg_pool2d(x, factor)


def pixel_norm(x: Tensor, eps: float = 1e-8) -> Tensor:
    """Section 4.2: every pixel's feature vector divided by its root mean square over channels
    (dimension 1), b = a / sqrt(mean_j a_j² + ε)."""
    return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + eps)


def minibatch_stddev(x: Tensor, group_size: int = 4) -> Tensor:
    """Section 3 (the code's `minibatch_stddev_layer`): split the minibatch of N into M = N / G
    groups of G = min(`group_size`, N) (the code's reshape to [G, M, C, H, W]: samples m, M + m,
    2M + m, ... form group m), take every feature's standard deviation over its group at every
    pixel (biased, + 1e-8 under the root), average it over features and pixels, and append that
    number as one constant feature map to every sample of the group."""
    n, c, h, w = x.shape
    g = min(group_size, n)
    if n % g:
        raise ReproError(f"minibatch_stddev: batch {n} is not divisible by the group size {g}")
    y = x.reshape(g, -1, c, h, w)
    y = y - y.mean(dim=0, keepdim=True)
    y = (y.square().mean(dim=0) + 1e-8).sqrt()  # [M, C, H, W]
    y = y.mean(dim=(1, 2, 3), keepdim=True)  # [M, 1, 1, 1]
    y = y.repeat(g, 1, h, w)  # [N, 1, H, W]: sample g·M + m gets group m's value
    return torch.cat([x, y], dim=1)


class EqualizedConv2d(nn.Module):
    """A k × k convolution ('same' padding) with Section 4.1's run-time weight scaling.

    With `use_wscale` the stored weights are N(0, 1) and multiplied at every call by He's
    constant c = gain / sqrt(fan_in); without it they are drawn N(0, c²) and used as they are (the
    usual He initialisation). Biases start at zero."""

    def __init__(
        self, cin: int, cout: int, kernel: int, *, gain: float = SQRT2, use_wscale: bool = True
    ) -> None:
        super().__init__()
        std = gain / math.sqrt(cin * kernel * kernel)
        self.scale = std if use_wscale else 1.0
        self.weight = nn.Parameter(
            torch.randn(cout, cin, kernel, kernel) * (1.0 if use_wscale else std)
        )
        self.bias = nn.Parameter(torch.zeros(cout))
        self.padding = kernel // 2

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


class EqualizedLinear(nn.Module):
    """A fully connected layer with Section 4.1's run-time weight scaling (see `EqualizedConv2d`);
    the input is flattened."""

    def __init__(
        self, fin: int, fout: int, *, gain: float = SQRT2, use_wscale: bool = True
    ) -> None:
        super().__init__()
        std = gain / math.sqrt(fin)
        self.scale = std if use_wscale else 1.0
        self.weight = nn.Parameter(torch.randn(fout, fin) * (1.0 if use_wscale else std))
        self.bias = nn.Parameter(torch.zeros(fout))

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x.flatten(1), self.weight * self.scale, self.bias)


def _act(x: Tensor) -> Tensor:
    return F.leaky_relu(x, SLOPE)


class GBlock(nn.Module):
    """One resolution of G. At 4×4 (`first`): [pixel-normalised z] → dense to c × 4 × 4 → conv
    3×3; above: upscale 2× → conv 3×3 → conv 3×3. Every layer: leaky ReLU, then pixel norm."""

    def __init__(self, cin: int, cout: int, arch: Architecture, *, first: bool) -> None:
        super().__init__()
        self.first = first
        self.cout = cout
        self.pixelnorm = arch.use_pixelnorm
        self.normalize_latents = arch.normalize_latents
        ws = arch.use_wscale
        if first:
            # the code's gain sqrt(2)/4 on this dense layer ("to match the original Theano code")
            self.conv0: nn.Module = EqualizedLinear(cin, cout * 16, gain=SQRT2 / 4, use_wscale=ws)
        else:
            self.conv0 = EqualizedConv2d(cin, cout, 3, use_wscale=ws)
        self.conv1 = EqualizedConv2d(cout, cout, 3, use_wscale=ws)

    def _pn(self, x: Tensor) -> Tensor:
        return pixel_norm(x) if self.pixelnorm else x

    def forward(self, x: Tensor) -> Tensor:
        if self.first:
            if self.normalize_latents:
                x = pixel_norm(x)
            x = self._pn(_act(self.conv0(x).view(-1, self.cout, 4, 4)))
        else:
            x = self._pn(_act(self.conv0(upscale2d(x))))
        return self._pn(_act(self.conv1(x)))


class Generator(nn.Module):
    """Progressive GAN's G at every resolution of `arch`; `lod` selects (and fades) the output.

    `forward(z)` returns images of the final size in the networks' range [-1, 1] (the code's
    `drange_net`, a linear output: values outside are possible), computing only the blocks up to
    the resolution the level of detail needs."""

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        self.arch = arch
        ch = arch.channels
        self.blocks = nn.ModuleList(
            [GBlock(arch.z_dim, ch[0], arch, first=True)]
            + [GBlock(ch[k - 1], ch[k], arch, first=False) for k in range(1, len(ch))]
        )
        self.torgb = nn.ModuleList(
            EqualizedConv2d(c, arch.image_channels, 1, gain=1.0, use_wscale=arch.use_wscale)
            for c in ch
        )
        self.lod = 0.0  # log2(final / trained resolution), fractional during a fade-in

    def forward(self, z: Tensor) -> Tensor:
        top, alpha = _level(len(self.blocks), self.lod)
        x = self.blocks[0](z)
        prev = x
        for k in range(1, top + 1):
            prev, x = x, self.blocks[k](x)
        img = self.torgb[top](x)
        if top > 0 and alpha < 1.0:
            img = torch.lerp(upscale2d(self.torgb[top - 1](prev)), img, alpha)
        return upscale2d(img, 2 ** (len(self.blocks) - 1 - top))


class DBlock(nn.Module):
    """One resolution of D above 4×4: conv 3×3 (c_k → c_k), conv 3×3 (c_k → c_(k−1)), average
    pooling 2×; leaky ReLU after each convolution."""

    def __init__(self, cin: int, cout: int, arch: Architecture) -> None:
        super().__init__()
        self.conv0 = EqualizedConv2d(cin, cin, 3, use_wscale=arch.use_wscale)
        self.conv1 = EqualizedConv2d(cin, cout, 3, use_wscale=arch.use_wscale)

    def forward(self, x: Tensor) -> Tensor:
        return downscale2d(_act(self.conv1(_act(self.conv0(x)))))


class DFinal(nn.Module):
    """D's 4×4 block: minibatch stddev (when on), conv 3×3, dense to c, dense to one score (linear,
    gain 1)."""

    def __init__(self, c: int, arch: Architecture) -> None:
        super().__init__()
        self.group = arch.mbstd_group_size
        extra = 1 if self.group > 1 else 0
        self.conv = EqualizedConv2d(c + extra, c, 3, use_wscale=arch.use_wscale)
        self.dense0 = EqualizedLinear(c * 16, c, use_wscale=arch.use_wscale)
        self.dense1 = EqualizedLinear(c, 1, gain=1.0, use_wscale=arch.use_wscale)

    def forward(self, x: Tensor) -> Tensor:
        if self.group > 1:
            x = minibatch_stddev(x, self.group)
        x = _act(self.conv(x))
        return self.dense1(_act(self.dense0(x)))


class Discriminator(nn.Module):
    """Progressive GAN's D (the critic) at every resolution of `arch`; `lod` as `Generator`'s.

    `forward(images)` takes final-size images in [-1, 1] and returns one score per image (N × 1)."""

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        self.arch = arch
        ch = arch.channels
        self.fromrgb = nn.ModuleList(
            EqualizedConv2d(arch.image_channels, c, 1, use_wscale=arch.use_wscale) for c in ch
        )
        self.blocks = nn.ModuleList(
            [nn.Identity()] + [DBlock(ch[k], ch[k - 1], arch) for k in range(1, len(ch))]
        )
        self.final = DFinal(ch[0], arch)
        self.lod = 0.0

    def forward(self, images: Tensor) -> Tensor:
        levels = len(self.blocks)
        if images.shape[-1] != self.arch.resolution or images.shape[-2] != self.arch.resolution:
            raise ReproError(
                f"Discriminator: expected {self.arch.resolution}-px images, got "
                f"{tuple(images.shape)}"
            )
        top, alpha = _level(levels, self.lod)
        img = downscale2d(images, 2 ** (levels - 1 - top))
        x = _act(self.fromrgb[top](img))
        if top > 0:
            x = self.blocks[top](x)
            if alpha < 1.0:
                x = torch.lerp(_act(self.fromrgb[top - 1](downscale2d(img))), x, alpha)
            for k in range(top - 1, 0, -1):
                x = self.blocks[k](x)
        return self.final(x)


def _level(levels: int, lod: float) -> tuple[int, float]:
    """(the highest block in use, the fade-in weight α of its output): resolution index
    cur = levels − 1 − lod; top = ceil(cur); α = cur − (top − 1) (1 when cur is whole)."""
    if not 0.0 <= lod <= levels - 1:
        raise ReproError(f"lod {lod} is outside [0, {levels - 1}]")
    cur = levels - 1 - lod
    top = math.ceil(cur - 1e-9)
    return top, float(cur - (top - 1)) if top > 0 else 1.0
