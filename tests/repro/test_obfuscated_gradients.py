"""BPDA, EOT and the latent-space attack (`repro.obfuscated_gradients`): the gradient BPDA passes
back, PGD through it breaking a quantisation defense whose true gradient is zero (Athalye et al.'s
gradient shattering), EOT's sampling and best iterate, and the latent attack's contract."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro.madry_pgd import pgd_linf
from repro.obfuscated_gradients import BPDAWrapper, bpda, eot_pgd_linf, identity, latent_cw_l2
from repro.train import accuracy, predict

LEVELS = 8


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """These models are tiny: one intra-op thread is faster than two fighting over shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def quantise(x: Tensor) -> Tensor:
    """Round every pixel to one of 8 grey levels: piecewise constant, so its gradient is zero."""
    return torch.round(x * (LEVELS - 1)) / (LEVELS - 1)


class Defended(nn.Module):
    """classifier(quantise(x)) with autograd's own (zero) gradient: the obfuscated model."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(quantise(x))


@pytest.fixture(scope="module")
def fashion(small_fashion_model) -> tuple[nn.Module, Tensor, Tensor]:
    """A small CNN trained briefly on 1,000 Fashion-MNIST test images, and 200 other images."""
    model, data = small_fashion_model("cnn")
    return model, data.x[1000:1200], data.y[1000:1200]


def _input_grad(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y, reduction="sum"), x)
    return grad


def test_forward_is_the_preprocessed_classification(fashion) -> None:
    model, x, _ = fashion
    with torch.no_grad():
        torch.testing.assert_close(BPDAWrapper(quantise, model)(x), model(quantise(x)))


def test_gradient_is_the_classifier_gradient_at_the_preprocessed_point(fashion) -> None:
    model, x, y = fashion
    x, y = x[:16], y[:16]
    through_bpda = _input_grad(BPDAWrapper(quantise, model), x, y)
    at_quantised = _input_grad(model, quantise(x), y)
    assert float(at_quantised.abs().sum()) > 0
    torch.testing.assert_close(through_bpda, at_quantised, rtol=0, atol=0)
    # Without BPDA the defense's gradient is exactly zero: the gradient is shattered.
    assert float(_input_grad(Defended(model), x, y).abs().max()) == 0.0


def test_preprocessor_that_runs_gradient_descent_inside(fashion) -> None:
    """As Defense-GAN's projection: an inner optimisation over a latent z, which needs autograd
    although BPDA's forward pass runs without a graph; the gradient is taken at its output."""
    model, x, y = fashion
    x, y = x[:8], y[:8]
    basis = torch.randn(784, 6, generator=torch.Generator().manual_seed(0))

    def project(images: Tensor) -> Tensor:
        z = torch.zeros(images.shape[0], 6)
        for _ in range(5):
            with torch.enable_grad():
                z = z.detach().requires_grad_(True)
                recon = torch.sigmoid(z @ basis.T)
                (grad,) = torch.autograd.grad((recon - images.flatten(1)).pow(2).sum(), z)
            z = z - 0.01 * grad
        return torch.sigmoid(z.detach() @ basis.T).view_as(images)

    through_bpda = _input_grad(BPDAWrapper(project, model), x, y)
    torch.testing.assert_close(through_bpda, _input_grad(model, project(x), y))


def test_custom_backward_approximation_is_differentiated(fashion) -> None:
    model, x, y = fashion
    x, y = x[:8], y[:8]
    doubled = _input_grad(BPDAWrapper(quantise, model, backward_approx=lambda u: 2 * u), x, y)
    torch.testing.assert_close(doubled, 2 * _input_grad(model, quantise(x), y))
    smooth = bpda(torch.sign, backward_approx=torch.tanh)  # sign forward, tanh's slope backward
    u = torch.tensor([-0.5, 0.0, 2.0], requires_grad=True)
    out = smooth(u)
    (g,) = torch.autograd.grad(out.sum(), u)
    assert torch.equal(out, torch.sign(u.detach()))
    torch.testing.assert_close(g, 1 - torch.tanh(u.detach()) ** 2)


def test_identity_needs_matching_shapes() -> None:
    with pytest.raises(ValueError, match="shapes"):
        bpda(lambda t: t.flatten(1))(torch.zeros(2, 1, 3, 3, requires_grad=True))
    assert bpda(torch.round, identity)(torch.tensor([0.4])).item() == 0.0


def test_wrapper_registers_module_preprocessors(fashion) -> None:
    model, _, _ = fashion
    pre = nn.Dropout(0.5)
    wrapper = BPDAWrapper(pre, model)
    wrapper.train()
    assert pre.training and model.training
    wrapper.eval()
    assert not pre.training and not model.training


def test_pgd_through_bpda_breaks_a_quantisation_defense(fashion) -> None:
    model, x, y = fashion
    defended = Defended(model)
    clean = accuracy(defended, x, y)
    settings = {"eps": 0.1, "step_size": 0.025, "steps": 10}
    plain = pgd_linf(defended, x, y, generator=torch.Generator().manual_seed(0), **settings)
    adaptive = pgd_linf(
        BPDAWrapper(quantise, model), x, y, generator=torch.Generator().manual_seed(0), **settings
    )
    assert float((adaptive - x).abs().max()) <= settings["eps"] + 1e-6
    plain_acc, adaptive_acc = accuracy(defended, plain, y), accuracy(defended, adaptive, y)
    # Zero gradients leave PGD with its random start only: the defense looks robust ...
    assert clean > 0.6 and plain_acc > clean - 0.15
    # ... until the gradient is taken through the identity instead (Athalye et al., Section 4.1).
    assert adaptive_acc < 0.25 and adaptive_acc < plain_acc - 0.4


# --- EOT ----------------------------------------------------------------------------------------


class Counting(nn.Module):
    """A classifier with a dithered input (fresh noise at every call) that counts its calls."""

    def __init__(self, classifier: nn.Module, noise: float) -> None:
        super().__init__()
        self.classifier, self.noise, self.calls = classifier, noise, 0
        self.rng = torch.Generator().manual_seed(5)

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        return self.classifier(x + self.noise * torch.randn(x.shape, generator=self.rng))


def test_eot_draws_samples_per_step_and_scores_every_iterate(fashion) -> None:
    model, x, y = fashion
    noisy = Counting(model, 0.1)
    out = eot_pgd_linf(noisy, x[:8], y[:8], eps=0.1, step_size=0.03, steps=4, samples=3,
                       restarts=2, generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert noisy.calls == 2 * (4 + 1) * 3  # restarts x (steps + the last iterate) x samples
    assert float((out - x[:8]).abs().max()) <= 0.1 + 1e-6
    with pytest.raises(ValueError, match="samples"):
        eot_pgd_linf(model, x, y, eps=0.1, step_size=0.1, steps=1, samples=0)


def test_eot_best_iterate_is_never_worse_than_pgds_last(fashion) -> None:
    """Same start and steps as `pgd_linf`: keeping the first iterate the judge misclassifies can
    only fool more examples than returning the last one."""
    model, x, y = fashion
    settings = {"eps": 0.05, "step_size": 0.02, "steps": 8}
    last = pgd_linf(model, x, y, generator=torch.Generator().manual_seed(3), **settings)
    best = eot_pgd_linf(model, x, y, judge=model, generator=torch.Generator().manual_seed(3),
                        **settings)  # fmt: skip
    fooled_last, fooled_best = predict(model, last) != y, predict(model, best) != y
    assert bool((fooled_best | ~fooled_last).all())  # every example PGD fools, EOT fools too
    assert float((best - x).abs().max()) <= settings["eps"] + 1e-6
    # Without a judge the best iterate is the one with the highest loss.
    top = eot_pgd_linf(model, x, y, generator=torch.Generator().manual_seed(3), **settings)
    ce = lambda v: F.cross_entropy(model(v), y, reduction="none")  # noqa: E731
    with torch.no_grad():
        assert bool((ce(top) >= ce(last) - 1e-5).all())


# --- the latent-space attack ---------------------------------------------------------------------


def test_latent_attack_returns_misclassified_points_of_the_range_or_x(fashion) -> None:
    from repro.defense_gan.models import Generator
    from repro.defense_gan.projection import project

    model, x, y = fashion
    x, y = x[:24], y[:24]
    torch.manual_seed(0)
    gen = Generator(dim=4, latent_dim=8).eval()
    z0 = project(
        gen, x, steps=20, restarts=2, generator_rng=torch.Generator().manual_seed(0)
    ).latent
    out = latent_cw_l2(gen, model, x, y, z_init=z0, c=1.0, steps=30, lr=0.1,
                       binary_search_steps=3)  # fmt: skip
    moved = (out != x).flatten(1).any(dim=1)
    assert bool(moved.any()), "the attack found nothing"
    assert bool((predict(model, out[moved]) != y[moved]).all())  # every returned G(z) fools C
    assert torch.equal(out[~moved], x[~moved])  # elsewhere x itself, bit for bit
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    with pytest.raises(ValueError, match="rows"):
        latent_cw_l2(gen, model, x, y, z_init=z0[:3], c=1.0, steps=1, lr=0.1)
