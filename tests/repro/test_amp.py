"""AMP (Zheng, Zhang & Mao, CVPR 2021), `repro/amp`: the optimiser against hand computations on
quadratics (the perturbation's norm, the outer step, theta restored bit for bit, inner_iter 2,
the gradient clip), the two ways of driving it giving the same weights, the degenerate settings
that must be plain SGD, the regularisers' losses, the intervals, the claims on hand-made results,
and the smoke reproduction end to end through the runner."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from repro import ReproError
from repro.amp import (
    AMP,
    METHODS,
    DropoutCNN,
    Settings,
    amp_objective,
    clip_to_ball,
    label_smoothing_loss,
    mixup_loss,
    per_image_scores,
    seed_interval,
    seeds_image_interval,
    step_schedule,
    train_method,
)
from repro.baselines import SmallCNN
from repro.claims import Results, evaluate, load_claims
from repro.config import repro_path
from repro.train import train_classifier

from .conftest import smoke_run

SLUG = "amp"


# --------------------------------------------------------------------------- the optimiser


def _quadratic() -> tuple[torch.nn.Parameter, torch.nn.Parameter, torch.Tensor, torch.Tensor]:
    """Two tensors and the loss 0.5 * c1 * ||a||^2 + 0.5 * c2 * ||b - t||^2."""
    a = torch.nn.Parameter(torch.tensor([3.0, 4.0, 0.0, 1.0]))
    b = torch.nn.Parameter(torch.tensor([[1.0, -2.0], [0.5, 2.0]]))
    return a, b, torch.tensor(2.0), torch.tensor([[0.0, 1.0], [1.0, 0.0]])


def _closure(opt, a, b, c2, target, seen):
    def closure():
        opt.zero_grad(set_to_none=True)
        seen.append((a.detach().clone(), b.detach().clone()))
        loss = 0.5 * (a**2).sum() + 0.5 * c2 * ((b - target) ** 2).sum()
        loss.backward()
        return loss

    return closure


def test_one_step_on_a_quadratic_matches_the_hand_computation() -> None:
    a, b, c2, target = _quadratic()
    a0, b0 = a.detach().clone(), b.detach().clone()
    eps, inner_lr, lr = 0.5, 1.0, 0.1
    opt = AMP([a, b], lr=lr, epsilon=eps, inner_lr=inner_lr, inner_iter=1, clip_norm=None)
    seen: list = []
    loss = opt.step(_closure(opt, a, b, c2, target, seen))
    # the returned loss is the loss at theta
    assert float(loss) == pytest.approx(0.5 * 26.0 + 0.5 * 2.0 * float(((b0 - target) ** 2).sum()))
    # by hand: grad_a = a, grad_b = c2 (b - t); each Delta is inner_lr * grad, put on the ball
    ga, gb = a0, c2 * (b0 - target)
    da, db = inner_lr * ga, inner_lr * gb
    da, db = da * eps / da.norm(), db * eps / db.norm()  # both are outside the ball
    assert len(seen) == 2
    assert torch.allclose(seen[1][0] - a0, da) and torch.allclose(seen[1][1] - b0, db)
    assert float((seen[1][0] - a0).norm()) == pytest.approx(eps, rel=1e-6)
    assert float((seen[1][1] - b0).norm()) == pytest.approx(eps, rel=1e-6)
    # the outer gradient at theta + Delta, applied to theta (plain SGD)
    assert torch.allclose(a.detach(), a0 - lr * (a0 + da))
    assert torch.allclose(b.detach(), b0 - lr * c2 * (b0 + db - target))


def test_a_small_gradient_is_not_clipped_and_two_inner_steps_compound() -> None:
    a = torch.nn.Parameter(torch.tensor([0.1, -0.2]))
    b = torch.nn.Parameter(torch.tensor([2.0, 0.0]))
    a0, b0 = a.detach().clone(), b.detach().clone()
    eps, zeta, lr = 1.0, 0.5, 0.2
    opt = AMP([a, b], lr=lr, epsilon=eps, inner_lr=zeta, inner_iter=2, clip_norm=None)
    seen: list = []

    def closure():
        opt.zero_grad(set_to_none=True)
        seen.append((a.detach().clone(), b.detach().clone()))
        loss = 0.5 * (a**2).sum() + 0.5 * (b**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    # a: |grad| small, never clipped: Delta1 = z a, Delta2 = Delta1 + z (a + Delta1)
    da1 = zeta * a0
    da2 = da1 + zeta * (a0 + da1)
    # b: Delta1 = z b = (1, 0) sits on the ball; Delta2 = Delta1 + z (b + Delta1) = (2.5, 0)
    # projected back to norm 1
    db1 = zeta * b0
    db2 = db1 + zeta * (b0 + db1)
    db2 = db2 * eps / db2.norm()
    assert len(seen) == 3
    assert torch.allclose(seen[1][0], a0 + da1) and torch.allclose(seen[2][0], a0 + da2)
    assert torch.allclose(seen[2][1], b0 + db2)
    assert float((seen[2][1] - b0).norm()) == pytest.approx(eps, rel=1e-6)
    assert torch.allclose(a.detach(), a0 - lr * (a0 + da2))
    assert torch.allclose(b.detach(), b0 - lr * (b0 + db2))


def test_theta_is_restored_bit_for_bit() -> None:
    g = torch.Generator().manual_seed(0)
    w = torch.nn.Parameter(torch.randn(13, 7, generator=g) * 1.37)
    x = torch.randn(5, 13, generator=g)
    w0 = w.detach().clone()
    opt = AMP([w], lr=0.0, epsilon=0.3, inner_lr=0.77, inner_iter=3, clip_norm=None)

    def closure():
        opt.zero_grad(set_to_none=True)
        loss = torch.tanh(x @ w).pow(3).sum()
        loss.backward()
        return loss

    opt.perturb(closure)
    assert not torch.equal(w.detach(), w0)
    assert float((w.detach() - w0).norm()) <= 0.3 * (1 + 1e-6)
    opt.restore()
    assert torch.equal(w.detach(), w0)
    opt.step(closure)  # lr 0: the whole step leaves theta exactly as it was
    assert torch.equal(w.detach(), w0)


def test_clip_to_ball() -> None:
    v = torch.tensor([3.0, 4.0])
    assert torch.allclose(clip_to_ball(v, 1.0), torch.tensor([0.6, 0.8]))
    assert torch.equal(clip_to_ball(v, 10.0), v)
    assert torch.equal(clip_to_ball(torch.zeros(3), 0.5), torch.zeros(3))
    assert float(clip_to_ball(v, 0.0).norm()) == 0.0


def test_every_gradient_is_clipped_to_the_total_norm() -> None:
    w = torch.nn.Parameter(torch.zeros(4))
    opt = AMP([w], lr=1.0, epsilon=100.0, inner_lr=1.0, inner_iter=1, clip_norm=50.0)
    seen: list = []

    def closure():
        opt.zero_grad(set_to_none=True)
        seen.append(w.detach().clone())
        loss = 1000.0 * w.sum()  # gradient 1000 per entry, norm 2000
        loss.backward()
        return loss

    opt.step(closure)
    assert float(seen[1].norm()) == pytest.approx(50.0, rel=1e-5)  # the inner gradient, clipped
    assert float(w.detach().norm()) == pytest.approx(50.0, rel=1e-5)  # the outer one too


def test_step_without_closure_needs_a_pending_perturbation() -> None:
    w = torch.nn.Parameter(torch.ones(2))
    opt = AMP([w], lr=0.1, epsilon=0.1)
    with pytest.raises(ReproError, match="perturbed first"):
        opt.step()
    with pytest.raises(ReproError):
        AMP([w], lr=0.1, epsilon=-1.0)
    opt.perturb(lambda: (w**2).sum())  # a closure that only needs .grad set
    with pytest.raises(ReproError, match="pending"):
        opt.perturb(lambda: (w**2).sum())


def _sgd_reference(model, x, y, *, lr, steps, clip):
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=1e-4)
    for i in range(steps):
        xb, yb = x[i * 8 : (i + 1) * 8], y[i * 8 : (i + 1) * 8]
        opt.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()


@pytest.mark.parametrize(("epsilon", "inner_iter"), [(0.5, 0), (0.0, 1), (0.0, 2)])
def test_no_perturbation_is_sgd_with_the_clip(epsilon: float, inner_iter: int) -> None:
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(32, 1, 28, 28, generator=g), torch.randint(0, 10, (32,), generator=g)
    torch.manual_seed(0)
    ref = SmallCNN(8)
    model = SmallCNN(8)
    model.load_state_dict(ref.state_dict())
    _sgd_reference(ref, x, y, lr=0.1, steps=4, clip=0.05)  # a clip that bites
    opt = AMP(model.parameters(), lr=0.1, epsilon=epsilon, inner_iter=inner_iter, clip_norm=0.05,
              momentum=0.9, nesterov=True, weight_decay=1e-4)  # fmt: skip
    for i in range(4):
        xb, yb = x[i * 8 : (i + 1) * 8], y[i * 8 : (i + 1) * 8]

        def closure(xb=xb, yb=yb):
            opt.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            return loss

        opt.step(closure)
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):
        assert torch.equal(p, q)


def test_closure_and_train_classifier_objective_give_the_same_weights() -> None:
    g = torch.Generator().manual_seed(2)
    x, y = torch.rand(40, 1, 28, 28, generator=g), torch.randint(0, 10, (40,), generator=g)
    torch.manual_seed(0)
    a = SmallCNN(8)
    b = SmallCNN(8)
    b.load_state_dict(a.state_dict())
    kw = dict(lr=0.05, epsilon=0.05, inner_lr=1.0, inner_iter=2, momentum=0.9, nesterov=True,
              weight_decay=1e-4)  # fmt: skip
    opt_a = AMP(a.parameters(), **kw)
    order = torch.randperm(40, generator=torch.Generator().manual_seed(7))
    for start in range(0, 40, 16):
        idx = order[start : start + 16]

        def closure(idx=idx):
            opt_a.zero_grad()
            loss = F.cross_entropy(a(x[idx]), y[idx])
            loss.backward()
            return loss

        opt_a.step(closure)
    opt_b = AMP(b.parameters(), **kw)
    train_classifier(b, x, y, epochs=1, batch_size=16, lr=0.0, optimizer=opt_b,
                     objective=amp_objective(opt_b), generator=torch.Generator().manual_seed(7),
                     progress=False)  # fmt: skip
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6, rtol=0)


def test_a_scheduler_on_amp_moves_the_base_learning_rate() -> None:
    w = torch.nn.Parameter(torch.ones(1))
    opt = AMP([w], lr=0.1, epsilon=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, step_schedule(4))
    lrs = []
    for _ in range(4):
        lrs.append(opt.base_optimizer.param_groups[0]["lr"])
        opt.step(lambda: (opt.zero_grad(), (w**2).sum().backward(), (w**2).sum())[2])
        sched.step()
    assert lrs == pytest.approx([0.1, 0.1, 0.01, 0.001])


def test_step_schedule_is_the_official_milestones_scaled() -> None:
    f = step_schedule(200)
    assert [f(e) for e in (0, 99, 100, 149, 150, 199)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01]
    )


# --------------------------------------------------------------------------- the other methods


def test_label_smoothing_is_the_smoothed_cross_entropy() -> None:
    g = torch.Generator().manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 5))
    x, y = torch.randn(6, 1, 2, 2, generator=g), torch.randint(0, 5, (6,), generator=g)
    target = torch.full((6, 5), 0.2 / 5) + 0.8 * F.one_hot(y, 5)
    with torch.no_grad():
        logp = F.log_softmax(model(x), dim=1)
        assert float(label_smoothing_loss(0.2)(model, x, y)) == pytest.approx(
            float(-(target * logp).sum(1).mean()), rel=1e-6
        )


@torch.no_grad()
def test_mixup_is_seeded_and_mixes_two_cross_entropies() -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    x, y = torch.rand(8, 1, 2, 2), torch.randint(0, 3, (8,))
    first = [float(mixup_loss(1.0, seed=5)(model, x, y)) for _ in range(2)]
    loss = mixup_loss(1.0, seed=5)
    again = [float(loss(model, x, y)) for _ in range(2)]
    assert first[0] == again[0] and again[0] != again[1]
    # identical images and labels: the mix is the plain cross-entropy whatever lambda is
    same_x, same_y = x[:1].expand(8, -1, -1, -1), y[:1].expand(8)
    assert float(loss(model, same_x, same_y)) == pytest.approx(
        float(F.cross_entropy(model(same_x), same_y)), rel=1e-6
    )


def test_dropout_cnn_shares_the_small_cnns_parameters() -> None:
    torch.manual_seed(0)
    plain = SmallCNN(8)
    drop = DropoutCNN(8, 0.5)
    drop.load_state_dict(plain.state_dict())
    x = torch.rand(4, 1, 28, 28)
    assert torch.equal(plain.eval()(x), drop.eval()(x))
    assert not torch.equal(drop.train()(x), plain(x))


def test_train_method_pairs_the_methods_and_scores_per_image() -> None:
    g = torch.Generator().manual_seed(4)
    x, y = torch.rand(30, 1, 28, 28, generator=g), torch.randint(0, 10, (30,), generator=g)
    s = Settings(epochs=1, batch_size=10, width=4, epsilon=0.1)
    with pytest.raises(ReproError, match="unknown method"):
        train_method("sam", x, y, s, seed=0)
    runs = {m: train_method(m, x, y, s, seed=0) for m in METHODS}
    again = train_method("amp", x, y, s, seed=0)
    for p, q in zip(runs["amp"].model.parameters(), again.model.parameters(), strict=True):
        assert torch.equal(p, q)
    assert all(len(r.losses) == 1 and r.seconds > 0 for r in runs.values())
    wrong, nll = per_image_scores(runs["erm"].model, x, y)
    assert wrong.dtype == torch.bool and wrong.shape == (30,) and nll.shape == (30,)
    logits = runs["erm"].model(x)
    assert torch.allclose(nll, F.cross_entropy(logits, y, reduction="none").detach(), atol=1e-6)


# --------------------------------------------------------------------------- intervals


def test_seed_interval_is_the_t_interval() -> None:
    iv = seed_interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 * 1.0 / math.sqrt(3)
    assert iv.estimate == pytest.approx(2.0)
    assert (iv.low, iv.high) == pytest.approx((2.0 - half, 2.0 + half))
    with pytest.raises(ReproError):
        seed_interval([1.0])


def test_seeds_image_interval_is_the_paired_difference_of_seed_means() -> None:
    g = torch.Generator().manual_seed(0)
    a = [torch.rand(200, generator=g) < 0.3 for _ in range(3)]
    b = [torch.rand(200, generator=g) < 0.4 for _ in range(3)]
    iv = seeds_image_interval(a, b)
    expected = torch.stack(a).float().mean() - torch.stack(b).float().mean()
    assert iv.estimate == pytest.approx(float(expected))
    assert iv.low <= iv.estimate <= iv.high
    same = seeds_image_interval(a, a)
    assert (same.estimate, same.low, same.high) == (0.0, 0.0, 0.0)


# --------------------------------------------------------------------------- claims


def _results(amp: float = 10.0, amp_nll: float = 0.30, amp_seconds: float = 2.0, ci=(-1.5, -0.5)):
    errors = {"erm": 11.0, "dropout": 10.8, "label_smoothing": 10.5, "mixup": 10.4, "amp": amp}
    nll = {"erm": 0.35, "dropout": 0.33, "label_smoothing": 0.45, "mixup": 0.32, "amp": amp_nll}
    rows = {f"fm_{m}_test_error": v for m, v in errors.items()}
    rows |= {f"fm_{m}_test_nll": v for m, v in nll.items()}
    metrics = {"seeds": 3.0, "inner_iter": 1.0, "cost.amp.epoch_seconds": amp_seconds,
               "cost.erm.epoch_seconds": 1.0}  # fmt: skip
    for name in ("fm_amp_minus_erm_error", "fm_amp_minus_best_other_error"):
        for suffix in ("", "_seed"):
            metrics[f"{name}{suffix}.ci95_low"], metrics[f"{name}{suffix}.ci95_high"] = ci
    return Results(rows, metrics)


def test_claims_on_hand_made_results() -> None:
    claims = load_claims(repro_path(SLUG))
    good = {c["id"]: c["holds"] for c in evaluate(claims, _results())}
    assert good == dict.fromkeys(good, True) and len(good) == 5
    bad = {c["id"]: c["holds"] for c in evaluate(
        claims, _results(amp=10.6, amp_nll=0.50, amp_seconds=3.0, ci=(-1.0, 0.2)))}  # fmt: skip
    assert bad == {
        "amp_beats_erm": True,  # 10.6 < 11.0
        "amp_beats_erm_beyond_noise": False,  # an interval straddles 0
        "amp_at_least_best_regulariser": False,  # mixup 10.4 is better
        "amp_lowest_nll": False,
        "amp_costs_about_twice_erm": False,  # 3x
    }
    missing = evaluate(claims, Results({}, {}))
    assert all(c["holds"] is None and "not evaluated" in c["detail"] for c in missing)


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_smoke_reproduction_through_the_runner(project: Path, tmp_path: Path) -> None:
    """The notebook runs under papermill at smoke scale, records its rows, and the run is stored."""
    result, summary = smoke_run(SLUG, tmp_path / "runs")
    rows = {r["id"]: r for r in summary["rows"]}
    for m in METHODS:
        assert rows[f"fm_{m}_test_error"]["value"] is not None
        assert 0.0 <= rows[f"fm_{m}_test_error"]["value"] <= 100.0
    assert rows["t1_cifar100_preactresnet18_amp_error"]["verdict"] == "not_run"
    assert {r["verdict"] for r in summary["rows"]} <= {"not_compared", "not_run"}
    assert (result.run_dir / summary["figures"][0]["path"]).stat().st_size > 0
    crashed = [c for c in summary["claims"] if "the check raised" in (c["detail"] or "")]
    assert not crashed, crashed
