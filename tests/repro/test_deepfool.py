"""DeepFool (repro.deepfool): the step against the closed form on an affine classifier, the
gradients against autograd's Jacobian, the FGSM baseline's eps search, the claims, and the smoke
reproduction end to end through the runner."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from repro.claims import Results, evaluate, load_claims
from repro.config import repro_path
from repro.deepfool import (
    boundary_terms,
    deepfool,
    deepfool_attack,
    fc_500_150,
    fgsm_min_eps,
    lenet,
    rho_adv,
)
from repro.fgsm import fgsm
from repro.train import predict

from .conftest import smoke_run

SLUG = "deepfool"
W = torch.tensor([[1.0, -2.0, 0.5, 0.0], [-1.0, 1.0, 2.0, -0.5], [0.5, 0.5, -1.0, 1.0]])
B = torch.tensor([0.1, -0.2, 0.0])


def _affine() -> nn.Module:
    """A 4-pixel, 3-class affine classifier with hand-picked weights."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    with torch.no_grad():
        model[1].weight.copy_(W)
        model[1].bias.copy_(B)
    return model.eval()


def _hand_step(x: torch.Tensor, y: int, norm: str) -> torch.Tensor:
    """Algorithm 2's first step on an affine classifier, by hand (with the 1e-4 pad)."""
    flat = x.flatten()
    f = W @ flat + B
    best = None
    for k in range(3):
        if k == y:
            continue
        w = W[k] - W[y]
        dual = w.norm() if norm == "l2" else w.abs().sum()
        dist = (f[k] - f[y]).abs() / dual
        if best is None or dist < best[0]:
            best = (dist, w, dual)
    dist, w, dual = best
    step = (dist + 1e-4) * (w / dual if norm == "l2" else w.sign())
    return step.view_as(x)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_one_step_is_the_closed_form_on_an_affine_classifier(norm: str) -> None:
    """On an affine classifier the linearisation is exact: one step reaches the nearest boundary
    (plus the pad), and the overshoot multiplies it by 1.02."""
    model = _affine()
    x = torch.tensor([[[[0.3, 0.2], [0.4, 0.1]]], [[[0.2, 0.6], [0.1, 0.5]]]])
    y = predict(model, x)
    result = deepfool_attack(model, x, y, norm=norm, clip=None)
    for i in range(2):
        expected = x[i] + 1.02 * _hand_step(x[i], int(y[i]), norm)
        assert torch.allclose(result.x_adv[i], expected, atol=1e-6)
    assert result.iterations.tolist() == [1, 1]
    assert bool(result.fooled.all())
    assert (predict(model, result.x_adv) != y).all()


@pytest.mark.parametrize("batched_from", [1, 100])  # the vectorised path, the replicated one
def test_boundary_terms_match_autograd_jacobian(batched_from: int, monkeypatch) -> None:
    import repro.deepfool

    monkeypatch.setattr(repro.deepfool, "_BATCHED_FROM", batched_from)
    torch.manual_seed(0)
    model = lenet().eval()
    x = torch.rand(3, 1, 28, 28)
    y = predict(model, x)
    others = torch.stack([torch.tensor([c for c in range(10) if c != int(v)]) for v in y])
    diff, grad = boundary_terms(model, x, y, others)
    f = model(x).detach()
    for i in range(3):
        jac = torch.autograd.functional.jacobian(lambda z: model(z)[0], x[i : i + 1])[:, 0]
        for j, k in enumerate(others[i].tolist()):
            assert torch.allclose(grad[i, j], jac[k] - jac[int(y[i])], atol=1e-5)
            assert torch.isclose(diff[i, j], f[i, k] - f[i, int(y[i])], atol=1e-5)


def test_flips_a_network_and_leaves_misclassified_images_alone() -> None:
    torch.manual_seed(0)
    model = fc_500_150().eval()
    x = torch.rand(12, 1, 28, 28)
    pred = predict(model, x)
    y = pred.clone()
    y[:3] = (pred[:3] + 1) % 10  # "already fooled": not classified as y
    result = deepfool_attack(model, x, y)
    assert torch.equal(result.x_adv[:3], x[:3])
    assert result.iterations[:3].eq(0).all() and not result.fooled[:3].any()
    assert result.fooled[3:].all()
    assert (predict(model, result.x_adv[3:]) != y[3:]).all()
    assert float(result.x_adv.min()) >= 0.0 and float(result.x_adv.max()) <= 1.0
    # max_iter = 0 changes nothing; candidates = 2 looks at one other class only.
    assert torch.equal(deepfool(model, x, y, max_iter=0), x)
    assert deepfool_attack(model, x, pred, candidates=2).fooled.float().mean() > 0.5


def test_bad_arguments_raise_one_clear_error() -> None:
    model = _affine()
    x, y = torch.rand(2, 1, 2, 2), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="norm"):
        deepfool(model, x, y, norm="l1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="candidates"):
        deepfool(model, x, y, candidates=1)
    with pytest.raises(ValueError, match="overshoot"):
        deepfool(model, x, y, overshoot=-0.1)
    with pytest.raises(ValueError, match="norm"):
        rho_adv(x, x, "l1")  # type: ignore[arg-type]


def test_rho_adv_by_hand() -> None:
    x = torch.tensor([[[[3.0, 4.0]]], [[[1.0, 0.0]]]])
    x_adv = x + torch.tensor([[[[0.0, 1.0]]], [[[0.5, 0.5]]]])
    assert torch.allclose(rho_adv(x, x_adv), torch.tensor([1 / 5, 0.5**0.5]))
    assert torch.allclose(rho_adv(x, x_adv, "linf"), torch.tensor([1 / 4, 0.5]))


def test_fgsm_min_eps_brackets_the_target_error() -> None:
    torch.manual_seed(0)
    model = fc_500_150().eval()
    x = torch.rand(64, 1, 28, 28)
    y = predict(model, x)
    eps = fgsm_min_eps(model, x, y, target_error=0.9, steps=10, clip=None)

    def error(e: float) -> float:
        return float((predict(model, fgsm(model, x, y, eps=e, clip=None)) != y).float().mean())

    assert error(eps) >= 0.9
    assert error(eps - 1.0 / 2**10) < 0.9
    with pytest.raises(ValueError):
        fgsm_min_eps(model, x, y, target_error=0.0)


# --------------------------------------------------------------------------- claims


def _results(**overrides: float) -> Results:
    rows, metrics = {}, {}
    for net in ("lenet", "fc500_150"):
        base = {
            f"t1_{net}_deepfool_rho": 0.2,
            f"t1_{net}_fgsm_rho": 1.0,
            f"t2_{net}_deepfool_rho_inf": 0.1,
            f"t2_{net}_fgsm_rho_inf": 0.26,
            f"t3_{net}_deepfool_finetuned_error": 0.8,
            f"t3_{net}_fgsm_finetuned_error": 4.4,
            f"t3_{net}_clean_finetuned_error": 1.0,
        }
        free = {
            f"{net}_deepfool_rho_on_lbfgs_images": 0.2,
            f"{net}_lbfgs_rho_on_lbfgs_images": 0.25,
            f"{net}_deepfool_time_per_image_s": 0.11,
            f"{net}_lbfgs_time_per_image_s": 4.0,
            f"{net}_deepfool_finetuned_rho": 0.3,
        }
        rows |= base
        metrics |= {f"mnist_{k}": v for k, v in free.items()}
        metrics |= {f"fashion_mnist_{k}": v for k, v in base.items()}
        metrics |= {f"fashion_mnist_{k}": v for k, v in free.items()}
    rows = {k: overrides.get(k, v) for k, v in rows.items()}
    metrics = {k: overrides.get(k, v) for k, v in metrics.items()}
    return Results(rows, metrics)


def test_claims_hold_fail_and_are_not_evaluated_without_results() -> None:
    claims = load_claims(repro_path(SLUG))
    assert all(c["holds"] is True for c in evaluate(claims, _results()))
    bad = _results(
        fashion_mnist_t1_lenet_fgsm_rho=0.3,  # only 1.5x DeepFool's
        mnist_fc500_150_lbfgs_time_per_image_s=0.5,  # only 4.5x slower
        fashion_mnist_lenet_deepfool_finetuned_rho=0.21,
        t3_fc500_150_deepfool_finetuned_error=5.0,
    )
    verdicts = {c["id"]: c for c in evaluate(claims, bad)}
    assert verdicts["deepfool_much_smaller_than_fgsm"]["holds"] is False
    assert "fashion_mnist" in verdicts["deepfool_much_smaller_than_fgsm"]["detail"]
    assert verdicts["deepfool_much_faster_than_lbfgs"]["holds"] is False
    assert verdicts["finetuning_on_deepfool_raises_robustness"]["holds"] is False
    assert verdicts["finetuning_on_deepfool_keeps_accuracy"]["holds"] is False
    assert verdicts["finetuning_on_fgsm_hurts_more"]["holds"] is False
    assert verdicts["deepfool_not_larger_than_lbfgs"]["holds"] is True
    assert all(c["holds"] is None for c in evaluate(claims, Results({})))


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_smoke_reproduction_through_the_runner(project: Path, tmp_path: Path) -> None:
    """The notebook runs under papermill at smoke scale, records its rows, and the run is stored."""
    result, summary = smoke_run(SLUG, tmp_path / "runs")
    assert {r["verdict"] for r in summary["rows"]} <= {"not_compared", "not_run"}
    rows = {r["id"]: r for r in summary["rows"]}
    assert rows["t1_nin_deepfool_rho"]["verdict"] == "not_run"
    metrics = {m["name"]: m["value"] for m in summary["metrics"]}
    for net in ("lenet", "fc500_150"):
        assert (
            0
            < metrics[f"fashion_mnist_t1_{net}_deepfool_rho"]
            < metrics[f"fashion_mnist_t1_{net}_fgsm_rho"]
        )
        assert 0.0 <= metrics[f"fashion_mnist_t3_{net}_deepfool_finetuned_error"] <= 100.0
    assert (result.run_dir / summary["figures"][0]["path"]).stat().st_size > 0
    crashed = [c for c in summary["claims"] if "the check raised" in (c["detail"] or "")]
    assert not crashed, crashed
