"""Differentiable, batched image transformations: the one module of `spatial_rt`, `eot` and `rp2`.

Engstrom et al. attack with rotations and translations, Athalye et al. (EOT) average over rotations,
scalings, translations, brightness and noise, and Eykholt et al. (RP2) over viewing distance and
angle, brightness and blur. All three need the same thing: a batch of images and a batch of
transformations, one per image, applied in one pass and differentiable in the image (EOT, RP2)
and in the transformation's parameters (Engstrom et al.'s first-order attack on the angle and the
shift). This module is that thing, and nothing else:

- geometry is a 3×3 matrix per image that maps input pixel coordinates (origin at the image centre,
  x to the right, y down, in pixels) to output pixel coordinates: `rotation`, `translation`,
  `scaling` and `tilt` (a plane seen from an angle: a true homography) build them, batched, and
  `@` composes them (the right-hand one acts first);
- `warp` applies such matrices with `torch.nn.functional.grid_sample` (bilinear, zero padding by
  default: a shifted digit leaves black behind, as the paper's constant padding does);
- photometry: `brighten` (additive), `blur` (a Gaussian of a per-image σ) and additive noise;
- `Transforms` is a batch of sampled transformations (matrices, brightness, blur, noise), applied
  by `Transforms.apply`, deterministic once sampled, so the same draw can be applied to x' and to
  x (EOT's distance term E_t d(t(x'), t(x))); `TransformDistribution.sample` draws one batch from
  uniform ranges with a `torch.Generator`;
- `grid` enumerates the attack grid (Engstrom et al.'s 5 × 5 × 31 = 775 transforms) as parameters,
  `canvas` pads onto a larger black canvas (their "black canvas" setting, where nothing is cut off).

Why not a loop over transforms: `warp` takes one matrix per image, so K transforms of B images are
one call on B·K images (`expand`): the grid attack's throughput depends on it (`nox -s bench`).
kornia would do the same warps; `torch.nn.functional.affine_grid`/`grid_sample` are already here
and cover homographies once the sampling grid is built from the matrix, which is what `warp` does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from repro import ReproError

__all__ = [
    "TransformDistribution",
    "Transforms",
    "blur",
    "brighten",
    "canvas",
    "expand",
    "grid",
    "identity",
    "rotate_translate",
    "rotation",
    "scaling",
    "tilt",
    "translation",
    "warp",
]


def _vector(value: Tensor | float, like: Tensor | None = None) -> Tensor:
    t = torch.as_tensor(value, dtype=like.dtype if like is not None else torch.float32)
    if like is not None:
        t = t.to(like.device)
    return t.reshape(-1)


def _batch(*values: Tensor | float) -> list[Tensor]:
    """Broadcast scalars and (B,) tensors to one batch size, float, on one device."""
    tensors = [v for v in values if isinstance(v, Tensor)]
    like = tensors[0] if tensors else None
    if like is not None and not like.is_floating_point():
        like = like.float()
    vecs = [_vector(v, like) for v in values]
    n = max(v.numel() for v in vecs)
    out = []
    for v in vecs:
        if v.numel() not in (1, n):
            raise ReproError(
                f"transform parameters of batch sizes {v.numel()} and {n} do not match"
            )
        out.append(v.expand(n) if v.numel() == 1 else v)
    return out


def identity(n: int, *, device: torch.device | str | None = None) -> Tensor:
    """n identity matrices, (n, 3, 3)."""
    return torch.eye(3, device=device).expand(n, 3, 3).clone()


def rotation(angle_deg: Tensor | float) -> Tensor:
    """Rotations about the image centre by `angle_deg` degrees, counter-clockwise as seen on
    screen (y points down, so the matrix is that of a clockwise rotation in y-down coordinates)."""
    (a,) = _batch(angle_deg)
    a = torch.deg2rad(a)
    c, s = torch.cos(a), torch.sin(a)
    zero, one = torch.zeros_like(a), torch.ones_like(a)
    rows = [c, s, zero, -s, c, zero, zero, zero, one]
    return torch.stack(rows, dim=1).reshape(-1, 3, 3)


def translation(tx: Tensor | float, ty: Tensor | float) -> Tensor:
    """Shifts by (tx, ty) pixels: right and down are positive."""
    tx, ty = _batch(tx, ty)
    zero, one = torch.zeros_like(tx), torch.ones_like(tx)
    rows = [one, zero, tx, zero, one, ty, zero, zero, one]
    return torch.stack(rows, dim=1).reshape(-1, 3, 3)


def scaling(factor: Tensor | float) -> Tensor:
    """Isotropic scalings about the image centre (> 1 enlarges: a closer object)."""
    (f,) = _batch(factor)
    zero, one = torch.zeros_like(f), torch.ones_like(f)
    rows = [f, zero, zero, zero, f, zero, zero, zero, one]
    return torch.stack(rows, dim=1).reshape(-1, 3, 3)


def tilt(yaw_deg: Tensor | float, pitch_deg: Tensor | float, focal: float) -> Tensor:
    """The homography of a planar image turned by `yaw_deg` about its vertical axis and
    `pitch_deg` about its horizontal axis, seen by a pinhole camera of focal length `focal`
    pixels at distance `focal` (so an unturned plane maps to itself).

    A point (u, v) of the plane is at R·(u, v, 0) + (0, 0, f) in camera space and projects to
    f·(X/Z, Y/Z): the matrix is K·[r1 r2 t] with K = diag(f, f, 1) and t = (0, 0, f). This is
    the "angle" of RP2's distance × angle grid; distance is `scaling`.
    """
    yaw, pitch = _batch(yaw_deg, pitch_deg)
    if focal <= 0:
        raise ReproError(f"tilt: focal length must be positive, got {focal}")
    yaw, pitch = torch.deg2rad(yaw), torch.deg2rad(pitch)
    cy, sy, cp, sp = torch.cos(yaw), torch.sin(yaw), torch.cos(pitch), torch.sin(pitch)
    zero, one = torch.zeros_like(yaw), torch.ones_like(yaw)
    ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], 1).reshape(-1, 3, 3)
    rx = torch.stack([one, zero, zero, zero, cp, -sp, zero, sp, cp], 1).reshape(-1, 3, 3)
    r = rx @ ry
    f = torch.full_like(yaw, float(focal))
    plane = torch.stack([r[:, :, 0], r[:, :, 1], torch.stack([zero, zero, f], 1)], dim=2)
    k = torch.diag_embed(torch.stack([f, f, one], dim=1))
    return (k @ plane) / f.reshape(-1, 1, 1)  # scaled so that no turn is the identity


def _pixel_grid(h: int, w: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Homogeneous pixel-centre coordinates of an h × w image, origin at the centre: (h·w, 3)."""
    ys = torch.arange(h, device=device, dtype=dtype) - (h - 1) / 2
    xs = torch.arange(w, device=device, dtype=dtype) - (w - 1) / 2
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack(
        [gx.reshape(-1), gy.reshape(-1), torch.ones(h * w, device=device, dtype=dtype)], 1
    )


def warp(
    x: Tensor,
    matrix: Tensor,
    *,
    mode: str = "bilinear",
    padding_mode: str = "zeros",
) -> Tensor:
    """Images (B, C, H, W) moved by the matrices (B, 3, 3) or one matrix (3, 3) for all.

    Each output pixel samples the input at matrix⁻¹ · (its own position) (inverse warping, so
    every output pixel gets a value); outside the input, `padding_mode` decides ("zeros": black).
    Differentiable in `x` and in `matrix` (bilinear `grid_sample` has a gradient with respect to
    the sampling positions: Engstrom et al.'s first-order attack uses it).
    """
    if x.dim() != 4:
        raise ReproError(f"warp: images must be (B, C, H, W), got shape {tuple(x.shape)}")
    b, _, h, w = x.shape
    m = matrix.to(device=x.device, dtype=x.dtype)
    if m.dim() == 2:
        m = m.expand(b, 3, 3)
    if m.shape != (b, 3, 3):
        raise ReproError(f"warp: {b} images need {b} matrices (B, 3, 3), got {tuple(matrix.shape)}")
    inverse = torch.linalg.inv(m)
    out_pts = _pixel_grid(h, w, x.device, x.dtype)  # (h·w, 3)
    src = torch.einsum("bij,nj->bni", inverse, out_pts)
    z = src[..., 2:3]
    z = torch.where(
        z.abs() < 1e-8, torch.full_like(z, 1e-8), z
    )  # a point at infinity samples nothing
    xy = src[..., :2] / z
    # align_corners=False: normalised -1 and 1 are the outer edges of the border pixels.
    scale = torch.tensor([2.0 / w, 2.0 / h], device=x.device, dtype=x.dtype)
    sample_at = (xy * scale).reshape(b, h, w, 2)
    return F.grid_sample(x, sample_at, mode=mode, padding_mode=padding_mode, align_corners=False)


def brighten(x: Tensor, delta: Tensor | float) -> Tensor:
    """x + delta per image (lighten > 0, darken < 0), clipped to [0, 1]."""
    d = _vector(delta, x)
    if d.numel() not in (1, x.shape[0]):
        raise ReproError(f"brighten: {x.shape[0]} images, {d.numel()} brightness values")
    return (x + d.reshape(-1, *([1] * (x.dim() - 1)))).clamp(0.0, 1.0)


def blur(x: Tensor, sigma: Tensor | float, *, radius: int | None = None) -> Tensor:
    """A Gaussian blur of standard deviation `sigma` pixels per image (σ = 0 leaves it as it is).

    One separable kernel per image, applied as a grouped convolution over the whole batch (no
    loop over images); the kernel radius is 3·max σ unless given. Zero padding at the borders.
    """
    b, c, h, w = x.shape
    s = _vector(sigma, x).expand(b) if _vector(sigma, x).numel() == 1 else _vector(sigma, x)
    if s.numel() != b:
        raise ReproError(f"blur: {b} images, {s.numel()} sigmas")
    if radius is None:
        radius = max(1, math.ceil(3 * float(s.max().detach()))) if b else 1
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    safe = s.clamp_min(1e-6).reshape(b, 1)
    kernel = torch.exp(-0.5 * (offsets.reshape(1, -1) / safe) ** 2)
    delta = (offsets == 0).to(x.dtype).expand(b, -1)
    kernel = torch.where(s.reshape(b, 1) > 1e-6, kernel, delta)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # (b, k)
    kernel = kernel.repeat_interleave(c, dim=0)  # (b·c, k): one kernel per channel of each image
    flat = x.reshape(1, b * c, h, w)
    k = kernel.shape[1]
    flat = F.conv2d(flat, kernel.reshape(b * c, 1, 1, k), padding=(0, radius), groups=b * c)
    flat = F.conv2d(flat, kernel.reshape(b * c, 1, k, 1), padding=(radius, 0), groups=b * c)
    return flat.reshape(b, c, h, w)


def canvas(x: Tensor, size: int) -> Tensor:
    """The images centred on a black `size` × `size` canvas (Engstrom et al.'s "black canvas":
    a transformed image is never cut off; the classifier then takes the larger input)."""
    h, w = x.shape[-2:]
    if size < max(h, w):
        raise ReproError(f"canvas: {size} px is smaller than the {h} × {w} images")
    top, left = (size - h) // 2, (size - w) // 2
    return F.pad(x, (left, size - w - left, top, size - h - top))


def expand(x: Tensor, k: int) -> Tensor:
    """Each image repeated k times in a row (B·k images, image i at rows i·k … i·k + k − 1): the
    layout `Transforms` of K draws per image and `grid` attacks expect."""
    return x.repeat_interleave(k, dim=0)


@dataclass(frozen=True)
class Transforms:
    """A batch of sampled transformations, one per image, applied by `apply`.

    `matrix` (B, 3, 3) is the geometry (see the module docstring); `brightness` (B,) is added after
    the warp, `blur` (B,) is a Gaussian σ in pixels, `noise` (B, C, H, W) is an additive noise
    realisation. Photometric fields that are None are skipped. Applying is deterministic, so the
    same draw applied to two images (x' and x) transforms both the same way.
    """

    matrix: Tensor
    brightness: Tensor | None = None
    blur: Tensor | None = None
    noise: Tensor | None = None

    def __len__(self) -> int:
        return self.matrix.shape[0]

    def apply(self, x: Tensor) -> Tensor:
        """warp → blur → brighten → add noise, clipped to [0, 1]."""
        if x.shape[0] != len(self):
            raise ReproError(f"{len(self)} transforms for {x.shape[0]} images (use `expand`)")
        out = warp(x, self.matrix)
        if self.blur is not None:
            out = blur(out, self.blur)
        if self.brightness is not None:
            out = brighten(out, self.brightness)
        if self.noise is not None:
            out = out + self.noise.to(out.dtype)
        return out.clamp(0.0, 1.0)

    def __getitem__(self, index: slice | Tensor) -> Transforms:
        """A sub-batch (a slice or an index tensor), e.g. one chunk of a grid."""

        def pick(t: Tensor | None) -> Tensor | None:
            return None if t is None else t[index]

        return replace(
            self,
            matrix=self.matrix[index],
            brightness=pick(self.brightness),
            blur=pick(self.blur),
            noise=pick(self.noise),
        )

    @staticmethod
    def cat(parts: list[Transforms]) -> Transforms:
        """Sampled batches one after the other; a photometric field is kept when every part
        has it (else dropped: None)."""
        if not parts:
            raise ReproError("Transforms.cat of no batches")

        def join(name: str) -> Tensor | None:
            values = [getattr(p, name) for p in parts]
            return None if any(v is None for v in values) else torch.cat(values)

        matrix = join("matrix")
        assert matrix is not None
        return Transforms(matrix, join("brightness"), join("blur"), join("noise"))

    def to(self, device: torch.device | str) -> Transforms:
        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device)

        return Transforms(
            self.matrix.to(device), move(self.brightness), move(self.blur), move(self.noise)
        )


@dataclass(frozen=True)
class TransformDistribution:
    """Independent uniform ranges for each parameter (the form of Athalye et al.'s Table 4).

    rotation_deg: angle in [-r, r]; translate_px: each of tx, ty in [-t, t]; scale: factor in
    [lo, hi]; yaw_deg / pitch_deg: viewing angle in [-a, a] (needs `focal`); brightness: additive
    in [-b, b]; noise_std: σ in [0, s], then Gaussian noise of that σ per pixel; blur_sigma: σ in
    [lo, hi]. A range of zero width leaves its transformation out.
    """

    rotation_deg: float = 0.0
    translate_px: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)
    yaw_deg: float = 0.0
    pitch_deg: float = 0.0
    focal: float = 56.0
    brightness: float = 0.0
    noise_std: float = 0.0
    blur_sigma: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        for name in (
            "rotation_deg",
            "translate_px",
            "yaw_deg",
            "pitch_deg",
            "brightness",
            "noise_std",
        ):
            if getattr(self, name) < 0:
                raise ReproError(
                    f"TransformDistribution: {name} is a half-width, got a negative value"
                )
        for name in ("scale", "blur_sigma"):
            lo, hi = getattr(self, name)
            if hi < lo or lo < 0:
                raise ReproError(
                    f"TransformDistribution: {name} must be 0 <= lo <= hi, got {(lo, hi)}"
                )
        if self.scale[0] <= 0:
            raise ReproError("TransformDistribution: scale must be positive")

    def sample(
        self,
        n: int,
        *,
        image_shape: tuple[int, ...] | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
    ) -> Transforms:
        """n independent draws. `image_shape` (C, H, W) is needed only when there is noise.

        The draws are made on the generator's device and moved to `device`, so a seed gives the
        same transformations on every device.
        """
        gen_device = generator.device if generator is not None else torch.device("cpu")

        def uniform(lo: float, hi: float) -> Tensor:
            u = torch.rand(n, generator=generator, device=gen_device)
            return (lo + (hi - lo) * u).to(device)

        m = identity(n, device=device)
        if self.scale != (1.0, 1.0):
            m = scaling(uniform(*self.scale)) @ m
        if self.yaw_deg or self.pitch_deg:
            yaw = uniform(-self.yaw_deg, self.yaw_deg)
            pitch = uniform(-self.pitch_deg, self.pitch_deg)
            m = tilt(yaw, pitch, self.focal) @ m
        if self.rotation_deg:
            m = rotation(uniform(-self.rotation_deg, self.rotation_deg)) @ m
        if self.translate_px:
            t = self.translate_px
            m = translation(uniform(-t, t), uniform(-t, t)) @ m
        brightness = uniform(-self.brightness, self.brightness) if self.brightness else None
        blur_sigma = uniform(*self.blur_sigma) if self.blur_sigma[1] > 0 else None
        noise = None
        if self.noise_std:
            if image_shape is None:
                raise ReproError("TransformDistribution.sample: noise needs image_shape (C, H, W)")
            std = uniform(0.0, self.noise_std)
            z = torch.randn((n, *image_shape), generator=generator, device=gen_device).to(device)
            noise = z * std.reshape(-1, *([1] * len(image_shape)))
        return Transforms(m, brightness, blur_sigma, noise)


def grid(
    translations_x: Tensor, translations_y: Tensor, rotations_deg: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Every combination of the given shifts (px) and angles (degrees) as three (K,) tensors
    (K = len(x) · len(y) · len(angles)): Engstrom et al.'s exhaustive grid, e.g.
    `grid(linspace(-3, 3, 5), linspace(-3, 3, 5), linspace(-30, 30, 31))` for their 775."""
    tx, ty, angle = torch.meshgrid(translations_x, translations_y, rotations_deg, indexing="ij")
    return tx.reshape(-1), ty.reshape(-1), angle.reshape(-1)


def rotate_translate(angle_deg: Tensor | float, tx: Tensor | float, ty: Tensor | float) -> Tensor:
    """Engstrom et al.'s transformation: rotate about the centre, then shift (matrices (B, 3, 3))."""
    return translation(tx, ty) @ rotation(angle_deg)
