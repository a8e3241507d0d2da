"""GCE (Chen et al., ICCV 2019), `repro/gce`: the loss against a direct computation of the official
formula and its known properties (flat complement is its minimum, gradient signs), LeNet-5's
shape, the attacks on the GCE loss staying in the threat model, GCE + AT's objective, the claims
on hand-made results, and the smoke reproduction end to end through the runner."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from repro.claims import Results, evaluate, load_claims
from repro.config import repro_path
from repro.gce import (
    ALPHA,
    LeNet5,
    complement_entropy,
    gce_at_objective,
    gce_attack_loss,
    gce_loss,
    gce_objective,
    gce_per_example,
    paper_attacks,
    paper_optimizer,
)
from repro.madry_pgd import pgd_linf
from repro.stats import pack_bits
from repro.train import accuracy, train_classifier

from .conftest import smoke_run

SLUG = "gce"


def _direct(logits: list[float], g: int, alpha: float = ALPHA) -> float:
    """GCE.py's formula for one example, written out with Python floats."""
    exps = [math.exp(z) for z in logits]
    probs = [e / sum(exps) for e in exps]
    yg = probs[g]
    total = 0.0
    for j, p in enumerate(probs):
        if j == g:
            continue
        pj = p / ((1 - yg) + 1e-7)
        total += pj * math.log(pj + 1e-10)
    return (yg + 1e-7) ** alpha * total / math.log(len(logits))


# --------------------------------------------------------------------------- the loss


def test_gce_matches_the_official_formula_computed_directly() -> None:
    g = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(6, 10, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 3, 9, 4, 4, 1])
    ours = gce_per_example(logits, y)
    for i in range(6):
        assert ours[i].item() == pytest.approx(_direct(logits[i].tolist(), int(y[i])), rel=1e-9)
    assert gce_loss(logits, y).item() == pytest.approx(ours.mean().item(), rel=1e-12)
    # three classes, by hand: softmax(0, 0, 0) = 1/3 each; the complement is (1/2, 1/2)
    three = gce_per_example(torch.zeros(1, 3, dtype=torch.float64), torch.tensor([0]))
    assert three.item() == pytest.approx(-((1 / 3) ** ALPHA) * math.log(2) / math.log(3), rel=1e-6)


def test_gce_lies_between_its_bounds_and_its_minimum_is_a_flat_complement() -> None:
    k, g_true = 10, 2
    y = torch.tensor([g_true])
    base = torch.zeros(1, k, dtype=torch.float64)
    base[0, g_true] = 2.0  # y_g fixed by the logits' gap, the complement flat
    p_true = F.softmax(base, dim=1)[0, g_true].item()
    flat = gce_per_example(base, y).item()
    bound = -((p_true + 1e-7) ** ALPHA) * math.log(k - 1) / math.log(k)
    assert flat == pytest.approx(bound, rel=1e-5)
    gen = torch.Generator().manual_seed(1)
    for _ in range(20):
        # wrong classes' logits perturbed: for its y_g, GCE is above the flat complement's value
        noise = torch.randn(1, k, generator=gen, dtype=torch.float64)
        noise[0, g_true] = 0.0
        logits = base + noise
        value = gce_per_example(logits, y).item()
        p = F.softmax(logits, dim=1)[0, g_true].item()
        assert value >= -((p + 1e-7) ** ALPHA) * math.log(k - 1) / math.log(k) - 1e-9
        assert value <= 0.0
    # a complement concentrated on one wrong class: GCE close to 0 (the maximum)
    peaked = base.clone()
    peaked[0, 5] = 30.0
    assert gce_per_example(peaked, y).item() > -1e-6


def test_gce_gradient_signs() -> None:
    """Raising the true logit lowers the loss; raising the most likely wrong logit raises it."""
    gen = torch.Generator().manual_seed(2)
    for _ in range(10):
        logits = torch.randn(1, 10, generator=gen, dtype=torch.float64).requires_grad_(True)
        y = torch.tensor([int(torch.randint(0, 10, (1,), generator=gen))])
        (grad,) = torch.autograd.grad(gce_per_example(logits, y).sum(), logits)
        assert grad[0, y[0]] < 0
        others = logits.detach().clone()
        others[0, y[0]] = -math.inf
        assert grad[0, others.argmax()] > 0
        assert grad.sum().abs() < 1e-9  # softmax: invariant to adding a constant to every logit


def test_gce_attack_loss_is_per_example_and_pgd_on_it_stays_in_the_ball() -> None:
    torch.manual_seed(0)
    model = LeNet5().eval()
    x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    y = torch.arange(8) % 10
    loss = gce_attack_loss()
    assert loss(model(x), y).shape == (8,)
    eps = 0.2
    for name, attack in paper_attacks(
        eps, loss, generator=torch.Generator().manual_seed(4)
    ).items():
        x_adv = attack(model, x, y)
        assert x_adv.shape == x.shape, name
        assert (x_adv - x).abs().max() <= eps + 1e-6, name
        assert x_adv.min() >= 0 and x_adv.max() <= 1, name
    # FGSM on the GCE loss is one signed gradient step of eps
    x_in = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss(model(x_in), y).sum(), x_in)
    expected = (x + eps * grad.sign()).clamp(0, 1)
    fgsm = paper_attacks(eps, loss)["fgsm"](model, x, y)
    assert torch.allclose(fgsm, expected, atol=1e-6)
    # the same seed gives the same PGD
    a = paper_attacks(eps, loss, generator=torch.Generator().manual_seed(5))["pgd"](model, x, y)
    b = paper_attacks(eps, loss, generator=torch.Generator().manual_seed(5))["pgd"](model, x, y)
    assert torch.equal(a, b)


def test_complement_entropy_is_one_for_a_flat_complement_and_small_for_a_peaked_one() -> None:
    y = torch.tensor([0, 0])
    logits = torch.zeros(2, 10)
    logits[:, 0] = 5.0
    logits[1, 7] = 12.0
    value = complement_entropy(logits, y)
    assert value[0].item() == pytest.approx(1.0, abs=1e-6)
    assert value[1].item() < 0.01


# --------------------------------------------------------------------------- model, training


def test_lenet5_has_the_official_layers() -> None:
    model = LeNet5()
    assert sum(p.numel() for p in model.parameters()) == 61_706
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    opt = paper_optimizer(model)
    assert opt.defaults["betas"] == (0.9, 0.99) and opt.defaults["lr"] == 1e-3


def test_gce_alone_trains_a_classifier() -> None:
    """GCE with no CE term still raises the true class: a linear model learns separable data."""
    gen = torch.Generator().manual_seed(6)
    centers = 3 * torch.randn(4, 1, 4, 4, generator=gen)
    y = torch.randint(0, 4, (256,), generator=gen)
    x = (centers[y] + 0.5 * torch.randn(256, 1, 4, 4, generator=gen)).sigmoid()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 4))
    before = accuracy(model, x, y)
    losses = train_classifier(model, x, y, epochs=20, batch_size=32, lr=0.05,
                              objective=gce_objective(), progress=False,
                              generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert losses[-1] < losses[0] < 0
    assert accuracy(model, x, y) > max(0.9, before)


def test_gce_at_objective_trains_on_pgd_examples_and_leaves_the_model_in_train_mode() -> None:
    torch.manual_seed(0)
    model = LeNet5().train()
    x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(7))
    y = torch.arange(8) % 10
    objective = gce_at_objective(eps=0.1, steps=2, step_size=0.05,
                                 generator=torch.Generator().manual_seed(8))  # fmt: skip
    loss = objective(model, x, y)
    assert loss.dim() == 0 and loss.requires_grad and loss.item() <= 0
    assert model.training and all(p.requires_grad for p in model.parameters())
    # it is GCE on the CE-PGD examples of the same generator state
    x_adv = pgd_linf(model, x, y, eps=0.1, step_size=0.05, steps=2,
                     generator=torch.Generator().manual_seed(8))  # fmt: skip
    assert loss.item() == pytest.approx(gce_loss(model(x_adv), y).item(), rel=1e-5)


# --------------------------------------------------------------------------- claims


def _vec(value: float, n: int = 100) -> str:
    k = round(value * n / 100)
    return pack_bits([1] * k + [0] * (n - k))


def _results(gce_mnist_pgd: float = 9.0, gce_worst: float = 0.0, at_gain: float = 1.0) -> Results:
    rows, metrics, vectors = {}, {}, {}

    def put(store: dict[str, float], name: str, value: float) -> None:
        store[name] = value
        vectors[name] = _vec(value)

    for attack, xe, gce in (("fgsm", 39, 60), ("bim", 3, 30), ("pgd", 2, gce_mnist_pgd),
                            ("mim", 3, 38)):  # fmt: skip
        put(rows, f"t3_mnist_{attack}_e20_xe", xe)
        put(rows, f"t3_mnist_{attack}_e20_gce", gce)
        put(metrics, f"fashion_mnist_{attack}_e10_xe", xe)
        put(metrics, f"fashion_mnist_{attack}_e10_gce", gce)
    for ds in ("mnist", "fashion_mnist"):
        put(metrics, f"{ds}_xe_clean", 98)
        put(metrics, f"{ds}_gce_clean", 98)
        put(metrics, f"robustness.{ds}_lenet_xe.worst", 0)
        put(metrics, f"robustness.{ds}_lenet_gce.worst", gce_worst)
        put(metrics, f"robustness.{ds}_lenet_gce.paper", 10)
    put(metrics, "robustness.fashion_mnist_small_cnn_pgd_at.worst", 60)
    put(metrics, "robustness.fashion_mnist_small_cnn_gce_at.worst", 60 + at_gain)
    return Results(rows, metrics, per_image=vectors)


def test_claims_on_hand_made_results() -> None:
    claims = load_claims(repro_path(SLUG))
    verdicts = {c["id"]: c["holds"] for c in evaluate(claims, _results())}
    assert verdicts == {
        "gce_beats_xe_under_papers_attacks": True,
        "gce_clean_accuracy_no_worse": True,
        "mnist_readme_numbers_within_10_points": True,
        "gce_advantage_vanishes_in_worst_case": True,
        "papers_pgd_overestimates_gce": True,
        "gce_at_beats_pgd_at": True,
    }
    verdicts = {c["id"]: c["holds"]
                for c in evaluate(claims, _results(gce_mnist_pgd=1, gce_worst=8, at_gain=-2))}  # fmt: skip
    assert verdicts["gce_beats_xe_under_papers_attacks"] is False  # PGD: GCE 1 < XE 2
    assert verdicts["mnist_readme_numbers_within_10_points"] is True  # 1 vs 9.55
    assert verdicts["gce_advantage_vanishes_in_worst_case"] is False  # 8 points survive
    assert verdicts["papers_pgd_overestimates_gce"] is False  # 10 - 8 = 2 points
    assert verdicts["gce_at_beats_pgd_at"] is False
    far = {c["id"]: c["holds"] for c in evaluate(claims, _results(gce_mnist_pgd=30))}
    assert far["mnist_readme_numbers_within_10_points"] is False  # 30 vs 9.55
    # no MNIST rows: the MNIST-only claims are not evaluated, never failed
    empty = {c["id"]: c["holds"] for c in evaluate(claims, Results({}, {}))}
    assert set(empty.values()) == {None}


# --------------------------------------------------------------------------- the runner


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_smoke_reproduction_through_the_runner(project: Path, tmp_path: Path) -> None:
    """The notebook runs under papermill at smoke scale, records its rows, and is stored."""
    _result, summary = smoke_run(SLUG, tmp_path / "runs")
    verdicts = {r["id"]: r["verdict"] for r in summary["rows"]}
    assert set(verdicts.values()) <= {"not_compared", "not_run"}
    assert verdicts["t3_mnist_pgd_e20_gce"] == "not_compared"  # mnist-test-split or smoke
    assert verdicts["t3_mnist_pgd_e10_gce"] == "not_run"  # smoke runs eps 0.2 only
    metrics = {m["name"]: m["value"] for m in summary["metrics"]}
    for model in ("mnist_lenet_xe", "mnist_lenet_gce", "fashion_mnist_lenet_gce",
                  "fashion_mnist_small_cnn_pgd_at", "fashion_mnist_small_cnn_gce_at"):  # fmt: skip
        assert 0.0 <= metrics[f"robustness.{model}.worst"] <= metrics[f"robustness.{model}.clean"]
        assert f"robustness.{model}.apgd_ce_t" in metrics  # smoke: never called AutoAttack
    assert metrics["cost.gce_at.epoch_seconds"] > 0 and metrics["cost.pgd_at.epoch_seconds"] > 0
    assert len(summary["figures"]) == 3
    crashed = [c for c in summary["claims"] if "the check raised" in (c["detail"] or "")]
    assert not crashed, crashed
