"""Tests of the Defense-GAN reproduction: projection, GAN checkpoints, detector, defended model.

Small on purpose (tiny generators, a few steps): the machine running them has 2 shared cores.
The end-to-end smoke run through the runner is marked `slow`.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from repro.defense_gan.defense import DefenseGAN, roc_auc, roc_curve
from repro.defense_gan.gan import load_generator, train_wgan_gp
from repro.defense_gan.models import CLASSIFIERS, Critic, Generator, classifier
from repro.defense_gan.projection import initial_latents, lr_schedule, project


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: on a shared 2-core machine two threads make small ops ~10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class LinearGenerator(nn.Module):
    """G(z) = z reshaped to 1 x 2 x 2: the projection's optimum and trajectory are known."""

    latent_dim = 4

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z.view(-1, 1, 2, 2)


def tiny_generator(seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    return Generator(dim=4, latent_dim=8).eval()


# --- projection -------------------------------------------------------------------------------


def test_project_recovers_a_latent_on_a_tiny_generator() -> None:
    """Reconstructing x = G(z0) reaches near-zero MSE (x is exactly in the range of G)."""
    gen = tiny_generator()
    rng = torch.Generator().manual_seed(1)
    z0 = torch.randn(6, 8, generator=rng) * 0.5
    with torch.no_grad():
        x = gen(z0)
    start = project(gen, x, steps=0, restarts=8, generator_rng=torch.Generator().manual_seed(2))
    proj = project(
        gen, x, steps=300, restarts=8, lr=10.0, momentum=0.7,
        generator_rng=torch.Generator().manual_seed(2),
    )  # fmt: skip
    assert proj.reconstruction.shape == x.shape
    assert float(start.mse.mean()) > 1e-3  # random starts are far from x ...
    assert float(proj.mse.max()) < 1e-5  # ... and the projection gets (numerically) there
    assert torch.allclose(proj.reconstruction, x, atol=1e-2)


def test_best_restart_is_chosen_per_image() -> None:
    """With one restart started at the answer, that restart wins for every image."""
    gen = tiny_generator()
    torch.manual_seed(3)
    z0 = torch.randn(5, 8) * 0.5
    with torch.no_grad():
        x = gen(z0)
    z_init = initial_latents(5, 4, 8, generator_rng=torch.Generator().manual_seed(4)) + 2.0
    exact = torch.tensor([2, 0, 3, 1, 2])  # a different winning restart per image
    z_init[exact, torch.arange(5)] = z0
    proj = project(gen, x, steps=0, restarts=4, z_init=z_init)
    assert proj.best_restart.tolist() == exact.tolist()
    assert torch.equal(proj.latent, z0)
    assert float(proj.mse.max()) < 1e-12
    assert torch.equal(proj.mse, proj.restart_mse.min(dim=0).values)


def test_learning_rate_decays_tenfold_at_80_percent() -> None:
    """The stated schedule (the variant `decay=0.1`); by default the rate stays 10, as the
    released code ran it."""
    assert lr_schedule(10, 10.0, 0.1) == [10.0] * 8 + [1.0] * 2
    assert lr_schedule(5, 10.0, 0.1) == [10.0] * 4 + [1.0]  # ceil(0.8 * 5) = 4
    assert lr_schedule(200, 10.0, 0.1).index(1.0) == 160
    assert lr_schedule(200, 10.0) == [10.0] * 200


def test_projection_follows_momentum_descent_with_the_schedule() -> None:
    """On G(z) = z the loss is mean((z - x)^2), so the trajectory can be written out by hand."""
    gen = LinearGenerator()
    x = torch.tensor([[[[0.2, 0.4], [0.6, 0.8]]]])
    z_init = torch.zeros(1, 1, 4)
    steps, lr, momentum = 10, 0.3, 0.7
    proj = project(gen, x, steps=steps, restarts=1, lr=lr, momentum=momentum, z_init=z_init,
                   decay=0.1)  # fmt: skip
    z, v = torch.zeros(4), torch.zeros(4)
    for rate in [lr] * 8 + [lr * 0.1] * 2:
        grad = 2.0 * (z - x.flatten()) / 4.0
        v = momentum * v + grad
        z = z - rate * v
    assert torch.allclose(proj.latent[0], z, atol=1e-6)
    constant = project(gen, x, steps=steps, restarts=1, lr=lr, momentum=momentum,
                       z_init=z_init, decay=1.0)  # fmt: skip
    assert not torch.allclose(constant.latent, proj.latent)
    # The default is the constant rate (the released code's), not the stated decay.
    default = project(gen, x, steps=steps, restarts=1, lr=lr, momentum=momentum, z_init=z_init)
    assert torch.equal(default.latent, constant.latent)


def test_batching_and_chunking_do_not_change_the_result() -> None:
    """Chunks of images and restarts on the batch dimension give the per-image answer."""
    gen = tiny_generator()
    torch.manual_seed(5)
    x = torch.rand(7, 1, 28, 28)
    z_init = initial_latents(7, 3, 8, generator_rng=torch.Generator().manual_seed(6))
    whole = project(gen, x, steps=5, restarts=3, z_init=z_init)
    chunked = project(gen, x, steps=5, restarts=3, z_init=z_init, max_rows=6)  # 2 images a chunk
    single = project(gen, x[4:5], steps=5, restarts=3, z_init=z_init[:, 4:5])
    assert whole.restart_latent.shape == (3, 7, 8) and whole.restart_mse.shape == (3, 7)
    assert whole.latent.shape == (7, 8) and whole.mse.shape == (7,)
    assert torch.allclose(whole.restart_latent, chunked.restart_latent, atol=1e-6)
    assert torch.allclose(whole.restart_latent[:, 4:5], single.restart_latent, atol=1e-6)
    fewer = project(gen, x, steps=5, restarts=2, z_init=z_init[:2])
    view = whole.best_of(gen, 2)
    assert torch.allclose(view.latent, fewer.latent, atol=1e-6)
    assert torch.allclose(view.reconstruction, fewer.reconstruction, atol=1e-6)


def test_project_is_seeded_and_leaves_the_generator_as_it_was() -> None:
    gen = Generator(dim=4, latent_dim=8).train()
    x = torch.rand(3, 1, 28, 28)
    a = project(gen, x, steps=3, restarts=2, generator_rng=torch.Generator().manual_seed(7))
    b = project(gen, x, steps=3, restarts=2, generator_rng=torch.Generator().manual_seed(7))
    assert torch.equal(a.reconstruction, b.reconstruction)
    assert gen.training and all(p.requires_grad for p in gen.parameters())
    assert all(p.grad is None for p in gen.parameters())
    with pytest.raises(ValueError, match="z_init"):
        project(gen, x, steps=1, restarts=2, z_init=torch.zeros(2, 2, 8))


def test_shared_starts_are_the_same_starts_for_every_image() -> None:
    """`z_init` (R, k): one draw of R starts used for every image, so any subset of a batch is
    projected as it would be alone (the deterministic defense a white-box attacker is given)."""
    gen = tiny_generator()
    x = torch.rand(5, 1, 28, 28)
    starts = torch.randn(3, 8, generator=torch.Generator().manual_seed(9)) * 0.3
    shared = project(gen, x, steps=4, restarts=3, z_init=starts)
    expanded = project(gen, x, steps=4, restarts=3, z_init=starts[:, None].expand(3, 5, 8))
    assert torch.equal(shared.restart_latent, expanded.restart_latent)
    alone = project(gen, x[2:4], steps=4, restarts=3, z_init=starts)
    assert torch.allclose(alone.reconstruction, shared.reconstruction[2:4], atol=1e-6)
    with pytest.raises(ValueError, match=r"\(3, 8\)"):
        project(gen, x, steps=1, restarts=3, z_init=torch.zeros(3, 7))


# --- the defended classifier ------------------------------------------------------------------


def test_defended_model_has_zero_input_gradient_but_bpda_view_does_not() -> None:
    """The protocol's white-box attacker gets no gradient through the projection; BPDA does."""
    gen = tiny_generator()
    clf = classifier("D")
    defense = DefenseGAN(gen, clf, steps=2, restarts=2,
                         generator_rng=torch.Generator().manual_seed(0))  # fmt: skip
    x = torch.rand(4, 1, 28, 28, requires_grad=True)
    out = defense(x)
    assert out.shape == (4, 10)
    (zero,) = torch.autograd.grad(out.sum(), x)
    assert torch.equal(zero, torch.zeros_like(x))
    from repro.fgsm import fgsm

    assert torch.equal(fgsm(defense, x.detach(), torch.zeros(4).long(), eps=0.3), x.detach())
    view = defense.bpda_view()
    x2 = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(nn.functional.cross_entropy(view(x2), torch.zeros(4).long()), x2)
    assert float(grad.abs().sum()) > 0


def test_known_starts_make_the_defense_deterministic_and_fresh_draws_do_not() -> None:
    gen = tiny_generator()
    clf = classifier("D").eval()
    x = torch.rand(4, 1, 28, 28)
    starts = torch.randn(2, 8, generator=torch.Generator().manual_seed(1)) * 0.3
    known = DefenseGAN(gen, clf, steps=3, restarts=2, z_init=starts,
                       generator_rng=torch.Generator().manual_seed(2))  # fmt: skip
    assert torch.equal(known.purify(x), known.purify(x))
    assert not torch.equal(known.purify_fresh(x), known.purify_fresh(x))
    with torch.no_grad():
        assert torch.equal(known.bpda_view()(x), clf(known.purify(x)))
    with pytest.raises(ValueError, match="z_init"):
        DefenseGAN(gen, clf, steps=1, restarts=2, z_init=torch.zeros(2, 4, 8))


def test_unrolled_defense_is_the_defense_with_a_true_gradient() -> None:
    """Same forward value as the projection with the same starts; its input gradient is neither
    zero (the official graph's) nor BPDA's identity approximation."""
    from repro.defense_gan.defense import UnrolledDefense

    gen = tiny_generator()
    clf = classifier("D").eval()
    x = torch.rand(3, 1, 28, 28)
    starts = torch.randn(2, 8, generator=torch.Generator().manual_seed(3)) * 0.3
    known = DefenseGAN(gen, clf, steps=6, restarts=2, z_init=starts)
    unrolled = UnrolledDefense(gen, clf, steps=6, z_init=starts)
    xg = x.clone().requires_grad_(True)
    recon = unrolled.reconstruct(xg)
    assert torch.allclose(recon.detach(), known.purify(x), atol=1e-5)
    y = torch.zeros(3, dtype=torch.long)
    (grad,) = torch.autograd.grad(nn.functional.cross_entropy(unrolled(xg), y), xg)
    xb = x.clone().requires_grad_(True)
    (bpda,) = torch.autograd.grad(nn.functional.cross_entropy(known.bpda_view()(xb), y), xb)
    assert float(grad.abs().sum()) > 0 and not torch.allclose(grad, bpda, atol=1e-6)
    assert all(p.grad is None for p in gen.parameters())


# --- the detector -----------------------------------------------------------------------------


def test_auc_on_separable_scores_and_against_brute_force() -> None:
    clean = torch.linspace(0.0, 1.0, 50)
    adversarial = torch.linspace(1.5, 3.0, 40)
    assert roc_auc(clean, adversarial) == 1.0
    assert roc_auc(adversarial, clean) == 0.0
    assert roc_auc(torch.ones(5), torch.ones(7)) == 0.5  # all ties
    gen = torch.Generator().manual_seed(8)
    neg = torch.randint(0, 20, (60,), generator=gen).float()  # many ties
    pos = torch.randint(5, 25, (45,), generator=gen).float()
    brute = sum(float(p > n) + 0.5 * float(p == n) for p, n in itertools.product(pos, neg))
    assert math.isclose(roc_auc(neg, pos), brute / (60 * 45), rel_tol=1e-12)
    fpr, tpr, thresholds = roc_curve(neg, pos)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert bool((fpr[1:] >= fpr[:-1]).all() and (tpr[1:] >= tpr[:-1]).all())
    assert math.isinf(thresholds[0])
    trapezoid = float(torch.trapezoid(tpr, fpr))
    assert math.isclose(trapezoid, roc_auc(neg, pos), rel_tol=1e-12)


# --- networks and GAN training ----------------------------------------------------------------


def test_networks_have_the_code_shapes_and_keep_probability_dropout() -> None:
    x = torch.rand(2, 1, 28, 28)
    for name in CLASSIFIERS:
        assert classifier(name)(x).shape == (2, 10)
    first = classifier("B")[0]
    assert isinstance(first, nn.Dropout) and math.isclose(first.p, 0.8)  # keeps 20 %
    assert math.isclose(classifier("B", dropout="drop")[0].p, 0.2)
    g, c = Generator(dim=8), Critic(dim=8)
    assert g(torch.randn(3, 128)).shape == (3, 1, 28, 28)
    assert c(torch.rand(3, 1, 28, 28)).shape == (3,)
    with pytest.raises(ValueError, match="unknown classifier"):
        classifier("G")


def test_gan_checkpoint_resume_equals_an_uninterrupted_run(tmp_path) -> None:
    torch.manual_seed(0)
    x = torch.rand(40, 1, 28, 28)
    settings = {"iterations": 4, "dim": 4, "batch_size": 8, "critic_iters": 2, "seed": 3,
                "progress": False}  # fmt: skip
    whole = train_wgan_gp(x, checkpoint=tmp_path / "whole.pt", **settings)
    part = train_wgan_gp(x, checkpoint=tmp_path / "part.pt", stop_after=2, **settings)
    assert part.iterations == 2
    resumed = train_wgan_gp(x, checkpoint=tmp_path / "part.pt", **settings)
    assert resumed.resumed_from == 2 and resumed.iterations == 4
    for a, b in zip(whole.generator.state_dict().values(),
                    resumed.generator.state_dict().values(), strict=True):  # fmt: skip
        assert torch.equal(a, b)
    for a, b in zip(whole.critic.state_dict().values(),
                    resumed.critic.state_dict().values(), strict=True):  # fmt: skip
        assert torch.equal(a, b)
    assert whole.wasserstein == resumed.wasserstein
    loaded = load_generator(tmp_path / "whole.pt")
    z = torch.randn(2, 128)
    assert torch.equal(loaded(z), whole.generator(z))
    from repro import ReproError

    with pytest.raises(ReproError, match="differ"):
        train_wgan_gp(x, checkpoint=tmp_path / "whole.pt", **{**settings, "dim": 8})


# --- end to end -------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_smoke_reproduction_through_the_runner(project, tmp_path) -> None:
    """The notebook runs under papermill at smoke scale, records every expected row (measured or
    not run with a reason), evaluates every claim, and the run is stored."""
    from repro.runner import run_reproduction

    result = run_reproduction("defense_gan", scale="smoke", device="cpu", out=tmp_path / "runs")
    summary = result.summary
    assert summary["status"] == "succeeded", summary["error"]
    assert result.stored
    rows = {r["id"]: r for r in summary["rows"]}
    metrics = {m["name"]: m["value"] for m in summary["metrics"]}
    assert {r["verdict"] for r in rows.values()} <= {"not_compared", "not_run"}
    for rid in ("t4_fmnist_fgsm_d_defgan_rec", "t2_fmnist_de_defgan_orig", "t13_L10_R2_seconds"):
        assert rows[rid]["value"] is not None and rows[rid]["verdict"] == "not_compared"
    assert 0.0 <= rows["t4_fmnist_fgsm_d_defgan_rec"]["value"] <= 1.0
    for rid in ("t1_mnist_ab_no_attack", "t2_fmnist_ab_magnet", "t12_celeba_fgsm_a_no_attack"):
        assert rows[rid]["verdict"] == "not_run" and rows[rid]["reason"]
    # The released code's white-box FGSM does not move the input (zero gradient); that is a
    # demonstration, recorded apart from the claims.
    assert metrics["t4_fmnist_fgsm_d_official_mean_abs_perturbation"] == 0.0
    assert metrics["demonstration.whitebox_as_released.holds"] in (0.0, 1.0)
    # Our adaptive evaluation: `adaptive.<row>.<attack>` beside the row it challenges.
    linf, l2 = "adaptive.t4_fmnist_fgsm_d_defgan_rec", "adaptive.t4_fmnist_cw_d_defgan_rec"
    for name in (f"{linf}.bpda_pgd", f"{linf}.bpda_eot_pgd", f"{linf}.unrolled_pgd",
                 f"{linf}.square", f"{linf}.bpda_pgd_eps030", f"{linf}.bpda_pgd_low_mse",
                 f"{linf}.bpda_pgd_low_mse.correct_or_detected", f"{l2}.latent_l2",
                 f"{l2}.latent_l2_within_budget"):  # fmt: skip
        assert 0.0 <= metrics[name] <= 1.0, name
        assert metrics[f"{name}.ci95_low"] <= metrics[name] <= metrics[f"{name}.ci95_high"]
    assert metrics["t4_fmnist_cw_d_no_defense_median_l2"] > 0.0
    # The shared battery through BPDA (the scale's subset of it) on the same images.
    battery = {k.split(".")[2]: v for k, v in metrics.items()
               if k.startswith("robustness.defense_gan_fmnist_d.") and k.count(".") == 2}  # fmt: skip
    assert {"clean", "fgsm", "pgd20", "worst"} <= set(battery)
    assert battery["worst"] <= min(battery["fgsm"], battery["pgd20"]) <= battery["clean"]
    # Every accuracy row carries its bootstrap interval.
    rid = "t4_fmnist_fgsm_d_defgan_rec"
    assert metrics[f"{rid}.ci95_low"] <= rows[rid]["value"] <= metrics[f"{rid}.ci95_high"]
    claims = {c["id"] for c in summary["claims"]}
    assert {"whitebox_fgsm", "blackbox_vs_no_defense", "mse_detects_attacks",
            "ours_adaptive_bpda_pgd", "ours_attack_sanity",
            "ours_detector_survives_adaptive_attack"} <= claims  # fmt: skip
    assert "whitebox_as_released" not in claims
    figures = {f["path"] for f in summary["figures"]}
    assert {"figures/reconstructions_fmnist.png", "figures/detector_roc_fmnist.png",
            "figures/accuracy_vs_L_fmnist.png"} <= figures  # fmt: skip


# --- claims -----------------------------------------------------------------------------------


def test_claims_margins_ties_intervals_and_the_demonstration() -> None:
    """A margin exactly at its threshold holds (no rounding failure); the detail carries the
    paired interval and says when it straddles; the released attack is a demonstration only."""
    from repro.claims import Results, evaluate, load_claims
    from repro.config import repro_path
    from repro.defense_gan.claims import DEMONSTRATIONS
    from repro.stats import pack_bits

    def vec(k: int, n: int = 200) -> str:
        return pack_bits([1] * k + [0] * (n - k))

    rows = {"t4_fmnist_randfgsm_d_defgan_rec": 0.32, "t4_fmnist_randfgsm_d_no_defense": 0.12,
            "t4_fmnist_randfgsm_d_advtr_eps030": 0.165}  # fmt: skip
    per_image = {"t4_fmnist_randfgsm_d_defgan_rec": vec(64),
                 "t4_fmnist_randfgsm_d_no_defense": vec(24),
                 "t4_fmnist_randfgsm_d_advtr_eps030": vec(33)}  # fmt: skip
    claims = load_claims(repro_path("defense_gan"))
    assert "whitebox_as_released" not in {c.id for c in claims}
    assert [c.id for c in DEMONSTRATIONS] == ["whitebox_as_released"]
    out = {c["id"]: c for c in evaluate(claims, Results(rows, {}, {}, per_image))}
    verdict = out["whitebox_randfgsm"]
    assert verdict["holds"] is True, verdict["detail"]  # +20.0 points exactly: holds
    assert "margin 0.000 [" in verdict["detail"] and "straddles 0" in verdict["detail"]
    worse = dict(rows, **{"t4_fmnist_randfgsm_d_defgan_rec": 0.315})
    assert evaluate(claims, Results(worse))[1]["holds"] is False
