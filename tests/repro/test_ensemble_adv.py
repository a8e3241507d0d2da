"""RAND+FGSM (`repro.ensemble_adv.rand_fgsm`): the two steps checked by hand on a linear model, the
budget split, seeding, and its effect on a small classifier trained on Fashion-MNIST."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro.ensemble_adv import rand_fgsm, random_sign_step
from repro.fgsm import fgsm
from repro.train import accuracy


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """These models are tiny: one intra-op thread is faster than two fighting over shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def linear() -> tuple[nn.Module, Tensor, Tensor]:
    """A random linear classifier on 1×6×6 inputs kept away from the box edges (no clipping)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 4)).eval()
    g = torch.Generator().manual_seed(1)
    x = 0.35 + 0.3 * torch.rand(16, 1, 6, 6, generator=g)
    y = torch.randint(0, 4, (16,), generator=g)
    return model, x, y


def test_rand_fgsm_is_a_random_sign_step_then_an_fgsm_step_by_hand(linear) -> None:
    model, x, y = linear
    eps, alpha = 0.3, 0.05
    x_adv = rand_fgsm(model, x, y, eps=eps, alpha=alpha, generator=torch.Generator().manual_seed(7))

    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(7))
    x_prime = x + alpha * noise.sign()
    # Cross-entropy of a linear model: dJ/dx = W^T (softmax(Wx + b) − onehot(y)).
    weight, bias = model[1].weight.detach(), model[1].bias.detach()
    probs = F.softmax(x_prime.flatten(1) @ weight.T + bias, dim=1)
    grad = (probs - F.one_hot(y, 4).float()) @ weight
    expected = x_prime + (eps - alpha) * grad.sign().view_as(x)
    torch.testing.assert_close(x_adv, expected, rtol=0, atol=1e-6)


def test_rand_fgsm_budget_is_eps_split_into_alpha_and_eps_minus_alpha(linear) -> None:
    model, x, y = linear
    eps, alpha = 0.3, 0.05
    delta = (
        rand_fgsm(model, x, y, eps=eps, alpha=alpha, generator=torch.Generator().manual_seed(0)) - x
    ).abs()
    assert float(delta.max()) <= eps + 1e-6
    # ±α then ±(ε − α): every pixel moved by ε (same signs) or ε − 2α (opposite signs).
    near = torch.isclose(delta, torch.tensor(eps), atol=1e-5) | torch.isclose(
        delta, torch.tensor(eps - 2 * alpha), atol=1e-5
    )
    assert bool(near.all())
    assert 0.3 < float(torch.isclose(delta, torch.tensor(eps), atol=1e-5).float().mean()) < 0.7


def test_rand_fgsm_alpha_zero_is_fgsm_and_alpha_eps_is_pure_noise(linear) -> None:
    model, x, y = linear
    same = rand_fgsm(model, x, y, eps=0.2, alpha=0.0, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(same, fgsm(model, x, y, eps=0.2), rtol=0, atol=0)
    noise_only = rand_fgsm(
        model, x, y, eps=0.2, alpha=0.2, generator=torch.Generator().manual_seed(3)
    )
    expected = random_sign_step(x, alpha=0.2, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(noise_only, expected, rtol=0, atol=0)


def test_rand_fgsm_seeding_and_clipping(linear) -> None:
    model, x, y = linear
    a = rand_fgsm(model, x, y, eps=0.3, alpha=0.05, generator=torch.Generator().manual_seed(5))
    b = rand_fgsm(model, x, y, eps=0.3, alpha=0.05, generator=torch.Generator().manual_seed(5))
    c = rand_fgsm(model, x, y, eps=0.3, alpha=0.05, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    edge = torch.cat([torch.zeros_like(x[:4]), torch.ones_like(x[:4])])
    out = rand_fgsm(
        model, edge, y[:8], eps=0.3, alpha=0.05, generator=torch.Generator().manual_seed(5)
    )
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    with pytest.raises(ValueError, match="alpha"):
        rand_fgsm(model, x, y, eps=0.1, alpha=0.2)


def test_rand_fgsm_fools_a_trained_classifier_and_leaves_it_as_it_was(small_fashion_model) -> None:
    model, data = small_fashion_model("linear")
    x, y = data.x[1000:1300], data.y[1000:1300]
    clean = accuracy(model, x, y)
    model.train()
    x_adv = rand_fgsm(model, x, y, eps=0.3, alpha=0.05, generator=torch.Generator().manual_seed(0))
    assert model.training and all(p.requires_grad for p in model.parameters())
    # Defense-GAN's setting (ε 0.3, α 0.05) destroys an undefended linear classifier, as in its
    # Table 4 "No Defense" column; a random ±ε sign step alone barely hurts it.
    noise = random_sign_step(x, alpha=0.3, generator=torch.Generator().manual_seed(0))
    assert clean > 0.7
    assert accuracy(model, x_adv, y) < 0.1
    assert accuracy(model, noise, y) > accuracy(model, x_adv, y) + 0.3
