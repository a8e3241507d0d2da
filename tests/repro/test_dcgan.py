"""Unsupervised Representation Learning with Deep Convolutional GANs (Radford, Metz & Chintala,
ICLR 2016), `repro/dcgan`: the networks' shapes, guidelines and initialisation (the API other
folders import), Table 1's feature pipeline against hand computations (pooling, batch-norm
statistics), the L2-SVM against a generic optimiser of the same objective, the label draws and the
two-way bootstrap, training through the toolkit's loop (deterministic; the FID hook leaves it
unchanged), the latent-space operations, the claims on hand-made results, and the smoke
reproduction end to end through the runner."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from repro import ReproError
from repro.claims import Results, evaluate, load_claims
from repro.config import repro_path
from repro.dcgan import (
    PAPER,
    Discriminator,
    Generator,
    balanced_draw,
    draws_interval,
    evaluate_draws,
    fit_l2_svm,
    init_weights,
    interpolate,
    pixel_features,
    pooled_features,
    select_c,
    train,
    uniform_latent,
    vector_arithmetic,
    with_data_batch_norm,
)
from repro.dcgan import claims as dcgan_claims

from .conftest import smoke_run

SLUG = "dcgan"


# --------------------------------------------------------------------------- the networks


@pytest.mark.parametrize("size", [28, 32])
@pytest.mark.parametrize("batch_norm", [True, False])
def test_generator_and_discriminator_shapes(size: int, batch_norm: bool) -> None:
    torch.manual_seed(0)
    g = Generator(width=8, batch_norm=batch_norm, out_size=size)
    d = Discriminator(width=8, batch_norm=batch_norm)
    z = uniform_latent(5, torch.Generator().manual_seed(0))
    x = g(z).detach()
    assert x.shape == (5, 1, size, size)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0  # tanh mapped to the toolkit's [0, 1]
    assert d(x).shape == (5,)  # one logit per image, as repro.gan's losses take it
    maps = d.features(x)
    half, quarter = size // 2, (size + 3) // 4
    assert [tuple(m.shape) for m in maps] == [
        (5, 8, half, half),
        (5, 16, quarter, quarter),
        (5, 32, 4, 4),
    ]
    # The logit is the last map flattened through one linear unit: no hidden dense layer.
    assert torch.allclose(d(x), d.out(maps[-1].flatten(1)).flatten())


def test_batch_norm_placement_follows_section_3() -> None:
    """Batch norm everywhere except G's output layer and D's input layer; none when switched off."""
    g, d = Generator(width=4), Discriminator(width=4)
    g_norms = [m for m in g.modules() if isinstance(m, nn.BatchNorm2d)]
    assert [m.num_features for m in g_norms] == [16, 8, 4]  # project, then two hidden layers
    assert not any(isinstance(m, nn.BatchNorm2d) for m in d.blocks[0].modules())
    assert [m.num_features for m in d.modules() if isinstance(m, nn.BatchNorm2d)] == [8, 16]
    assert isinstance(list(g.main)[-1], nn.Tanh)
    for net in (Generator(width=4, batch_norm=False), Discriminator(width=4, batch_norm=False)):
        assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    leaks = [m.negative_slope for m in d.modules() if isinstance(m, nn.LeakyReLU)]
    assert leaks == [0.2, 0.2, 0.2]
    assert not any(isinstance(m, nn.MaxPool2d | nn.AvgPool2d) for m in d.modules())


def test_initialisation_is_normal_0_02() -> None:
    torch.manual_seed(0)
    g, d = Generator(width=32), Discriminator(width=32)
    for net in (g, d):
        weights = torch.cat([m.weight.detach().flatten() for m in net.modules()
                             if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear)])  # fmt: skip
        assert abs(float(weights.mean())) < 1e-3
        assert float(weights.std()) == pytest.approx(0.02, rel=0.02)
        gains = torch.cat(
            [m.weight.detach() for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
        )
        assert float(gains.mean()) == pytest.approx(1.0, abs=0.01)
    lin = nn.Linear(3, 2)
    init_weights(lin)
    assert torch.equal(lin.bias, torch.zeros(2))


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ReproError, match="out_size"):
        Generator(out_size=64)
    with pytest.raises(ReproError, match="28 × 28 or 32 × 32"):
        Discriminator(width=4)(torch.rand(2, 1, 24, 24))


def test_uniform_latent_is_in_the_cube_and_repeats() -> None:
    a = uniform_latent(1000, torch.Generator().manual_seed(3))
    b = uniform_latent(1000, torch.Generator().manual_seed(3))
    assert a.shape == (1000, 100) and torch.equal(a, b)
    assert float(a.min()) >= -1.0 and float(a.max()) <= 1.0
    assert float(a.mean()) == pytest.approx(0.0, abs=0.01)


def test_paper_settings() -> None:
    assert (PAPER.lr, PAPER.betas, PAPER.batch_size) == (2e-4, (0.5, 0.999), 128)


# --------------------------------------------------------------------------- Table 1's features


def test_pooled_features_on_32px_match_the_codes_exact_pooling() -> None:
    """At 32 px the maps are 16, 8 and 4 px: the code pools them by 4, 2 and 1."""
    torch.manual_seed(0)
    d = with_data_batch_norm(Discriminator(width=4), torch.rand(64, 1, 32, 32))
    x = torch.rand(7, 1, 32, 32)
    h1, h2, h3 = d.features(x)
    want = torch.cat(
        [F.max_pool2d(h1, 4).flatten(1), F.max_pool2d(h2, 2).flatten(1), h3.flatten(1)], 1
    )
    got = pooled_features(d, x, batch_size=3)
    assert got.shape == (7, 16 * 7 * 4)
    assert torch.allclose(got, want)
    assert pooled_features(d, torch.rand(5, 1, 28, 28)).shape == (5, 16 * 7 * 4)


def test_pooled_features_refuse_a_network_in_training_mode() -> None:
    with pytest.raises(ReproError, match="eval mode"):
        pooled_features(Discriminator(width=4).train(), torch.rand(2, 1, 28, 28))


def test_batch_norm_statistics_are_the_mean_over_batches() -> None:
    """The code's infer_bnorm_stats: the mean over batches of each batch's mean."""
    torch.manual_seed(0)
    d = Discriminator(width=4)
    before = {k: v.clone() for k, v in d.state_dict().items()}
    x = torch.rand(30, 1, 28, 28)
    fixed = with_data_batch_norm(d, x, batch_size=10)
    assert not fixed.training
    assert all(torch.equal(v, d.state_dict()[k]) for k, v in before.items())  # d is untouched
    bn = fixed.blocks[1][1]
    with torch.no_grad():
        pre = [d.blocks[1][0](d.blocks[0](2 * xb - 1)) for xb in x.split(10)]
    want_mean = torch.stack([p.mean(dim=(0, 2, 3)) for p in pre]).mean(0)
    want_var = torch.stack([p.var(dim=(0, 2, 3), unbiased=True) for p in pre]).mean(0)
    assert torch.allclose(bn.running_mean, want_mean, atol=1e-6)
    assert torch.allclose(bn.running_var, want_var, rtol=1e-4)
    assert torch.equal(pixel_features(x), (2 * x - 1).flatten(1))


def _svm_objective(w: np.ndarray, x: np.ndarray, t: np.ndarray, c: float) -> float:
    margin = np.maximum(0.0, 1.0 - t * (x @ w))
    return 0.5 * float(w @ w) + c * float(margin @ margin)


def _svm_gradient(w: np.ndarray, x: np.ndarray, t: np.ndarray, c: float) -> np.ndarray:
    return w - 2.0 * c * x.T @ (t * np.maximum(0.0, 1.0 - t * (x @ w)))


@pytest.mark.parametrize("c", [0.01, 1.0, 100.0])
def test_l2_svm_matches_a_generic_optimiser_of_the_same_objective(c: float) -> None:
    """LinearSVC's primal (squared hinge, L2, intercept regularised), one-vs-rest."""
    from scipy.optimize import minimize

    g = torch.Generator().manual_seed(0)
    f = torch.randn(60, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (60,), generator=g)
    svm = fit_l2_svm(f, y, c=c, classes=3)
    x = np.concatenate([f.numpy(), np.ones((60, 1))], 1)
    for k in range(3):
        t = np.where(y.numpy() == k, 1.0, -1.0)
        ref = minimize(
            _svm_objective, np.zeros(6), args=(x, t, c), method="L-BFGS-B",
            jac=_svm_gradient,
            options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 10000},
        )  # fmt: skip
        ours = np.concatenate([svm.weight[k].numpy(), [float(svm.bias[k])]])
        assert _svm_objective(ours, x, t, c) <= ref.fun * (1 + 1e-9) + 1e-12
        assert np.allclose(ours, ref.x, atol=1e-4 * max(1.0, np.abs(ref.x).max()))


def test_l2_svm_separates_separable_classes_and_refuses_bad_c() -> None:
    g = torch.Generator().manual_seed(1)
    centres = torch.tensor([[5.0, 0.0], [-5.0, 0.0], [0.0, 5.0]])
    y = torch.arange(3).repeat(20)
    f = centres[y] + 0.5 * torch.randn(60, 2, generator=g)
    svm = fit_l2_svm(f, y, c=1.0, classes=3)
    assert torch.equal(svm.predict(f), y)
    with pytest.raises(ReproError, match="positive"):
        fit_l2_svm(f, y, c=0.0, classes=3)


def test_balanced_draw() -> None:
    y = torch.arange(10).repeat(50)[torch.randperm(500, generator=torch.Generator().manual_seed(0))]
    a = balanced_draw(y, 7, 10, torch.Generator().manual_seed(5))
    b = balanced_draw(y, 7, 10, torch.Generator().manual_seed(5))
    c = balanced_draw(y, 7, 10, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.unique().numel() == 70
    assert torch.equal(torch.bincount(y[a], minlength=10), torch.full((10,), 7))
    with pytest.raises(ReproError, match="class"):
        balanced_draw(y, 51, 10, torch.Generator())


def test_select_c_and_evaluate_draws_on_an_easy_problem() -> None:
    g = torch.Generator().manual_seed(2)
    centres = 3.0 * torch.randn(4, 6, generator=g)
    y = torch.arange(4).repeat(100)
    f = centres[y] + torch.randn(400, 6, generator=g)
    sets = [balanced_draw(y[:200], 5, 4, g) for _ in range(3)]
    best, errors = select_c(f[:200], y[:200], f[200:], y[200:], sets, [1e-6, 1.0], classes=4)
    assert set(errors) == {1e-6, 1.0}
    assert errors[1.0] < errors[1e-6] and best == 1.0  # C = 1e-6 shrinks every score to ~0
    correct = evaluate_draws(f[:200], y[:200], f[200:], y[200:], sets, best, classes=4)
    assert correct.shape == (3, 200) and correct.dtype == torch.bool
    assert float(correct.float().mean()) > 0.9


def test_draws_interval() -> None:
    rng = np.random.default_rng(0)
    a = rng.random((5, 300)) < 0.8
    b = rng.random((5, 300)) < 0.6
    one = draws_interval([a])
    assert one.estimate == pytest.approx(a.mean())
    assert one.low < one.estimate < one.high and one.high - one.low < 0.1
    same = draws_interval([a, a], lambda m: m[:, 0] - m[:, 1])
    assert (same.estimate, same.low, same.high) == (0.0, 0.0, 0.0)  # paired: identical vectors
    diff = draws_interval([a, b], lambda m: m[:, 0] - m[:, 1])
    assert diff.estimate == pytest.approx(a.mean() - b.mean()) and diff.low > 0.1
    assert draws_interval([a], seed=3) == draws_interval([a], seed=3)
    # Rows that disagree widen the interval: resampling draws matters.
    rows = np.zeros((4, 200), dtype=bool)
    rows[:2] = True
    assert draws_interval([rows]).high - draws_interval([rows]).low > 0.3
    with pytest.raises(ReproError):
        draws_interval([a, b[:, :10]])


# --------------------------------------------------------------------------- training


def _stub_extractor():
    from repro.sample_quality import FeatureExtractor, FeatureNet

    torch.manual_seed(0)
    return FeatureExtractor(FeatureNet(), "stub", 0.0, Path("stub"))


def test_training_is_deterministic_and_the_fid_hook_does_not_change_it(tmp_path: Path) -> None:
    x = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    settings = type(PAPER)(batch_size=8)
    plain = train(x, iterations=4, width=4, seed=1, settings=settings, progress=False)
    again = train(x, iterations=4, width=4, seed=1, settings=settings, progress=False)
    traced = train(
        x, iterations=4, width=4, seed=1, settings=settings, progress=False,
        fid_reference=x[:16], fid_extractor=_stub_extractor(), fid_every=2, fid_n=16,
        samples_dir=str(tmp_path / "samples"), samples_every=2,
    )  # fmt: skip
    for other in (again, traced):
        for p, q in zip(plain.generator.parameters(), other.generator.parameters(), strict=True):
            assert torch.equal(p, q)
        assert plain.d_loss == other.d_loss
    assert [it for it, _ in traced.fid] == [0, 2, 4]
    assert all(v >= 0 for _, v in traced.fid)
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == [
        "iter_000002.png",
        "iter_000004.png",
    ]
    assert plain.iterations == 4 and len(plain.d_fake) == 4 and plain.seconds > 0
    assert not plain.generator.training  # returned in eval mode
    with pytest.raises(ReproError, match="fid_reference"):
        train(x, iterations=1, width=4, fid_every=1, progress=False)


def test_interpolate_and_vector_arithmetic() -> None:
    z0, z1 = torch.zeros(100), torch.ones(100)
    path = interpolate(z0, z1, 5)
    assert path.shape == (5, 100)
    assert torch.equal(path[0], z0) and torch.equal(path[-1], z1)
    assert torch.allclose(path[2], torch.full((100,), 0.5))
    with pytest.raises(ReproError):
        interpolate(z0, z1, 1)
    g = torch.Generator().manual_seed(0)
    za, zb, zc = (uniform_latent(3, g) for _ in range(3))
    out = vector_arithmetic(za, zb, zc, n_noisy=8, noise=0.25, rng=torch.Generator().manual_seed(1))
    want = za.mean(0) - zb.mean(0) + zc.mean(0)
    assert out.shape == (9, 100) and torch.allclose(out[0], want)
    assert float((out[1:] - want).abs().max()) <= 0.25
    assert float((out[1:] - want).abs().max()) > 0.2  # the noise is there
    assert vector_arithmetic(za, zb, zc, n_noisy=0).shape == (1, 100)


# --------------------------------------------------------------------------- claims


def _results(**overrides: float) -> Results:
    ds = "fashion_mnist"
    m = {
        f"{ds}_dcgan_test_error_pct": 18.0,
        f"{ds}_random_test_error_pct": 21.0,
        f"{ds}_pixels_test_error_pct": 20.0,
        f"{ds}_random_minus_dcgan_error_pct": 3.0,
        f"{ds}_random_minus_dcgan_error_pct.ci95_low": 2.0,
        f"{ds}_random_minus_dcgan_error_pct.ci95_high": 4.0,
        f"{ds}_pixels_minus_dcgan_error_pct": 2.0,
        f"{ds}_pixels_minus_dcgan_error_pct.ci95_low": 1.0,
        f"{ds}_pixels_minus_dcgan_error_pct.ci95_high": 3.0,
        f"{ds}_fid_first": 300.0,
        f"{ds}_fid_final": 20.0,
        f"{ds}_fid_best": 18.0,
    }
    m.update({k.replace("__", "."): v for k, v in overrides.items()})
    return Results({}, m)


def test_claims_hold_fail_and_are_not_evaluated_without_results() -> None:
    claims = load_claims(repro_path(SLUG))
    assert [c.id for c in claims] == [c.id for c in dcgan_claims.CLAIMS]
    assert all(c["holds"] for c in evaluate(claims, _results())), evaluate(claims, _results())
    ds = "fashion_mnist"
    failing = {
        "dcgan_features_beat_random_discriminator": {
            f"{ds}_random_minus_dcgan_error_pct__ci95_low": dcgan_claims.RANDOM_MARGIN - 0.1
        },
        "dcgan_features_beat_raw_pixels": {f"{ds}_pixels_minus_dcgan_error_pct__ci95_low": -0.5},
        "generator_trains_stably": {f"{ds}_fid_first": 150.0},  # final 20 > first / 10
    }
    for claim_id, override in failing.items():
        verdicts = {c["id"]: c["holds"] for c in evaluate(claims, _results(**override))}
        assert verdicts[claim_id] is False, claim_id
        assert sum(v is False for v in verdicts.values()) == 1
    collapse = _results(**{f"{ds}_fid_best": 5.0})  # final 20 > 1.5 x best 5: a late collapse
    assert {c["id"]: c["holds"] for c in evaluate(claims, collapse)}[
        "generator_trains_stably"
    ] is False
    assert all(c["holds"] is None for c in evaluate(claims, Results({})))


# --------------------------------------------------------------------------- the notebook


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_smoke_reproduction_through_the_runner(project: Path, tmp_path: Path) -> None:
    """The notebook runs under papermill at smoke scale, records its metrics, and is stored."""
    result, summary = smoke_run(SLUG, tmp_path / "runs")
    assert {r["verdict"] for r in summary["rows"]} == {"not_run"}  # CIFAR-10, ImageNet, SVHN
    metrics = {m["name"]: m["value"] for m in summary["metrics"]}
    ds = "fashion_mnist"
    for name in ("dcgan", "random", "pixels"):
        assert 0.0 <= metrics[f"{ds}_{name}_test_error_pct"] <= 100.0
        low, high = (metrics[f"{ds}_{name}_test_error_pct.ci95_{s}"] for s in ("low", "high"))
        assert low <= metrics[f"{ds}_{name}_test_error_pct"] <= high
    assert metrics[f"{ds}_dcgan_feature_dim"] == 16 * 7 * 8  # smoke width 8
    assert metrics[f"{ds}_generator_steps_per_second"] > 0
    figures = {Path(f["path"]).stem for f in summary["figures"]}
    assert figures == {"training", "samples", "features", "interpolations", "vector_arithmetic"}
    for f in summary["figures"]:
        assert (result.run_dir / f["path"]).stat().st_size > 0
    assert all(c["holds"] is not None for c in summary["claims"]), summary["claims"]
