"""Invariants every attack must satisfy, from one parametrized table (as foolbox tests its attacks).

Each row of `ATTACKS` is `(name, attack, eps)` or `(name, attack, eps, l2_bound)`:
- `attack(model, x, y, generator) -> x_adv`, a closure fixing the attack's settings;
- `eps`: the L∞ radius, or None for an attack that is not L∞-bounded (L2 attacks: no ball check);
- `l2_bound` (optional): a per-example L2 radius the perturbation must stay inside.

The invariants, checked on a tiny CNN trained for a few steps on a few hundred Fashion-MNIST images:
1. the perturbation stays inside the eps-ball (L∞ rows; the L2 bound where one is given),
2. outputs are images: in [0, 1], same shape/dtype/device, detached,
3. the same seed gives the same result,
4. robust accuracy (plain accuracy on x_adv) never exceeds clean accuracy on a naturally trained
   model (an attack that helps the model has a sign error),
and the model is left as it was (train/eval mode and `requires_grad` of every parameter).

Each attack's engineer appends the rows of their attacks to `ATTACKS` (and nothing else here).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from repro.data import available, load_dataset
from repro.train import accuracy, robust_accuracy, train_classifier

AttackFn = Callable[[nn.Module, Tensor, Tensor, torch.Generator], Tensor]


def _fgsm_rows() -> list[tuple[Any, ...]]:
    from repro.fgsm import fgsm

    return [("fgsm_eps0.1", lambda m, x, y, g: fgsm(m, x, y, eps=0.1), 0.1)]


def _pgd_rows() -> list[tuple[Any, ...]]:
    from repro.madry_pgd import pgd_linf

    no_start = {"eps": 0.1, "step_size": 0.025, "steps": 10, "random_start": False}
    return [
        (
            "pgd_linf_10steps",
            lambda m, x, y, g: pgd_linf(m, x, y, eps=0.1, step_size=0.025, steps=10, generator=g),
            0.1,
        ),
        (
            "pgd_linf_margin_2restarts",
            lambda m, x, y, g: pgd_linf(
                m, x, y, eps=0.1, step_size=0.025, steps=5, restarts=2, loss="margin", generator=g
            ),
            0.1,
        ),
        (
            "pgd_linf_no_random_start",
            lambda m, x, y, g: pgd_linf(m, x, y, **no_start),
            0.1,
        ),
        (
            "pgd_linf_margin_kappa0_no_random_start",
            lambda m, x, y, g: pgd_linf(m, x, y, loss="margin", kappa=0.0, **no_start),
            0.1,
        ),
    ]


def _rand_fgsm_cw_blackbox_rows() -> list[tuple[Any, ...]]:
    from repro.carlini_wagner import cw_l2
    from repro.ensemble_adv import rand_fgsm
    from repro.fgsm import fgsm
    from repro.papernot_blackbox import blackbox_attack, train_substitute
    from repro.train import predict

    def blackbox(m: nn.Module, x: Tensor, y: Tensor, g: torch.Generator) -> Tensor:
        substitute = train_substitute(
            lambda q: predict(m, q), x[:32], rounds=2, epochs=2, lr=1e-3, batch_size=32,
            make_model=lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), generator=g,
            progress=False,
        )  # fmt: skip
        return blackbox_attack(substitute, x, y, lambda s, xb, yb: fgsm(s, xb, yb, eps=0.1))

    return [
        ("rand_fgsm_eps0.1_alpha0.05", lambda m, x, y, g: rand_fgsm(m, x, y, eps=0.1, alpha=0.05, generator=g), 0.1),
        ("carlini_cw_l2_search", lambda m, x, y, g: cw_l2(m, x, y, c=1.0, steps=20, lr=0.1, binary_search_steps=2), None),
        ("carlini_cw_l2_fixed_c100_lr10", lambda m, x, y, g: cw_l2(m, x, y, c=100.0, steps=20, lr=10.0, binary_search_steps=1), None),
        ("papernot_blackbox_fgsm_eps0.1", blackbox, 0.1),
    ]  # fmt: skip


def _obfuscated_gradients_rows() -> list[tuple[Any, ...]]:
    from repro.obfuscated_gradients import eot_pgd_linf, latent_cw_l2

    class Sigmoid784(nn.Module):
        """G(z) = sigmoid(z) as an image: a generator whose range is every image in (0, 1)."""

        latent_dim = 784

        def forward(self, z: Tensor) -> Tensor:
            return torch.sigmoid(z).view(-1, 1, 28, 28)

    def latent(m: nn.Module, x: Tensor, y: Tensor, g: torch.Generator) -> Tensor:
        z0 = torch.logit(x.clamp(0.01, 0.99)).flatten(1)  # the inversion of x
        return latent_cw_l2(Sigmoid784(), m, x, y, z_init=z0, c=1.0, steps=20, lr=0.1,
                            binary_search_steps=2)  # fmt: skip

    return [
        ("eot_pgd_linf_2samples_2restarts", lambda m, x, y, g: eot_pgd_linf(m, x, y, eps=0.1, step_size=0.025, steps=5, samples=2, restarts=2, generator=g), 0.1),
        ("eot_pgd_linf_judged", lambda m, x, y, g: eot_pgd_linf(m, x, y, eps=0.1, step_size=0.025, steps=5, judge=m, generator=g), 0.1),
        ("latent_cw_l2_sigmoid_generator", latent, None),
    ]  # fmt: skip


def _minimal_universal_transfer_rows() -> list[tuple[Any, ...]]:
    """DeepFool and L-BFGS (minimal perturbations: no ball), a universal perturbation applied to
    a batch (l_inf ball xi; computed on the batch's first 32 images), Liu et al.'s attacks (l2
    budget)."""
    from repro.deepfool import deepfool
    from repro.liu_transfer import far_targets, fast_gradient, optimization_attack
    from repro.szegedy_lbfgs import lbfgs_untargeted
    from repro.uap import apply_perturbation, universal_perturbation

    def uap(m: nn.Module, x: Tensor, y: Tensor, g: torch.Generator) -> Tensor:
        v = universal_perturbation(m, x[:32], xi=0.1, max_passes=1, generator=g).v
        return apply_perturbation(x, v)

    rmsd = 0.09
    budget = rmsd * 28  # the l2 radius of RMSD 0.09 on 28x28 images
    return [
        ("deepfool_l2", lambda m, x, y, g: deepfool(m, x, y), None),
        ("deepfool_linf", lambda m, x, y, g: deepfool(m, x, y, norm="linf", max_iter=20), None),
        ("szegedy_lbfgs_untargeted", lambda m, x, y, g: lbfgs_untargeted(m, x, y, search_steps=1, max_iter=8), None),
        ("uap_linf_xi0.1", uap, 0.1),
        ("liu_optimization_untargeted", lambda m, x, y, g: optimization_attack(m, x, y, targeted=False, steps=10, rmsd_budget=rmsd), None, budget),
        ("liu_optimization_targeted", lambda m, x, y, g: optimization_attack(m, x, far_targets(y), targeted=True, steps=10, rmsd_budget=rmsd), None, budget),
        ("liu_fg_l2", lambda m, x, y, g: fast_gradient(m, x, y, eps=budget), None, budget),
        ("liu_fgs_targeted", lambda m, x, y, g: fast_gradient(m, x, far_targets(y), eps=0.1, norm="linf", targeted=True), 0.1),
    ]  # fmt: skip


def _spatial_rt_rows() -> list[tuple[Any, ...]]:
    """Engstrom et al.'s spatial attacks (rotations and translations of +-30 degrees, +-3 px: no
    Lp ball, eps None): one random transformation, the worst of 10, a coarse exhaustive grid
    (3 x 3 x 5, with and without early exit) and the first-order attack on the parameters."""
    from repro.spatial_rt import (
        first_order_attack,
        grid_attack,
        random_transform,
        worst_of_k_attack,
    )

    return [
        ("spatial_random", lambda m, x, y, g: random_transform(m, x, y, generator=g), None),
        ("spatial_worst_of_10", lambda m, x, y, g: worst_of_k_attack(m, x, y, k=10, generator=g), None),
        ("spatial_grid_3x3x5", lambda m, x, y, g: grid_attack(m, x, y, granularity=(3, 3, 5)), None),
        ("spatial_grid_3x3x5_early_exit", lambda m, x, y, g: grid_attack(m, x, y, granularity=(3, 3, 5), early_exit=True), None),
        ("spatial_first_order_10steps", lambda m, x, y, g: first_order_attack(m, x, y, steps=10, generator=g), None),
    ]  # fmt: skip


def _eot_rows() -> list[tuple[Any, ...]]:
    """EOT (Athalye et al. 2018): targeted (a random target per image, drawn from the test's
    generator), l2 budget 2.0; with and without the transformation distribution."""
    from repro.eot import eot_attack, random_targets
    from repro.transforms import TransformDistribution

    dist = TransformDistribution(rotation_deg=22.5, translate_px=2.0, scale=(0.9, 1.1),
                                 brightness=0.05, noise_std=0.1)  # fmt: skip

    def eot(m: nn.Module, x: Tensor, y: Tensor, g: torch.Generator) -> Tensor:
        return eot_attack(m, x, random_targets(y, 10, generator=g), eps=2.0, step_size=0.5,
                          steps=5, distribution=dist, draws=4, generator=g)  # fmt: skip

    def single(m: nn.Module, x: Tensor, y: Tensor, g: torch.Generator) -> Tensor:
        return eot_attack(m, x, random_targets(y, 10, generator=g), eps=2.0, step_size=0.5,
                          steps=5)  # fmt: skip

    return [
        ("eot_l2_targeted_4draws", eot, None, 2.0),
        ("eot_single_view_l2_targeted", single, None, 2.0),
    ]


def _rp2_rows() -> list[tuple[Any, ...]]:
    """RP2's sticker attack, targeted to the next class (a transformation attack: no L-inf ball;
    its change is confined to 4 rectangles of 4x5 pixels, so its L2 norm is at most sqrt(80))."""
    from repro.rp2 import sticker_attack
    from repro.transforms import TransformDistribution

    views = TransformDistribution(
        scale=(0.7, 1.0), yaw_deg=30.0, brightness=0.1, blur_sigma=(0.0, 0.5)
    )
    return [
        (
            "rp2_sticker_next_class",
            lambda m, x, y, g: sticker_attack(
                m, x, y, target=(y + 1) % 10, conditions=views, samples=2, l1_steps=3, steps=5,
                generator=g,
            ),
            None,
            80**0.5,
        ),
    ]  # fmt: skip


def _iterative_rows() -> list[tuple[Any, ...]]:
    from repro.iterative import bim_linf, mim_linf

    return [
        ("bim_linf_10steps", lambda m, x, y, g: bim_linf(m, x, y, eps=0.1, steps=10), 0.1),
        ("mim_linf_10steps", lambda m, x, y, g: mim_linf(m, x, y, eps=0.1, steps=10), 0.1),
        ("mim_linf_margin", lambda m, x, y, g: mim_linf(m, x, y, eps=0.1, steps=5, loss="margin"),
         0.1),
    ]  # fmt: skip


def _trades_rows() -> list[tuple[Any, ...]]:
    """TRADES's label-free inner maximisation (repro.baselines; the TRADES baseline and LBGAT)."""
    from repro.baselines import trades_adversary

    return [("trades_adversary_10steps", lambda m, x, y, g: trades_adversary(
        m, x, eps=0.1, steps=10, step_size=0.025, generator=g), 0.1)]  # fmt: skip


def _rslad_rows() -> list[tuple[Any, ...]]:
    """RSLAD's inner maximisation toward a confident teacher's soft labels (one-hot 0.9 + 0.01),
    and its paper's PGD-20 evaluation attack."""
    import torch.nn.functional as F

    from repro.rslad import paper_pgd20, rslad_inner_max

    def inner(m: nn.Module, x: Tensor, y: Tensor, g: torch.Generator) -> Tensor:
        probs = F.one_hot(y, 10).float() * 0.9 + 0.01
        return rslad_inner_max(m, x, probs, eps=0.1, step_size=0.025, steps=10)

    return [
        ("rslad_inner_max_10steps", inner, 0.1),
        ("rslad_paper_pgd20", lambda m, x, y, g: paper_pgd20(eps=0.1, generator=g)(m, x, y), 0.1),
    ]


def _shaham_rt_rows() -> list[tuple[Any, ...]]:
    """shaham_rt: the linearised inner maximum (one step) over the l_inf, l_2 and l_1 balls
    (clipped to [0, 1], as at test time; the l_1 step moves one pixel, so its l_inf and l_2 bounds
    are both eps)."""
    from repro.shaham_rt import linearized_max

    return [
        ("shaham_linearized_linf", lambda m, x, y, g: linearized_max(m, x, y, norm="linf", eps=0.1), 0.1),
        ("shaham_linearized_l2", lambda m, x, y, g: linearized_max(m, x, y, norm="l2", eps=1.0), None, 1.0),
        ("shaham_linearized_l1", lambda m, x, y, g: linearized_max(m, x, y, norm="l1", eps=0.5), 0.5, 0.5),
    ]  # fmt: skip


def _sparsify_rows() -> list[tuple[Any, ...]]:
    """sparsify: the locally linear attack, semi-white-box, and white-box with the direction
    projected onto the top-3 % wavelet support of the image (the victim itself undefended)."""
    from repro.sparsify import SparsifyingFrontEnd, loclin_attack

    front = SparsifyingFrontEnd(0.03)
    return [
        ("sparsify_loclin_semi", lambda m, x, y, g: loclin_attack(m, x, y, eps=0.1), 0.1),
        ("sparsify_loclin_white", lambda m, x, y, g: loclin_attack(
            m, x, y, eps=0.1, front=front, proj_iters=2), 0.1),
    ]  # fmt: skip


def _huang_lwa_rows() -> list[tuple[Any, ...]]:
    """Huang et al.'s closed-form l2 perturbations (Adv_Loss, Adv_Loss_Sign, Adv_Alpha) at c = 1,
    clipped for the table (the paper's, unclipped, have l2 norm exactly c): l2 norm <= c."""
    from repro.huang_lwa import adv_alpha, adv_loss, adv_loss_sign

    return [(f"huang_lwa_{fn.__name__}_l2_c1", lambda m, x, y, g, fn=fn: fn(m, x, y, c=1.0, clip=True),
             None, 1.0) for fn in (adv_loss, adv_loss_sign, adv_alpha)]  # fmt: skip


def _mter_rows() -> list[tuple[Any, ...]]:
    """MTER (Zhong & Deng, ICCV 2019): feature-level targeted FTGSM / IFTGSM toward another image of
    the batch (the victim's logits are its embedding), the training-time exploitation, and ITGSM."""
    from repro.mter import ftgsm, iftgsm, itgsm, vulnerability_exploitation

    return [
        ("mter_ftgsm_eps0.1", lambda m, x, y, g: ftgsm(m, x, x.roll(1, 0), eps=0.1), 0.1),
        ("mter_iftgsm_eps0.1", lambda m, x, y, g: iftgsm(m, x, x.roll(1, 0), eps=0.1, steps=10), 0.1),
        ("mter_exploitation_sigma0.1", lambda m, x, y, g: vulnerability_exploitation(
            m, x, x.roll(1, 0), sigma=0.1, rounds=10, step_size=0.025), 0.1),
        ("mter_itgsm_eps0.1", lambda m, x, y, g: itgsm(m, x, (y + 1) % 10, eps=0.1, steps=10), 0.1),
    ]  # fmt: skip


def _gce_rows() -> list[tuple[Any, ...]]:
    """GCE's attacks on the GCE loss (repro.gce.paper_attacks with gce_attack_loss), eps 0.1."""
    from repro.gce import gce_attack_loss, paper_attacks

    def row(attack: str) -> AttackFn:
        return lambda m, x, y, g: paper_attacks(0.1, gce_attack_loss(), generator=g)[attack](
            m, x, y
        )

    return [(f"gce_loss_{a}_eps0.1", row(a), 0.1) for a in ("fgsm", "bim", "pgd", "mim")]


def _wong_kolter_rows() -> list[tuple[Any, ...]]:
    """Wong & Kolter's v0.2 PGD is unclipped by design (the paper's attack); clipped here, so the
    row checks its ball, seeding, sign and that it leaves the model as it was."""
    from repro.wong_kolter import pgd_v02

    return [("wong_kolter_pgd_v02_clamped", lambda m, x, y, g: pgd_v02(
        m, x, y, eps=0.1, step_size=0.025, steps=10).clamp(0, 1), 0.1)]  # fmt: skip


ATTACKS: list[tuple[Any, ...]] = [
    # --- fgsm / madry_pgd (first papers) ---
    *_fgsm_rows(),
    *_pgd_rows(),
    # --- other attacks: append rows here ---
    *_rand_fgsm_cw_blackbox_rows(),  # ensemble_adv, carlini_wagner, papernot_blackbox
    *_obfuscated_gradients_rows(),  # obfuscated_gradients: EOT-PGD, the latent-space L2 attack
    *_minimal_universal_transfer_rows(),  # deepfool, szegedy_lbfgs, uap, liu_transfer
    *_spatial_rt_rows(),  # spatial_rt
    *_eot_rows(),  # eot: EOT and the single-view targeted l2 attack
    *_rp2_rows(),  # rp2
    *_iterative_rows(),  # repro.iterative: BIM, MIM (toolkit; PCL and GCE evaluate with them)
    *_trades_rows(),  # repro.baselines: TRADES's inner maximisation (TRADES, LBGAT)
    *_rslad_rows(),  # rslad: the inner maximisation toward soft labels, the paper's PGD-20
    *_shaham_rt_rows(),  # shaham_rt: the linearised inner maximum, l_inf / l_2 / l_1
    *_sparsify_rows(),  # sparsify: the locally linear attacks
    *_huang_lwa_rows(),  # huang_lwa: Adv_Loss, Adv_Loss_Sign, Adv_Alpha (l2)
    *_mter_rows(),  # mter: FTGSM, IFTGSM, the exploitation, ITGSM
    *_gce_rows(),  # gce: FGSM, BIM, PGD, MIM on the GCE loss
    *_wong_kolter_rows(),  # wong_kolter: the v0.2 PGD (clipped for the table)
]


def _normalize(row: tuple[Any, ...]) -> tuple[str, AttackFn, float | None, float | None]:
    name, fn, eps, *rest = row
    return name, fn, eps, rest[0] if rest else None


CASES = [pytest.param(*_normalize(row), id=row[0]) for row in ATTACKS]


class TinyCNN(nn.Module):
    """One conv layer, one linear layer: trains in a second, and is differentiable everywhere."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 5, stride=2)
        self.fc = nn.Linear(8 * 12 * 12, 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.relu(self.conv(x)).flatten(1))


@pytest.fixture(scope="session")
def victim() -> tuple[nn.Module, Tensor, Tensor]:
    """A tiny CNN trained (seeded) on 512 Fashion-MNIST test images; 128 others to attack."""
    if not available("fashion_mnist", split="test"):
        pytest.skip("Fashion-MNIST is not available (apt-get install dataset-fashion-mnist)")
    data = load_dataset("fashion_mnist", "test")
    torch.manual_seed(0)
    model = TinyCNN()
    train_classifier(
        model,
        data.x[:512],
        data.y[:512],
        epochs=3,
        batch_size=64,
        lr=3e-3,
        generator=torch.Generator().manual_seed(0),
        progress=False,
    )
    model.eval()
    x, y = data.x[512:640].clone(), data.y[512:640].clone()
    assert accuracy(model, x, y) > 0.5  # about 0.70: an attack has room to lower it
    return model, x, y


def _attack(fn: AttackFn, victim, seed: int = 0) -> tuple[Tensor, Tensor]:
    model, x, y = victim
    return x, fn(model, x, y, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(("name", "fn", "eps", "l2"), CASES)
def test_perturbation_stays_in_the_ball(name, fn, eps, l2, victim) -> None:
    x, x_adv = _attack(fn, victim)
    delta = (x_adv - x).flatten(1)
    if eps is not None:
        assert float(delta.abs().max()) <= eps + 1e-6, name
    if l2 is not None:
        assert float(delta.norm(dim=1).max()) <= l2 + 1e-5, name
    assert float(delta.abs().max()) > 0, f"{name} changed nothing"


@pytest.mark.parametrize(("name", "fn", "eps", "l2"), CASES)
def test_outputs_are_images(name, fn, eps, l2, victim) -> None:
    x, x_adv = _attack(fn, victim)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and x_adv.device == x.device
    assert not x_adv.requires_grad
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0


@pytest.mark.parametrize(("name", "fn", "eps", "l2"), CASES)
def test_same_seed_same_result(name, fn, eps, l2, victim) -> None:
    _, first = _attack(fn, victim, seed=1)
    _, again = _attack(fn, victim, seed=1)
    assert torch.equal(first, again)


@pytest.mark.parametrize(("name", "fn", "eps", "l2"), CASES)
def test_robust_accuracy_never_above_clean(name, fn, eps, l2, victim) -> None:
    model, x, y = victim
    clean = accuracy(model, x, y)
    gen = torch.Generator().manual_seed(0)
    robust = robust_accuracy(
        model, x, y, lambda m, xb, yb: fn(m, xb, yb, gen), require_clean=False, progress=False
    )
    assert robust <= clean, f"{name}: accuracy {clean:.3f} rose to {robust:.3f} under attack"


@pytest.mark.parametrize(("name", "fn", "eps", "l2"), CASES)
def test_model_is_left_as_it_was(name, fn, eps, l2, victim) -> None:
    model, x, y = victim
    model.train()
    model.zero_grad(set_to_none=True)
    flags = [p.requires_grad for p in model.parameters()]
    try:
        fn(model, x[:16], y[:16], torch.Generator().manual_seed(0))
        assert model.training
        assert [p.requires_grad for p in model.parameters()] == flags
        assert all(p.grad is None for p in model.parameters()), "weight gradients accumulated"
    finally:
        model.eval()
