"""Liu et al.'s transfer attacks (repro.liu_transfer): the losses and the ensemble by hand, the
distortion budget, FG / FGS against their closed forms, the claims, and the smoke reproduction
end to end through the runner."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from repro.claims import Results, evaluate, load_claims
from repro.config import repro_path
from repro.fgsm import fgsm
from repro.liu_transfer import (
    ensemble_probabilities,
    far_targets,
    fast_gradient,
    gaussian_like,
    matching_rate,
    optimization_attack,
    rmsd,
    transfer_loss,
    transfer_models,
)

from .conftest import smoke_run

SLUG = "liu_transfer"


def _linear(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 4)).eval()


def test_losses_and_ensemble_by_hand() -> None:
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    labels = torch.tensor([0, 2])
    assert torch.allclose(
        transfer_loss(probs, labels, targeted=False), -torch.log(torch.tensor([0.3, 0.2]))
    )
    assert torch.allclose(
        transfer_loss(probs, labels, targeted=True), -torch.log(torch.tensor([0.7, 0.8]))
    )
    a, b = _linear(0), _linear(1)
    x = torch.rand(5, 1, 4, 4)
    mix = ensemble_probabilities([a, b], x, [0.25, 0.75])
    assert torch.allclose(mix, 0.25 * a(x).softmax(1) + 0.75 * b(x).softmax(1))
    assert torch.allclose(
        ensemble_probabilities([a, b], x), (a(x).softmax(1) + b(x).softmax(1)) / 2
    )
    with pytest.raises(ValueError, match="weights"):
        ensemble_probabilities([a, b], x, [1.0])


@pytest.mark.parametrize("targeted", [False, True])
def test_optimization_attack_moves_the_right_probability_within_the_budget(targeted: bool) -> None:
    models = [_linear(0), _linear(1)]
    x = torch.full((6, 1, 4, 4), 0.5)
    y = ensemble_probabilities(models, x).argmax(1)
    labels = far_targets(y, 4) if targeted else y
    before = ensemble_probabilities(models, x).gather(1, labels[:, None])
    x_adv = optimization_attack(models, x, labels, targeted=targeted, steps=30, lr=0.05,
                                rmsd_budget=0.1)  # fmt: skip
    after = ensemble_probabilities(models, x_adv).gather(1, labels[:, None])
    assert (after > before).all() if targeted else (after < before).all()
    assert (rmsd(x, x_adv) <= 0.1 + 1e-6).all()
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    assert not x_adv.requires_grad
    assert all(p.requires_grad for m in models for p in m.parameters())


def test_fast_gradient_closed_forms() -> None:
    model = _linear()
    x = torch.full((3, 1, 4, 4), 0.5)
    y = torch.tensor([0, 1, 2])
    x_in = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(nn.functional.cross_entropy(model(x_in), y, reduction="sum"), x_in)
    fg = fast_gradient(model, x, y, eps=0.2)
    step = g / g.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    assert torch.allclose(fg, x + 0.2 * step, atol=1e-6)
    assert torch.allclose((fg - x).flatten(1).norm(dim=1), torch.full((3,), 0.2), atol=1e-6)
    assert torch.allclose(fast_gradient(model, x, y, eps=0.2, targeted=True), x - 0.2 * step,
                          atol=1e-6)  # fmt: skip
    fgs_t = fast_gradient(model, x, y, eps=0.1, norm="linf", targeted=True)
    assert torch.allclose(fgs_t, x - 0.1 * g.sign())
    assert torch.equal(fast_gradient(model, x, y, eps=0.1, norm="linf"), fgsm(model, x, y, eps=0.1))
    with pytest.raises(ValueError, match="norm"):
        fast_gradient(model, x, y, eps=0.1, norm="l1")  # type: ignore[arg-type]


def test_helpers_by_hand() -> None:
    assert far_targets(torch.arange(10)).tolist() == [5, 6, 7, 8, 9, 0, 1, 2, 3, 4]
    x = torch.zeros(2, 1, 2, 2)
    assert torch.allclose(rmsd(x, x + 0.3), torch.full((2,), 0.3))
    noisy = gaussian_like(torch.full((4, 1, 8, 8), 0.5), 0.05, torch.Generator().manual_seed(0))
    assert torch.allclose(
        rmsd(torch.full_like(noisy, 0.5), noisy), torch.full((4,), 0.05), atol=1e-6
    )
    model = _linear()
    x = torch.rand(8, 1, 4, 4)
    pred = model(x).argmax(1)
    assert matching_rate(model, x, pred) == 1.0
    assert matching_rate(model, x, (pred + 1) % 4) == 0.0
    models = transfer_models()
    assert list(models) == ["mlp", "deep_mlp", "wide_cnn", "deep_cnn", "resnet"]
    for m in models.values():
        assert m(torch.rand(2, 1, 28, 28)).shape == (2, 10)


# --------------------------------------------------------------------------- claims

MODELS = ("mlp", "deep_mlp", "wide_cnn", "deep_cnn", "resnet")


def _results(**overrides: float) -> Results:
    m = {}
    for s in MODELS:
        for t in MODELS:
            m[f"opt_untargeted_{s}_to_{t}_accuracy"] = 0.0 if s == t else 30.0
            m[f"opt_targeted_{s}_to_{t}_matching"] = 100.0 if s == t else 3.0
            m[f"ens_untargeted_wo_{s}_to_{t}_accuracy"] = 4.0 if s == t else 0.0
            m[f"ens_targeted_wo_{s}_to_{t}_matching"] = 35.0 if s == t else 90.0
    m |= {f"noise_to_{t}_matching": 0.0 for t in MODELS}
    return Results({}, {k: overrides.get(k, v) for k, v in m.items()})


def test_claims_hold_fail_and_are_not_evaluated_without_results() -> None:
    claims = load_claims(repro_path(SLUG))
    assert all(c["holds"] is True for c in evaluate(claims, _results()))
    over = {f"opt_untargeted_{s}_to_{t}_accuracy": 70.0 for s in MODELS for t in MODELS if s != t}
    over |= {f"ens_targeted_wo_{h}_to_{h}_matching": 8.0 for h in MODELS}
    over |= {"noise_to_resnet_matching": 10.0}
    holds = {c["id"]: c["holds"] for c in evaluate(claims, _results(**over))}
    assert holds == {
        "untargeted_examples_transfer": False,
        "targeted_examples_rarely_transfer": True,  # 3% <= half of 30%
        "ensemble_targeted_examples_transfer": False,
        "ensemble_untargeted_examples_transfer_better": True,  # 4% <= half of 70%
        "noise_does_not_reach_targets": False,
    }
    assert all(c["holds"] is None for c in evaluate(claims, Results({})))


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_smoke_reproduction_through_the_runner(project: Path, tmp_path: Path) -> None:
    """The notebook runs under papermill at smoke scale, records its metrics, and is stored."""
    _result, summary = smoke_run(SLUG, tmp_path / "runs")
    assert {r["verdict"] for r in summary["rows"]} == {"not_run"}  # every paper row is ImageNet
    metrics = {m["name"]: m["value"] for m in summary["metrics"]}
    for s in MODELS:
        # FG and FGS run at the distortion the optimization attack reached (less where clipped)
        for kind in ("untargeted", "targeted"):
            reached = metrics[f"opt_{kind}_{s}_rmsd255"]
            assert 0 < metrics[f"fgs_{kind}_{s}_rmsd255"] <= reached + 1e-3
            assert 0 < metrics[f"fg_{kind}_{s}_rmsd255"] <= reached + 1e-3
        for t in MODELS:
            assert 0.0 <= metrics[f"ens_targeted_wo_{s}_to_{t}_matching"] <= 100.0
    assert len(summary["figures"]) == 2
    crashed = [c for c in summary["claims"] if "the check raised" in (c["detail"] or "")]
    assert not crashed, crashed
