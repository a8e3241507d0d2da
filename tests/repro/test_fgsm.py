"""FGSM (repro.fgsm): the method against a hand computation, the paper's models and metrics, the
claims, and the smoke reproduction end to end through the runner."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from repro.claims import Results, evaluate, load_claims
from repro.config import repro_path
from repro.fgsm import (
    Maxout,
    error_and_confidence,
    fgsm,
    frozen,
    maxout_network,
    sign_noise,
    softmax_classifier,
    uniform_noise,
)


def _linear_model() -> nn.Module:
    """A 4-pixel, 3-class linear model with fixed, hand-picked weights."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    with torch.no_grad():
        model[1].weight.copy_(
            torch.tensor([[1.0, -2.0, 0.5, 0.0], [-1.0, 1.0, 2.0, -0.5], [0.5, 0.5, -1.0, 1.0]])
        )
        model[1].bias.copy_(torch.tensor([0.1, -0.2, 0.0]))
    return model


def _hand_fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """x + eps * sign(dCE/dx), with dCE/dx = W^T (softmax(Wx + b) - onehot(y)), no autograd."""
    w, b = model[1].weight.detach(), model[1].bias.detach()
    flat = x.reshape(len(x), -1)
    p = torch.softmax(flat @ w.T + b, dim=1)
    grad = (p - nn.functional.one_hot(y, 3).float()) @ w
    return x + eps * grad.sign().reshape(x.shape)


def test_fgsm_is_eps_times_the_sign_of_the_gradient_clipped() -> None:
    model = _linear_model()
    x = torch.tensor([[[[0.1, 0.9], [0.5, 0.02]]], [[[0.95, 0.3], [0.0, 0.6]]]])
    y = torch.tensor([0, 2])
    expected = _hand_fgsm(model, x, y, 0.25)
    assert torch.allclose(fgsm(model, x, y, eps=0.25, clip=None), expected)
    assert torch.allclose(fgsm(model, x, y, eps=0.25), expected.clamp(0.0, 1.0))
    assert torch.allclose(fgsm(model, x, y, eps=0.25, clip=(0.2, 0.8)), expected.clamp(0.2, 0.8))
    # Unclipped, every pixel moves by exactly eps (no gradient component is zero here).
    assert torch.allclose(
        (fgsm(model, x, y, eps=0.25, clip=None) - x).abs(), torch.full_like(x, 0.25)
    )


def test_fgsm_with_eps_zero_returns_x_and_rejects_negative_eps() -> None:
    model = _linear_model()
    x, y = torch.rand(5, 1, 2, 2), torch.randint(0, 3, (5,))
    assert torch.equal(fgsm(model, x, y, eps=0.0), x)
    with pytest.raises(ValueError, match="eps"):
        fgsm(model, x, y, eps=-0.1)


def test_fgsm_leaves_the_model_as_it_was_even_under_no_grad() -> None:
    model = maxout_network(units=8, pieces=2)
    model.train()
    model[1].eval()  # a mixed-mode model: each module's own flag must come back
    model[2].linear.weight.requires_grad_(False)
    flags = [p.requires_grad for p in model.parameters()]
    modes = [m.training for m in model.modules()]
    x, y = torch.rand(6, 1, 28, 28), torch.randint(0, 10, (6,))
    with torch.no_grad():  # an attack must still get its input gradient
        out = fgsm(model, x, y, eps=0.1)
    assert not out.requires_grad and out.shape == x.shape
    assert [p.requires_grad for p in model.parameters()] == flags
    assert [m.training for m in model.modules()] == modes
    assert all(p.grad is None for p in model.parameters())


def test_fgsm_is_deterministic_on_a_dropout_network() -> None:
    """The attack runs in eval mode: dropout noise must not change the adversarial example."""
    torch.manual_seed(0)
    model = maxout_network(units=16, pieces=3).train()
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    assert torch.equal(fgsm(model, x, y, eps=0.25), fgsm(model, x, y, eps=0.25))


def test_frozen_restores_after_an_exception() -> None:
    model = softmax_classifier()
    model.train()
    with pytest.raises(RuntimeError), frozen(model):
        assert not model.training and not any(p.requires_grad for p in model.parameters())
        raise RuntimeError("boom")
    assert model.training and all(p.requires_grad for p in model.parameters())


def test_maxout_is_the_max_over_pieces() -> None:
    torch.manual_seed(0)
    layer = Maxout(5, units=3, pieces=4)
    x = torch.randn(7, 5)
    z = layer.linear(x)  # pieces-major: column p * units + u is piece p of unit u
    manual = torch.stack(
        [z[:, [p * 3 + u for p in range(4)]].max(dim=1).values for u in range(3)], 1
    )
    assert torch.allclose(layer(x), manual)


def test_paper_models_shapes() -> None:
    x = torch.rand(4, 1, 28, 28)
    assert maxout_network().eval()(x).shape == (4, 10)
    assert softmax_classifier()(x).shape == (4, 10)
    assert softmax_classifier(classes=2)(x).shape == (4, 2)
    assert sum(p.numel() for p in maxout_network().parameters()) == (
        784 * 1200 + 1200 + 240 * 1200 + 1200 + 240 * 10 + 10
    )


def test_error_and_confidence_by_hand() -> None:
    """Logits chosen so that two of four examples are wrong with known probabilities."""

    class Fixed(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1)

    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [math.log(3.0), 0.0], [0.0, 0.0]])
    y = torch.tensor([0, 0, 1, 0])  # right, wrong (p 0.881), wrong (p 0.75), tie -> argmax 0: right
    error, confidence = error_and_confidence(Fixed(), logits, y, batch_size=3)
    assert error == pytest.approx(50.0)
    assert confidence == pytest.approx(100 * (torch.sigmoid(torch.tensor(2.0)).item() + 0.75) / 2)
    error, confidence = error_and_confidence(Fixed(), logits[:1], y[:1])
    assert error == 0.0 and math.isnan(confidence)
    # A transfer attack: a closure ignoring the evaluated model.
    flip = lambda _m, xb, yb: -xb  # noqa: E731
    assert error_and_confidence(Fixed(), logits[:2], y[:2], attack=flip)[0] == pytest.approx(50.0)


def test_noise_controls_have_the_paper_distributions() -> None:
    x = torch.full((3, 1, 4, 4), 0.5)
    gen = torch.Generator().manual_seed(0)
    signs = sign_noise(None, x, None, eps=0.25, generator=gen) - x
    assert set(signs.unique().tolist()) == {-0.25, 0.25}
    uniform = uniform_noise(None, x, None, eps=0.25, generator=gen) - x
    assert float(uniform.abs().max()) <= 0.25 and len(uniform.unique()) > 10
    again = sign_noise(None, x, None, eps=0.25, generator=torch.Generator().manual_seed(0)) - x
    assert torch.equal(signs, again)


# --------------------------------------------------------------------------- claims


def _fgsm_results(**overrides: float) -> Results:
    mnist = {
        "mnist_softmax_fgsm_error": 99.0,
        "mnist_maxout_fgsm_error": 90.0,
        "mnist_maxout_at_fgsm_error": 20.0,
        "mnist_maxout_clean_error": 1.0,
        "mnist_maxout_at_clean_error": 0.9,
        "mnist_sign_noise_fgsm_error": 85.0,
        "mnist_uniform_noise_fgsm_error": 88.0,
    }
    fashion = {k.replace("mnist_", "fashion_mnist_", 1): v for k, v in mnist.items()}
    rows = {k: overrides.get(k, v) for k, v in mnist.items()}
    metrics = {k: overrides.get(k, v) for k, v in fashion.items()}
    return Results(rows, metrics)


def test_fgsm_claims_hold_fail_and_are_skipped_when_nothing_ran() -> None:
    claims = load_claims(repro_path("fgsm"))
    holds = {c["id"]: c["holds"] for c in evaluate(claims, _fgsm_results())}
    assert holds == {
        "fgsm_fools_standard_networks": True,
        "adversarial_training_cuts_fgsm_error": True,
        "adversarial_training_lowers_clean_error": True,
        "noise_training_is_no_substitute": True,
    }
    # Fashion-MNIST alone failing makes the claim fail: it must hold on every dataset measured.
    bad = _fgsm_results(
        fashion_mnist_maxout_at_clean_error=5.0, fashion_mnist_maxout_at_fgsm_error=60.0
    )
    verdicts = {c["id"]: c for c in evaluate(claims, bad)}
    assert verdicts["adversarial_training_lowers_clean_error"]["holds"] is False
    assert verdicts["adversarial_training_cuts_fgsm_error"]["holds"] is False
    assert "fashion_mnist" in verdicts["adversarial_training_lowers_clean_error"]["detail"]
    # The paper claims an improvement (0.94% -> 0.84%): a small rise, which the old "< +2 points"
    # threshold let pass, fails now; so does an unchanged error.
    for after in (1.05, 1.0):
        verdicts = {
            c["id"]: c for c in evaluate(claims, _fgsm_results(mnist_maxout_at_clean_error=after))
        }
        assert verdicts["adversarial_training_lowers_clean_error"]["holds"] is False
    # Without per-image vectors there is no interval, and the detail says so.
    assert "no interval" in verdicts["adversarial_training_cuts_fgsm_error"]["detail"]
    # Only Fashion-MNIST measured (no MNIST files): still evaluated.
    only_fashion = Results({}, _fgsm_results().metrics)
    assert all(c["holds"] is True for c in evaluate(claims, only_fashion))
    assert all(c["holds"] is None for c in evaluate(claims, Results({})))


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_smoke_reproduction_through_the_runner(project: Path, tmp_path: Path) -> None:
    """The notebook runs under papermill at smoke scale and the run is stored (SQLite)."""
    from repro.data import available
    from repro.runner import run_reproduction

    result = run_reproduction("fgsm", scale="smoke", device="cpu", out=tmp_path / "runs")
    summary = result.summary
    assert summary["status"] == "succeeded", summary["error"]
    assert result.stored
    rows = {r["id"]: r for r in summary["rows"]}
    metrics = {m["name"]: m["value"] for m in summary["metrics"]}
    # Fashion-MNIST always runs here: the analogue's metrics are all there, as percentages.
    for name in ("maxout_fgsm", "maxout_at_fgsm", "softmax_fgsm", "sign_noise_fgsm"):
        assert 0.0 <= metrics[f"fashion_mnist_{name}_error"] <= 100.0
    # At smoke nothing is compared with the paper; CIFAR-10 and the 5-seed result never run.
    assert {r["verdict"] for r in summary["rows"]} <= {"not_compared", "not_run"}
    assert rows["cifar10_conv_maxout_fgsm_error"]["verdict"] == "not_run"
    assert rows["mnist_maxout_large_at_mean_clean_error"]["verdict"] == "not_run"
    if available("mnist"):
        assert rows["mnist_maxout_fgsm_error"]["value"] is not None
    elif available("mnist-test-split"):
        measured = rows["mnist_maxout_fgsm_error"]
        assert measured["value"] is not None
        assert measured["reason"].startswith("measured on mnist-test-split")
    else:
        assert rows["mnist_maxout_fgsm_error"]["reason"].startswith("no MNIST files")
    # The shared robustness battery (repro.robust_eval) on Fashion-MNIST's natural and FGSM-AT
    # maxout networks: smoke runs clean, FGSM, PGD-20 and the paper's FGSM, 16 images each.
    for model in ("fashion_mnist_maxout", "fashion_mnist_maxout_at"):
        battery = {k.split(".")[2]: v for k, v in metrics.items()
                   if k.startswith(f"robustness.{model}.") and k.count(".") == 2}  # fmt: skip
        assert {"clean", "fgsm", "pgd20", "worst", "paper", "eps"} <= set(battery), battery
        assert battery["eps"] == pytest.approx(0.25)
        accuracies = [v for k, v in battery.items() if k not in ("eps", "gap")]
        assert all(0.0 <= v <= 100.0 for v in accuracies), battery
        assert battery["worst"] <= min(battery[a] for a in ("fgsm", "pgd20"))
        assert battery["worst"] <= battery["clean"] and battery["paper"] <= battery["clean"]
        assert metrics[f"cost.{model}.epoch_seconds"] > 0.0
    assert [c["id"] for c in summary["claims"]] == [c.id for c in load_claims(repro_path("fgsm"))]
    assert all(c["holds"] is not None for c in summary["claims"]), summary["claims"]
    figure = summary["figures"][0]["path"]
    assert (result.run_dir / figure).stat().st_size > 0
