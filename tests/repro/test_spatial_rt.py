"""Spatial robustness (repro.spatial_rt): the transformation against exact pixel moves, the
batched grid, worst-of-k and aggregation against plain loops over transformations, the
first-order attack on a classifier whose worst case is known, local maxima by hand, the claims on
hand-made results, and the smoke reproduction end to end through the runner."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro import ReproError
from repro.claims import Results, evaluate, load_claims
from repro.config import repro_path
from repro.spatial_rt import (
    PAPER_GRID,
    SpatialBox,
    first_order,
    first_order_attack,
    grid_losses,
    grid_params,
    grid_search,
    landscape,
    local_maxima,
    on_canvas,
    random_transform,
    sample_params,
    spatial_cnn,
    spatial_transform,
    vote_grid_correct,
    vote_predict,
    worst_of_k,
)
from repro.spatial_rt import _vote as vote
from repro.stats import pack_bits

from .conftest import smoke_run

SLUG = "spatial_rt"
BOX = SpatialBox()


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return spatial_cnn().eval()


def _images(n: int = 6, seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, 28, 28)
    x[:, :, 6:22, 9:19] = torch.rand(n, 1, 16, 10, generator=g)  # an object in the middle
    return x, torch.randint(0, 10, (n,), generator=g)


# --------------------------------------------------------------------------- the transformation


def test_the_transformation_moves_pixels_exactly() -> None:
    x = torch.rand(2, 1, 28, 28)
    assert torch.allclose(spatial_transform(x, torch.zeros(3)), x, atol=1e-4)
    shifted = spatial_transform(x, torch.tensor([2.0, -1.0, 0.0]))  # 2 right, 1 up
    expected = torch.zeros_like(x)
    expected[:, :, :-1, 2:] = x[:, :, 1:, :-2]  # what leaves the frame is lost, zeros come in
    assert torch.allclose(shifted, expected, atol=1e-4)
    quarter = spatial_transform(x, torch.tensor([0.0, 0.0, 90.0]))  # counter-clockwise on screen
    assert torch.allclose(quarter, torch.rot90(x, 1, (2, 3)), atol=1e-4)
    per_image = spatial_transform(x, torch.tensor([[2.0, -1.0, 0.0], [0.0, 0.0, 90.0]]))
    assert torch.allclose(per_image, torch.cat([shifted[:1], quarter[1:]]), atol=1e-6)
    with pytest.raises(ReproError, match="params"):
        spatial_transform(x, torch.zeros(3, 3))


def test_rotation_then_translation_and_the_black_canvas() -> None:
    x = torch.zeros(1, 1, 28, 28)
    x[:, :, 4:24, 4:24] = 1.0  # a 20 px square: its corners leave the 28 px frame at 30 degrees
    on = on_canvas(x, 46)
    assert on.shape == (1, 1, 46, 46) and float(on.sum()) == 400.0
    corner = torch.tensor([3.0, 3.0, 30.0])
    assert float(spatial_transform(x, corner).sum()) < 0.97 * 400  # cut off in the frame
    assert float(spatial_transform(on, corner).sum()) == pytest.approx(400, rel=0.01)  # kept
    # rotate first, then shift: the same as shifting the rotated image
    both = spatial_transform(on, torch.tensor([2.0, 1.0, 30.0]))
    rotated = spatial_transform(on, torch.tensor([0.0, 0.0, 30.0]))
    assert torch.allclose(
        both, spatial_transform(rotated, torch.tensor([2.0, 1.0, 0.0])), atol=1e-5
    )


def test_the_paper_grid_and_random_draws() -> None:
    params = grid_params(BOX, PAPER_GRID)
    assert params.shape == (775, 3)
    assert len({tuple(p) for p in params.tolist()}) == 775
    assert [0.0, 0.0, 0.0] in params.tolist()  # the identity is a grid point
    assert params.abs().amax(dim=0).tolist() == [3.0, 3.0, 30.0]
    assert sorted(set(params[:, 2].tolist())) == [float(a) for a in range(-30, 31, 2)]
    draws = sample_params(10_000, BOX, generator=torch.Generator().manual_seed(0))
    assert (draws.abs() <= BOX.limits()).all()
    assert draws.abs().amax(dim=0).tolist() == pytest.approx([3.0, 3.0, 30.0], abs=0.01)
    again = sample_params(10_000, BOX, generator=torch.Generator().manual_seed(0))
    assert torch.equal(draws, again)
    with pytest.raises(ReproError):
        grid_params(BOX, (5, 0, 3))


# --------------------------------------------------------------------------- the attacks


def _plain_grid(model: nn.Module, x: Tensor, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
    """The official code's loop: one transformation at a time for the whole batch, keeping per
    image the misclassified transformation of highest loss, else the highest loss."""
    best = torch.zeros(len(y), dtype=torch.long)
    best_loss = torch.full((len(y),), float("-inf"))
    best_wrong = torch.zeros(len(y), dtype=torch.bool)
    with torch.no_grad():
        for k, p in enumerate(params):
            logits = model(spatial_transform(x, p))
            loss = F.cross_entropy(logits, y, reduction="none")
            wrong = logits.argmax(1) != y
            take = (wrong & ~best_wrong) | ((wrong == best_wrong) & (loss > best_loss))
            best[take], best_loss[take], best_wrong[take] = k, loss[take], wrong[take]
    return params[best], best_wrong


@pytest.mark.parametrize("max_rows", [7, 4096])  # many small passes, and one pass per chunk
def test_batched_grid_is_the_loop_over_transformations(max_rows: int) -> None:
    model, (x, y) = _model(), _images(6)
    granularity = (3, 3, 5)
    plain_params, plain_wrong = _plain_grid(model, x, y, grid_params(BOX, granularity))
    ours = grid_search(model, x, y, granularity=granularity, max_rows=max_rows)
    assert torch.equal(ours.wrong, plain_wrong)
    assert torch.allclose(ours.params, plain_params)
    assert torch.allclose(ours.x_adv, spatial_transform(x, ours.params).clamp(0, 1))
    early = grid_search(model, x, y, granularity=granularity, early_exit=True, max_rows=max_rows)
    assert torch.equal(early.wrong, plain_wrong)  # the same accuracy, whatever it returns
    with torch.no_grad():
        assert torch.equal(model(early.x_adv).argmax(1) != y, early.wrong)
    loss, wrong = grid_losses(model, x, y, grid_params(BOX, granularity), max_rows=max_rows)
    assert loss.shape == (6, 45) and torch.equal(wrong.any(dim=1), plain_wrong)


def test_worst_of_k_keeps_the_worst_of_its_own_draws() -> None:
    model, (x, y) = _model(), _images(5)
    k = 4
    ours = worst_of_k(model, x, y, k=k, generator=torch.Generator().manual_seed(3), max_rows=6)
    draws = sample_params(5 * k, BOX, generator=torch.Generator().manual_seed(3)).view(5, k, 3)
    for i in range(5):
        expected, _ = _plain_grid(model, x[i : i + 1], y[i : i + 1], draws[i])
        assert torch.allclose(ours.params[i], expected[0])
    # k = 1 is the paper's "random": the same draw as `random_transform` under the same seed
    one = worst_of_k(model, x, y, k=1, generator=torch.Generator().manual_seed(5))
    rand = random_transform(model, x, y, generator=torch.Generator().manual_seed(5))
    assert torch.equal(one.x_adv, rand)


class LeftMass(nn.Module):
    """Class 0's logit grows with the mass in the left half of the image (class 1's is 0):
    moving the object to the right is the only way to lower it, so the worst case is dx = +3."""

    def forward(self, x: Tensor) -> Tensor:
        left = x[..., :, :14].flatten(1).sum(1) / 10 - 1
        return torch.stack([left, torch.zeros_like(left)], dim=1)


def test_first_order_climbs_to_the_known_worst_case() -> None:
    x = torch.zeros(4, 1, 28, 28)
    x[:, :, 10:18, 11:17] = 1.0  # a block straddling the middle
    y = torch.zeros(4, dtype=torch.long)
    model = LeftMass()
    start = first_order(model, x, y, steps=0, generator=torch.Generator().manual_seed(0))
    result = first_order(model, x, y, steps=40, step_size=0.1,
                         generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert (result.params[:, 0] > 2.9).all()  # pushed to the right edge of the box
    assert (result.params.abs() <= BOX.limits() + 1e-6).all()
    assert (result.loss >= start.loss - 1e-6).all()  # the best iterate: never worse than the start
    stacked = first_order(model, x, y, steps=40, step_size=0.1, restarts=3,
                          generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert (stacked.loss >= result.loss - 1e-5).all()  # restart 0 is the single run
    again = first_order_attack(model, x, y, steps=40, step_size=0.1,
                               generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert torch.equal(again, result.x_adv)


def test_first_order_gradient_is_the_finite_difference() -> None:
    model, (x, y) = _model(), _images(2)
    p = torch.tensor([[0.7, -1.2, 11.0], [-2.0, 0.4, -17.0]], requires_grad=True)
    loss = F.cross_entropy(model(spatial_transform(x, p)), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, p)
    for j, h in ((0, 1e-2), (2, 1e-1)):  # dx in pixels, theta in degrees
        e = torch.zeros_like(p)
        e[:, j] = h
        with torch.no_grad():
            up = F.cross_entropy(model(spatial_transform(x, p + e)), y, reduction="none")
            down = F.cross_entropy(model(spatial_transform(x, p - e)), y, reduction="none")
        assert torch.allclose(grad[:, j], (up - down) / (2 * h), rtol=0.1, atol=1e-3)


# --------------------------------------------------------------------------- aggregation


def test_vote_is_a_majority_with_softmax_tie_break() -> None:
    logits = torch.tensor([[5.0, 0, 0], [0, 5.0, 0], [0, 4.0, 0], [0, 0, 1.0]])
    assert vote(logits, 4).tolist() == [1]  # two votes for class 1
    tie = torch.tensor([[5.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    assert vote(tie, 2).tolist() == [0]  # one vote each: class 0's softmax is higher
    model, (x, _) = _model(), _images(5)
    identity = torch.zeros(5, 1, 3)
    with torch.no_grad():
        plain = model(x).argmax(1)
    assert torch.equal(vote_predict(model, x, draws=1, vote_params=identity), plain)


def test_vote_under_the_grid_is_the_loop() -> None:
    model, (x, y) = _model(), _images(4)
    y = vote_predict(model, x, draws=3, vote_params=torch.zeros(4, 3, 3))  # right at first
    draws, granularity = 3, (2, 1, 3)
    ours = vote_grid_correct(model, x, y, draws=draws, granularity=granularity,
                             generator=torch.Generator().manual_seed(2), max_rows=5)  # fmt: skip
    votes = sample_params(4 * draws, BOX, generator=torch.Generator().manual_seed(2)).view(
        4, draws, 3
    )
    right = torch.ones(4, dtype=torch.bool)
    for p in grid_params(BOX, granularity):
        attacked = spatial_transform(x, p)
        right &= vote_predict(model, attacked, draws=draws, vote_params=votes) == y
    assert torch.equal(ours, right)


# --------------------------------------------------------------------------- the landscape


def test_local_maxima_by_hand() -> None:
    i, j = torch.meshgrid(torch.arange(9.0), torch.arange(11.0), indexing="ij")
    bowl = -((i - 4) ** 2) - (j - 3) ** 2  # concave: one maximum
    two = torch.exp(-((i - 2) ** 2 + (j - 2) ** 2)) + torch.exp(-((i - 6) ** 2 + (j - 8) ** 2))
    flat = torch.zeros(9, 11)  # no strict maximum
    assert local_maxima(torch.stack([bowl, two, flat])).tolist() == [1, 2, 0]
    corner = torch.zeros(3, 3)
    corner[0, 0] = 1.0  # a maximum on the border counts
    assert int(local_maxima(corner)) == 1


def test_landscape_is_the_loss_over_dx_and_theta() -> None:
    model, (x, y) = _model(), _images(3)
    tx, angle, loss = landscape(model, x, y, tx_points=5, angle_points=7)
    assert loss.shape == (3, 5, 7)
    assert tx.tolist() == [-3.0, -1.5, 0.0, 1.5, 3.0] and angle[0] == -30 and angle[-1] == 30
    with torch.no_grad():
        direct = F.cross_entropy(model(spatial_transform(x, torch.tensor([1.5, 0.0, -20.0]))), y,
                                 reduction="none")  # fmt: skip
    assert torch.allclose(loss[:, 3, 1], direct, atol=1e-5)


# --------------------------------------------------------------------------- claims

MODELS = ("standard", "augmented", "worst10")


def _results(**overrides: float) -> Results:
    acc = {
        "standard": {"natural": 0.90, "grid": 0.10, "first_order": 0.20},
        "augmented": {"natural": 0.85, "grid": 0.45, "first_order": 0.60, "grid_coarse": 0.55,
                      "vote_grid": 0.65},
        "worst10": {"natural": 0.86, "grid": 0.55, "first_order": 0.70, "grid_coarse": 0.62,
                    "vote_grid": 0.70},
        "canvas": {"natural": 0.88, "grid": 0.20},
    }  # fmt: skip
    metrics = {f"fashion_mnist_{m}_{a}_accuracy": v for m, d in acc.items() for a, v in d.items()}
    metrics |= {"fashion_mnist_standard_landscape_multi_peak_fraction": 0.9,
                "fashion_mnist_standard_landscape_median_peaks": 6.0}  # fmt: skip
    metrics |= overrides
    n = 100  # per-image vectors with exactly these accuracies, for the intervals
    per_image = {k: pack_bits([1] * round(v * n) + [0] * (n - round(v * n)))
                 for k, v in metrics.items() if k.endswith("_accuracy")}  # fmt: skip
    return Results({}, metrics, per_image=per_image)


def test_claims_hold_fail_and_are_not_evaluated_without_results() -> None:
    claims = load_claims(repro_path(SLUG))
    verdicts = evaluate(claims, _results())
    assert all(c["holds"] is True for c in verdicts), verdicts
    assert all("margin" in c["detail"] for c in verdicts if "grid" in c["detail"])
    bad = _results(
        fashion_mnist_standard_grid_accuracy=0.70,  # lost only 20 points
        fashion_mnist_augmented_grid_accuracy=0.80,  # lost only 5 points
        fashion_mnist_worst10_first_order_accuracy=0.57,  # only 2 points above the grid
        fashion_mnist_standard_landscape_multi_peak_fraction=0.3,
        fashion_mnist_worst10_vote_grid_accuracy=0.60,  # below the plain model
        fashion_mnist_canvas_grid_accuracy=0.75,
    )
    holds = {c["id"]: c["holds"] for c in evaluate(claims, bad)}
    assert holds == {
        "standard_model_falls_under_grid": False,
        "augmentation_gives_little_robustness": False,
        "worst_of_10_training_recovers": False,  # worst10 0.55 is below augmented 0.80
        "first_order_attack_weaker_than_grid": False,
        "loss_landscape_not_concave": False,
        "aggregation_improves_robustness": False,
        "black_canvas_still_vulnerable": False,
    }
    assert all(c["holds"] is None for c in evaluate(claims, Results({})))


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_smoke_reproduction_through_the_runner(project: Path, tmp_path: Path) -> None:
    """The notebook runs under papermill at smoke scale, records every accuracy with its
    interval, draws its figures, and every claim is evaluated."""
    result, summary = smoke_run(SLUG, tmp_path / "runs")
    assert {r["verdict"] for r in summary["rows"]} == {"not_run"}  # the code release's ImageNet
    metrics = {m["name"]: m["value"] for m in summary["metrics"]}
    for model in MODELS:
        for attack in ("natural", "random", "worst10", "grid", "first_order", "vote_grid"):
            name = f"fashion_mnist_{model}_{attack}_accuracy"
            assert (
                0.0 <= metrics[f"{name}.ci95_low"] <= metrics[name] <= metrics[f"{name}.ci95_high"]
            )
        # the grid contains the identity: it never leaves more than natural accuracy
        assert (
            metrics[f"fashion_mnist_{model}_grid_accuracy"]
            <= metrics[f"fashion_mnist_{model}_natural_accuracy"]
        )
    assert "fashion_mnist_canvas_grid_accuracy" in metrics
    assert len(summary["figures"]) == 3
    for figure in summary["figures"]:
        assert (result.run_dir / figure["path"]).stat().st_size > 0
    assert all(c["holds"] is not None for c in summary["claims"]), summary["claims"]
