"""Generative Adversarial Nets (Goodfellow et al., NIPS 2014), `repro/gan`: the Parzen estimator
against a direct computation and a closed form, the two generator losses and the discriminator's
from logits (values, gradients, saturation), the paper's networks and optimiser schedule, the
gradient probe (it must not change training), the baselines against torch.distributions, the
claims on hand-made results, and the smoke reproduction end to end through the runner."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from repro import ReproError
from repro.claims import Results, evaluate, load_claims
from repro.config import repro_path
from repro.gan import (
    Discriminator,
    Generator,
    GradientProbe,
    Maxout,
    Minimax,
    NonSaturating,
    PaperSGD,
    discriminator_loss,
    logits_of,
    marginal_logits,
    train,
    uniform_latent,
    value,
)
from repro.gan.baselines import DiagonalGMM, Gaussian
from repro.gan.parzen import (
    PAPER_SIGMAS,
    parzen_evaluation,
    parzen_log_likelihood,
    select_sigma,
    standard_error,
)

from .conftest import smoke_run

SLUG = "gan"


# --------------------------------------------------------------------------- Parzen


def _direct_parzen(mu: torch.Tensor, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """parzen_ll.py's formula as written: explicit differences, log-mean-exp, minus Z."""
    a = (x.reshape(len(x), 1, -1).double() - mu.reshape(1, len(mu), -1).double()) / sigma
    e = torch.logsumexp(-0.5 * a.square().sum(2), dim=1) - math.log(len(mu))
    return e - a.shape[2] * math.log(sigma * math.sqrt(2 * math.pi))


def test_parzen_matches_the_direct_formula_with_any_chunking() -> None:
    g = torch.Generator().manual_seed(0)
    mu, x = torch.rand(37, 1, 5, 5, generator=g), torch.rand(11, 1, 5, 5, generator=g)
    for sigma in (0.1, 0.3, 1.0):
        want = _direct_parzen(mu, x, sigma)
        for chunk in (1, 4, 1024):
            got = parzen_log_likelihood(mu, x, sigma, chunk=chunk)
            assert torch.allclose(got, want, atol=1e-9, rtol=0)
    f32 = parzen_log_likelihood(mu, x, 0.1, dtype=torch.float32)
    assert torch.allclose(f32.double(), _direct_parzen(mu, x, 0.1), atol=1e-2)


def test_parzen_closed_form_in_one_dimension() -> None:
    # One sample at 0: log N(x; 0, σ²) = -x²/(2σ²) - log(σ √(2π)).
    mu = torch.zeros(1, 1, 1, 1)
    x = torch.tensor([0.0, 0.5, 2.0]).view(3, 1, 1, 1)
    sigma = 0.5
    want = -(x.view(-1).double() ** 2) / (2 * sigma**2) - math.log(sigma * math.sqrt(2 * math.pi))
    assert torch.allclose(parzen_log_likelihood(mu, x, sigma), want)
    # Far from every sample the log-sum-exp must not underflow to -inf.
    far = parzen_log_likelihood(mu, torch.full((1, 1, 1, 1), 100.0), 0.1)
    assert torch.isfinite(far).all() and float(far) < -4e5
    with pytest.raises(ReproError, match="sigma"):
        parzen_log_likelihood(mu, x, 0.0)
    with pytest.raises(ReproError, match="values per image"):
        parzen_log_likelihood(torch.zeros(2, 4), torch.zeros(2, 5), 0.1)


def test_sigma_grid_selection_and_standard_error_follow_parzen_ll_py() -> None:
    assert np.allclose(PAPER_SIGMAS, np.logspace(-1, 0, num=10))
    g = torch.Generator().manual_seed(1)
    mu, valid = torch.rand(50, 20, generator=g), torch.rand(30, 20, generator=g)
    sigma, means = select_sigma(mu, valid)
    direct = [float(_direct_parzen(mu, valid, s).mean()) for s in PAPER_SIGMAS]
    assert np.allclose(means, direct)
    assert sigma == PAPER_SIGMAS[int(np.argmax(direct))]
    ll = torch.randn(200, generator=g).double()
    assert standard_error(ll) == pytest.approx(ll.numpy().std() / math.sqrt(200))
    test = torch.rand(40, 20, generator=g)
    result = parzen_evaluation(mu, valid, test)
    assert result.sigma == sigma and result.n_samples == 50
    assert result.mean == pytest.approx(float(_direct_parzen(mu, test, sigma).mean()))
    assert result.se == pytest.approx(standard_error(result.per_image))


def test_parzen_prefers_samples_that_are_the_data() -> None:
    g = torch.Generator().manual_seed(2)
    prototypes = torch.rand(4, 1, 4, 4, generator=g).round()  # four patterns, a little noise
    pick = torch.randint(0, 4, (200,), generator=g)
    data = prototypes[pick] + 0.05 * torch.randn(200, 1, 4, 4, generator=g)
    noise = torch.rand(200, 1, 4, 4, generator=g)
    valid, test = data[:50], data[50:100]
    memorised = parzen_evaluation(data[100:], valid, test)
    uniform = parzen_evaluation(noise, valid, test)
    assert memorised.mean > uniform.mean + 3 * max(memorised.se, uniform.se)


# --------------------------------------------------------------------------- the losses


class _Fixed(nn.Module):
    """A critic whose logits are given: the images' first value."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1)[:, :1]


def test_losses_from_logits_equal_the_papers_formulas() -> None:
    real = torch.tensor([2.0, -1.0, 0.5]).view(3, 1)
    fake = torch.tensor([-3.0, 0.0, 1.5]).view(3, 1)
    d_real, d_fake = torch.sigmoid(real.view(-1)), torch.sigmoid(fake.view(-1))
    v = torch.log(d_real).mean() + torch.log(1 - d_fake).mean()  # Eq. 1 on the batch
    assert float(value(real.view(-1), fake.view(-1))) == pytest.approx(float(v), rel=1e-6)
    assert float(discriminator_loss(real.view(-1), fake.view(-1))) == pytest.approx(-float(v))
    critic = _Fixed()
    loss, stat = Minimax().critic_loss(critic, real, fake, torch.Generator())
    assert float(loss) == pytest.approx(-float(v), rel=1e-6)
    assert float(stat) == pytest.approx(float(d_fake.mean()))
    assert float(Minimax().generator_loss(critic, fake)) == pytest.approx(
        float(torch.log(1 - d_fake).mean()), rel=1e-6
    )
    assert float(NonSaturating().generator_loss(critic, fake)) == pytest.approx(
        float(-torch.log(d_fake).mean()), rel=1e-6
    )
    assert NonSaturating().critic_loss(critic, real, fake, torch.Generator())[0] == loss


def test_the_saturating_loss_vanishes_where_the_non_saturating_one_does_not() -> None:
    logits = torch.tensor([-200.0, -20.0, -5.0, 0.0], requires_grad=True)
    m = len(logits)
    for loss, slope in ((Minimax(), lambda d: -d), (NonSaturating(), lambda d: -(1 - d))):
        (grad,) = torch.autograd.grad(loss.generator_objective(logits), logits)
        d = torch.sigmoid(logits.detach())
        assert torch.allclose(grad, slope(d) / m, atol=1e-12)  # d/dl of the mean loss
        assert torch.isfinite(loss.generator_objective(logits))
    # At D(G(z)) = sigmoid(-200) the non-saturating loss is 200 nats (finite, from logits).
    ns = NonSaturating().generator_objective(torch.tensor([-200.0]))
    assert float(ns) == pytest.approx(200.0)


def test_any_critic_with_one_logit_per_image() -> None:
    x = torch.rand(4, 1, 2, 2)
    assert logits_of(_Fixed(), x).shape == (4,)
    two = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(ReproError, match="one logit per image"):
        logits_of(two, x)


# --------------------------------------------------------------------------- networks, optimiser


def test_maxout_takes_the_maximum_of_each_units_pieces() -> None:
    layer = Maxout(2, units=2, pieces=3)
    with torch.no_grad():
        layer.linear.weight.copy_(torch.tensor([[1.0, 0], [0, 1], [1, 1], [-1, 0], [0, -1],
                                                [2, 0]]))  # fmt: skip
        layer.linear.bias.zero_()
    x = torch.tensor([[1.0, 2.0], [-1.0, 0.5]])
    want = torch.tensor([[3.0, 2.0], [0.5, 1.0]])  # max(x1, x2, x1+x2), max(-x1, -x2, 2 x1)
    assert torch.equal(layer(x), want)


def test_generator_starts_at_the_data_marginals_and_the_latent_is_unit_uniform() -> None:
    g = torch.Generator().manual_seed(0)
    data = (torch.rand(500, 1, 28, 28, generator=g) < 0.3).float()
    data[:, :, 0, 0] = 0.0  # a pixel that never lights: clipped, not -inf
    b = marginal_logits(data)
    assert torch.isfinite(b).all()
    gen = Generator(32, output_bias=b)
    with torch.no_grad():
        gen.net[-1].weight.zero_()
    out = gen(uniform_latent(3, g))
    assert out.shape == (3, 1, 28, 28)
    assert torch.allclose(out[0].view(-1), data.mean(0).view(-1).clamp(1e-7, 1 - 1e-7), atol=1e-6)
    z = uniform_latent(20000, torch.Generator().manual_seed(1))
    assert float(z.abs().max()) <= math.sqrt(3) and abs(float(z.var()) - 1) < 0.02
    d = Discriminator(16, 5)
    assert d(torch.rand(7, 1, 28, 28)).shape == (7,)


def test_paper_sgd_schedule_and_exact_resume() -> None:
    group = {"lr0": 0.1, "decay": 1.000004, "min_lr": 1e-6, "init_momentum": 0.5,
             "final_momentum": 0.7, "start": 1, "saturate": 250, "updates_per_epoch": 500}  # fmt: skip
    assert PaperSGD.schedule(group, 0) == (0.1, 0.5)
    lr, mom = PaperSGD.schedule(group, 500 * 250)
    assert lr == pytest.approx(0.1 / 1.000004 ** (500 * 250)) and mom == pytest.approx(0.7)
    assert PaperSGD.schedule(group, 500 * 125)[1] == pytest.approx(0.5 + 0.2 * 124 / 249)
    assert PaperSGD.schedule(group, 10**9)[0] == 1e-6

    def run(steps: int, resume_at: int | None = None) -> torch.Tensor:
        torch.manual_seed(0)
        w = nn.Parameter(torch.randn(5))
        opt = PaperSGD([w], lr=0.1, updates_per_epoch=2, saturate=3)
        for i in range(steps):
            if resume_at is not None and i == resume_at:
                state = opt.state_dict()
                opt = PaperSGD([w], lr=0.1, updates_per_epoch=2, saturate=3)
                opt.load_state_dict(state)
            opt.zero_grad()
            (w.square().sum() * (1 + i)).backward()
            opt.step()
        assert opt.param_groups[0]["updates"] == steps
        return w.detach().clone()

    assert torch.equal(run(9), run(9, resume_at=4))


# --------------------------------------------------------------------------- training, the probe


def _tiny(loss, probe_every: int = 0, iterations: int = 12):
    x = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    return train(x, loss=loss, iterations=iterations, g_hidden=16, d_units=8, d_pieces=2,
                 batch_size=8, optimizer="adam", lr_g=1e-2, lr_d=1e-2, seed=5,
                 probe_every=probe_every, probe_until=6, progress=False)  # fmt: skip


def test_the_probe_does_not_change_training_and_measures_both_gradients() -> None:
    plain = _tiny(Minimax())
    probed = _tiny(Minimax(), probe_every=2)
    for a, b in zip(plain.generator.parameters(), probed.generator.parameters(), strict=True):
        assert torch.equal(a, b)
    assert plain.d_fake == probed.d_fake and plain.probe == []
    assert [p["step"] for p in probed.probe] == [2, 4, 6]
    for p in probed.probe:
        assert p["ratio"] == pytest.approx(p["non_saturating"] / p["saturating"])
        assert 0 < p["d_fake"] < 1
    # The two losses start from the same networks and see the same batches.
    a, b = _tiny(Minimax(), iterations=0), _tiny(NonSaturating(), iterations=0)
    for pa, pb in zip(a.generator.parameters(), b.generator.parameters(), strict=True):
        assert torch.equal(pa, pb)
    with pytest.raises(ReproError, match="optimizer"):
        train(torch.rand(8, 1, 28, 28), loss=Minimax(), iterations=1, optimizer="rmsprop")


def test_the_probe_against_a_hand_computation() -> None:
    torch.manual_seed(0)
    gen = nn.Sequential(nn.Linear(3, 4))
    critic = nn.Sequential(nn.Flatten(), nn.Linear(4, 1))
    probe = GradientProbe(NonSaturating(), gen, every=1, until=1)
    z = torch.randn(5, 3)
    probe.generator_loss(critic, gen(z))
    rec = probe.records()[0]
    losses = {
        "saturating": lambda v: F.logsigmoid(-v),
        "non_saturating": lambda v: -F.logsigmoid(v),
    }
    for name, f in losses.items():
        gen.zero_grad()
        f(critic(gen(z)).view(-1)).mean().backward()
        norm = torch.cat([p.grad.view(-1) for p in gen.parameters()]).norm()
        assert rec[name] == pytest.approx(float(norm), rel=1e-5)
    probe.generator_loss(critic, gen(z))
    assert len(probe.records()) == 1  # past `until`


# --------------------------------------------------------------------------- baselines


def test_gaussian_baseline_density_and_samples() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(300, 1, 2, 3, generator=g) * 0.5 + 0.25
    model = Gaussian.fit(x, jitter=1e-3)
    flat = x.view(300, -1).double()
    cov = torch.cov(flat.T, correction=0) + 1e-3 * torch.eye(6, dtype=torch.float64)
    ref = torch.distributions.MultivariateNormal(flat.mean(0), covariance_matrix=cov)
    assert torch.allclose(model.log_prob(x[:10]), ref.log_prob(flat[:10]))
    s = model.sample(5000, torch.Generator().manual_seed(1))
    assert s.shape == (5000, 1, 2, 3) and s.dtype == torch.float32
    assert float(s.min()) >= 0 and float(s.max()) <= 1
    assert torch.allclose(s.view(5000, -1).mean(0).double(), flat.mean(0), atol=0.02)


def test_gmm_em_recovers_two_clusters_and_its_density_is_a_mixture() -> None:
    g = torch.Generator().manual_seed(0)
    a = 0.2 + 0.02 * torch.randn(400, 1, 1, 2, generator=g)
    b = 0.8 + 0.05 * torch.randn(200, 1, 1, 2, generator=g)
    x = torch.cat([a, b])
    model = DiagonalGMM.fit(
        x, 2, iterations=40, var_floor=1e-6, rng=torch.Generator().manual_seed(4)
    )
    order = torch.argsort(model.means[:, 0])
    assert torch.allclose(model.means[order], torch.tensor([[0.2, 0.2], [0.8, 0.8]]).double(),
                          atol=0.02)  # fmt: skip
    assert torch.allclose(model.weights[order], torch.tensor([2 / 3, 1 / 3]).double(), atol=0.01)
    assert torch.allclose(model.variances[order].sqrt(),
                          torch.tensor([[0.02, 0.02], [0.05, 0.05]]).double(), rtol=0.2)  # fmt: skip
    mix = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(probs=model.weights),
        torch.distributions.Independent(
            torch.distributions.Normal(model.means, model.variances.sqrt()), 1
        ),
    )
    flat = x.view(len(x), -1).double()
    assert torch.allclose(model.log_prob(x, chunk=7), mix.log_prob(flat))
    # EM never lowers the likelihood.
    lls = [float(DiagonalGMM.fit(x, 2, iterations=n, var_floor=1e-6,
                                 rng=torch.Generator().manual_seed(4)).log_prob(x).mean())
           for n in (1, 2, 5, 20)]  # fmt: skip
    assert all(b >= a - 1e-9 for a, b in itertools.pairwise(lls))
    s = model.sample(100, torch.Generator().manual_seed(2))
    assert s.shape == (100, 1, 1, 2) and float(s.min()) >= 0 and float(s.max()) <= 1


# --------------------------------------------------------------------------- claims


def _results(**overrides: float) -> Results:
    m = {
        "fashion_mnist_nonsaturating_minus_gaussian_parzen_ll": 30.0,
        "fashion_mnist_nonsaturating_minus_gaussian_parzen_ll_se": 2.0,
        "fashion_mnist_nonsaturating_minus_gmm_parzen_ll": -3.0,
        "fashion_mnist_nonsaturating_minus_gmm_parzen_ll_se": 2.0,
        "fashion_mnist_minimax_early_gradient_ratio": 25.0,
        "fashion_mnist_minimax_early_d_fake": 0.04,
        "fashion_mnist_nonsaturating_fid": 20.0,
        "fashion_mnist_minimax_fid": 60.0,
    }
    m.update(overrides)
    return Results({}, m)


def test_claims_hold_fail_and_wait_for_their_metrics() -> None:
    claims = load_claims(repro_path(SLUG))
    verdicts = {c["id"]: c["holds"] for c in evaluate(claims, _results())}
    assert verdicts == {
        "gan_parzen_on_par_with_simple_baselines": True,
        "saturating_loss_weak_gradient_early": True,
        "nonsaturating_loss_trains_g_better": True,
    }
    worse = _results(
        fashion_mnist_nonsaturating_minus_gmm_parzen_ll=-4.1,
        fashion_mnist_minimax_early_gradient_ratio=9.9,
        fashion_mnist_nonsaturating_fid=60.0,
    )
    assert all(c["holds"] is False for c in evaluate(claims, worse))
    none = evaluate(claims, Results({}, {}))
    assert all(c["holds"] is None and "not evaluated" in c["detail"] for c in none)


# --------------------------------------------------------------------------- the smoke run


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_smoke_reproduction_through_the_runner(project: Path, tmp_path: Path) -> None:
    """The notebook runs under papermill at smoke scale, records Table 1's MNIST row (on
    mnist-test-split here, never compared), the Fashion-MNIST metrics the claims read, and its
    figures; the run is stored."""
    result, summary = smoke_run(SLUG, tmp_path / "runs")
    rows = {r["id"]: r for r in summary["rows"]}
    assert {r["verdict"] for r in summary["rows"]} <= {"not_compared", "not_run"}
    assert rows["t1_tfd_adversarial_nets"]["verdict"] == "not_run"
    gan_row = rows["t1_mnist_adversarial_nets"]
    assert gan_row["verdict"] in {"not_compared", "not_run"}
    if gan_row["verdict"] == "not_compared":
        assert "mnist-test-split" in gan_row["reason"]
    figures = {Path(f["path"]).stem for f in summary["figures"]}
    assert {"samples_fashion_mnist", "training_fashion_mnist"} <= figures
    for f in summary["figures"]:
        assert (result.run_dir / f["path"]).stat().st_size > 0
    crashed = [c for c in summary["claims"] if "the check raised" in (c["detail"] or "")]
    assert not crashed, crashed
    assert all(c["holds"] is not None for c in summary["claims"]), summary["claims"]
