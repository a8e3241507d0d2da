"""BPDA (`repro.obfuscated_gradients`): the gradient it passes back, and PGD through it breaking a
quantisation defense whose true gradient is zero (Athalye et al.'s gradient shattering)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro.madry_pgd import pgd_linf
from repro.obfuscated_gradients import BPDAWrapper, bpda, identity
from repro.train import accuracy

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
