"""repro.transforms: the geometry is right (checked against torch's affine_grid and torchvision's
blur), batched, differentiable, and seeded draws repeat."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF

from repro import ReproError
from repro import transforms as T


def _dot(size: int = 9, row: int = 2, col: int = 3) -> torch.Tensor:
    x = torch.zeros(1, 1, size, size)
    x[0, 0, row, col] = 1.0
    return x


def _where(x: torch.Tensor) -> list[int]:
    return (x[0, 0] > 0.5).nonzero()[0].tolist()


def test_identity_warp_returns_the_images_exactly() -> None:
    x = torch.rand(3, 2, 7, 10)
    assert torch.allclose(T.warp(x, T.identity(3)), x, atol=1e-6)


def test_translation_moves_right_and_down_in_pixels() -> None:
    assert _where(T.warp(_dot(), T.translation(2.0, 1.0))) == [3, 5]
    assert _where(T.warp(_dot(), T.translation(-3.0, 0.0))) == [2, 0]


def test_rotation_is_counter_clockwise_on_screen_about_the_centre() -> None:
    # (row 2, col 3) in a 9 × 9 image is 2 up and 1 left of the centre (4, 4): a quarter turn
    # counter-clockwise puts it 2 left and 1 down.
    assert _where(T.warp(_dot(), T.rotation(90.0))) == [5, 2]
    x = torch.rand(1, 1, 9, 9)
    assert torch.allclose(T.warp(x, T.rotation(360.0)), x, atol=1e-5)


def test_warp_agrees_with_affine_grid_for_affine_matrices() -> None:
    """For a square image, torch's own affine_grid with the normalised inverse must give the same
    sampling as our pixel-coordinate construction."""
    x = torch.rand(4, 1, 28, 28)
    angle = torch.tensor([0.0, 17.0, -30.0, 45.0])
    tx, ty = torch.tensor([0.0, 2.5, -3.0, 1.0]), torch.tensor([1.0, -1.5, 3.0, 0.0])
    m = T.rotate_translate(angle, tx, ty)
    ours = T.warp(x, m)
    inv = torch.linalg.inv(m)
    theta = inv[:, :2, :].clone()
    theta[:, :, 2] *= 2.0 / 28  # pixels -> normalised units (align_corners=False)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    ref = F.grid_sample(x, grid, align_corners=False)
    assert torch.allclose(ours, ref, atol=1e-5)


def test_composition_and_inverse() -> None:
    a, b = T.translation(1.0, -2.0), T.translation(0.5, 3.0)
    assert torch.allclose(a @ b, T.translation(1.5, 1.0))
    yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    x = torch.exp(-((xx - 11) ** 2 / 18 + (yy - 15) ** 2 / 8)).reshape(1, 1, 28, 28)  # smooth
    m = T.rotate_translate(25.0, 1.0, -2.0)
    back = T.warp(T.warp(x, m), torch.linalg.inv(m))
    # interpolating twice blurs a little; the content comes back where it was
    assert (back - x).abs().mean() < 0.005
    assert (T.warp(x, m) - x).abs().mean() > 0.02


def test_tilt_is_a_homography_that_foreshortens() -> None:
    assert torch.allclose(T.tilt(0.0, 0.0, 50.0), torch.eye(3).unsqueeze(0), atol=1e-6)
    x = torch.zeros(1, 1, 28, 28)
    x[..., 10:18, 10:18] = 1.0
    turned = T.warp(x, T.tilt(60.0, 0.0, 56.0))
    # turning the plane 60° about its vertical axis shows it cos(60°) = 0.5 as wide
    assert turned.sum() / x.sum() == pytest.approx(0.5, abs=0.05)
    # a true perspective matrix: its last row is not (0, 0, 1)
    assert T.tilt(30.0, 10.0, 56.0)[0, 2, :2].abs().sum() > 0


def test_warp_is_differentiable_in_the_transformation() -> None:
    x = torch.rand(2, 1, 28, 28, dtype=torch.float64)
    angle = torch.tensor([7.0, -12.0], dtype=torch.float64, requires_grad=True)
    shift = torch.tensor([0.7, -1.3], dtype=torch.float64, requires_grad=True)

    def f(a: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return T.warp(x, T.rotate_translate(a, s, -s)).pow(2).sum()

    f(angle, shift).backward()
    assert angle.grad is not None and angle.grad.abs().min() > 0
    h = 1e-4
    for i in range(2):
        bump = torch.zeros(2, dtype=torch.float64)
        bump[i] = h
        with torch.no_grad():
            numeric = (f(angle + bump, shift) - f(angle - bump, shift)) / (2 * h)
        assert float(angle.grad[i]) == pytest.approx(float(numeric), rel=1e-3, abs=1e-6)


def test_blur_matches_torchvision_inside_the_image_and_is_per_image() -> None:
    x = torch.rand(3, 1, 32, 32)
    sigma = torch.tensor([0.0, 1.0, 2.0])
    ours = T.blur(x, sigma, radius=6)
    assert torch.equal(ours[0], x[0])
    for i in (1, 2):
        ref = TF.gaussian_blur(x[i : i + 1], kernel_size=[13, 13], sigma=[float(sigma[i])] * 2)
        # torchvision pads by reflection, we pad with zeros: compare away from the border
        assert torch.allclose(ours[i, :, 6:-6, 6:-6], ref[0, :, 6:-6, 6:-6], atol=1e-5)
    assert ours[2].std() < ours[1].std() < x[1].std()


def test_brighten_and_canvas() -> None:
    x = torch.full((2, 1, 4, 4), 0.5)
    out = T.brighten(x, torch.tensor([0.7, -0.2]))
    assert torch.allclose(out[0], torch.ones(1, 4, 4)) and torch.allclose(out[1], x[1] - 0.2)
    big = T.canvas(torch.ones(1, 1, 28, 28), 56)
    assert big.shape == (1, 1, 56, 56) and big.sum() == 28 * 28
    assert big[0, 0, 14:42, 14:42].min() == 1.0
    with pytest.raises(ReproError, match="smaller"):
        T.canvas(torch.ones(1, 1, 28, 28), 20)


def test_grid_enumerates_every_combination() -> None:
    tx, ty, angle = T.grid(
        torch.linspace(-3, 3, 5), torch.linspace(-3, 3, 5), torch.linspace(-30, 30, 31)
    )
    assert len(tx) == len(ty) == len(angle) == 775
    assert (
        len({(float(a), float(b), float(c)) for a, b, c in zip(tx, ty, angle, strict=True)}) == 775
    )


def test_sampling_repeats_under_a_seed_and_respects_its_ranges() -> None:
    dist = T.TransformDistribution(
        rotation_deg=20, translate_px=2, scale=(0.9, 1.1), brightness=0.05, noise_std=0.05,
        blur_sigma=(0.0, 1.0), yaw_deg=30,
    )  # fmt: skip
    draw = [
        dist.sample(64, image_shape=(1, 28, 28), generator=torch.Generator().manual_seed(3))
        for _ in range(2)
    ]
    assert torch.equal(draw[0].matrix, draw[1].matrix)
    assert torch.equal(draw[0].noise, draw[1].noise)
    t = draw[0]
    assert t.brightness is not None and t.brightness.abs().max() <= 0.05
    assert t.blur is not None and t.blur.min() >= 0 and t.blur.max() <= 1.0
    assert t.noise is not None and t.noise.shape == (64, 1, 28, 28)
    assert t.noise.std(dim=(1, 2, 3)).max() < 0.06
    other = dist.sample(64, image_shape=(1, 28, 28), generator=torch.Generator().manual_seed(4))
    assert not torch.equal(other.matrix, t.matrix)
    x = torch.rand(64, 1, 28, 28)
    assert torch.equal(t.apply(x), t.apply(x))
    out = t.apply(x)
    assert out.min() >= 0 and out.max() <= 1 and out.shape == x.shape
    plain = T.TransformDistribution().sample(5)
    assert torch.equal(plain.matrix, T.identity(5))
    assert plain.brightness is None and plain.noise is None and plain.blur is None


def test_transform_batches_slice_and_refuse_mismatched_images() -> None:
    t = T.TransformDistribution(rotation_deg=30).sample(
        6, generator=torch.Generator().manual_seed(0)
    )
    x = torch.rand(2, 1, 8, 8)
    part = t[2:4]
    assert len(part) == 2 and torch.equal(part.matrix, t.matrix[2:4])
    assert torch.equal(part.apply(x), T.warp(x, t.matrix[2:4]))
    with pytest.raises(ReproError, match="6 transforms for 2 images"):
        t.apply(x)
    assert T.expand(x, 3).shape == (6, 1, 8, 8)
    assert torch.equal(T.expand(x, 3)[3], x[1])


def test_batches_concatenate_and_drop_a_field_one_part_lacks() -> None:
    dist = T.TransformDistribution(rotation_deg=10, brightness=0.1)
    a = dist.sample(2, generator=torch.Generator().manual_seed(0))
    b = dist.sample(3, generator=torch.Generator().manual_seed(1))
    both = T.Transforms.cat([a, b])
    assert len(both) == 5 and torch.equal(both.matrix[2:], b.matrix)
    assert both.brightness is not None and torch.equal(both.brightness[:2], a.brightness)
    plain = T.TransformDistribution(rotation_deg=10).sample(1)
    assert T.Transforms.cat([a, plain]).brightness is None
    with pytest.raises(ReproError, match="no batches"):
        T.Transforms.cat([])


def test_bad_parameters_are_one_line_errors() -> None:
    with pytest.raises(ReproError, match="half-width"):
        T.TransformDistribution(rotation_deg=-1)
    with pytest.raises(ReproError, match="lo <= hi"):
        T.TransformDistribution(scale=(1.2, 0.9))
    with pytest.raises(ReproError, match="image_shape"):
        T.TransformDistribution(noise_std=0.1).sample(2)
    with pytest.raises(ReproError, match="do not match"):
        T.translation(torch.zeros(3), torch.zeros(2))
    with pytest.raises(ReproError, match="matrices"):
        T.warp(torch.rand(2, 1, 8, 8), T.identity(3))
