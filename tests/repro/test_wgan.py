"""Wasserstein GAN (repro.wgan): the clipped critic's losses and clipping by hand, the code's
critic schedule, the median filter and the rank correlation against scipy, the standard GAN
baseline's JS estimate, the networks, segmented training against one uninterrupted run, the
claims on hand-made results, and the smoke reproduction end to end through the runner."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from repro.claims import Results, evaluate, load_claims
from repro.config import repro_path
from repro.env import fork_generator
from repro.gan import NonSaturating
from repro.gan_loop import train_gan
from repro.wgan import (
    PAPER,
    CriticSchedule,
    WGANClip,
    class_entropy,
    median_filter,
    spearman,
    spearman_interval,
)
from repro.wgan.baseline import js_estimate
from repro.wgan.experiment import build_critic, build_generator, gaussian_latent, train_in_segments
from repro.wgan.models import DCGANCritic, DCGANGenerator, MLPGenerator, count_parameters

from .conftest import smoke_run

SLUG = "wgan"


class Linear(nn.Module):
    """D(x) = sum of the pixels times `a`: a critic whose outputs are known by hand."""

    def __init__(self, a: float) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a * x.flatten(1).sum(dim=1)


def test_the_paper_defaults() -> None:
    assert (PAPER.lr, PAPER.clip, PAPER.batch_size, PAPER.n_critic) == (0.00005, 0.01, 64, 5)


def test_wgan_losses_by_hand() -> None:
    real = torch.full((4, 1, 2, 2), 0.5)  # D = 2a per image
    fake = torch.full((3, 1, 2, 2), 0.25)  # D = a per image
    critic = Linear(3.0)
    loss, w = WGANClip().critic_loss(critic, real, fake, torch.Generator())
    assert float(w.detach()) == pytest.approx(6.0 - 3.0)  # E D(x) - E D(G(z)) = -Loss_D
    assert float(loss.detach()) == pytest.approx(-3.0)  # the critic minimises D(G(z)) - D(x)
    assert float(WGANClip().generator_loss(critic, fake).detach()) == pytest.approx(-3.0)
    # the critic's step raises the estimate: its gradient on `a` is E sum(fake) - E sum(real)
    (grad,) = torch.autograd.grad(loss, critic.a)
    assert float(grad) == pytest.approx(1.0 - 2.0)


def test_clipping_reaches_every_parameter() -> None:
    torch.manual_seed(0)
    critic = DCGANCritic(ndf=4)
    with torch.no_grad():
        for p in critic.parameters():
            p.mul_(100.0).add_(0.5)
    before = [p.detach().clone() for p in critic.parameters()]
    WGANClip(clip=0.01).after_critic_step(critic)
    for p, old in zip((q.detach() for q in critic.parameters()), before, strict=True):
        assert float(p.abs().max()) <= 0.01
        inside = old.abs() <= 0.01
        assert torch.equal(p[inside], old[inside])  # values inside the box are kept
    bn = next(m for m in critic.modules() if isinstance(m, nn.BatchNorm2d))
    # batch-norm scales too, as the code clamps all of netD.parameters()
    assert float(bn.weight.detach().max()) == pytest.approx(0.01)


def test_the_codes_critic_schedule() -> None:
    s = CriticSchedule()
    assert [s(it) for it in (0, 1, 24, 25, 26, 499, 500, 501, 1000)] == [
        100, 100, 100, 5, 5, 5, 100, 5, 100,
    ]  # fmt: skip
    assert s.total(27) == 25 * 100 + 2 * 5
    plain = CriticSchedule(warmup=0, every=0)  # Algorithm 1 as printed
    assert {plain(it) for it in range(1200)} == {5}


def test_median_filter_truncates_at_the_ends() -> None:
    values = [1.0, 5.0, 2.0, 8.0, 3.0]
    assert median_filter(values, 3) == [3.0, 2.0, 5.0, 3.0, 5.5]
    assert median_filter(torch.tensor(values), 1) == values
    from scipy.signal import medfilt

    rng = np.random.default_rng(0)
    v = rng.normal(size=60)
    ours = median_filter(v.tolist(), 11)
    assert np.allclose(ours[5:-5], medfilt(v, 11)[5:-5])  # the interior is scipy's filter
    with pytest.raises(ValueError, match="odd"):
        median_filter(values, 4)


def test_spearman_and_its_interval() -> None:
    from scipy.stats import spearmanr

    x = np.arange(10.0)
    assert spearman(x, x**3) == pytest.approx(1.0)
    assert spearman(x, -x) == pytest.approx(-1.0)
    assert math.isnan(spearman(x, np.ones(10)))
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=12), rng.normal(size=12)
    b[3] = b[5]  # a tie
    assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic)
    perfect = spearman_interval(x, 2 * x + 1)
    assert (perfect.estimate, perfect.low, perfect.high) == pytest.approx((1.0, 1.0, 1.0))
    noisy = spearman_interval(a, b)
    assert noisy.low <= noisy.estimate <= noisy.high
    assert noisy.low < 0 < noisy.high  # 12 independent pairs: the interval straddles 0
    again = spearman_interval(a, b)
    assert (again.low, again.high) == (noisy.low, noisy.high)  # seeded: a rerun repeats it


def test_class_entropy() -> None:
    uniform = torch.eye(10).repeat(3, 1)  # 30 samples, three of each class
    assert class_entropy(uniform) == pytest.approx(math.log(10))
    collapsed = torch.zeros(8, 10)
    collapsed[:, 4] = 1.0
    assert class_entropy(collapsed) == pytest.approx(0.0)


def test_js_estimate_of_the_standard_gan_loss() -> None:
    """Figure 4's JS estimate from repro.gan's discriminator loss, at known discriminators."""
    loss = NonSaturating()
    real, fake = torch.ones(4, 1, 1, 1), torch.zeros(4, 1, 1, 1)
    undecided = Linear(0.0)  # D = sigmoid(0) = 1/2 everywhere: L = 2 log(1/2), JS estimate 0
    d_loss, _ = loss.critic_loss(undecided, real, fake, torch.Generator())
    d_loss = d_loss.detach()
    assert float(d_loss) == pytest.approx(2 * math.log(2))
    assert float(js_estimate(d_loss)) == pytest.approx(0.0, abs=1e-7)
    sure = Linear(30.0)  # D(real) -> 1, D(fake) = 1/2: L = log(1/2)
    d_loss, _ = loss.critic_loss(sure, real, fake, torch.Generator())
    assert float(js_estimate(d_loss.detach())) == pytest.approx(math.log(2) / 2, abs=1e-6)
    assert js_estimate(0.0) == pytest.approx(math.log(2))  # a perfect D: the JS bound log 2
    g = loss.generator_loss(sure, real).detach()  # -log D(G(z)) with D(G(z)) ~ 1
    assert float(g) == pytest.approx(0.0, abs=1e-6)


def test_networks_shapes_range_and_batch_norm() -> None:
    torch.manual_seed(0)
    z = torch.randn(5, 100)
    bn = DCGANGenerator(ngf=8)
    nobn = DCGANGenerator(ngf=8, batch_norm=False, constant_filters=True)
    for g in (bn, nobn, MLPGenerator(hidden=32)):
        with torch.no_grad():
            out = g(z)
        assert out.shape == (5, 1, 28, 28)
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert any(isinstance(m, nn.BatchNorm2d) for m in bn.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in nobn.modules())
    assert count_parameters(nobn) < count_parameters(bn)  # constant filters: fewer weights
    assert DCGANCritic(ndf=8)(torch.rand(5, 1, 28, 28)).shape == (5,)
    with pytest.raises(Exception, match="generator"):
        build_generator("resnet", ngf=8)


def _arm(seed: int = 0):
    torch.manual_seed(seed)
    g, d = build_generator("dcgan", ngf=4), build_critic(ndf=4)
    opts = (torch.optim.RMSprop(g.parameters(), lr=5e-5),
            torch.optim.RMSprop(d.parameters(), lr=5e-5))  # fmt: skip
    return g, d, opts


def test_segmented_training_equals_one_run(tmp_path: Path) -> None:
    x = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    schedule = CriticSchedule(warmup=2, every=4, long=3, n_critic=2)
    g1, d1, (og1, od1) = _arm()
    train_gan(g1, d1, x, loss=WGANClip(), iterations=6, batch_size=8, n_critic=schedule,
              opt_g=og1, opt_d=od1, latent=gaussian_latent, rng=fork_generator(7),
              progress=False)  # fmt: skip
    g2, d2, (og2, od2) = _arm()
    seen = []
    out = train_in_segments(
        g2, d2, x, loss=WGANClip(), stops=[4, 2, 6], batch_size=8, n_critic=schedule,
        opt_g=og2, opt_d=od2, rng=fork_generator(7), checkpoint=tmp_path / "ck.pt",
        on_stop=seen.append,
    )  # fmt: skip
    assert seen == [2, 4, 6] and out.stops == [2, 4, 6]
    assert len(out.run.statistic) == 6  # the whole history, across the segments
    for a, b in zip(g1.state_dict().values(), g2.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(d1.state_dict().values(), d2.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert max(float(p.detach().abs().max()) for p in d2.parameters()) <= 0.01
    with pytest.raises(Exception, match="exists"):
        train_in_segments(g2, d2, x, loss=WGANClip(), stops=[1], batch_size=8, n_critic=1,
                          opt_g=og2, opt_d=od2, rng=fork_generator(7),
                          checkpoint=tmp_path / "ck.pt", on_stop=seen.append)  # fmt: skip


# --------------------------------------------------------------------------- claims


def _results(**overrides: float) -> Results:
    """A run in which every claim holds; `overrides` replace rows or metrics by name."""
    rows, metrics = {}, {}
    for g in ("dcgan", "dcgan_nobn"):
        rows[f"fm_{g}_wgan_fid"] = 40.0
        rows[f"fm_{g}_gan_fid"] = 50.0 if g == "dcgan" else 120.0
        rows[f"fm_{g}_wgan_class_entropy"] = 2.2
        rows[f"fm_{g}_gan_class_entropy"] = 2.1
        rows[f"fm_{g}_wgan_loss_fid_spearman"] = 0.9
        rows[f"fm_{g}_gan_loss_fid_spearman"] = -0.4
        metrics[f"{g}_gan_minus_{g}_wgan_fid.ci95_low"] = 5.0
        metrics[f"{g}_gan_minus_{g}_wgan_fid.ci95_high"] = 90.0
        for alg, first, last in (("wgan", 0.02, 0.008), ("gan", 0.2, 0.5)):
            metrics[f"{g}_{alg}_loss_first"], metrics[f"{g}_{alg}_loss_last"] = first, last
            metrics[f"{g}_{alg}_fid_first"], metrics[f"{g}_{alg}_fid_last"] = 400.0, 45.0
            metrics[f"{g}_{alg}_loss_fid_spearman.ci95_low"] = 0.5
            metrics[f"{g}_{alg}_loss_fid_spearman.ci95_high"] = 1.0
    for name, value in overrides.items():
        (rows if name.startswith("fm_") else metrics)[name] = value
    return Results(rows, metrics)


def _verdicts(r: Results) -> dict[str, bool | None]:
    return {c["id"]: c["holds"] for c in evaluate(load_claims(repro_path(SLUG)), r)}


def test_claims_hold_fail_and_are_not_evaluated() -> None:
    v = _verdicts(_results())
    assert v == {
        "critic_estimate_tracks_sample_quality": True,
        "js_estimate_does_not_track_sample_quality": True,
        "wgan_trains_without_batch_norm": True,
        "both_work_with_the_dcgan_generator": True,
        "no_mode_collapse_in_wgan": True,
        "wgan_mlp_generator_beats_gan": None,  # the MLP arms did not run
    }
    fails = {
        "critic_estimate_tracks_sample_quality": {"dcgan_wgan_loss_last": 0.03},  # rises
        "js_estimate_does_not_track_sample_quality": {"fm_dcgan_gan_loss_fid_spearman": 0.5},
        "wgan_trains_without_batch_norm": {"fm_dcgan_nobn_gan_fid": 55.0},
        "both_work_with_the_dcgan_generator": {"fm_dcgan_gan_fid": 90.0},
        "no_mode_collapse_in_wgan": {"fm_dcgan_nobn_wgan_class_entropy": 1.5},
    }
    for claim, override in fails.items():
        assert _verdicts(_results(**override))[claim] is False, claim
    low_interval = _results(**{"dcgan_wgan_loss_fid_spearman.ci95_low": -0.1})
    assert _verdicts(low_interval)["critic_estimate_tracks_sample_quality"] is False
    missing = Results({}, {})
    assert set(_verdicts(missing).values()) == {None}


# --------------------------------------------------------------------------- the notebook


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_smoke_reproduction_through_the_runner(project: Path, tmp_path: Path) -> None:
    """The notebook runs under papermill at smoke scale with all three generators, records every
    row, and every claim is evaluated (none crashes)."""
    result, summary = smoke_run(SLUG, tmp_path / "runs")
    rows = {r["id"]: r for r in summary["rows"]}
    assert all(r["value"] is not None for i, r in rows.items() if i.endswith("_fid")), rows
    assert {r["verdict"] for r in summary["rows"]} <= {"not_compared", "not_run"}
    names = {f["path"] for f in summary["figures"]}
    assert {"figures/loss_curves.png", "figures/samples.png"} <= names
    assert (result.run_dir / "figures" / "samples.png").stat().st_size > 0
    crashed = [c for c in summary["claims"] if "the check raised" in (c["detail"] or "")]
    assert not crashed, crashed
