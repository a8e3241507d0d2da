"""The shared training and evaluation loops (`repro.train`) on a tiny synthetic problem."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from repro import ReproError
from repro.env import seed_everything
from repro.train import accuracy, predict, robust_accuracy, train_classifier


def problem(n: int = 256) -> tuple[Tensor, Tensor]:
    """Class = which half of a 4×4 image is brighter: linearly separable."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 4, 4, generator=g) * 0.5
    y = torch.randint(0, 2, (n,), generator=g)
    x[y == 1, :, :2] += 0.5
    x[y == 0, :, 2:] += 0.5
    return x, y


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2))


def test_training_learns_and_returns_per_epoch_losses() -> None:
    x, y = problem()
    net = model()
    losses = train_classifier(
        net, x, y, epochs=5, batch_size=32, lr=1e-2, generator=seed_everything(0), progress=False
    )
    assert len(losses) == 5 and losses[-1] < losses[0]
    assert accuracy(net, x, y) > 0.95
    assert net.training  # its mode restored (a fresh module trains)


def test_same_seed_same_weights() -> None:
    x, y = problem()
    weights = []
    for _ in range(2):
        net = model()
        train_classifier(
            net, x, y, epochs=2, batch_size=50, lr=1e-2, generator=seed_everything(3),
            progress=False,
        )  # fmt: skip
        weights.append(torch.cat([p.detach().flatten() for p in net.parameters()]))
    assert torch.equal(weights[0], weights[1])


def test_adversarial_training_mixes_clean_and_adversarial_loss() -> None:
    x, y = problem(64)
    seen: list[tuple[bool, int]] = []

    def adversary(m: nn.Module, xb: Tensor, yb: Tensor) -> Tensor:
        seen.append((m.training, xb.shape[0]))
        return (xb + 0.01).clamp(0, 1)

    net = model()
    net.eval()
    train_classifier(
        net, x, y, epochs=1, batch_size=16, lr=1e-2, adversary=adversary, adv_weight=0.5,
        progress=False,
    )  # fmt: skip
    assert seen == [(False, 16)] * 4  # called per batch, with the model in eval mode
    assert not net.training  # restored to the mode it came in

    # adv_weight = 1: the clean term vanishes, so an adversary returning the clean batch gives
    # exactly plain training.
    a, b = model(), model()
    kwargs = dict(epochs=1, batch_size=16, lr=1e-2, progress=False)
    train_classifier(a, x, y, generator=seed_everything(1), **kwargs)
    train_classifier(
        b, x, y, generator=seed_everything(1), adversary=lambda m, xb, yb: xb, adv_weight=1.0,
        **kwargs,
    )  # fmt: skip
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.allclose(pa, pb)


def test_an_objective_replaces_the_loss_of_a_batch() -> None:
    """Cross-entropy written as an objective trains exactly as the default loss does; a
    different objective trains differently, and is called in training mode."""
    import torch.nn.functional as F

    x, y = problem(64)
    kwargs = dict(epochs=2, batch_size=16, lr=1e-2, progress=False)
    a, b, c = model(), model(), model()
    modes: list[bool] = []

    def smoothed(m: nn.Module, xb: Tensor, yb: Tensor) -> Tensor:
        modes.append(m.training)
        return F.cross_entropy(m(xb), yb, label_smoothing=0.2)

    train_classifier(a, x, y, generator=seed_everything(1), **kwargs)
    train_classifier(b, x, y, generator=seed_everything(1), **kwargs,
                     objective=lambda m, xb, yb: F.cross_entropy(m(xb), yb))  # fmt: skip
    train_classifier(c, x, y, generator=seed_everything(1), **kwargs, objective=smoothed)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert not all(
        torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters(), strict=True)
    )
    assert modes == [True] * 8
    with pytest.raises(ReproError, match="not both"):
        train_classifier(model(), x, y, epochs=1, batch_size=16, lr=0.1,
                         objective=smoothed, adversary=lambda m, xb, yb: xb)  # fmt: skip


def test_a_learning_rate_schedule_applies_per_epoch() -> None:
    x, y = problem(64)
    rates: list[float] = []
    net = model()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)

    def spy(m: nn.Module, xb: Tensor, yb: Tensor) -> Tensor:
        rates.append(opt.param_groups[0]["lr"])
        return torch.nn.functional.cross_entropy(m(xb), yb)

    train_classifier(net, x, y, epochs=3, batch_size=32, lr=0.0, optimizer=opt, objective=spy,
                     lr_schedule=lambda epoch: 1.0 if epoch < 2 else 0.1, progress=False)  # fmt: skip
    assert rates == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.01, 0.01])


def test_bad_arguments() -> None:
    x, y = problem(8)
    with pytest.raises(ReproError, match="optimizer 'rmsprop'"):
        train_classifier(model(), x, y, epochs=1, batch_size=4, lr=0.1, optimizer="rmsprop")
    with pytest.raises(ReproError, match="adv_weight"):
        train_classifier(model(), x, y, epochs=1, batch_size=4, lr=0.1, adv_weight=2.0)
    with pytest.raises(ReproError, match="8 inputs but 7 labels"):
        train_classifier(model(), x, y[:7], epochs=1, batch_size=4, lr=0.1)


def test_predict_and_accuracy_in_batches() -> None:
    x, y = problem(100)
    net = model()
    labels = predict(net, x, batch_size=7)
    assert labels.shape == (100,) and labels.dtype == torch.int64
    assert torch.equal(labels, net(x).argmax(1))
    assert accuracy(net, x, y, batch_size=7) == pytest.approx(float((labels == y).float().mean()))


def test_robust_accuracy_counts_the_worst_case() -> None:
    x, y = problem(100)
    net = model()
    train_classifier(net, x, y, epochs=3, batch_size=20, lr=1e-2, progress=False)
    clean = accuracy(net, x, y)
    assert robust_accuracy(net, x, y, lambda m, xb, yb: xb, batch_size=30) == clean

    # An "attack" that moves every input to a perfect example of its own class: plain accuracy on
    # x_adv rises to 1, the worst-case count stays at most the clean accuracy.
    proto = torch.stack([x[y == c].mean(0) for c in (0, 1)])

    def helpful(m: nn.Module, xb: Tensor, yb: Tensor) -> Tensor:
        return proto[yb]

    assert robust_accuracy(net, x, y, helpful, require_clean=False, progress=False) == 1.0
    assert robust_accuracy(net, x, y, helpful, progress=False) <= clean

    def flip(m: nn.Module, xb: Tensor, yb: Tensor) -> Tensor:
        return proto[1 - yb]

    assert robust_accuracy(net, x, y, flip, progress=False) == 0.0
