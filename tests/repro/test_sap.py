"""Stochastic Activation Pruning (repro/sap): the mask against the paper's formula and its
expectation, the gradient the operator passes back, SAP inserted after every ReLU, the Monte-Carlo
FGSM against a hand computation, reproducibility from a seed, the attack invariants, the network
and the training recipe, the claims, and the smoke reproduction end to end (twice, same seed).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from repro.claims import Results, evaluate, load_claims
from repro.config import repro_path
from repro.expected import read_expected
from repro.fgsm import fgsm
from repro.sap import (
    Draws,
    StochasticActivationPruning,
    center_crop,
    fgsm_mc_grid,
    iterative_attack,
    mc_correct,
    mc_probabilities,
    preact_resnet,
    random_crop_mirror,
    sap_layers,
    sap_mask,
    train_piecewise,
    with_sap,
)
from repro.train import predict

from .conftest import smoke_run

SLUG = "sap"
SAMPLERS = ["bernoulli", "multinomial"]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 3)).eval()


# --------------------------------------------------------------------------- the mask


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_mask_is_the_papers_formula_and_keeps_the_expectation(sampler: str) -> None:
    """h = (3, 1, 0, 0), SAP-50 (r = 2 draws): p = (3/4, 1/4, 0, 0), unit j survives with
    1 - (1 - p_j)^2 = (15/16, 7/16, 0, 0) and is scaled by the inverse; E[M(h)] = h."""
    h = torch.tensor([[3.0, 1.0, 0.0, 0.0]]).repeat(40000, 1)
    mask = sap_mask(h, 0.5, sampler=sampler, generator=_gen())
    keep = torch.tensor([15 / 16, 7 / 16])
    for j in range(2):
        kept = mask[:, j][mask[:, j] > 0]
        assert torch.allclose(kept, torch.full_like(kept, float(1 / keep[j])))
        assert abs(float((mask[:, j] > 0).float().mean()) - keep[j]) < 0.01
    assert bool((mask[:, 2:] == 0).all())
    mean = (h * mask).mean(dim=0)
    assert torch.allclose(mean, h[0], atol=0.03)
    if sampler == "multinomial":  # two draws reach at most two units
        assert bool(((mask > 0).sum(dim=1) <= 2).all())


def test_one_draw_keeps_exactly_one_unit_scaled_by_its_inverse_probability() -> None:
    h = torch.tensor([[2.0, 1.0, 1.0, 0.0]]).repeat(20000, 1)  # a = 4, frac 1/4 -> r = 1
    mask = sap_mask(h, 0.25, sampler="multinomial", generator=_gen())
    assert bool(((mask > 0).sum(dim=1) == 1).all())
    kept = (mask > 0).float().mean(dim=0)
    assert torch.allclose(kept, torch.tensor([0.5, 0.25, 0.25, 0.0]), atol=0.015)
    assert torch.allclose((h * mask).max(dim=1).values, torch.full((20000,), 4.0))


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_a_map_of_zeros_gets_a_zero_mask_and_shapes_are_kept(sampler: str) -> None:
    h = torch.zeros(3, 2, 4, 4)
    h[1, 0, 1, 1] = 5.0  # one map with a single unit: p = 1, always kept, scale 1
    mask = sap_mask(h, 1.0, sampler=sampler, generator=_gen())
    assert mask.shape == h.shape and torch.isfinite(mask).all()
    assert float(mask[0].abs().sum()) == 0.0 and float(mask[2].abs().sum()) == 0.0
    assert float(mask[1, 0, 1, 1]) == 1.0 and float(mask[1].sum()) == 1.0
    with pytest.raises(ValueError, match="sampler"):
        sap_mask(h, 1.0, sampler="poisson")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="frac"):
        sap_mask(h, 0.0)


def test_the_gradient_is_the_incoming_gradient_times_the_mask() -> None:
    """The operator's backward: d out / d h = mask (no gradient through p)."""
    h = torch.relu(torch.randn(4, 3, 5, 5, generator=_gen(1))).requires_grad_(True)
    layer = StochasticActivationPruning(1.0, generator=_gen(7))
    out = layer(h)
    weights = torch.randn(out.shape, generator=_gen(2))
    (grad,) = torch.autograd.grad((out * weights).sum(), h)
    mask = sap_mask(h, 1.0, generator=_gen(7))
    assert torch.equal(out.detach(), h.detach() * mask)
    assert torch.allclose(grad, weights * mask)


# --------------------------------------------------------------------------- SAP in a network


def test_with_sap_prunes_after_every_relu_and_leaves_the_model_alone() -> None:
    model = preact_resnet(1, 10, filters=(4, 4, 8, 8), units=1, stem_stride=2).eval()
    relus = sum(isinstance(m, nn.ReLU) for m in model.modules())
    assert relus == 7  # two per unit, three units, and the final one
    pruned = with_sap(model, 0.5, generator=_gen())
    assert len(sap_layers(pruned)) == relus and not sap_layers(model)
    assert all(layer.frac == 0.5 for layer in sap_layers(pruned))
    for (name, a), (_, b) in zip(
        model.state_dict().items(), pruned.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert sum(isinstance(m, nn.ReLU) for m in preact_resnet().modules()) == 19  # ResNet-20
    with pytest.raises(ValueError, match="ReLU"):
        with_sap(nn.Linear(3, 2))


def test_sap_is_unbiased_through_a_linear_layer() -> None:
    """Linear after SAP: the mean over draws of the logits is the dense network's logits."""
    model = _mlp()
    pruned = with_sap(model, 1.0, generator=_gen())
    x = torch.rand(2, 1, 4, 4, generator=_gen(3))
    with torch.no_grad():
        mean = torch.stack([pruned(x) for _ in range(4000)]).mean(dim=0)
        assert torch.allclose(mean, model(x), atol=0.03)
        assert not torch.equal(pruned(x), pruned(x))  # a fresh draw at every pass


def test_mc_prediction_of_a_deterministic_model_is_its_prediction() -> None:
    model = _mlp()
    x = torch.rand(50, 1, 4, 4, generator=_gen(4))
    y = predict(model, x)
    assert bool(mc_correct(model, x, y).all())
    probs = mc_probabilities(model, x, samples=3, batch_size=7)
    assert torch.allclose(probs, model(x).softmax(dim=1).detach(), atol=1e-6)


def test_the_same_seed_gives_the_same_numbers() -> None:
    model = _mlp()
    x = torch.rand(30, 1, 4, 4, generator=_gen(5))
    y = predict(model, x)

    def run(seed: int):
        pruned = with_sap(model, 0.3, generator=_gen(seed))
        probs = mc_probabilities(pruned, x, samples=5)
        advs = fgsm_mc_grid(pruned, x, y, eps=[0.1, 0.2], samples=3)
        it = iterative_attack(pruned, x, y, eps=0.1, step=0.05, samples=2)
        return probs, advs, it

    a, b, c = run(1), run(1), run(2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[2], b[2])
    assert all(torch.equal(u, v) for u, v in zip(a[1], b[1], strict=True))
    assert not torch.equal(a[0], c[0])


# --------------------------------------------------------------------------- the attacks


def test_fgsm_grid_is_fgsm_on_a_deterministic_model() -> None:
    model = _mlp()
    x = torch.rand(20, 1, 4, 4, generator=_gen(6))
    y = torch.randint(0, 3, (20,), generator=_gen(6))
    eps = [0.0, 0.05, 0.3]
    for e, adv in zip(eps, fgsm_mc_grid(model, x, y, eps=eps), strict=True):
        assert torch.allclose(adv, fgsm(model, x, y, eps=e), atol=1e-7)


def test_fgsm_grid_follows_the_mean_gradient_of_the_draws() -> None:
    """By hand: replay the draws, average the per-draw input gradients, take the sign."""
    model = _mlp()
    x = torch.rand(10, 1, 4, 4, generator=_gen(8))
    y = torch.randint(0, 3, (10,), generator=_gen(8))
    (adv,) = fgsm_mc_grid(with_sap(model, 0.5, generator=_gen(9)), x, y, eps=[0.1], samples=4)
    replay = with_sap(model, 0.5, generator=_gen(9))
    grads = []
    for _ in range(4):
        leaf = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(replay(leaf), y, reduction="sum"), leaf)
        grads.append(g)
    expected = (x + 0.1 * torch.stack(grads).mean(dim=0).sign()).clamp(0, 1)
    assert torch.allclose(adv, expected, atol=1e-7)
    # Draws stacks the passes draw-major
    stacked = Draws(with_sap(model, 0.5, generator=_gen(9)), 4)(x)
    assert stacked.shape == (40, 3)


@pytest.mark.parametrize("kind", ["fgsm_mc", "iterative"])
def test_attack_invariants(kind: str, small_fashion_model) -> None:
    """In the ball and in [0, 1], detached, the model left as it was, and on the dense model
    accuracy under attack never above clean accuracy."""
    dense, data = small_fashion_model("cnn")
    x, y = data.x[1000:1100], data.y[1000:1100]
    pruned = with_sap(dense, 1.0, generator=_gen())
    pruned.train()
    flags = [p.requires_grad for p in pruned.parameters()]
    for model, samples in ((dense, 1), (pruned, 3)):
        if kind == "fgsm_mc":
            adv = fgsm_mc_grid(model, x, y, eps=[0.1], samples=samples)[0]
        else:
            adv = iterative_attack(model, x, y, eps=0.1, step=0.04, samples=samples)
        assert adv.shape == x.shape and adv.dtype == x.dtype and not adv.requires_grad
        assert float((adv - x).abs().max()) <= 0.1 + 1e-6
        assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
    assert pruned.training and [p.requires_grad for p in pruned.parameters()] == flags
    clean = float((predict(dense, x) == y).float().mean())
    assert float((predict(dense, adv) == y).float().mean()) <= clean
    assert torch.equal(iterative_attack(dense, x, y, eps=0.0, step=0.01), x)


def test_the_iterative_attack_takes_ceil_lambda_over_k_steps(monkeypatch) -> None:
    import repro.sap

    seen = {}

    def fake(model, x, y, **kwargs):
        seen.update(kwargs)
        return x

    monkeypatch.setattr(repro.sap, "eot_pgd_linf", fake)
    iterative_attack(_mlp(), torch.rand(2, 1, 4, 4), torch.tensor([0, 1]), eps=4 / 255,
                     step=1 / 255, samples=10)  # fmt: skip
    assert seen["steps"] == 4 and seen["samples"] == 10 and seen["random_start"] is False
    iterative_attack(_mlp(), torch.rand(2, 1, 4, 4), torch.tensor([0, 1]), eps=0.25, step=0.1)
    assert seen["steps"] == 3


# --------------------------------------------------------------------------- network, data, training


def test_resnet_shapes_and_crops() -> None:
    model = preact_resnet()  # ResNet-20 of the notebook, CIFAR-10 28 x 28 crops
    assert model(torch.rand(2, 3, 28, 28)).shape == (2, 10)
    assert 260_000 < sum(p.numel() for p in model.parameters()) < 290_000
    assert not model.bn_data.weight.requires_grad
    small = preact_resnet(1, 10, units=1, stem_stride=2)
    assert small(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    x = torch.rand(5, 3, 32, 32, generator=_gen(1))
    assert torch.equal(center_crop(x, 28), x[..., 2:30, 2:30])
    a = random_crop_mirror(x, _gen(2))
    assert a.shape == (5, 3, 28, 28) and torch.equal(a, random_crop_mirror(x, _gen(2)))
    padded = F.pad(x, (4, 4, 4, 4), value=127 / 255)
    for i in range(5):  # every crop is a (possibly mirrored) window of the padded image
        windows = padded[i].unfold(1, 28, 1).unfold(2, 28, 1)  # (3, 13, 13, 28, 28)
        candidates = windows.permute(1, 2, 0, 3, 4).reshape(-1, 3, 28, 28)
        same = (candidates == a[i]).flatten(1).all(1)
        mirrored = (candidates.flip(-1) == a[i]).flatten(1).all(1)
        found = same | mirrored
        assert bool(found.any())


def test_piecewise_schedule_sets_the_rate_of_each_piece() -> None:
    """A second piece at rate 0 (momentum and weight decay scale with the rate) changes nothing."""
    x = torch.rand(64, 1, 4, 4, generator=_gen(1))
    y = torch.randint(0, 3, (64,), generator=_gen(1))

    def fit(schedule):
        model = _mlp().train()
        losses = train_piecewise(model, x, y, schedule=schedule, batch_size=16,
                                 generator=_gen(3))  # fmt: skip
        return model, losses

    one, l1 = fit([(0.1, 1)])
    two, l2 = fit([(0.1, 1), (0.0, 2)])
    assert len(l1) == 1 and len(l2) == 3
    for a, b in zip(one.parameters(), two.parameters(), strict=True):
        assert torch.equal(a, b)
    moved, _ = fit([(0.1, 1), (0.1, 1)])
    assert not all(
        torch.equal(a, b) for a, b in zip(one.parameters(), moved.parameters(), strict=True)
    )


def test_cifar_recipe_trains_on_fresh_crops_every_epoch() -> None:
    """The CIFAR-10 path: 32 x 32 images, a new random 28 x 28 crop per epoch, the network on 28 x 28."""
    x = torch.rand(32, 3, 32, 32, generator=_gen(1))
    y = torch.randint(0, 10, (32,), generator=_gen(1))
    crops, seen = _gen(2), []

    def augment(images):
        out = random_crop_mirror(images, crops)
        seen.append(out)
        return out

    model = preact_resnet(3, 10, filters=(4, 4, 8, 8), units=1)
    losses = train_piecewise(model, x, y, schedule=[(0.1, 2), (0.01, 1)], batch_size=16,
                             augment=augment, generator=_gen(3))  # fmt: skip
    assert len(losses) == 3 and len(seen) == 3 and not torch.equal(seen[0], seen[1])
    assert model.eval()(center_crop(x, 28)).shape == (32, 10)


# --------------------------------------------------------------------------- claims


def _results(**overrides: float) -> Results:
    m = {"fmnist_dense_clean": 90.0, "fmnist_sap100_clean": 86.0, "fmnist_sap50_clean": 84.0,
         "fmnist_sap30_clean": 80.0}  # fmt: skip
    for lam, dense, sap in [(1, 85, 84), (2, 80, 82), (4, 65, 75), (8, 35, 50), (16, 7, 9)]:
        m[f"fmnist_dense_fgsm_lam{lam}"] = dense
        m[f"fmnist_sap100_fgsm_lam{lam}"] = sap
    for lam, dense, own, transfer in [(2, 80, 84, 78), (8, 22, 60, 40)]:
        m[f"fmnist_dense_iter_lam{lam}"] = dense
        m[f"fmnist_sap100_iter_self_lam{lam}"] = own
        m[f"fmnist_sap100_iter_from_dense_lam{lam}"] = transfer
    for lam, dense, eot in [(4, 58, 59), (8, 15, 12)]:
        m[f"fmnist_dense_pgd_lam{lam}"] = dense
        m[f"fmnist_sap100_eot_pgd_lam{lam}"] = eot
    return Results({}, {k: overrides.get(k, v) for k, v in m.items()})


def test_claims_hold_fail_and_are_not_evaluated_without_results() -> None:
    claims = load_claims(repro_path(SLUG))
    verdicts = evaluate(claims, _results())
    assert all(c["holds"] is True for c in verdicts), verdicts
    bad = _results(
        fmnist_sap100_clean=80.0,  # costs 10 points
        fmnist_sap100_fgsm_lam8=38.0,  # largest gain +3
        fmnist_sap100_fgsm_lam4=67.0,
        fmnist_sap30_clean=88.0,  # SAP-30 above SAP-50
        fmnist_sap100_iter_self_lam8=25.0,  # only +3 over dense, and below the transfer
        fmnist_sap100_eot_pgd_lam8=30.0,  # keeps +15 points under EOT-PGD
    )
    holds = {c["id"]: c["holds"] for c in evaluate(claims, bad)}
    assert holds == {
        "sap_keeps_clean_accuracy": False,
        "sap_raises_fgsm_accuracy": False,
        "fewer_draws_prune_more": False,
        "sap_resists_iterative_attack_through_itself": False,
        "dense_perturbations_hurt_sap_more": False,
        "ours_eot_pgd_removes_the_gain": False,
    }
    # The paper's CIFAR-10 rows are read as rows (the paper's ids), the rest as metrics.
    rows = {"cifar10_dense_clean": 89.8}
    cifar = Results(rows, {"cifar10_sap100_clean": 83.3})
    detail = {c["id"]: c for c in evaluate(claims, cifar)}["sap_keeps_clean_accuracy"]
    assert detail["holds"] is True and "cifar10" in detail["detail"]
    assert all(c["holds"] is None for c in evaluate(claims, Results({})))


def test_expected_rows_are_the_papers_and_none_is_checked_against_a_guess() -> None:
    rows = {r.id: r for r in read_expected(repro_path(SLUG) / "expected.csv")}
    assert rows["cifar10_dense_clean"].paper == 89.8
    assert rows["cifar10_sap100_fgsm_gain_lam2"].paper == 16.3
    assert rows["cifar10_sap100_iter_self_lam4"].paper == 76.7
    assert "third party" in rows["cifar10_sap100_eot_pgd_lam8"].source
    assert all(r.not_run_reason for r in rows.values())  # nothing of the paper runs at small
    assert not any(r.unverified for r in rows.values())
    assert math.isclose(rows["rl_bowling_lam1_reward_change"].paper, 3425.9)


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_smoke_reproduction_through_the_runner(project: Path, tmp_path: Path) -> None:
    """The notebook runs under papermill at smoke scale, records its metrics, every claim is
    evaluated, the run is stored; a second run with the same seed gives the same numbers."""
    result, summary = smoke_run(SLUG, tmp_path / "runs")
    assert {r["verdict"] for r in summary["rows"]} == {"not_run"}  # CIFAR-10, ADV, Atari
    metrics = {m["name"]: m["value"] for m in summary["metrics"]}
    for name in ("fmnist_dense_clean", "fmnist_sap100_fgsm_lam8", "fmnist_sap100_eot_pgd_lam8",
                 "fmnist_sap100_iter_self_lam8", "fmnist_sap30_fgsm_lam64"):  # fmt: skip
        assert 0.0 <= metrics[name] <= 100.0
        assert metrics[f"{name}.ci95_low"] <= metrics[name] <= metrics[f"{name}.ci95_high"]
    # DENSE and SAP-100 through the shared battery (smoke: clean, FGSM, PGD-20) with Section
    # 4.5's iterative attack as the paper's: percentages, and the worst case never above clean.
    for model in ("fmnist_dense", "fmnist_sap100"):
        battery = {k.split(".")[2]: v for k, v in metrics.items()
                   if k.startswith(f"robustness.{model}.") and k.count(".") == 2}  # fmt: skip
        assert {"clean", "fgsm", "pgd20", "worst", "paper", "eps", "gap"} <= set(battery), model
        assert math.isclose(battery["eps"], 8 / 255)
        for attack in ("clean", "fgsm", "pgd20", "worst", "paper"):
            assert 0.0 <= battery[attack] <= 100.0, (model, attack)
        assert battery["worst"] <= min(battery["fgsm"], battery["pgd20"], battery["clean"])
        assert metrics[f"cost.{model}.epoch_seconds"] > 0.0
    assert (result.run_dir / summary["figures"][0]["path"]).stat().st_size > 0
    assert all(c["holds"] is not None for c in summary["claims"]), summary["claims"]

    from repro.runner import run_reproduction

    again = run_reproduction(SLUG, scale="smoke", device="cpu", out=tmp_path / "again")
    assert again.summary["status"] == "succeeded", again.summary["error"]
    second = {m["name"]: m["value"] for m in again.summary["metrics"]}
    timed = ("seconds", "wall_seconds")
    assert {k: v for k, v in metrics.items() if not k.endswith(timed)} == {
        k: v for k, v in second.items() if not k.endswith(timed)
    }
