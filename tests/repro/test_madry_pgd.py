"""PGD (repro.madry_pgd): the method's edge cases, restarts, the CW margin loss, the paper's CNN,
the claims, and the smoke reproduction end to end through the runner."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from repro.claims import Results, evaluate, load_claims
from repro.config import repro_path
from repro.fgsm import fgsm
from repro.madry_pgd import MadryCNN, attack_loss, madry_cnn, pgd_linf


@pytest.fixture(scope="module")
def victim() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A small random-feature classifier with a clear decision structure, and inputs to attack.

    Trained for a few hundred steps on synthetic three-blob data: clean accuracy 100%, and PGD at
    eps 0.2 flips about half of its predictions (room for restarts to matter).
    """
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 3))
    centers = torch.rand(3, 16)
    y = torch.randint(0, 3, (600,))
    x = (centers[y] + 0.15 * torch.randn(600, 16)).clamp(0, 1).view(600, 1, 4, 4)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        F.cross_entropy(model(x[:400]), y[:400]).backward()
        opt.step()
    model.eval()
    return model, x[400:], y[400:]


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def test_zero_steps_without_random_start_returns_x(victim) -> None:
    model, x, y = victim
    out = pgd_linf(model, x, y, eps=0.3, step_size=0.01, steps=0, random_start=False)
    assert torch.equal(out, x) and out.data_ptr() != x.data_ptr()


def test_zero_steps_with_random_start_is_a_clipped_uniform_point(victim) -> None:
    model, x, y = victim
    gen = torch.Generator().manual_seed(0)
    out = pgd_linf(model, x, y, eps=0.3, step_size=0.01, steps=0, generator=gen)
    noise = torch.rand(x.shape, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out, (x + 0.3 * (2 * noise - 1)).clamp(0, 1))


def test_one_full_step_without_random_start_is_fgsm(victim) -> None:
    """PGD's first step from x with step = eps is exactly FGSM (clipped to [0, 1])."""
    model, x, y = victim
    out = pgd_linf(model, x, y, eps=0.1, step_size=0.1, steps=1, random_start=False)
    assert torch.allclose(out, fgsm(model, x, y, eps=0.1))


def test_pgd_is_stronger_than_fgsm_and_stays_in_the_ball(victim) -> None:
    model, x, y = victim
    gen = torch.Generator().manual_seed(0)
    out = pgd_linf(model, x, y, eps=0.2, step_size=0.02, steps=20, generator=gen)
    assert float((out - x).abs().max()) <= 0.2 + 1e-6
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    assert _accuracy(model, out, y) <= _accuracy(model, fgsm(model, x, y, eps=0.2), y)
    assert _accuracy(model, out, y) < _accuracy(model, x, y)


def test_restarts_are_never_worse_than_one_restart_on_the_same_generator(victim) -> None:
    """Restart 0 draws the same start either way: examples it breaks stay broken (same point),
    survivors keep a restart with at least its loss."""
    model, x, y = victim
    kwargs = {"eps": 0.2, "step_size": 0.05, "steps": 5}
    one = pgd_linf(model, x, y, generator=torch.Generator().manual_seed(3), **kwargs)
    many = pgd_linf(model, x, y, restarts=6, generator=torch.Generator().manual_seed(3), **kwargs)
    with torch.no_grad():
        wrong_one = model(one).argmax(1) != y
        wrong_many = model(many).argmax(1) != y
        loss_one = F.cross_entropy(model(one), y, reduction="none")
        loss_many = F.cross_entropy(model(many), y, reduction="none")
    assert 0 < int(wrong_one.sum()) < len(y), "the test needs an attack that is neither 0 nor 100%"
    assert bool((wrong_many | ~wrong_one).all()), "an example broken by 1 restart was lost"
    assert torch.equal(many[wrong_one], one[wrong_one])  # the first misclassifying restart wins
    survivors = ~wrong_many
    assert bool((loss_many[survivors] >= loss_one[survivors] - 1e-6).all())
    assert int(wrong_many.sum()) >= int(wrong_one.sum())


def test_restarts_in_several_passes(victim, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a tiny row budget the survivors' restarts run one pass at a time: same guarantees."""
    import repro.madry_pgd as module

    model, x, y = victim
    monkeypatch.setattr(module, "_max_rows", lambda device: 1)
    kwargs = {"eps": 0.2, "step_size": 0.05, "steps": 3}
    one = pgd_linf(model, x, y, generator=torch.Generator().manual_seed(1), **kwargs)
    many = pgd_linf(model, x, y, restarts=4, generator=torch.Generator().manual_seed(1), **kwargs)
    assert _accuracy(model, many, y) <= _accuracy(model, one, y)
    assert float((many - x).abs().max()) <= 0.2 + 1e-6


def test_margin_loss_by_hand() -> None:
    logits = torch.tensor([[1.0, 3.0, 2.0], [1.0, 3.0, 2.0], [0.0, -1.0, 5.0]])
    y = torch.tensor([0, 1, 2])
    assert torch.allclose(attack_loss(logits, y, "margin"), torch.tensor([2.0, -1.0, -5.0]))
    assert torch.allclose(
        attack_loss(logits, y, "margin", kappa=0.0), torch.tensor([0.0, -1.0, -5.0])
    )
    assert torch.allclose(
        attack_loss(logits, y, "ce"), F.cross_entropy(logits, y, reduction="none")
    )
    with pytest.raises(ValueError, match="loss"):
        attack_loss(logits, y, "hinge")


def test_margin_pgd_attacks(victim) -> None:
    model, x, y = victim
    gen = torch.Generator().manual_seed(0)
    out = pgd_linf(model, x, y, eps=0.2, step_size=0.02, steps=20, loss="margin", generator=gen)
    assert _accuracy(model, out, y) < _accuracy(model, x, y)
    with torch.no_grad():  # the margin was pushed up on average
        before = attack_loss(model(x), y, "margin").mean()
        after = attack_loss(model(out), y, "margin").mean()
    assert after > before
    capped = pgd_linf(
        model,
        x,
        y,
        eps=0.2,
        step_size=0.02,
        steps=20,
        loss="margin",
        kappa=0.0,
        generator=torch.Generator().manual_seed(0),
    )
    assert _accuracy(model, capped, y) < _accuracy(model, x, y)


def test_a_loss_callable_is_attacked_like_the_named_loss(victim) -> None:
    """A paper's own loss is passed as a callable; cross-entropy as a callable gives the same
    points as "ce" (same generator), and a callable of the wrong shape is refused."""
    model, x, y = victim

    def run(loss):
        return pgd_linf(model, x, y, eps=0.2, step_size=0.02, steps=5, restarts=2, loss=loss,
                        generator=torch.Generator().manual_seed(3))  # fmt: skip

    ce = lambda logits, labels: F.cross_entropy(logits, labels, reduction="none")  # noqa: E731
    assert torch.equal(run("ce"), run(ce))
    with pytest.raises(ValueError, match="one loss per example"):
        run(lambda logits, labels: logits.sum())


def test_bad_arguments() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    x, y = torch.rand(2, 1, 2, 2), torch.tensor([0, 1])
    for bad in ({"eps": -0.1}, {"steps": -1}, {"restarts": 0}, {"loss": "l2"}):
        kwargs = {"eps": 0.1, "step_size": 0.01, "steps": 2, **bad}
        with pytest.raises(ValueError):
            pgd_linf(model, x, y, **kwargs)
    with pytest.raises(ValueError, match="random_start"):
        pgd_linf(model, x, y, eps=0.1, step_size=0.01, steps=2, restarts=3, random_start=False)
    empty = pgd_linf(model, x[:0], y[:0], eps=0.1, step_size=0.01, steps=2)
    assert empty.shape == (0, 1, 2, 2)


def test_model_left_as_it_was() -> None:
    model = madry_cnn(width=0.25).train()
    model.classifier[1].weight.requires_grad_(False)
    flags = [p.requires_grad for p in model.parameters()]
    x, y = torch.rand(4, 1, 28, 28), torch.randint(0, 10, (4,))
    pgd_linf(model, x, y, eps=0.3, step_size=0.1, steps=2, restarts=2, loss="margin")
    assert model.training and all(m.training for m in model.modules())
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())


def test_the_papers_cnn() -> None:
    model = madry_cnn()
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    # mnist_challenge's model: 5x5x1x32, 5x5x32x64, 3136x1024, 1024x10 weights, with biases.
    assert sum(p.numel() for p in model.parameters()) == 3_274_634
    biases = [m.bias for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert all(torch.all(b == 0.1) for b in biases)
    weights = [m.weight.detach() for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert all(float(w.abs().max()) <= 0.2 for w in weights)
    assert 0.07 < float(weights[2].std()) < 0.1  # truncated normal with std 0.1 (before cut)
    small = MadryCNN(width=0.5, init="default")
    assert small.features[0].out_channels == 16 and small.classifier[1].out_features == 512
    with pytest.raises(ValueError, match="init"):
        MadryCNN(init="xavier")


# --------------------------------------------------------------------------- claims


def _madry_results(**overrides: float) -> Results:
    keys = {
        "a_natural": 98.0,
        "a_fgsm": 95.0,
        "a_pgd40x1": 92.0,
        "a_pgd100x1": 91.0,
        "a_pgd40x20": 90.5,
        "a_pgd100x20": 89.0,
        "a_cw40": 93.0,
        "a_cwplus40": 93.0,
        "aprime_fgsm": 96.0,
        "aprime_pgd40x1": 95.0,
        "aprime_pgd100x20": 94.0,
        "aprime_cw40": 96.0,
        "aprime_cwplus40": 96.0,
    }
    rows = {f"t1_{k}": v for k, v in keys.items()}
    rows |= {"s4_natural_clean": 99.0, "s4_natural_fgsm": 8.0}
    metrics = {"mnist_natural_pgd": 0.5}
    metrics |= {f"fashion_mnist_{k}": v - 15 for k, v in keys.items()}
    metrics |= {
        "fashion_mnist_natural_clean": 90.0,
        "fashion_mnist_natural_fgsm": 8.0,
        "fashion_mnist_natural_pgd": 2.0,
    }
    rows = {k: overrides.get(k, v) for k, v in rows.items()}
    metrics = {k: overrides.get(k, v) for k, v in metrics.items()}
    return Results(rows, metrics)


def test_madry_claims() -> None:
    claims = load_claims(repro_path("madry_pgd"))
    assert all(c["holds"] is True for c in evaluate(claims, _madry_results()))
    broken = _madry_results(fashion_mnist_aprime_cw40=20.0, t1_a_pgd100x20=80.0)
    verdicts = {c["id"]: c for c in evaluate(claims, broken)}
    assert verdicts["pgd_training_resists_every_attack"]["holds"] is False
    assert "A' cw40" in verdicts["pgd_training_resists_every_attack"]["detail"]
    assert verdicts["first_order_plateau"]["holds"] is False
    assert verdicts["natural_training_collapses"]["holds"] is True
    collapsed = evaluate(claims, _madry_results(fashion_mnist_natural_fgsm=30.0))
    assert {c["id"]: c["holds"] for c in collapsed}["natural_training_collapses"] is False
    # The paper's number is FGSM's (6.4%): the claim reads FGSM, not PGD.
    fgsm_high = evaluate(claims, _madry_results(s4_natural_fgsm=12.0, mnist_natural_pgd=0.0))
    assert {c["id"]: c["holds"] for c in fgsm_high}["natural_training_collapses"] is False
    pgd_high = evaluate(claims, _madry_results(fashion_mnist_natural_pgd=30.0))
    assert {c["id"]: c["holds"] for c in pgd_high}["natural_training_collapses"] is True
    assert all(c["holds"] is None for c in evaluate(claims, Results({})))


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_smoke_reproduction_through_the_runner(project: Path, tmp_path: Path) -> None:
    """The notebook runs under papermill at smoke scale and the run is stored (SQLite)."""
    from repro.data import available
    from repro.runner import run_reproduction

    result = run_reproduction("madry_pgd", scale="smoke", device="cpu", out=tmp_path / "runs")
    summary = result.summary
    assert summary["status"] == "succeeded", summary["error"]
    assert result.stored
    rows = {r["id"]: r for r in summary["rows"]}
    metrics = {m["name"]: m["value"] for m in summary["metrics"]}
    for key in ("a_natural", "a_pgd40x1", "a_pgd100x20", "aprime_pgd40x1", "natural_pgd"):
        assert 0.0 <= metrics[f"fashion_mnist_{key}"] <= 100.0
    assert {r["verdict"] for r in summary["rows"]} <= {"not_compared", "not_run"}
    # Network A through the shared battery: never above clean, the worst case below every attack.
    battery = {k.split(".")[2]: v for k, v in metrics.items()
               if k.startswith("robustness.fashion_mnist_pgd_at.") and k.count(".") == 2}  # fmt: skip
    assert {"clean", "fgsm", "pgd20", "pgd100", "cw_pgd", "apgd_ce_t", "worst", "paper"} <= set(
        battery
    )
    attacks = [v for k, v in battery.items() if k not in ("eps", "gap", "paper")]
    assert battery["worst"] <= min(attacks) and max(attacks) <= battery["clean"]
    assert metrics["cost.fashion_mnist_pgd_at.epoch_seconds"] > 0  # the Robustness page's cost
    assert rows["t2_a_pgd20"]["reason"] == "CIFAR-10 is not available offline"
    assert rows["t1_b_fgsm"]["verdict"] == "not_run"
    if available("mnist-test-split") and not available("mnist"):
        assert rows["t1_a_pgd100x20"]["reason"].startswith("measured on mnist-test-split")
    claims = [c.id for c in load_claims(repro_path("madry_pgd"))]
    assert [c["id"] for c in summary["claims"]] == claims
    assert all(c["holds"] is not None for c in summary["claims"]), summary["claims"]
    assert (result.run_dir / "figures" / "table1_grid.png").stat().st_size > 0
