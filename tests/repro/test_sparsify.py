"""Sparsifying front end and network sparsity (Gopalakrishnan et al., 2018), `repro/sparsify`:
the front end against PyWavelets coefficient by coefficient, K = N is the identity, at most K
coefficients survive, Theorem 1's K/N attenuation on a synthetic linear example, the l1-ball
projection against its definition, Theorem 2's bound, the locally linear attack (= FGSM for two
logits), the claims on hand-made results, and the smoke reproduction through the runner."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from repro.claims import Results, evaluate, load_claims
from repro.config import repro_path
from repro.fgsm import fgsm
from repro.sparsify import (
    BinaryMLP,
    FrontEndClassifier,
    L1ProjectedAdam,
    SparsifyingFrontEnd,
    keep_count,
    loclin_attack,
    project_l1_rows,
    project_onto_support,
    sparsify_reference,
    theorem2_ratios,
    wavelet_matrix,
)

from .conftest import smoke_run

SLUG = "sparsify"


def _images(n: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def test_wavelet_matrix_is_orthonormal_and_matches_pywt() -> None:
    import pywt

    psi = wavelet_matrix(dtype=torch.float64)
    assert torch.allclose(psi @ psi.T, torch.eye(784, dtype=torch.float64), atol=1e-10)
    x = _images(2).double()
    c_a, (c_h, c_v, c_d) = pywt.dwt2(x[:, 0].numpy(), "db5", mode="periodization")
    energy = sum((c**2).sum() for c in (c_a, c_h, c_v, c_d))
    assert energy == pytest.approx(float((x**2).sum()), rel=1e-10)
    coeffs = (x.reshape(2, -1) @ psi.T).numpy()
    assert np.allclose(np.sort(np.abs(coeffs[0])), np.sort(np.abs(np.concatenate(
        [c[0].ravel() for c in (c_a, c_h, c_v, c_d)]))), atol=1e-10)  # fmt: skip


@pytest.mark.parametrize("rho", [0.02, 0.03, 0.05, 0.2])
def test_front_end_equals_pywt_reference(rho: float) -> None:
    x = _images(4)
    ours = SparsifyingFrontEnd(rho)(x)[:, 0].double().numpy()
    ref = sparsify_reference(x[:, 0].double().numpy(), rho)
    assert np.abs(ours - ref).max() < 1e-5


def test_front_end_keeps_at_most_k_coefficients_and_k_equal_n_is_identity() -> None:
    x = _images(5)
    front = SparsifyingFrontEnd(0.03)
    assert front.k == keep_count(0.03, 784) == 23
    # before the clip the output lies in the span of K basis vectors
    c = front.coefficients(x)
    mask = front.support(x)
    assert torch.all(mask.sum(dim=1) == 23)
    kept = (c * mask) @ front.psi
    assert torch.all((kept @ front.psi.T).abs().gt(1e-4).sum(dim=1) <= 23)
    # K = N: the identity (to float tolerance); output in [0, 1]
    full = SparsifyingFrontEnd(1.0)
    assert torch.allclose(full(x), x, atol=1e-5)
    out = front(x)
    assert out.min() >= 0 and out.max() <= 1 and out.shape == x.shape


def test_theorem1_linear_attenuation_is_about_k_over_n() -> None:
    """For a linear classifier w and an image sparse in the basis, the front end's worst-case
    output distortion is eps ||P_x w||_1 (the support does not move for a small eps), and the
    energy of P_x w is ~K/N of w's for a w spread over the basis."""
    torch.manual_seed(0)
    front = SparsifyingFrontEnd(0.05)
    k, n = front.k, 784
    coeffs = torch.zeros(1, n)
    coeffs[0, torch.randperm(n)[:k]] = 5.0 + torch.rand(k)  # exactly K-sparse, large coefficients
    x = (coeffs @ front.psi).reshape(1, 1, 28, 28)
    w = torch.randn(200, 1, 28, 28)
    pw = project_onto_support(front, x.expand(200, -1, -1, -1), w)
    ratio = float((pw**2).sum() / (w**2).sum())
    assert ratio == pytest.approx(k / n, rel=0.25)
    # distortion of the linear model through the front end (no clip: a sparse x is not in [0,1])
    eps = 1e-3
    e = eps * pw[:1].sign()
    lin = lambda v: ((v.reshape(1, -1) @ front.psi.T) * front.support(x)) @ front.psi  # noqa: E731
    distortion = float((lin(x + e) - lin(x)).reshape(-1) @ w[0].reshape(-1))
    assert distortion == pytest.approx(eps * float(pw[0].abs().sum()), rel=1e-3)
    assert distortion < eps * float(w[0].abs().sum()) * 0.5


def test_project_l1_rows_is_the_euclidean_projection() -> None:
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(7, 30, generator=gen, dtype=torch.float64)
    w[0] *= 0.01  # inside the ball: unchanged
    p = project_l1_rows(w, 2.0)
    assert torch.equal(p[0], w[0])
    assert torch.all(p.abs().sum(dim=1) <= 2.0 + 1e-9)
    assert torch.allclose(p[1:].abs().sum(dim=1), torch.full((6,), 2.0, dtype=torch.float64))
    # optimality: no feasible random point is closer (the projection is the nearest point)
    for i in range(1, 7):
        best = float((p[i] - w[i]).norm())
        cand = torch.randn(500, 30, generator=gen, dtype=torch.float64)
        cand = cand / cand.abs().sum(dim=1, keepdim=True) * 2.0 * torch.rand(500, 1, generator=gen,
                                                                            dtype=torch.float64)  # fmt: skip
        assert float((cand - w[i]).norm(dim=1).min()) >= best - 1e-9
        # soft thresholding: same signs, zeros where |w| was small
        assert torch.all((p[i] == 0) | (p[i].sign() == w[i].sign()))


def test_projected_adam_keeps_the_constraint_and_theorem2_holds() -> None:
    torch.manual_seed(0)
    net = BinaryMLP(8)
    opt = L1ProjectedAdam(net.parameters(), [(net.fc1.weight, 1.5), (net.fc2.weight, 2.0)], lr=0.05)
    x = _images(64)
    y = (x.mean(dim=(1, 2, 3)) > 0.5).long()
    for _ in range(20):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    g1, g2 = net.gammas()
    assert g1 <= 1.5 + 1e-5 and g2 <= 2.0 + 1e-5
    for eps in (0.01, 0.1, 0.3):
        x_adv = (x + eps * torch.randn_like(x).sign()).clamp(0, 1)
        r = theorem2_ratios(net, x, x_adv)
        assert r.shape == (64, 2)
        assert float(r.max()) <= 1 + 1e-5
    # the bound is attained by a linear net with one row: e = eps sign(w) moves z by eps ||w||_1
    lin = BinaryMLP(1)
    with torch.no_grad():
        lin.fc1.weight.fill_(0.001)
        lin.fc1.bias.fill_(1.0)  # ReLU active everywhere
        lin.fc2.weight.fill_(2.0)
    x0 = torch.full((1, 1, 28, 28), 0.5)
    r = theorem2_ratios(lin, x0, x0 + 0.1)
    assert torch.allclose(r, torch.ones(1, 2), atol=1e-4)


def test_loclin_equals_fgsm_for_two_logits_and_stays_in_the_ball() -> None:
    torch.manual_seed(0)
    net = BinaryMLP(10).eval()
    x = _images(16)
    y = torch.arange(16) % 2
    eps = 0.1
    a = loclin_attack(net, x, y, eps=eps)
    b = fgsm(net, x, y, eps=eps)
    assert torch.allclose(a, b)
    front = SparsifyingFrontEnd(0.03)
    model = FrontEndClassifier(front, net)
    for x_adv in (loclin_attack(model, x, y, eps=eps),
                  loclin_attack(model, x, y, eps=eps, front=front, proj_iters=3)):  # fmt: skip
        assert (x_adv - x).abs().max() <= eps + 1e-6
        assert x_adv.min() >= 0 and x_adv.max() <= 1
    # BPDA: the input gradient is the classifier's gradient at f(x); exact: projected on x's support
    xg = x[:2].clone().requires_grad_(True)
    (g_bpda,) = torch.autograd.grad(model(xg)[:, 1].sum(), xg)
    fx = front(x[:2]).requires_grad_(True)
    (g_net,) = torch.autograd.grad(net(fx)[:, 1].sum(), fx)
    assert torch.allclose(g_bpda, g_net)
    exact = FrontEndClassifier(front, net, backward="exact")
    (g_exact,) = torch.autograd.grad(exact(xg)[:, 1].sum(), xg)
    kept = front.coefficients(x[:2]) * front.support(x[:2])
    inside = (kept @ front.psi).reshape(2, 1, 28, 28)
    clip_ok = ((inside > 0) & (inside < 1)).float()
    expected = project_onto_support(front, x[:2], g_net * clip_ok)
    assert torch.allclose(g_exact, expected, atol=1e-5)


def _results(**over: float) -> Results:
    m = {}
    for attack in ("fgsm", "loclin_semi", "loclin_white"):
        m |= {f"auc.none.{attack}": 40.0, f"auc.frontend3.{attack}": 60.0,
              f"auc.netsparse.{attack}": 50.0, f"auc.frontend2.{attack}": 55.0}  # fmt: skip
    m |= {"theorem2.none.max_ratio": 0.4, "theorem2.netsparse.max_ratio": 0.9,
          "robustness.none.worst": 5.0, "robustness.netsparse.worst": 20.0,
          "adaptive.frontend3.worst_all": 10.0, "robustness.frontend3.paper": 40.0}  # fmt: skip
    m |= over
    return Results({}, m)


def test_claims_on_hand_made_results() -> None:
    claims = load_claims(repro_path(SLUG))
    verdicts = {c["id"]: c["holds"] for c in evaluate(claims, _results())}
    assert verdicts == {
        "defenses_degrade_more_gracefully": True,
        "theorem2_bound_holds": True,
        "frontend_survives_adaptive_attack": False,
        "netsparse_survives_battery": True,
        "papers_attack_overestimates_frontend": True,
    }
    worse = _results(**{"auc.netsparse.loclin_white": 39.0, "theorem2.netsparse.max_ratio": 1.01})
    verdicts = {c["id"]: c["holds"] for c in evaluate(claims, worse)}
    assert verdicts["defenses_degrade_more_gracefully"] is False
    assert verdicts["theorem2_bound_holds"] is False
    missing = {c["id"]: c["holds"] for c in evaluate(claims, Results({}, {}))}
    assert set(missing.values()) == {None}


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_smoke_reproduction_through_the_runner(project: Path, tmp_path: Path) -> None:
    import json

    result, summary = smoke_run(SLUG, tmp_path / "runs")
    assert {r["verdict"] for r in summary["rows"]} <= {"not_compared", "not_run"}
    results = json.loads((result.run_dir / "results.json").read_text())
    metrics = {m["name"] for m in results["metrics"]}
    for name in ("auc.none.loclin_white", "auc.frontend3.pgd_bpda", "theorem2.netsparse.max_ratio",
                 "robustness.frontend3.worst", "adaptive.frontend3.worst_all",
                 "cost.netsparse.epoch_seconds"):  # fmt: skip
        assert name in metrics, name
    claims = {c["id"]: c for c in summary["claims"]}
    assert claims["theorem2_bound_holds"]["holds"] is True
    crashed = [c for c in summary["claims"] if "the check raised" in (c["detail"] or "")]
    assert not crashed, crashed
    assert (result.run_dir / summary["figures"][0]["path"]).stat().st_size > 0
