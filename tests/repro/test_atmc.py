"""ATMC (Gui et al., NeurIPS 2019), `repro/atmc`: the projections onto the constraint set (l0,
low rank, quantisation), ADMM's residual on a problem whose answer is known, the size
accounting, the sparse deployment, the claims on hand-made results, and the smoke reproduction
end to end through the runner."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from repro.atmc import (
    AdmmSGD,
    Factorized,
    ProjectedSGD,
    Split,
    allocate_ranks,
    budget,
    caffe_lenet,
    compressible,
    dense_weight_count,
    factorize,
    from_splits,
    model_size,
    project_l0,
    project_low_rank,
    project_low_rank_sparse,
    project_omega,
    quantize_kmeans,
    quantize_to_codebook,
    quantize_uniform,
    sparse_deploy,
)
from repro.claims import Results, evaluate, load_claims
from repro.config import repro_path

from .conftest import smoke_run

SLUG = "atmc"


def test_caffe_lenet_has_the_posters_430k_parameters() -> None:
    model = caffe_lenet()
    assert sum(p.numel() for p in model.parameters()) == 431_080
    assert dense_weight_count(model) == 430_500
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)


# --------------------------------------------------------------------------- projections


def test_l0_projection_keeps_exactly_the_k_largest_over_all_tensors() -> None:
    g = torch.Generator().manual_seed(0)
    tensors = [torch.randn(7, 5, generator=g), torch.randn(3, 2, 2, generator=g)]
    flat = torch.cat([t.reshape(-1) for t in tensors])
    for k in (0, 1, 9, 20, flat.numel(), flat.numel() + 5):
        out = project_l0(tensors, k)
        kept = torch.cat([t.reshape(-1) for t in out])
        assert [o.shape for o in out] == [t.shape for t in tensors]
        assert int((kept != 0).sum()) == min(k, flat.numel())
        if 0 < k < flat.numel():
            threshold = flat.abs().sort(descending=True).values[k - 1]
            assert torch.equal(kept != 0, flat.abs() >= threshold)  # the k largest, no others
        assert torch.equal(kept[kept != 0], flat[kept != 0])  # survivors unchanged
    with pytest.raises(ValueError):
        project_l0(tensors, -1)


def test_low_rank_projection_is_the_truncated_svd() -> None:
    g = torch.Generator().manual_seed(1)
    low = torch.randn(12, 3, generator=g) @ torch.randn(3, 20, generator=g)
    assert torch.allclose(project_low_rank(low, 3), low, atol=1e-4)
    noisy = low + 0.01 * torch.randn(12, 20, generator=g)
    approx = project_low_rank(noisy, 2)
    assert torch.linalg.matrix_rank(approx) == 2
    s = torch.linalg.svdvals(noisy)
    assert float((noisy - approx).norm()) == pytest.approx(float(s[2:].norm()), rel=1e-4)
    conv = torch.randn(4, 2, 3, 3, generator=g)
    assert project_low_rank(conv, 2).shape == conv.shape


def test_low_rank_plus_sparse_split_recovers_a_low_rank_matrix_and_respects_k() -> None:
    g = torch.Generator().manual_seed(2)
    low = torch.randn(30, 3, generator=g) @ torch.randn(3, 40, generator=g)
    split = project_low_rank_sparse([low], 3 * 70 + 20)[0]
    assert split.a.shape[1] == 3 and torch.allclose(split.matrix(), low, atol=1e-3)
    assert split.count() <= 3 * 70 + 20
    # a sparse matrix is kept sparse: the split is never worse than the l0 projection
    sparse = torch.zeros(30, 40)
    sparse[torch.arange(30), torch.arange(30)] = torch.arange(1.0, 31.0)
    split = project_low_rank_sparse([sparse], 30)[0]
    assert torch.equal(split.matrix(), sparse)
    mats = [torch.randn(20, 25, generator=g), torch.randn(10, 50, generator=g)]
    for k in (0, 50, 400):
        splits = project_low_rank_sparse(mats, k)
        assert sum(s.count() for s in splits) <= k
        l0 = project_l0(mats, k)
        error = sum(float((m - s.matrix()).norm() ** 2) for m, s in zip(mats, splits, strict=True))
        assert (
            error <= sum(float((m - z).norm() ** 2) for m, z in zip(mats, l0, strict=True)) + 1e-4
        )


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_quantised_weights_take_at_most_2_to_the_b_values_and_zeros_stay(bits: int) -> None:
    g = torch.Generator().manual_seed(bits)
    w = torch.randn(40, 60, generator=g)
    w[w.abs() < 0.5] = 0.0
    for q in (quantize_kmeans(w, bits)[0], quantize_uniform(w, bits)):
        assert q.unique().numel() <= 2**bits
        assert bool(((q == 0) | (w != 0)).all())  # never a new non-zero (uniform may round to 0)
    q, codebook = quantize_kmeans(w, bits)
    assert torch.equal(q == 0, w == 0)
    assert codebook.numel() <= 2**bits - 1 and bool((codebook != 0).all())
    assert set(q[q != 0].tolist()) <= set(codebook.tolist())
    if bits >= 3:  # a close fit: each non-zero moves by a small part of its magnitude
        assert float((q - w).norm()) <= (0.2 if bits < 8 else 0.02) * float(w.norm())


def test_kmeans_with_few_values_is_exact_and_codebook_snaps_to_nearest() -> None:
    w = torch.tensor([0.0, 1.0, 1.0, -2.0, 0.0, 3.0])
    q, codebook = quantize_kmeans(w, 2)
    assert torch.equal(q, w) and codebook.tolist() == [-2.0, 1.0, 3.0]
    snapped = quantize_to_codebook(torch.tensor([0.0, 0.9, -1.2, 2.1]), torch.tensor([1.0, -2.0]))
    assert snapped.tolist() == [0.0, 1.0, -2.0, 1.0]


def test_omega_projection_meets_budget_and_bits() -> None:
    g = torch.Generator().manual_seed(3)
    mats = [torch.randn(20, 25, generator=g), torch.randn(50, 100, generator=g)]
    for low_rank in (True, False):
        splits = project_omega(mats, 600, 3, low_rank=low_rank)
        assert sum(s.count() for s in splits) <= 600
        for split in splits:
            for t in split:
                assert t.unique().numel() <= 8
    with pytest.raises(ValueError, match="quantizer"):
        project_omega(mats, 10, 4, quantizer="lloyd")


# --------------------------------------------------------------------------- ADMM


def test_admm_residual_falls_and_ends_in_the_constraint_set() -> None:
    """min ||X w - t||^2 s.t. ||w||_0 <= 3 with a 3-sparse truth: the primal residual falls by
    orders of magnitude, and the final projection recovers the truth's support."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 20, generator=g)
    truth = torch.zeros(20)
    truth[[2, 7, 11]] = torch.tensor([1.5, -2.0, 1.0])
    target = x @ truth
    w = nn.Parameter(torch.zeros(20))
    opt = AdmmSGD([w], [w], lambda ts: project_l0(ts, 3), rho=1.0, interval=5, lr=0.05,
                  momentum=0.0)  # fmt: skip
    for _ in range(400):
        opt.zero_grad()
        ((x @ w - target) ** 2).mean().backward()
        opt.step()
    assert len(opt.residuals) == 80
    assert opt.residuals[-1] < 1e-3 < opt.residuals[0]
    assert opt.residuals[-1] < 0.01 * max(opt.residuals[:5])
    opt.finish()
    assert torch.equal(w != 0, truth != 0)
    assert torch.allclose(w.detach(), truth, atol=1e-2)
    with pytest.raises(ValueError):
        AdmmSGD([w], [w], lambda ts: list(ts), rho=-1.0, interval=1, lr=0.1)


def test_rho_growth_keeps_the_unscaled_dual() -> None:
    w = nn.Parameter(torch.tensor([3.0, 0.5]))
    opt = AdmmSGD([w], [w], lambda ts: project_l0(ts, 1), rho=1.0, interval=1, lr=0.0,
                  rho_growth=2.0, momentum=0.0)  # fmt: skip
    w.grad = torch.zeros(2)
    opt.step()  # lr 0: theta stays; Z = (3, 0), U = (0, 0.5) at rho 1 -> (0, 0.25) at rho 2
    assert opt.rho == 2.0
    assert torch.allclose(opt.u[0] * opt.rho, torch.tensor([0.0, 0.5]))


def test_projected_sgd_keeps_the_support() -> None:
    w = nn.Parameter(torch.tensor([1.0, 0.0, -2.0, 0.0]))
    mask = w.detach() != 0
    opt = ProjectedSGD([w], [w], lambda ts: [t.detach() * mask for t in ts], lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        (w - 5).pow(2).sum().backward()
        opt.step()
    assert torch.equal(w.detach() != 0, mask) and float(w.detach()[0]) > 1.0


# --------------------------------------------------------------------------- models and size


def test_factorised_layers_compute_the_dense_function_and_deploy_sparse() -> None:
    torch.manual_seed(0)
    model = caffe_lenet().eval()
    x = torch.rand(5, 1, 28, 28)
    same = factorize(model, rank_fraction=0.5)
    assert torch.allclose(same(x), model(x), atol=1e-4)
    assert all(isinstance(m, Factorized) for m in same if isinstance(m, Factorized))
    ranks = allocate_ranks({"fc": model[5].weight, "out": model[7].weight}, 3000)
    assert (
        ranks is not None
        and sum(r * n for r, n in zip(ranks.values(), (1300, 510), strict=True)) <= 3000
    )
    assert allocate_ranks({"fc": model[5].weight}, 1000) is None  # rank 1 costs 1,300
    mats = [t.detach().reshape(t.shape[0], -1) for t in compressible(model)]
    compressed = from_splits(model, project_omega(mats, 5000, 8)).eval()
    assert torch.allclose(sparse_deploy(compressed)(x), compressed(x), atol=1e-4)
    assert torch.allclose(sparse_deploy(model)(x), model(x), atol=1e-4)
    size = model_size(compressed, 8, 430_500)
    assert size["nnz"] <= 5000 and size["max_distinct_values"] <= 255
    assert size["ratio"] == pytest.approx(size["nnz"] * 8 / (32 * 430_500))
    assert size["total_bits"] == size["value_bits"] + size["codebook_bits"] + 32 * 580


def test_budget_counts_bits() -> None:
    assert budget(0.01, 32, 430_500) == 4305
    assert budget(0.01, 8, 430_500) == 4 * 4305
    assert budget(1.0, 32, 10) == 10
    with pytest.raises(ValueError):
        budget(0.0, 32, 10)
    layer = Factorized(torch.ones(2, 1), torch.ones(1, 3), torch.zeros(2, 3), None, (2, 3))
    assert torch.equal(layer.weight(), torch.ones(2, 3))
    assert torch.allclose(layer(torch.ones(1, 3)), F.linear(torch.ones(1, 3), torch.ones(2, 3)))
    empty = Split(torch.zeros(2, 0), torch.zeros(0, 3), torch.eye(2, 3))
    assert empty.count() == 2 and torch.equal(empty.matrix(), torch.eye(2, 3))


# --------------------------------------------------------------------------- claims

DS = "fashion_mnist"


def _results(**overrides: float) -> Results:
    m = {f"{DS}_da_pgd": 0.60, f"{DS}_da_clean": 0.78}
    for r, (nap, ap, alr, al0, a32, a8) in {
        "0.01": (0.02, 0.50, 0.40, 0.52, 0.57, 0.58),
        "0.003": (0.01, 0.30, None, 0.35, 0.40, 0.45),
    }.items():
        for method, value in zip(("nap", "ap", "alr", "al0", "atmc32", "atmc8"),
                                 (nap, ap, alr, al0, a32, a8), strict=True):  # fmt: skip
            if value is not None:
                m[f"{DS}_{method}_r{r}_pgd"] = value
                m[f"{DS}_{method}_r{r}_clean"] = value + 0.2
    m |= {f"{DS}_atmc8_r0.01_ratio": 0.01}  # not a _pgd metric: must not be read as one
    return Results({}, {k: overrides.get(k, v) for k, v in m.items()})


def test_claims_hold_fail_and_are_not_evaluated_without_results() -> None:
    claims = load_claims(repro_path(SLUG))
    verdicts = evaluate(claims, _results())
    assert all(c["holds"] is True for c in verdicts), verdicts
    bad = _results(**{
        f"{DS}_ap_r0.003_pgd": 0.46,  # AP beats ATMC at the small ratio
        f"{DS}_al0_r0.003_pgd": 0.50,
        f"{DS}_nap_r0.01_pgd": 0.12,
        f"{DS}_atmc8_r0.01_pgd": 0.50,
        f"{DS}_atmc32_r0.01_pgd": 0.54,  # best ATMC 0.54 < DA 0.60 - 0.05
        f"{DS}_atmc8_r0.003_pgd": 0.39,
    })  # fmt: skip
    holds = {c["id"]: c["holds"] for c in evaluate(claims, bad)}
    assert holds == {
        "atmc_beats_compress_then_finetune": False,
        "atmc_beats_l0_alone": False,
        "nap_keeps_almost_no_robustness": False,
        "atmc_near_dense_at_moderate_compression": False,
        "quantisation_pays_at_tight_budgets": False,
    }
    assert all(c["holds"] is None for c in evaluate(claims, Results({})))


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_smoke_reproduction_through_the_runner(project: Path, tmp_path: Path) -> None:
    """The notebook runs under papermill at smoke scale, records its metrics, and is stored."""
    _result, summary = smoke_run(SLUG, tmp_path / "runs")
    verdicts = {r["id"]: r["verdict"] for r in summary["rows"]}
    assert verdicts.pop("poster_lenet_params") == "not_compared"
    assert set(verdicts.values()) == {"not_run"}  # MNIST, CIFAR and SVHN are not here
    metrics = {m["name"]: m["value"] for m in summary["metrics"]}
    for method in ("nap", "ap", "alr", "al0", "atmc32", "atmc8"):
        for kind in ("clean", "pgd"):
            assert 0.0 <= metrics[f"{DS}_{method}_r0.01_{kind}"] <= 1.0
        assert metrics[f"{DS}_{method}_r0.01_ratio"] <= 0.01 + 1e-9
    assert metrics[f"{DS}_atmc8_r0.01_max_distinct_values"] <= 255
    # DA and ATMC-8bits through the shared battery (smoke: clean, FGSM, PGD-20 and the paper's PGD)
    for model in (f"{DS}_da", f"{DS}_atmc8"):
        battery = {k.split(".")[2]: v for k, v in metrics.items()
                   if k.startswith(f"robustness.{model}.") and k.count(".") == 2}  # fmt: skip
        assert {"eps", "clean", "fgsm", "pgd20", "paper", "worst", "gap"} <= set(battery), model
        assert battery["eps"] == pytest.approx(0.1)
        for attack in ("clean", "fgsm", "pgd20", "paper", "worst"):
            assert 0.0 <= battery[attack] <= 100.0, (model, attack)
        assert battery["worst"] <= min(battery["fgsm"], battery["pgd20"]) <= battery["clean"]
        assert battery["paper"] <= battery["clean"]
        assert metrics[f"cost.{model}.epoch_seconds"] > 0.0
    assert len(summary["figures"]) == 2
    assert all(c["holds"] is not None for c in summary["claims"]), summary["claims"]
