"""Box-constrained L-BFGS and Szegedy et al.'s measures (repro.szegedy_lbfgs): the attack against
the closed-form minimal perturbation of a linear classifier, the box, the helpers by hand, the
claims, and the smoke reproduction end to end through the runner."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from repro.claims import Results, evaluate, load_claims
from repro.config import repro_path
from repro.szegedy_lbfgs import (
    amplify,
    distortion,
    gaussian_noise,
    label_purity,
    lbfgs_attack,
    lbfgs_untargeted,
    random_targets,
    runner_up,
    sigmoid_mlp,
    softmax_net,
    top_activating,
    weight_decay_groups,
)
from repro.train import predict

from .conftest import smoke_run

SLUG = "szegedy_lbfgs"


def _two_class_linear() -> nn.Module:
    """f(x) = (0, w.x + b) on 16 pixels: class 1 wins where w.x + b > 0."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].weight[1].copy_(torch.randn(16))
        model[1].bias.copy_(torch.tensor([0.0, -0.3]))
    return model.eval()


def test_lbfgs_finds_nearly_the_minimal_perturbation_of_a_linear_classifier() -> None:
    """Away from the box's faces, the smallest perturbation that reaches class 1 is the
    projection on the hyperplane w.x + b = 0: ||r|| = |w.x + b| / ||w||. The line search over c
    must land just past it (not far beyond, not short of it)."""
    model = _two_class_linear()
    w, b = model[1].weight[1].detach(), float(model[1].bias[1].detach())
    x = torch.full((6, 1, 4, 4), 0.5) + 0.05 * torch.randn(6, 1, 4, 4)
    margin = x.flatten(1) @ w + b
    keep = margin < 0  # currently class 0
    x = x[keep]
    minimal = (x.flatten(1) @ w + b).abs() / w.norm()
    result = lbfgs_attack(model, x, torch.ones(len(x), dtype=torch.long), search_steps=10,
                          max_iter=50)  # fmt: skip
    assert result.success.all()
    assert (predict(model, result.x_adv) == 1).all()
    found = (result.x_adv - x).flatten(1).norm(dim=1)
    assert (found >= minimal - 1e-4).all()
    assert (found <= 1.25 * minimal + 1e-3).all(), (found, minimal)


def test_lbfgs_respects_the_box_and_is_deterministic() -> None:
    torch.manual_seed(0)
    model = sigmoid_mlp(20, 20, in_features=16).eval()
    x = torch.rand(8, 1, 4, 4)
    target = random_targets(predict(model, x), 10, torch.Generator().manual_seed(0))
    first = lbfgs_attack(model, x, target, search_steps=3, max_iter=20)
    again = lbfgs_attack(model, x, target, search_steps=3, max_iter=20)
    assert torch.equal(first.x_adv, again.x_adv)
    assert float(first.x_adv.min()) >= 0.0 and float(first.x_adv.max()) <= 1.0
    hit = predict(model, first.x_adv) == target
    assert torch.equal(hit, first.success)
    assert torch.equal(first.x_adv[~first.success], x[~first.success])
    assert torch.isnan(first.c[~first.success]).all() and (first.c[first.success] > 0).all()
    with pytest.raises(ValueError, match="search_steps"):
        lbfgs_attack(model, x, target, search_steps=0)


def test_untargeted_lbfgs_goes_to_the_runner_up_and_skips_misclassified() -> None:
    torch.manual_seed(0)
    model = softmax_net(16, 3).eval()
    x = torch.rand(10, 1, 4, 4)
    pred = predict(model, x)
    y = pred.clone()
    y[0] = (pred[0] + 1) % 3
    out = lbfgs_untargeted(model, x, y, search_steps=4, max_iter=30)
    assert torch.equal(out[0], x[0])
    moved = (out[1:] != x[1:]).flatten(1).any(dim=1)
    assert moved.sum() >= 5
    assert torch.equal(predict(model, out[1:])[moved], runner_up(model, x[1:], y[1:])[moved])


def test_helpers_by_hand() -> None:
    x = torch.zeros(2, 1, 2, 2)
    x_adv = torch.tensor([[[[0.2, 0.0], [0.0, 0.0]]], [[[0.1, 0.1], [0.1, 0.1]]]])
    assert torch.allclose(distortion(x, x_adv), torch.tensor([0.1, 0.1]))
    amped = amplify(x + 0.5, x_adv + 0.5, 0.2)
    assert torch.allclose(distortion(x + 0.5, amped), torch.tensor([0.2, 0.2]), atol=1e-6)
    assert torch.equal(amplify(x, x, 0.1), x)  # r = 0 stays 0
    y = torch.arange(10).repeat(50)
    t = random_targets(y, 10, torch.Generator().manual_seed(0))
    assert (t != y).all() and set(t.tolist()) == set(range(10))
    noisy = gaussian_noise(torch.full((4, 1, 8, 8), 0.5), 0.1, torch.Generator().manual_seed(0))
    assert float(noisy.min()) >= 0.0 and float(noisy.max()) <= 1.0
    assert 0.08 < float(noisy.std()) < 0.12
    feats = torch.tensor([[1.0, 0.0], [0.0, 3.0], [2.0, 1.0]])
    assert top_activating(feats, torch.eye(2), 2).tolist() == [[2, 0], [1, 2]]
    labels = torch.tensor([0, 0, 1, 1, 1])
    assert label_purity(labels, torch.tensor([[0, 1, 2], [2, 3, 4]])).tolist() == [
        pytest.approx(2 / 3),
        1.0,
    ]


def test_networks_and_weight_decay_groups() -> None:
    mlp = sigmoid_mlp(100, 100)
    assert mlp(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    assert sum(p.numel() for p in mlp.parameters()) == 784 * 100 + 100 + 100 * 100 + 100 + 1010
    groups = weight_decay_groups(mlp, [1e-5, 1e-5, 1e-6])
    assert [g["weight_decay"] for g in groups] == [1e-5, 0.0, 1e-5, 0.0, 1e-6, 0.0]
    torch.optim.Adam(groups, lr=1e-3)  # a valid optimiser
    with pytest.raises(ValueError, match="decays"):
        weight_decay_groups(softmax_net(), [1e-4, 1e-2])


# --------------------------------------------------------------------------- claims


def _results(**overrides: float) -> Results:
    nets = ("fc10_wd1e4", "fc10_wd1e2", "fc10_wd1", "fc100_100", "fc200_200")
    split = ("fc100_100_p1", "fc123_456_p1", "fc100_100_p2")
    rows = {
        f"t1_{n}_distortion": d for n, d in zip(nets, (0.06, 0.1, 0.14, 0.058, 0.065), strict=True)
    }
    for s in nets:
        for t in nets:
            rows[f"t2_{s}_to_{t}_error"] = 100.0 if s == t else 20.0
    rows |= {f"t2_noise01_to_{t}_error": 5.0 for t in nets}
    for s in split:
        for t in split:
            rows[f"t4_{s}_amp01_to_{t}_error"] = 100.0 if s == t else 40.0
    rows |= {f"t4_noise01_to_{t}_error": 2.7 for t in split}
    metrics = {f"mnist_{n}_lbfgs_success": 1.0 for n in nets}
    metrics |= {"mnist_unit_purity": 0.8, "mnist_random_direction_purity": 0.78}
    metrics |= {k.replace("mnist_", "fashion_mnist_"): v for k, v in metrics.items()}
    metrics |= {f"fashion_mnist_{k}": v for k, v in rows.items()}
    rows = {k: overrides.get(k, v) for k, v in rows.items()}
    metrics = {k: overrides.get(k, v) for k, v in metrics.items()}
    return Results(rows, metrics)


def test_claims_hold_fail_and_are_not_evaluated_without_results() -> None:
    claims = load_claims(repro_path(SLUG))
    assert all(c["holds"] is True for c in evaluate(claims, _results()))
    bad = _results(
        fashion_mnist_fc10_wd1_lbfgs_success=0.5,
        t1_fc10_wd1e2_distortion=0.2,  # too large, and out of order
        fashion_mnist_t2_noise01_to_fc100_100_error=30.0,
        t4_fc100_100_p1_amp01_to_fc100_100_p2_error=2.0,
        fashion_mnist_random_direction_purity=0.5,
    )
    holds = {c["id"]: c["holds"] for c in evaluate(claims, bad)}
    assert holds == {
        "lbfgs_finds_adversarial_examples": False,
        "minimal_distortion_is_small": False,
        "weight_decay_raises_distortion": False,
        "adversarial_examples_transfer_across_models": False,
        "adversarial_examples_transfer_across_training_sets": False,
        "random_directions_as_interpretable_as_units": False,
    }
    assert all(c["holds"] is None for c in evaluate(claims, Results({})))


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_smoke_reproduction_through_the_runner(project: Path, tmp_path: Path) -> None:
    """The notebook runs under papermill at smoke scale, records its rows, and the run is stored."""
    _result, summary = smoke_run(SLUG, tmp_path / "runs")
    assert {r["verdict"] for r in summary["rows"]} <= {"not_compared", "not_run"}
    rows = {r["id"]: r for r in summary["rows"]}
    assert rows["t1_ae400_distortion"]["verdict"] == "not_run"
    metrics = {m["name"]: m["value"] for m in summary["metrics"]}
    assert 0.0 < metrics["fashion_mnist_t1_fc100_100_test_error"] < 100.0
    assert 0.0 <= metrics["fashion_mnist_t2_noise01_to_fc10_wd1e4_error"] <= 100.0
    assert 0.0 <= metrics["fashion_mnist_unit_purity"] <= 1.0
    assert {f["path"].split("/")[-1] for f in summary["figures"]} >= {
        "table2_transfer.png",
        "units_vs_directions.png",
    }
    crashed = [c for c in summary["claims"] if "the check raised" in (c["detail"] or "")]
    assert not crashed, crashed
