"""Carlini–Wagner L2 (`repro.carlini_wagner.cw_l2`): the optimum on a linear model computed by hand,
the binary search over c, and the behaviour on a small classifier trained on Fashion-MNIST."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import Tensor, nn

from repro.carlini_wagner import cw_l2, cw_margin
from repro.train import predict


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """These models are tiny: one intra-op thread is faster than two fighting over shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class TwoClassLinear(nn.Module):
    """Logits (w·x + b, 0): the smallest L2 change to flip class 0 is (w·x + b)/||w||, along −w."""

    def __init__(self, w: Tensor, b: Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w)
        self.b = nn.Parameter(b)

    def forward(self, x: Tensor) -> Tensor:
        z = x.flatten(1) @ self.w + self.b
        return torch.stack([z, torch.zeros_like(z)], dim=1)


@pytest.fixture(scope="module")
def linear_problem() -> tuple[nn.Module, Tensor, Tensor, Tensor]:
    """32 points in the middle of the box, all in class 0, with their minimal L2 distances."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(16, generator=g)
    x = 0.45 + 0.1 * torch.rand(32, 1, 4, 4, generator=g)
    b = -(x.flatten(1) @ w).min() + 0.05 * w.norm()
    model = TwoClassLinear(w, b.reshape(()))
    distance = (x.flatten(1) @ w + b) / w.norm()
    return model, x, torch.zeros(32, dtype=torch.long), distance


@pytest.fixture(scope="module")
def fashion(small_fashion_model) -> tuple[nn.Module, Tensor, Tensor]:
    """A softmax classifier trained briefly on 1,000 Fashion-MNIST test images (a weak model),
    and 32 other images it classifies correctly."""
    model, data = small_fashion_model("linear")
    x, y = data.x[1000:1100], data.y[1000:1100]
    right = predict(model, x) == y
    return model, x[right][:32], y[right][:32]


def test_cw_reaches_the_hand_computed_minimal_distance(linear_problem) -> None:
    model, x, y, distance = linear_problem
    x_adv = cw_l2(model, x, y, c=1.0, steps=60, lr=0.05, binary_search_steps=5)
    l2 = (x_adv - x).flatten(1).norm(dim=1)
    assert bool((cw_margin(model(x_adv), y) < 0).all())
    ratio = l2 / distance
    # No adversarial can be closer than the hyperplane; CW gets within a few per mille of it.
    assert float(ratio.min()) >= 1.0 - 1e-4
    assert float(ratio.mean()) < 1.01 and float(ratio.max()) < 1.03


def test_more_binary_search_steps_find_smaller_perturbations(fashion) -> None:
    model, x, y = fashion
    one = cw_l2(model, x, y, c=10.0, steps=50, lr=0.1, binary_search_steps=1)
    four = cw_l2(model, x, y, c=10.0, steps=50, lr=0.1, binary_search_steps=4)
    l2_one = (one - x).flatten(1).norm(dim=1)
    l2_four = (four - x).flatten(1).norm(dim=1)
    fooled_one, fooled_four = predict(model, one) != y, predict(model, four) != y
    assert float(fooled_one.float().mean()) > 0.9  # a weak model: CW almost always succeeds
    # The first search step is the same computation, and the best over all steps is kept.
    assert bool(fooled_four[fooled_one].all())
    assert bool((l2_four[fooled_one] <= l2_one[fooled_one] + 1e-5).all())
    assert float(l2_four[fooled_one].mean()) < 0.9 * float(l2_one[fooled_one].mean())


def test_binary_search_grows_c_until_the_attack_succeeds(fashion) -> None:
    model, x, y = fashion
    # c = 1e-3 is far too small: only examples next to a boundary fall in Adam's first steps.
    tiny_c = cw_l2(model, x, y, c=1e-3, steps=10, lr=0.1, binary_search_steps=1)
    # Five failures later c has grown to 1e2 for the others, enough for (almost) all of them.
    grown = cw_l2(model, x, y, c=1e-3, steps=10, lr=0.1, binary_search_steps=6)
    assert float((predict(model, tiny_c) != y).float().mean()) < 0.5
    assert float((predict(model, grown) != y).float().mean()) > 0.9


def test_failed_examples_are_returned_untouched(fashion) -> None:
    model, x, y = fashion
    hopeless = cw_l2(model, x, y, c=10.0, steps=20, lr=0.1, binary_search_steps=1, confidence=1e4)
    assert torch.equal(hopeless, x)
    partial = cw_l2(model, x, y, c=1e-3, steps=10, lr=0.1, binary_search_steps=1)
    changed = (partial != x).flatten(1).any(dim=1)
    fooled = predict(model, partial) != y
    assert bool((changed == fooled).all())  # every changed example fools the model, no others


def test_confidence_is_a_margin_on_the_logits(fashion) -> None:
    model, x, y = fashion
    x_adv = cw_l2(model, x, y, c=10.0, steps=50, lr=0.1, binary_search_steps=2, confidence=2.0)
    with torch.no_grad():
        margin = cw_margin(model(x_adv), y)
    changed = (x_adv != x).flatten(1).any(dim=1)
    assert float(changed.float().mean()) > 0.9
    assert bool((margin[changed] < -2.0).all())


def test_output_stays_in_the_box_and_model_is_left_as_it_was(fashion) -> None:
    model, x, y = fashion
    model.train()
    flags = [p.requires_grad for p in model.parameters()]
    x_adv = cw_l2(model, x, y, c=100.0, steps=20, lr=10.0, binary_search_steps=1)
    assert model.training and [p.requires_grad for p in model.parameters()] == flags
    model.eval()
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and not x_adv.requires_grad
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0


def test_bad_arguments_are_rejected(fashion) -> None:
    model, x, y = fashion
    with pytest.raises(ValueError, match="binary_search_steps"):
        cw_l2(model, x, y, c=1.0, steps=10, lr=0.1, binary_search_steps=0)
    with pytest.raises(ValueError, match="c > 0"):
        cw_l2(model, x, y, c=0.0, steps=10, lr=0.1, binary_search_steps=1)
