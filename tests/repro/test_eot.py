"""Expectation Over Transformation (`repro.eot`): the estimate against hand computations and
against `repro.obfuscated_gradients`' copy, the transformed loss, the projection, random targets,
the evaluation over held-out transformations, the attack's invariants, EOT against the single-view
attack, the claims, and the smoke reproduction end to end through the runner."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro import ReproError
from repro.claims import Results, evaluate, load_claims
from repro.config import repro_path
from repro.eot import (
    eot_attack,
    eot_loss_and_grad,
    evaluate_under_transforms,
    project_l2,
    random_targets,
    transformed_loss,
)
from repro.train import predict, robust_accuracy
from repro.transforms import TransformDistribution, expand

from .conftest import smoke_run

SLUG = "eot"
T = TransformDistribution(
    rotation_deg=22.5, translate_px=2.0, scale=(0.9, 1.1), brightness=0.05, noise_std=0.1
)
IDENTITY = TransformDistribution()


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny models: one intra-op thread is faster than two fighting over shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def fashion(small_fashion_model) -> tuple[nn.Module, Tensor, Tensor]:
    """The shared small CNN (trained on 1,000 test images) and 64 other test images."""
    model, data = small_fashion_model("cnn")
    return model, data.x[2000:2064].clone(), data.y[2000:2064].clone()


# --------------------------------------------------------------------------- the estimate


def test_estimate_is_the_mean_of_the_draws_by_hand() -> None:
    """Three calls with weights w_j: loss_j(x) = <w_j, x> per example; the estimate is the mean
    loss and the gradient mean(w_j), exactly."""
    x = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    weights = iter([torch.tensor([1.0, 0.0]), torch.tensor([0.0, 3.0]), torch.tensor([2.0, 3.0])])

    def loss(v: Tensor) -> Tensor:
        return (v * next(weights)).sum(dim=1)

    value, grad = eot_loss_and_grad(loss, x, 3)
    torch.testing.assert_close(value, torch.tensor([(1 + 6 + 8) / 3, (3 - 3 + 3) / 3]))
    torch.testing.assert_close(grad, torch.tensor([[1.0, 2.0], [1.0, 2.0]]))
    assert not value.requires_grad and not grad.requires_grad
    with pytest.raises(ReproError, match="samples"):
        eot_loss_and_grad(loss, x, 0)


def test_transformed_loss_is_the_mean_over_draws(fashion) -> None:
    model, x, _ = fashion
    x = x[:4]
    target = torch.tensor([1, 2, 3, 4])
    loss = transformed_loss(model, target, T, draws=3, generator=torch.Generator().manual_seed(5))
    # The same draws by hand: 3 per image, in the layout of `expand`.
    t = T.sample(12, image_shape=(1, 28, 28), generator=torch.Generator().manual_seed(5))
    per_draw = F.cross_entropy(model(t.apply(expand(x, 3))), expand(target, 3), reduction="none")
    torch.testing.assert_close(loss(x), per_draw.view(4, 3).mean(dim=1))
    # Under the identity distribution, the plain CE plus lam times the l2 distance to x (pixels
    # halved: nothing is clipped).
    x = 0.5 * x
    delta = torch.zeros_like(x)
    delta[:, 0, 10, 10] = 0.3
    plain = transformed_loss(model, target, IDENTITY, draws=2, reference=x, lam=2.0)
    expected = F.cross_entropy(model(x + delta), target, reduction="none") + 2.0 * 0.3
    torch.testing.assert_close(plain(x + delta), expected)
    with pytest.raises(ReproError, match="reference"):
        transformed_loss(model, target, T, draws=2, lam=1.0)


def test_projection_on_the_ball_and_the_box() -> None:
    x = torch.full((2, 1, 2, 2), 0.5)
    far = x + torch.tensor([0.3, 0.4, 0.0, 0.0]).view(1, 1, 2, 2)  # ||delta|| = 0.5
    torch.testing.assert_close(project_l2(far, x, 0.25)[0, 0].flatten(),
                               torch.tensor([0.65, 0.7, 0.5, 0.5]))  # fmt: skip
    assert torch.equal(project_l2(far, x, 1.0), far)
    box = project_l2(x + 2.0, x, 10.0)
    assert float(box.max()) == 1.0


def test_random_targets_are_uniform_over_the_other_classes() -> None:
    y = torch.arange(10).repeat(2000)
    t = random_targets(y, 10, generator=torch.Generator().manual_seed(0))
    assert not bool((t == y).any())
    counts = torch.bincount((t - y) % 10, minlength=10)
    assert counts[0] == 0 and bool((counts[1:] > 1800).all()) and bool((counts[1:] < 2650).all())
    again = random_targets(y, 10, generator=torch.Generator().manual_seed(0))
    assert torch.equal(t, again)


# --------------------------------------------------------------------------- evaluation


def test_evaluation_by_hand_under_the_identity(fashion) -> None:
    model, x, y = fashion
    target = (y + 1) % 10
    moved = (x + 0.2).clamp(0, 1)
    ev = evaluate_under_transforms(model, {"x": x, "moved": moved}, x, y, target, IDENTITY,
                                   transforms=7)  # fmt: skip
    pred = predict(model, x)
    assert torch.equal(ev["x"].accuracy, (pred == y).float())
    assert torch.equal(ev["x"].adversariality, (pred == target).float())
    assert float(ev["x"].distance.abs().max()) == 0.0
    torch.testing.assert_close(ev["moved"].distance, (moved - x).flatten(1).norm(dim=1))


def test_evaluation_is_paired_and_does_not_depend_on_the_chunks(fashion) -> None:
    model, x, y = fashion
    x, y = x[:10], y[:10]
    target = (y + 3) % 10

    def run(max_views: int) -> dict[str, Any]:
        return evaluate_under_transforms(model, {"a": x, "b": x.clone()}, x, y, target, T,
                                         transforms=50, generator=torch.Generator().manual_seed(9),
                                         max_views=max_views)  # fmt: skip

    big, small = run(10_000), run(120)  # one chunk; chunks of 2 images
    for name in ("a", "b"):
        for field in ("accuracy", "adversariality", "distance"):
            assert torch.equal(getattr(big[name], field), getattr(small[name], field))
    # The same images through the same draws: the same rates.
    assert torch.equal(big["a"].accuracy, big["b"].accuracy)
    # Transformations change the classifier's output on some images (the fractions are not 0/1).
    assert bool(((big["a"].accuracy > 0) & (big["a"].accuracy < 1)).any())


# --------------------------------------------------------------------------- the attack


def test_single_view_attack_reaches_its_targets_within_the_budget(fashion) -> None:
    model, x, y = fashion
    target = random_targets(y, 10, generator=torch.Generator().manual_seed(0))
    x_adv = eot_attack(model, x, target, eps=5.0, step_size=0.25, steps=50)
    assert float((x_adv - x).flatten(1).norm(dim=1).max()) <= 5.0 + 1e-5
    assert float((predict(model, x_adv) == target).float().mean()) >= 0.9
    assert float((predict(model, x) == target).float().mean()) <= 0.2


def test_eot_stays_adversarial_where_the_single_view_does_not(fashion) -> None:
    """The paper's point at test size: under random transformations, EOT's examples are
    classified as the target more often than the single-view examples of the same budget."""
    model, x, y = fashion
    x, y = x[:24], y[:24]
    target = random_targets(y, 10, generator=torch.Generator().manual_seed(1))
    settings: dict[str, Any] = {"eps": 4.0, "step_size": 0.2, "steps": 40}
    single = eot_attack(model, x, target, **settings)
    robust = eot_attack(model, x, target, distribution=T, draws=8,
                        generator=torch.Generator().manual_seed(2), **settings)  # fmt: skip
    ev = evaluate_under_transforms(model, {"single": single, "eot": robust}, x, y, target, T,
                                   transforms=100, generator=torch.Generator().manual_seed(3))  # fmt: skip
    eot_rate = float(ev["eot"].adversariality.mean())
    single_rate = float(ev["single"].adversariality.mean())
    assert eot_rate > single_rate + 0.05, (eot_rate, single_rate)


def test_lagrangian_term_shortens_the_perturbation(fashion) -> None:
    model, x, y = fashion
    x, y = x[:16], y[:16]
    target = (y + 5) % 10

    def mean_l2(lam: float) -> float:
        x_adv = eot_attack(model, x, target, eps=5.0, step_size=0.2, steps=30, distribution=T,
                           draws=4, lam=lam, generator=torch.Generator().manual_seed(0))  # fmt: skip
        return float((x_adv - x).flatten(1).norm(dim=1).mean())

    assert mean_l2(2.0) < 0.9 * mean_l2(0.0)


def test_attack_arguments_are_checked(fashion) -> None:
    model, x, y = fashion
    with pytest.raises(ReproError, match="targets"):
        eot_attack(model, x, y[:3], eps=1.0, step_size=0.1, steps=1)
    with pytest.raises(ReproError, match=">= 0"):
        eot_attack(model, x, y, eps=-1.0, step_size=0.1, steps=1)
    assert torch.equal(eot_attack(model, x, y, eps=1.0, step_size=0.1, steps=0), x)


def _eot_rows() -> list[tuple[Any, ...]]:
    """The rows proposed for tests/repro/test_attack_invariants.py (targeted, l2 budget 2.0;
    the target is drawn from the test's generator, so the same seed gives the same targets)."""
    from repro.eot import eot_attack, random_targets
    from repro.transforms import TransformDistribution

    dist = TransformDistribution(rotation_deg=22.5, translate_px=2.0, scale=(0.9, 1.1),
                                 brightness=0.05, noise_std=0.1)  # fmt: skip

    def eot(m: nn.Module, x: Tensor, y: Tensor, g: torch.Generator) -> Tensor:
        target = random_targets(y, 10, generator=g)
        return eot_attack(m, x, target, eps=2.0, step_size=0.5, steps=5, distribution=dist,
                          draws=4, generator=g)  # fmt: skip

    def single(m: nn.Module, x: Tensor, y: Tensor, g: torch.Generator) -> Tensor:
        return eot_attack(m, x, random_targets(y, 10, generator=g), eps=2.0, step_size=0.5,
                          steps=5)  # fmt: skip

    return [
        ("eot_l2_targeted_4draws", eot, None, 2.0),
        ("eot_single_view_l2_targeted", single, None, 2.0),
    ]


@pytest.mark.parametrize("row", _eot_rows(), ids=lambda row: row[0])
def test_attack_invariants(row, fashion) -> None:
    """The invariants of tests/repro/test_attack_invariants.py, on this folder's rows."""
    name, fn, _eps, l2 = row
    model, x, y = fashion
    x_adv = fn(model, x, y, torch.Generator().manual_seed(0))
    delta = (x_adv - x).flatten(1)
    assert float(delta.norm(dim=1).max()) <= l2 + 1e-5 and float(delta.abs().max()) > 0
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and not x_adv.requires_grad
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    assert torch.equal(fn(model, x, y, torch.Generator().manual_seed(0)), x_adv)
    gen = torch.Generator().manual_seed(0)
    clean = float((predict(model, x) == y).float().mean())
    attacked = robust_accuracy(model, x, y, lambda m, xb, yb: fn(m, xb, yb, gen),
                               require_clean=False, progress=False)  # fmt: skip
    assert attacked <= clean, name
    model.train()
    model.zero_grad(set_to_none=True)
    flags = [p.requires_grad for p in model.parameters()]
    try:
        fn(model, x[:8], y[:8], torch.Generator().manual_seed(0))
        assert model.training and [p.requires_grad for p in model.parameters()] == flags
        assert all(p.grad is None for p in model.parameters())
    finally:
        model.eval()


# --------------------------------------------------------------------------- claims


def _results(**overrides: float) -> Results:
    rows = {
        "fm_original_accuracy": 74.0,
        "fm_original_adversariality": 3.0,
        "fm_eot_accuracy": 4.0,
        "fm_eot_adversariality": 91.0,
        "fm_single_view_accuracy": 19.0,
        "fm_single_view_adversariality": 66.0,
        "fm_eot_l2": 4.99,
        "fm_single_view_l2": 4.98,
    }
    metrics = {
        "eps": 5.0,
        "fm_eot_l2_max": 5.0000001,  # float32 rounding at the sphere
        "fm_single_view_l2_max": 4.999,
        "fm_eot_transformed_distance": 4.5,
        "fm_single_view_transformed_distance": 4.4,
        "rerun_images": 8.0,
        "rerun_max_abs_diff": 0.0,
        "rerun_adversariality_max_diff": 0.0,
        "fm_eot_minus_single_view_adversariality.ci95_low": 20.0,
        "fm_eot_minus_single_view_adversariality.ci95_high": 30.0,
    }
    rows = {k: overrides.get(k, v) for k, v in rows.items()}
    metrics = {k: overrides.get(k, v) for k, v in metrics.items()}
    return Results(rows, metrics)


def test_claims_hold_fail_and_are_not_evaluated_without_results() -> None:
    claims = load_claims(repro_path(SLUG))
    verdicts = evaluate(claims, _results())
    assert all(c["holds"] is True for c in verdicts), verdicts
    bad = _results(
        fm_eot_adversariality=78.0,  # under 80, and only +12 over the single view
        fm_eot_accuracy=12.0,
        fm_single_view_l2=4.5,  # budget not matched (0.49 apart, more than 0.25)
        rerun_max_abs_diff=1e-7,
    )
    holds = {c["id"]: c["holds"] for c in evaluate(claims, bad)}
    assert holds == {
        "eot_examples_stay_adversarial": False,
        "eot_far_above_single_view": False,
        "originals_correct_adversarials_not": False,
        "distance_constraint_holds": False,
        "same_seed_same_numbers": False,
    }
    over = {c["id"]: c["holds"] for c in evaluate(claims, _results(fm_eot_l2_max=5.01))}
    assert over["distance_constraint_holds"] is False
    assert all(c["holds"] is None for c in evaluate(claims, Results({})))


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_smoke_reproduction_through_the_runner(project: Path, tmp_path: Path) -> None:
    """The notebook runs under papermill at smoke scale, records the analogue's rows, its
    figures and every claim's verdict, and is stored."""
    result, summary = smoke_run(SLUG, tmp_path / "runs")
    verdicts = {r["id"]: r["verdict"] for r in summary["rows"]}
    assert all(v == "not_run" for k, v in verdicts.items() if not k.startswith("fm_"))
    assert all(v == "not_compared" for k, v in verdicts.items() if k.startswith("fm_"))
    values = {r["id"]: r["value"] for r in summary["rows"]}
    for name in ("original", "eot", "single_view"):
        assert 0.0 <= values[f"fm_{name}_adversariality"] <= 100.0
    assert values["fm_eot_l2"] <= 5.0 + 1e-4
    assert len(summary["figures"]) == 2
    assert all((result.run_dir / f["path"]).stat().st_size > 0 for f in summary["figures"])
    assert all(c["holds"] is not None for c in summary["claims"]), summary["claims"]
