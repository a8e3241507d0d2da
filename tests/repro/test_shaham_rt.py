"""Shaham, Yamada & Negahban (2018), `repro/shaham_rt`: the linearised inner maximum against its
closed forms (norm of the step, value reached = eps x dual norm, optimality over random points of
the ball), the one-step attack on a linear model, the official net's shapes, the torch7 optimizer
against a hand computation, the intensity conversion, DeepFool's minimal perturbation of a linear
classifier, the median-difference bootstrap, the claims on hand-made results, and the smoke
reproduction end to end through the runner."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from repro.claims import Results, evaluate, load_claims
from repro.config import repro_path
from repro.fgsm import input_gradient
from repro.shaham_rt import (
    INTENSITY,
    NORMS,
    ShahamNet,
    intensity_to_pixels,
    linearized_max,
    linearized_step,
    lr_decay_schedule,
    median_difference_interval,
    minimal_perturbation,
    pad32,
    paper_optimizer,
    robust_adversary,
)
from repro.stats import pack_bits
from repro.train import train_classifier

from .conftest import smoke_run

SLUG = "shaham_rt"
DUAL = {"linf": 1.0, "l2": 2.0, "l1": float("inf")}  # the dual norm's p
PRIMAL = {"linf": float("inf"), "l2": 2.0, "l1": 1.0}


# --------------------------------------------------------------------------- the inner maximum


@pytest.mark.parametrize("norm", NORMS)
def test_linearized_step_is_on_the_sphere_and_reaches_eps_times_the_dual_norm(norm: str) -> None:
    g = torch.randn(5, 1, 6, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    eps = 0.3
    r = linearized_step(g, norm=norm, eps=eps)
    assert r.shape == g.shape
    flat, rf = g.flatten(1), r.flatten(1)
    torch.testing.assert_close(
        rf.norm(p=PRIMAL[norm], dim=1), torch.full((5,), eps, dtype=torch.float64)
    )
    torch.testing.assert_close((flat * rf).sum(1), eps * flat.norm(p=DUAL[norm], dim=1))


@pytest.mark.parametrize("norm", NORMS)
def test_linearized_step_beats_random_points_of_the_ball(norm: str) -> None:
    gen = torch.Generator().manual_seed(2)
    g = torch.randn(3, 20, generator=gen, dtype=torch.float64)
    best = (g * linearized_step(g, norm=norm, eps=1.0)).sum(1)
    for _ in range(200):
        v = torch.randn(3, 20, generator=gen, dtype=torch.float64)
        v = v / v.norm(p=PRIMAL[norm], dim=1, keepdim=True)  # on the unit sphere of the norm
        assert bool(((g * v).sum(1) <= best + 1e-12).all())


def test_l1_step_moves_one_pixel_with_the_gradient_sign_and_zero_gradient_gives_zero() -> None:
    g = torch.zeros(2, 1, 3, 3)
    g[0, 0, 1, 2] = -5.0
    g[0, 0, 0, 0] = 2.0
    r = linearized_step(g, norm="l1", eps=0.5)
    expected = torch.zeros_like(g)
    expected[0, 0, 1, 2] = -0.5
    torch.testing.assert_close(r, expected)  # the second image has g = 0: no move
    for norm in NORMS:
        assert not linearized_step(torch.zeros(1, 4), norm=norm, eps=1.0).isnan().any()
    with pytest.raises(ValueError):
        linearized_step(g, norm="l3", eps=1.0)  # type: ignore[arg-type]


def test_linearized_max_on_a_linear_model_moves_against_the_true_logit() -> None:
    """For logits Wx with two classes, the CE gradient is proportional to (W_other - W_y): the
    l_inf step is eps * sign(W_other - W_y), and the attack stays in the ball and in [0, 1]."""
    lin = nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, -2.0, 0.5, 0.0], [-1.0, 1.0, 1.5, 3.0]]))
    model = nn.Sequential(nn.Flatten(), lin)
    x = torch.full((1, 1, 2, 2), 0.5)
    y = torch.tensor([0])
    x_adv = linearized_max(model, x, y, norm="linf", eps=0.1)
    direction = (lin.weight[1] - lin.weight[0]).sign().view(1, 1, 2, 2)
    torch.testing.assert_close(x_adv, x + 0.1 * direction)
    assert F.cross_entropy(model(x_adv), y) > F.cross_entropy(model(x), y)
    edge = linearized_max(model, torch.ones(1, 1, 2, 2), y, norm="l2", eps=5.0)
    assert float(edge.min()) >= 0.0 and float(edge.max()) <= 1.0
    free = linearized_max(model, torch.ones(1, 1, 2, 2), y, norm="l2", eps=5.0, clip=None)
    torch.testing.assert_close((free - 1.0).flatten().norm(), torch.tensor(5.0))


def test_input_gradient_leaves_the_model_as_it_was() -> None:
    net = ShahamNet().train()
    x = torch.rand(4, 1, 32, 32)
    before = net.bn.running_mean.clone()
    g = input_gradient(net, x, torch.tensor([0, 1, 2, 3]))
    assert g.shape == x.shape and net.training
    torch.testing.assert_close(net.bn.running_mean, before)
    assert all(p.requires_grad for p in net.parameters())


# --------------------------------------------------------------------------- the net, the optimizer


def test_shaham_net_shapes_and_parameter_count() -> None:
    net = ShahamNet()
    assert net(pad32(torch.rand(3, 1, 28, 28))).shape == (3, 10)
    count = sum(p.numel() for p in net.parameters())
    assert count == (32 * 25 + 32) + (64 * 32 * 25 + 64) + (256 * 200 + 200) + (200 * 10 + 10)
    assert pad32(torch.rand(2, 1, 28, 28)).shape == (2, 1, 32, 32)
    x = torch.rand(2, 1, 32, 32)
    assert pad32(x) is x


def test_paper_optimizer_is_torch7_sgd_with_dampening_and_l2() -> None:
    """Two steps on w with gradient c (constant): torch7's sgd gives
    d1 = c + wd w0; w1 = w0 - lr d1; d2 = m d1 + (1 - m)(c + wd w1); w2 = w1 - lr d2."""
    w = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    c = torch.tensor([0.5, 0.25], dtype=torch.float64)
    lr, m, wd = 0.01, 0.9, 1e-3
    opt = paper_optimizer(nn.ParameterList([w]), lr=lr, momentum=m, weight_decay=wd)
    w0 = w.detach().clone()
    d1 = c + wd * w0
    w1 = w0 - lr * d1
    d2 = m * d1 + (1 - m) * (c + wd * w1)
    w2 = w1 - lr * d2
    for _ in range(2):
        opt.zero_grad()
        (w * c).sum().backward()
        opt.step()
    torch.testing.assert_close(w.detach(), w2)
    schedule = lr_decay_schedule(600)
    assert schedule(0) == 1.0
    assert schedule(120) == pytest.approx(1 / (1 + 120 * 600 * 5e-6))


def test_intensity_in_pixels_is_intensity_times_the_std() -> None:
    x = torch.tensor([0.0, 1.0, 0.0, 1.0]).view(4, 1, 1, 1)
    assert intensity_to_pixels(0.2, x) == pytest.approx(0.2 * float(x.std()))
    assert INTENSITY == {"linf": 0.2, "l2": 2.0, "l1": 2.0}


def test_robust_training_replaces_the_batch_and_learns() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 32, 32, generator=gen)
    y = (x.mean(dim=(1, 2, 3)) > 0.5).long()
    torch.manual_seed(0)
    net = ShahamNet()
    losses = train_classifier(net, x, y, epochs=3, batch_size=32, lr=0.05,
                              optimizer=paper_optimizer(net, lr=0.05),
                              adversary=robust_adversary("l2", 0.1), adv_weight=1.0,
                              generator=gen, progress=False)  # fmt: skip
    assert len(losses) == 3 and all(v == v for v in losses)


# --------------------------------------------------------------------------- minimal perturbations


def test_minimal_perturbation_of_a_linear_classifier_is_its_distance_to_the_boundary() -> None:
    """Two classes, logits (w.x + b, 0): DeepFool's l2 step lands at |w.x + b| / ||w|| (times
    1 + overshoot, plus its 1e-4 pad) in one iteration, well inside the [0, 1] box."""
    lin = nn.Linear(4, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.3, -0.4, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]))
        lin.bias.copy_(torch.tensor([0.05, 0.0]))
    model = nn.Sequential(nn.Flatten(), lin)
    x = torch.tensor([[0.6, 0.4, 0.5, 0.5]]).view(1, 1, 2, 2)
    dist = abs(0.3 * 0.6 - 0.4 * 0.4 + 0.05) / 0.5
    size = minimal_perturbation(model, x, norm="l2")
    assert float(size[0]) == pytest.approx((dist + 1e-4) * 1.02, rel=1e-4)


def test_median_difference_interval_known_answers() -> None:
    a = torch.arange(1.0, 101.0)
    ci = median_difference_interval(a + 1.0, a)
    assert ci.estimate == pytest.approx(1.0) and ci.low == pytest.approx(1.0)
    assert ci.high == pytest.approx(1.0)
    with_inf = torch.cat([a, torch.full((5,), float("inf"))])
    assert median_difference_interval(with_inf, torch.cat([a, a[:5]])).estimate > 0
    with pytest.raises(ValueError):
        median_difference_interval(a, a[:3])


# --------------------------------------------------------------------------- claims


def _results(linf_fixed: int, base_fixed: int, gain: float, low: float, clean: dict[str, int],
             worst: tuple[int, int]) -> Results:  # fmt: skip
    n = 100
    vec = lambda k: pack_bits([1] * k + [0] * (n - k))  # noqa: E731
    metrics, per_image = {}, {}
    for m, k in clean.items():
        metrics[f"fashion_mnist_{m}_clean"] = float(k)
        per_image[f"fashion_mnist_{m}_clean"] = vec(k)
    for m, k in (("linf", linf_fixed), ("baseline", base_fixed)):
        metrics[f"fashion_mnist_{m}_fixed_fgsm"] = float(k)
        per_image[f"fashion_mnist_{m}_fixed_fgsm"] = vec(k)
    name = "fashion_mnist_linf_deepfool_l2_median_gain"
    metrics.update({name: gain, f"{name}.ci95_low": low, f"{name}.ci95_high": gain + 0.1,
                    "fashion_mnist_linf_deepfool_l2_median": 1.0 + gain,
                    "fashion_mnist_baseline_deepfool_l2_median": 1.0})  # fmt: skip
    for m, k in zip(("linf", "baseline"), worst, strict=True):
        metrics[f"robustness.fashion_mnist_shaham_{m}.worst"] = float(k)
        per_image[f"robustness.fashion_mnist_shaham_{m}.worst"] = vec(k)
    return Results({}, metrics, {}, per_image)


def test_claims_on_hand_made_results() -> None:
    claims = load_claims(repro_path(SLUG))
    good = _results(60, 20, 0.3, 0.1, {"baseline": 85, "linf": 86, "l2": 84, "l1": 84}, (20, 2))
    assert {c["id"]: c["holds"] for c in evaluate(claims, good)} == {
        "robust_beats_baseline_on_fixed_fgsm": True,
        "robust_needs_larger_perturbation": True,
        "clean_accuracy_kept": True,
        "clean_accuracy_improves": True,
        "gain_survives_the_battery": True,
    }
    bad = _results(25, 20, 0.05, -0.02, {"baseline": 85, "linf": 82, "l2": 86, "l1": 80}, (4, 2))
    assert {c["id"]: c["holds"] for c in evaluate(claims, bad)} == {
        "robust_beats_baseline_on_fixed_fgsm": False,
        "robust_needs_larger_perturbation": False,
        "clean_accuracy_kept": False,
        "clean_accuracy_improves": False,
        "gain_survives_the_battery": False,
    }
    empty = {c["id"]: c["holds"] for c in evaluate(claims, Results({}, {}))}
    assert set(empty.values()) == {None}


# --------------------------------------------------------------------------- the runner


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_smoke_reproduction_through_the_runner(project: Path, tmp_path: Path) -> None:
    """The notebook runs under papermill at smoke scale, records its metrics, and is stored."""
    _result, summary = smoke_run(SLUG, tmp_path / "runs")
    verdicts = {r["id"]: r["verdict"] for r in summary["rows"]}
    assert set(verdicts.values()) <= {"not_compared", "not_run"}
    assert verdicts["paper_cifar10_linf_clean"] == "not_run"
    metrics = {m["name"]: m["value"] for m in summary["metrics"]}
    for m in ("baseline", "linf"):
        name = f"robustness.fashion_mnist_shaham_{m}"
        assert 0.0 <= metrics[f"{name}.worst"] <= metrics[f"{name}.clean"]
        assert metrics[f"cost.fashion_mnist_shaham_{m}.epoch_seconds"] > 0
    for m in ("linf", "l2", "l1"):
        assert metrics[f"fashion_mnist_{m}_train_radius"] > 0
        assert f"fashion_mnist_{m}_clean" in metrics
    assert len(summary["figures"]) == 2
    crashed = [c for c in summary["claims"] if "the check raised" in (c["detail"] or "")]
    assert not crashed, crashed
