"""Wong & Kolter's dual network (repro/wong_kolter): the network's reading, W^T against autograd,
eps = 0 against the network's own margins, the bounds against points of the ball (every hidden
unit and every margin), the dual against the LP solved independently by scipy's HiGHS (its own
relaxation: equal; the paper's LP (2): never above), Algorithm 1 as printed against the dual-mode
bounds (values and gradients), v0.2's gradients, the robust loss against the loss at points of the
ball (Theorem 2), the certificate against the paper's PGD, the paper's attacks, the epsilon
schedule, the claims, and the smoke reproduction end to end through the runner.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro import ReproError
from repro.claims import Results, evaluate, load_claims
from repro.config import repro_path
from repro.stats import pack_bits
from repro.train import predict
from repro.wong_kolter import (
    certify,
    dual_objective,
    epsilon_schedule,
    fgs_v02,
    layer_bounds,
    lp_bound,
    margin_matrix,
    mlp_model,
    mnist_model,
    paper_errors,
    parse_network,
    pgd_v02,
    relu_relaxation,
    robust_logits,
    robust_loss,
    train_robust,
)

from .conftest import smoke_run

SLUG = "wong_kolter"


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _conv_net(dtype: torch.dtype = torch.float64, seed: int = 0) -> nn.Sequential:
    """Conv (stride 2, padding 1) - ReLU - Flatten - FC - ReLU - FC - ReLU - FC on 1x7x7 inputs
    (7 is odd: W^T needs an output padding), three hidden layers."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(3 * 4 * 4, 12),
        nn.ReLU(),
        nn.Linear(12, 8),
        nn.ReLU(),
        nn.Linear(8, 4),
    ).to(dtype)


def _mlp(widths: tuple[int, ...], dtype: torch.dtype = torch.float64, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return mlp_model(widths, inputs=10, classes=4).to(dtype)


def _inputs(n: int, shape: tuple[int, ...], dtype: torch.dtype = torch.float64, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *shape, generator=g, dtype=dtype)
    y = torch.randint(0, 4, (n,), generator=g)
    return x, y


def _ball_points(x: Tensor, eps: float, k: int, seed: int = 2) -> Tensor:
    """k points per example of the eps-ball: half uniform, half corners; (k, n, ...)."""
    g = torch.Generator().manual_seed(seed)
    u = 2 * torch.rand(k // 2, *x.shape, generator=g, dtype=x.dtype) - 1
    s = torch.randint(0, 2, (k - k // 2, *x.shape), generator=g).to(x.dtype) * 2 - 1
    return x.unsqueeze(0) + eps * torch.cat([u, s])


def _pre_activations(net: nn.Sequential, x: Tensor) -> list[Tensor]:
    """zhat_i (flattened) of every hidden layer, in order."""
    out, h = [], x
    for m in net:
        if isinstance(m, nn.ReLU):
            out.append(h.flatten(1))
        h = m(h)
    return out


def _margins(net: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """f_y(x) - f_j(x) per example and class (n, classes)."""
    out = net(x)
    return out.gather(1, y[:, None]) - out


# --------------------------------------------------------------------------- the network


def test_mnist_model_is_the_v02_architecture() -> None:
    net = mnist_model()
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert sum(p.numel() for p in net.parameters()) == 272 + 8224 + 156900 + 1010
    maps = parse_network(net, (1, 28, 28))
    assert [(m.in_features, m.out_features) for m in maps] == [
        (784, 3136), (3136, 1568), (1568, 100), (100, 10)
    ]  # fmt: skip


@pytest.mark.parametrize(
    "net",
    [
        nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2)),
        nn.Sequential(nn.ReLU(), nn.Linear(4, 2)),
        nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.ReLU(), nn.Linear(3, 2)),
        nn.Sequential(nn.Linear(4, 3), nn.ReLU()),
        nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2)),
        nn.Sequential(nn.Conv2d(1, 2, 3, dilation=2), nn.ReLU(), nn.Flatten(), nn.Linear(2, 2)),
        nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Linear(3, 2)),
        nn.Linear(4, 2),
    ],
)
def test_unsupported_networks_are_refused(net: nn.Module) -> None:
    shape = (1, 5, 5) if isinstance(net, nn.Sequential) and isinstance(net[0], nn.Conv2d) else (4,)
    with pytest.raises(ReproError, match="dual network"):
        parse_network(net, shape)


@pytest.mark.parametrize("size", [7, 8])
def test_transpose_is_the_adjoint_of_the_layer(size: int) -> None:
    """<W v, w> = <v, W^T w> for every map of a conv net (odd and even sizes), and W^T is what
    autograd gives as the vector-Jacobian product."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 4, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
                        nn.Linear(3 * (size // 2) ** 2, 5)).double()  # fmt: skip
    for layer in parse_network(net, (2, size, size)):
        v = torch.randn(3, layer.in_features, dtype=torch.float64, requires_grad=True)
        w = torch.randn(3, layer.out_features, dtype=torch.float64)
        out = layer(v, bias=False)
        (vjp,) = torch.autograd.grad((out * w).sum(), v)
        torch.testing.assert_close(layer.transpose(w), vjp)
        torch.testing.assert_close(layer.dense() @ v[0].detach(), out[0].detach())


# --------------------------------------------------------------------------- the bounds


def test_eps_zero_gives_the_networks_own_margins() -> None:
    net = _conv_net()
    x, y = _inputs(6, (1, 7, 7))
    bounds = layer_bounds(net, x, 0.0)
    for lo, up, z in zip(bounds.lower, bounds.upper, _pre_activations(net, x), strict=True):
        torch.testing.assert_close(lo, z)
        torch.testing.assert_close(up, z)
        assert not bounds.crossing[0].any()
    j = dual_objective(bounds, margin_matrix(y, 4, torch.float64))
    torch.testing.assert_close(j, _margins(net, x, y))
    # and the robust loss is the plain cross-entropy
    loss, err = robust_loss(net, 0.0, x, y)
    torch.testing.assert_close(loss, F.cross_entropy(net(x), y))
    wrong = predict(net, x) != y
    assert torch.equal(err, wrong | (_margins(net, x, y).topk(2, dim=1).values[:, 1] == 0))


@pytest.mark.parametrize(
    "make", [lambda: _conv_net(), lambda: _mlp((9, 7, 5))], ids=["conv", "mlp"]
)
def test_bounds_hold_at_every_point_of_the_ball(make) -> None:
    """Every hidden pre-activation stays in [l, u] and every margin f_y - f_j stays >= J at 4,000
    points of the eps-ball per example (uniform and corners), up to rounding."""
    net = make()
    shape = (1, 7, 7) if isinstance(net[0], nn.Conv2d) else (10,)
    x, y = _inputs(5, shape)
    eps = 0.08
    bounds = layer_bounds(net, x, eps)
    j = dual_objective(bounds, margin_matrix(y, 4, torch.float64))
    pts = _ball_points(x, eps, 4000)
    with torch.no_grad():
        flat = pts.reshape(-1, *shape)
        for z, lo, up in zip(_pre_activations(net, flat), bounds.lower, bounds.upper, strict=True):
            z = z.reshape(pts.shape[0], 5, -1)
            assert (z >= lo - 1e-9).all() and (z <= up + 1e-9).all()
        m = _margins(net, flat, y.repeat(pts.shape[0])).reshape(pts.shape[0], 5, 4)
    assert (m.min(0).values >= j - 1e-9).all()
    assert bounds.crossing[0].any(), "the test should exercise crossing units"


@pytest.mark.parametrize("widths", [(6,), (6, 5), (7, 6, 5)])
def test_dual_is_the_lp_of_its_relaxation_and_below_the_papers_lp(widths) -> None:
    """For every example and wrong class: J = the optimum of the LP with the slope u / (u - l) on
    both ReLU faces (HiGHS, same l and u), J <= the optimum of the paper's LP (2), and for one
    hidden layer (exact l, u) the LP (2) is itself below the sampled minimum margin."""
    net = _mlp(widths)
    x, y = _inputs(4, (10,))
    eps = 0.1
    with torch.no_grad():
        bounds = layer_bounds(net, x, eps)
        c = margin_matrix(y, 4, torch.float64)
        j = dual_objective(bounds, c)
        pts = _ball_points(x, eps, 4000).reshape(-1, 10)
        sampled = _margins(net, pts, y.repeat(4000)).reshape(4000, 4, 4).min(0).values
    assert any(cr.any() for cr in bounds.crossing)
    for i in range(4):
        for k in range(4):
            if k == int(y[i]):
                continue
            parallel = lp_bound(bounds, i, c[i, k], relaxation="parallel")
            triangle = lp_bound(bounds, i, c[i, k], relaxation="triangle")
            assert abs(parallel - float(j[i, k])) <= 1e-7 * (1 + abs(parallel))
            assert float(j[i, k]) <= triangle + 1e-7
            assert triangle <= float(sampled[i, k]) + 1e-7


def test_hidden_bounds_are_the_lp_of_the_network_cut_there() -> None:
    """l and u of the last hidden layer equal the LP optimum of the network cut after that layer
    (objective +-e_m), solved by HiGHS: Algorithm 1's bounds are the dual's, unit by unit."""
    net = _mlp((6, 5, 4))
    x, _ = _inputs(2, (10,))
    eps = 0.1
    with torch.no_grad():
        bounds = layer_bounds(net, x, eps)
        cut = nn.Sequential(*list(net)[:6])  # Flatten, L, ReLU, L, ReLU, L: ends at zhat_4
        prefix = layer_bounds(cut, x, eps)
    for i in range(2):
        for m in range(4):
            e = torch.zeros(4, dtype=torch.float64)
            e[m] = 1.0
            low = lp_bound(prefix, i, e, relaxation="parallel")
            high = -lp_bound(prefix, i, -e, relaxation="parallel")
            assert abs(low - float(bounds.lower[2][i, m])) <= 1e-7 * (1 + abs(low))
            assert abs(high - float(bounds.upper[2][i, m])) <= 1e-7 * (1 + abs(high))


@pytest.mark.parametrize("grad", ["v0.2", "full"])
def test_algorithm1_as_printed_equals_the_dual_mode(grad) -> None:
    """Algorithm 1 run forwards and the per-layer dual run backwards give the same bounds and the
    same gradients of (J + the bounds) with respect to every weight."""
    results = []
    for mode in ("algorithm1", "dual"):
        net = _conv_net()
        x, y = _inputs(5, (1, 7, 7))
        bounds = layer_bounds(net, x, 0.08, grad=grad, mode=mode)
        j = dual_objective(bounds, margin_matrix(y, 4, torch.float64))
        total = j.sum() + sum(lo.sum() - up.sum() for lo, up in zip(bounds.lower, bounds.upper,
                                                                   strict=True))  # fmt: skip
        total.backward()
        results.append((bounds, [p.grad.clone() for p in net.parameters()]))
    (a, ga), (b, gb) = results
    for u, v in zip(a.lower + a.upper, b.lower + b.upper, strict=True):
        torch.testing.assert_close(u, v, rtol=1e-10, atol=1e-10)
    for u, v in zip(ga, gb, strict=True):
        torch.testing.assert_close(u, v, rtol=1e-9, atol=1e-9)


def test_v02_gradients_change_the_gradient_not_the_value() -> None:
    x, y = _inputs(5, (1, 7, 7))
    out = {}
    for grad in ("v0.2", "full"):
        net = _conv_net()
        loss, err = robust_loss(net, 0.08, x, y, grad=grad)
        loss.backward()
        out[grad] = (loss.detach(), err, torch.cat([p.grad.flatten() for p in net.parameters()]))
    torch.testing.assert_close(out["v0.2"][0], out["full"][0])
    assert torch.equal(out["v0.2"][1], out["full"][1])
    assert not torch.allclose(out["v0.2"][2], out["full"][2])


def test_full_gradient_is_autograds_of_the_bound() -> None:
    """grad="full" is the true gradient: a finite difference along a random direction agrees."""
    net = _mlp((6, 5))
    x, y = _inputs(3, (10,))
    loss, _ = robust_loss(net, 0.1, x, y, grad="full")
    params = list(net.parameters())
    grads = torch.autograd.grad(loss, params)
    g = torch.Generator().manual_seed(3)
    direction = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in params]
    h = 1e-6
    with torch.no_grad():
        for p, d in zip(params, direction, strict=True):
            p += h * d
        up, _ = robust_loss(net, 0.1, x, y)
        for p, d in zip(params, direction, strict=True):
            p -= 2 * h * d
        down, _ = robust_loss(net, 0.1, x, y)
    numeric = (up - down) / (2 * h)
    analytic = sum((gr * d).sum() for gr, d in zip(grads, direction, strict=True))
    assert abs(float(numeric - analytic)) <= 1e-5 * (1 + abs(float(analytic)))


def test_relaxation_sets() -> None:
    lo = torch.tensor([-2.0, 0.0, 1.0, -3.0, -1.0])
    up = torch.tensor([-1.0, 2.0, 3.0, 1.0, 0.0])
    d, crossing = relu_relaxation(lo, up)
    torch.testing.assert_close(d, torch.tensor([0.0, 1.0, 1.0, 0.25, 0.0]))
    assert crossing.tolist() == [False, False, False, True, False]


# --------------------------------------------------------------------------- the robust loss


def test_robust_loss_bounds_the_loss_over_the_ball() -> None:
    """Theorem 2: CE(-J, y) >= CE(f(x'), y) for every x' of the ball; per example."""
    net = _conv_net()
    x, y = _inputs(5, (1, 7, 7))
    eps = 0.08
    with torch.no_grad():
        logits = robust_logits(net, eps, x, y)
        robust = F.cross_entropy(logits, y, reduction="none")
        pts = _ball_points(x, eps, 2000)
        ce = F.cross_entropy(net(pts.reshape(-1, 1, 7, 7)), y.repeat(2000), reduction="none")
    assert (ce.reshape(2000, 5).max(0).values <= robust + 1e-9).all()
    assert torch.equal(logits.gather(1, y[:, None]).squeeze(1), torch.zeros(5, dtype=x.dtype))


@pytest.fixture(scope="module")
def certified_model():
    """A 784-32-32-10 MLP trained robustly (eps 0.05) for two epochs on 1,000 Fashion-MNIST test
    images, and 200 other test images."""
    from repro.data import load_dataset
    from repro.train import train_classifier

    data = load_dataset("fashion_mnist", "test")
    torch.manual_seed(0)
    net = mlp_model((32, 32))
    train_classifier(net, data.x[:1000], data.y[:1000], epochs=2, batch_size=50, lr=1e-3,
                     objective=lambda m, xb, yb: robust_loss(m, 0.05, xb, yb)[0],
                     generator=torch.Generator().manual_seed(0), progress=False)  # fmt: skip
    return net.eval(), data.x[2000:2200].clone(), data.y[2000:2200].clone()


def test_certified_images_survive_the_papers_attacks(certified_model) -> None:
    net, x, y = certified_model
    eps = 0.05
    cert = certify(net, x, y, eps)
    assert 0 < int(cert.certified.sum()) < len(y)
    errors = paper_errors(net, x, y, eps, pgd_steps=40)
    assert torch.equal(errors["bound"], ~cert.certified)
    for column in ("test", "fgsm", "pgd"):
        assert not (cert.certified & errors[column]).any(), column
        assert errors[column].float().mean() <= errors["bound"].float().mean()
    # the bound per example: the smallest margin is positive exactly where certified
    assert torch.equal(cert.bound > 0, cert.certified)
    assert torch.isinf(cert.margins.gather(1, y[:, None])).all()


def test_certify_matches_robust_loss_and_restores_the_mode(certified_model) -> None:
    net, x, y = certified_model
    net.train()
    cert = certify(net, x[:60], y[:60], 0.05, batch_size=17)
    assert net.training
    net.eval()
    _, err = robust_loss(net, 0.05, x[:60], y[:60])
    assert torch.equal(err, ~cert.certified)


# --------------------------------------------------------------------------- the paper's attacks


def test_paper_attacks_are_unclipped_and_start_at_x() -> None:
    torch.manual_seed(0)
    net = mlp_model((16,), inputs=16, classes=3).eval()
    x = torch.rand(8, 1, 4, 4)
    x[:, :, 0] = 0.0  # pixels at the box edge: the unclipped attacks may leave [0, 1]
    y = torch.randint(0, 3, (8,))
    fgs = fgs_v02(net, x, y, eps=0.1)
    torch.testing.assert_close((fgs - x).abs(), torch.full_like(x, 0.1))
    pgd = pgd_v02(net, x, y, eps=0.1, step_size=0.01, steps=30)
    assert (pgd - x).abs().max() <= 0.1 + 1e-6
    assert pgd.min() < 0.0  # not clipped to [0, 1]
    assert torch.equal(pgd_v02(net, x, y, eps=0.1, steps=0), x)  # no random start
    assert torch.equal(pgd, pgd_v02(net, x, y, eps=0.1, step_size=0.01, steps=30))
    assert not pgd.requires_grad and all(p.requires_grad for p in net.parameters())
    # one step of PGD from x is FGSM with eps = the step
    torch.testing.assert_close(pgd_v02(net, x, y, eps=0.1, step_size=0.01, steps=1),
                               fgs_v02(net, x, y, eps=0.01))  # fmt: skip
    with pytest.raises(ReproError):
        pgd_v02(net, x, y, eps=-0.1)


def test_epsilon_schedule_is_v02s() -> None:
    # mnist.py: --starting_epsilon 0.05, 20 epochs: linear over t = 0..10, then 0.1
    assert [epsilon_schedule(t, 20, 0.1, 0.05) for t in (0, 5, 10, 11, 19)] == pytest.approx(
        [0.05, 0.075, 0.1, 0.1, 0.1]
    )
    # fashion_mnist.py: no starting epsilon
    assert {epsilon_schedule(t, 20, 0.1, None) for t in range(20)} == {0.1}
    assert epsilon_schedule(0, 1, 0.1, 0.05) == 0.1  # epochs // 2 == 0: no warm-up


def test_robust_training_resumes_exactly_from_its_checkpoint(tmp_path: Path) -> None:
    x, y = _inputs(40, (10,))

    def run(stop_after: int | None, checkpoint: Path | None, eps: float = 0.05):
        net = _mlp((12, 8))
        done = train_robust(net, x, y, eps=eps, epochs=4, batch_size=8, lr=1e-2, start_eps=0.01,
                            generator=torch.Generator().manual_seed(3), checkpoint=checkpoint,
                            config={"seed": 0}, stop_after=stop_after)  # fmt: skip
        return net, done

    straight_net, straight = run(None, None)
    assert straight.eps == pytest.approx([0.01, 0.03, 0.05, 0.05])  # the warm-up of v0.2
    assert straight.losses[-1] < straight.losses[0]  # it trains
    path = tmp_path / "ckpt" / "robust.pt"
    _, first = run(3, path)  # stopped after three epochs: a time limit
    assert first.epochs == 3 and path.exists()
    resumed_net, resumed = run(None, path)
    assert resumed.resumed_from == 3 and resumed.epochs == 4
    assert resumed.losses == straight.losses and resumed.eps == straight.eps
    for (name, a), b in zip(straight_net.state_dict().items(), resumed_net.state_dict().values(),
                            strict=True):  # fmt: skip
        assert torch.equal(a, b), name  # bit for bit, as if never stopped
    saved = path.read_bytes()
    with pytest.raises(ReproError, match="differ"):  # another eps: refused, the checkpoint kept
        run(None, path, eps=0.1)
    assert path.read_bytes() == saved


def test_lp_refuses_an_unknown_relaxation() -> None:
    net = _mlp((3,))
    x, y = _inputs(1, (10,))
    bounds = layer_bounds(net, x, 0.1)
    with pytest.raises(ReproError, match="relaxation"):
        lp_bound(bounds, 0, margin_matrix(y, 4, torch.float64)[0, 1], relaxation="box")
    with pytest.raises(ReproError, match="eps"):
        layer_bounds(net, x, -0.1)


# --------------------------------------------------------------------------- the claims


def _results(broken: bool = False, robust_bound: float = 40.0, loose: bool = False) -> Results:
    """Hand-made results: 10 test images, 4 through the battery; `broken`: a certified image is
    broken by the battery; `loose`: the battery breaks one image fewer than the bound allows."""
    cert = [1, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    right = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    worst = [1, 0 if broken else 1, 1, 1 if loose else 0]
    rows = {"t1_fmnist_natural_test_err": 10.0, "t1_fmnist_robust_test_err": 20.0,
            "t1_fmnist_natural_bound": 100.0, "t1_fmnist_robust_bound": robust_bound}  # fmt: skip
    per_image = {
        "t1_fmnist_natural_test_err": pack_bits([1] * 9 + [0]),
        "t1_fmnist_robust_test_err": pack_bits([1] * 8 + [0] * 2),
        "t1_fmnist_natural_bound": pack_bits([0] * 10),
        "t1_fmnist_robust_bound": pack_bits(cert),
        "robustness.fmnist_robust.worst": pack_bits(worst),
        "robustness.fmnist_natural.worst": pack_bits([0, 0, 0, 0]),
    }
    for model in ("natural", "robust"):
        for attack in ("fgsm_err", "pgd_err"):
            rows[f"t1_fmnist_{model}_{attack}"] = 50.0
            per_image[f"t1_fmnist_{model}_{attack}"] = pack_bits(right)
    metrics = {"robustness.fmnist_robust.worst": 75.0, "fmnist_lp_parallel_checked": 9.0,
               "fmnist_lp_parallel_max_rel_diff": 1e-8, "fmnist_lp_triangle_checked": 9.0,
               "fmnist_lp_triangle_violations": 0.0, "fmnist_lp_triangle_mean_gap": 0.1}  # fmt: skip
    return Results(rows, metrics, per_image=per_image)


def test_claims_on_hand_made_results() -> None:
    claims = load_claims(repro_path(SLUG))
    verdicts = {c["id"]: c for c in evaluate(claims, _results())}
    assert all(v["holds"] is True for v in verdicts.values()), verdicts
    assert "gap 0.00 points" in verdicts["bound_close_to_attacks"]["detail"]
    loose = {c["id"]: c for c in evaluate(claims, _results(loose=True))}
    assert loose["bound_close_to_attacks"]["holds"] is False  # 25 points on 4 images
    # soundness: a certified image broken by the battery fails the claim
    broken = {c["id"]: c for c in evaluate(claims, _results(broken=True))}
    assert broken["certificate_sound_per_example"]["holds"] is False
    assert "battery worst case 1" in broken["certificate_sound_per_example"]["detail"]
    assert {c["id"]: c["holds"] for c in evaluate(claims, _results(robust_bound=60.0))}[
        "robust_training_makes_bound_informative"
    ] is False
    assert all(c["holds"] is None for c in evaluate(claims, Results({})))


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_smoke_reproduction_through_the_runner(project: Path, tmp_path: Path) -> None:
    """The notebook runs under papermill at smoke scale, records Table 1's Fashion-MNIST rows with
    their per-image vectors, the battery and the LP check; every claim is evaluated."""
    result, summary = smoke_run(SLUG, tmp_path / "runs")
    rows = {r["id"]: r for r in summary["rows"]}
    for model in ("natural", "robust"):
        for column in ("test_err", "fgsm_err", "pgd_err", "bound"):
            row = rows[f"t1_fmnist_{model}_{column}"]
            assert row["verdict"] == "not_compared" and 0.0 <= row["value"] <= 100.0
        assert rows[f"t1_mnist_{model}_bound"]["verdict"] == "not_run"
    assert rows["t1_svhn_robust_bound"]["verdict"] == "not_run"
    metrics = {m["name"]: m["value"] for m in summary["metrics"]}
    assert metrics["fmnist_lp_parallel_max_rel_diff"] <= 1e-5
    assert "robustness.fmnist_robust.worst" in metrics
    assert metrics["fmnist_robust_epoch_seconds"] > 0
    assert metrics["fmnist_robust_resumed_from_epoch"] == 0  # no REPRO_CHECKPOINT_DIR: none kept
    assert (result.run_dir / summary["figures"][0]["path"]).stat().st_size > 0
    assert all(c["holds"] is not None for c in summary["claims"]), summary["claims"]
    assert math.isfinite(metrics["fmnist_robust_certified_per_second"])
