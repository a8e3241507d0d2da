"""Improved Training of Wasserstein GANs (Gulrajani et al., NIPS 2017), `repro/wgan_gp`: Figure 2's
architectures (shapes, pixel range, the switches each row names, layer norm against its
definition and its per-sample independence, tanh everywhere), the three objectives' one set of
settings each, a grid cell's seeding, the t-interval and the split FID, the claims on hand-made
results, and the smoke reproduction end to end through the runner. The penalty and the loss
themselves are tested with the loop (tests/repro/test_gan_loop.py)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from scipy.stats import t as student_t
from torch import nn

from repro import ReproError
from repro.claims import Results, evaluate, load_claims
from repro.config import repro_path
from repro.dcgan.models import Discriminator, Generator
from repro.gan import NonSaturating
from repro.sample_quality import FeatureExtractor, FeatureNet
from repro.stats import t_interval
from repro.wgan import WGANClip
from repro.wgan_gp import MNIST_CODE, PAPER, WGANGP
from repro.wgan_gp.architectures import (
    ARCHITECTURES,
    LATENT_DIM,
    ConstantFilterGenerator,
    LayerNorm2d,
    MLPGenerator,
    TanhGenerator,
    build,
    gaussian_latent,
    layer_norm,
    use_tanh,
)
from repro.wgan_gp.claims import TRAINS_BELOW_FID
from repro.wgan_gp.figure2 import OBJECTIVES, SplitFID, objective, train_cell

from .conftest import smoke_run

SLUG = "wgan_gp"


def _kinds(module: nn.Module) -> set[type]:
    return {type(m) for m in module.modules()}


# --------------------------------------------------------------------------- architectures


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("layer_norm_critic", [False, True])
def test_every_architecture_maps_codes_to_images_and_images_to_scores(
    arch: str, layer_norm_critic: bool
) -> None:
    torch.manual_seed(0)
    gen, critic = build(arch, width=4, mlp_hidden=16, critic_layer_norm=layer_norm_critic)
    z = gaussian_latent(6, torch.Generator().manual_seed(0))
    assert z.shape == (6, LATENT_DIM)
    with torch.no_grad():
        x = gen(z)
    assert x.shape == (6, 1, 28, 28)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert critic(x).shape == (6,)
    kinds = _kinds(critic)
    assert (nn.BatchNorm2d in kinds) == (arch != "no_norm" and not layer_norm_critic)
    assert (LayerNorm2d in kinds) == (arch != "no_norm" and layer_norm_critic)


def test_each_row_has_the_switches_it_names() -> None:
    torch.manual_seed(0)
    base_g, base_d = build("dcgan", width=4)
    assert isinstance(base_g, Generator) and isinstance(base_d, Discriminator)
    assert nn.BatchNorm2d in _kinds(base_g) and nn.BatchNorm2d in _kinds(base_d)
    # no normalisation in either network
    g, d = build("no_norm", width=4)
    assert not ({nn.BatchNorm2d, LayerNorm2d} & (_kinds(g) | _kinds(d)))
    # G without batch norm and with a constant number of filters; D is DCGAN's
    g, d = build("g_constant_nobn", width=5)
    assert isinstance(g, ConstantFilterGenerator) and isinstance(d, Discriminator)
    assert nn.BatchNorm2d not in _kinds(g)
    convs = [m for m in g.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(5, 5), (5, 5), (5, 1)]
    assert g.project.out_features == 5 * 4 * 4
    # G a 4-layer ReLU MLP of `hidden` units
    g, _ = build("g_mlp", width=4, mlp_hidden=24)
    linears = [m for m in g.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (LATENT_DIM, 24), (24, 24), (24, 24), (24, 24), (24, 784)
    ]  # fmt: skip
    assert sum(isinstance(m, nn.ReLU) for m in g.modules()) == 4
    # tanh everywhere: no (leaky) ReLU left in either network, batch norm kept
    g, d = build("tanh", width=4)
    for net in (g, d):
        assert not ({nn.ReLU, nn.LeakyReLU} & _kinds(net)) and nn.Tanh in _kinds(net)
        assert nn.BatchNorm2d in _kinds(net)
    with pytest.raises(ReproError, match="architecture"):
        build("resnet101", width=4)


def test_the_tanh_generator_is_dcgans_with_tanh_hidden_layers() -> None:
    torch.manual_seed(0)
    base = Generator(LATENT_DIM, 4, batch_norm=True)
    tanh = TanhGenerator(LATENT_DIM, 4)
    tanh.load_state_dict(base.state_dict())  # the same parameters, layer for layer
    base.eval()
    tanh.eval()
    z = torch.randn(3, LATENT_DIM)
    with torch.no_grad():
        h = torch.tanh(base.project_norm(base.project(z).view(-1, 16, 4, 4)))
        for layer in base.main:
            h = torch.tanh(h) if isinstance(layer, nn.ReLU) else layer(h)
        assert torch.allclose(tanh(z), (h + 1) / 2, atol=1e-6)
        assert not torch.allclose(tanh(z), base(z))


def test_layer_norm_is_the_codes_and_makes_each_score_independent_of_the_batch() -> None:
    g = torch.Generator().manual_seed(0)
    h = torch.randn(5, 3, 4, 4, generator=g) * 3 + 1
    ln = LayerNorm2d(3)
    with torch.no_grad():
        ln.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
        ln.bias.copy_(torch.tensor([0.0, -1.0, 1.0]))
    mean = h.mean(dim=(1, 2, 3), keepdim=True)
    var = h.var(dim=(1, 2, 3), unbiased=False, keepdim=True)
    want = (h - mean) / torch.sqrt(var + 1e-5) * ln.weight.view(1, 3, 1, 1) + ln.bias.view(
        1, 3, 1, 1
    )
    assert torch.allclose(ln(h), want, atol=1e-5)

    torch.manual_seed(0)
    bn_critic = Discriminator(4, batch_norm=True).train()
    ln_critic = layer_norm(Discriminator(4, batch_norm=True)).train()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in ln_critic.modules())
    x = torch.rand(8, 1, 28, 28, generator=g)
    other = torch.cat([x[:1], torch.rand(7, 1, 28, 28, generator=g)])
    with torch.no_grad():
        assert torch.allclose(ln_critic(x)[0], ln_critic(other)[0], atol=1e-6)
        assert not torch.allclose(bn_critic(x)[0], bn_critic(other)[0], atol=1e-4)


def test_use_tanh_replaces_every_rectifier_in_place() -> None:
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Sequential(nn.LeakyReLU(0.2), nn.ReLU()))
    assert use_tanh(net) is net
    assert [type(m) for m in net.modules() if not isinstance(m, nn.Sequential | nn.Linear)] == [
        nn.Tanh, nn.Tanh, nn.Tanh
    ]  # fmt: skip


def test_the_two_generators_of_this_folder_are_he_initialised() -> None:
    torch.manual_seed(0)
    mlp = MLPGenerator(LATENT_DIM, 256)
    first = mlp.main[0]
    weight = first.weight.detach()
    bound = math.sqrt(6.0 / LATENT_DIM)  # kaiming_uniform_ with gain sqrt(2)
    assert float(weight.abs().max()) <= bound
    assert float(weight.std()) == pytest.approx(bound / math.sqrt(3), rel=0.05)
    assert float(first.bias.detach().abs().max()) == 0.0


# --------------------------------------------------------------------------- objectives, cells


def test_one_set_of_settings_per_objective_as_gan_64x64() -> None:
    params = [nn.Parameter(torch.zeros(1))]
    dc = objective("dcgan")
    assert isinstance(dc.loss, NonSaturating) and dc.n_critic == 1 and not dc.critic_layer_norm
    opt = dc.make_optimizer(params)
    assert isinstance(opt, torch.optim.Adam)
    assert opt.defaults["lr"] == 2e-4 and opt.defaults["betas"] == (0.5, 0.999)
    wg = objective("wgan")
    assert isinstance(wg.loss, WGANClip) and wg.loss.clip == 0.01 and wg.n_critic == 5
    opt = wg.make_optimizer(params)
    assert isinstance(opt, torch.optim.RMSprop)
    assert opt.defaults["lr"] == 5e-5 and opt.defaults["alpha"] == 0.9
    assert objective("wgan", wgan_lr=2.5e-4).make_optimizer(params).defaults["lr"] == 2.5e-4
    gp = objective("wgan_gp")
    assert isinstance(gp.loss, WGANGP) and gp.loss.gp_weight == 10.0
    assert gp.n_critic == PAPER.n_critic == 5 and gp.critic_layer_norm
    opt = gp.make_optimizer(params)
    assert opt.defaults["lr"] == 1e-4 and tuple(opt.defaults["betas"]) == (0.0, 0.9)
    code = objective("wgan_gp", gp_betas=MNIST_CODE.betas).make_optimizer(params)
    assert tuple(code.defaults["betas"]) == (0.5, 0.9)
    assert OBJECTIVES == ("dcgan", "wgan", "wgan_gp")
    with pytest.raises(ReproError, match="objective"):
        objective("lsgan")


def test_a_rows_cells_start_from_the_same_generator_and_are_reproducible() -> None:
    x = torch.rand(200, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    kw = {"width": 4, "mlp_hidden": 16, "batch_size": 16, "seed": 3}
    g0 = {name: train_cell("dcgan", objective(name), x, iterations=0, **kw).generator
          for name in OBJECTIVES}  # fmt: skip
    for name in ("wgan", "wgan_gp"):
        for a, b in zip(g0["dcgan"].state_dict().values(), g0[name].state_dict().values(),
                        strict=True):  # fmt: skip
            assert torch.equal(a, b)
    state = torch.get_rng_state()
    one = train_cell("g_mlp", objective("wgan_gp"), x, iterations=3, **kw)
    assert torch.equal(torch.get_rng_state(), state)  # the global stream is left where it was
    two = train_cell("g_mlp", objective("wgan_gp"), x, iterations=3, **kw)
    assert one.iterations == 3 and len(one.statistic) == 3
    for a, b in zip(one.generator.parameters(), two.generator.parameters(), strict=True):
        assert torch.equal(a, b)
    moved = any(not torch.equal(a, b) for a, b in
                zip(one.generator.parameters(), g0["dcgan"].parameters(), strict=False))  # fmt: skip
    assert moved


def test_t_interval_by_hand() -> None:
    mean, low, high = t_interval([1.0, 2.0, 3.0])
    half = float(student_t.ppf(0.975, 2)) * 1.0 / math.sqrt(3)
    assert mean == 2.0 and low == pytest.approx(2 - half) and high == pytest.approx(2 + half)
    with pytest.raises(ReproError):
        t_interval([1.0])


class _Replay(nn.Module):
    """A 'generator' that returns stored images, one batch after another."""

    def __init__(self, images: torch.Tensor) -> None:
        super().__init__()
        self.images, self.at = images, 0

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.images[self.at : self.at + z.shape[0]]
        self.at += z.shape[0]
        return out


def test_split_fid_scores_data_like_samples_far_below_noise() -> None:
    torch.manual_seed(0)
    extractor = FeatureExtractor(FeatureNet(), "0" * 64, 0.0, Path("none"))
    g = torch.Generator().manual_seed(0)
    # "real" images: bright squares on a dark background, with noise
    base = torch.zeros(1, 1, 28, 28)
    base[..., 8:20, 8:20] = 0.8

    def data(n: int) -> torch.Tensor:
        return (base + 0.1 * torch.rand(n, 1, 28, 28, generator=g)).clamp(0, 1)

    real = data(300)
    fid = SplitFID(real, extractor, n=100, splits=3)
    like = fid(_Replay(data(300)), torch.Generator().manual_seed(1))
    noise = fid(_Replay(torch.rand(300, 1, 28, 28, generator=g)), torch.Generator().manual_seed(1))
    assert len(like) == len(noise) == 3
    assert max(like) < min(noise)
    with pytest.raises(ReproError, match="splits"):
        SplitFID(real, extractor, n=200, splits=2)


# --------------------------------------------------------------------------- claims


def _results(**fids: float) -> Results:
    good = {"dcgan": (120.0, 150.0, 110.0), "g_constant_nobn": (260.0, 300.0, 150.0),
            "g_mlp": (400.0, 180.0, 140.0), "tanh": (150.0, 250.0, 160.0)}  # fmt: skip
    metrics = {
        f"fashion_mnist_{arch}_{obj}_fid": v
        for arch, values in good.items()
        for obj, v in zip(("dcgan", "wgan", "wgan_gp"), values, strict=True)
    }
    metrics.update({f"fashion_mnist_{k}_fid": v for k, v in fids.items()})
    return Results({}, metrics)


def _verdicts(r: Results) -> dict[str, bool | None]:
    return {c["id"]: c["holds"] for c in evaluate(load_claims(repro_path(SLUG)), r)}


def test_claims_hold_fail_and_are_not_evaluated() -> None:
    assert TRAINS_BELOW_FID == 200.0
    assert _verdicts(_results()) == {
        "wgan_gp_trains_more_architectures_than_dcgan": True,  # 4 against 2
        "wgan_gp_trains_more_architectures_than_wgan_clipping": True,  # 4 against 3
        "baseline_trains_with_every_objective": True,
        "wgan_gp_trains_every_architecture": True,
    }
    worse = _verdicts(_results(g_constant_nobn_wgan_gp=200.0, g_mlp_wgan_gp=450.0,
                               dcgan_wgan=201.0))  # fmt: skip
    assert worse == {
        "wgan_gp_trains_more_architectures_than_dcgan": False,  # 2 against 2
        "wgan_gp_trains_more_architectures_than_wgan_clipping": True,  # 2 against 1
        "baseline_trains_with_every_objective": False,
        "wgan_gp_trains_every_architecture": False,
    }
    # an architecture without all three objectives is left out of the counts
    partial = _results()
    del partial.metrics["fashion_mnist_g_mlp_dcgan_fid"]
    assert _verdicts(partial)["wgan_gp_trains_more_architectures_than_dcgan"] is True
    assert set(_verdicts(Results({}, {})).values()) == {None}


# --------------------------------------------------------------------------- the notebook


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_smoke_reproduction_through_the_runner(project: Path, tmp_path: Path) -> None:
    """The notebook runs under papermill at smoke scale over every architecture and objective,
    records one FID per cell and the counts, its figures, and every claim is evaluated."""
    result, summary = smoke_run(SLUG, tmp_path / "runs")
    assert {r["verdict"] for r in summary["rows"]} == {"not_run"}  # Tables 2-3: no data here
    metrics = {m["name"]: m["value"] for m in summary["metrics"]}
    for arch in ARCHITECTURES:
        for obj in OBJECTIVES:
            name = f"fashion_mnist_{arch}_{obj}_fid"
            assert metrics[name] > 0
            assert metrics[f"{name}.ci95_low"] <= metrics[name] <= metrics[f"{name}.ci95_high"]
    for obj in OBJECTIVES:
        assert 0 <= metrics[f"fashion_mnist_{obj}_architectures_trained"] <= len(ARCHITECTURES)
    figures = {f["path"] for f in summary["figures"]}
    assert {"figures/figure2_samples.png", "figures/figure2_fid.png"} <= figures
    for f in summary["figures"]:
        assert (result.run_dir / f["path"]).stat().st_size > 0
    assert all(c["holds"] is not None for c in summary["claims"]), summary["claims"]
