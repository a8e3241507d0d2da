"""Papernot et al.'s black-box attack (`repro.papernot_blackbox`): Jacobian augmentation checked by
hand, labels that come only from the oracle, a substitute that learns the oracle round after round,
and FGSM examples crafted on it that transfer to the oracle."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch
from torch import Tensor, nn

import repro.papernot_blackbox as pb
from repro.fgsm import fgsm
from repro.papernot_blackbox import (
    blackbox_attack,
    jacobian_augmentation,
    train_substitute,
    transfer,
)
from repro.train import accuracy, predict, robust_accuracy


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """These models are tiny: one intra-op thread is faster than two fighting over shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def mlp() -> nn.Module:
    """A small version of Defense-GAN's substitute E (FC-ReLU-FC-ReLU-FC)."""
    return nn.Sequential(
        nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)
    )


@pytest.fixture(scope="module")
def setting(small_fashion_model) -> dict[str, object]:
    """An oracle CNN trained on 1,000 Fashion-MNIST test images; the adversary's 100 holdout
    images; 400 further images to measure agreement and transfer on."""
    target, data = small_fashion_model("cnn")
    return {
        "target": target,
        "oracle": lambda x: predict(target, x),
        "holdout": data.x[2000:2100],
        "holdout_y": data.y[2000:2100],
        "x": data.x[1000:1400],
        "y": data.y[1000:1400],
    }


def _train(setting: dict, **overrides: object) -> nn.Module:
    options: dict[str, object] = {
        "make_model": mlp, "rounds": 4, "lam": 0.1, "epochs": 10, "lr": 1e-3, "batch_size": 32,
        "generator": torch.Generator().manual_seed(0), "progress": False,
    }  # fmt: skip
    options.update(overrides)
    return train_substitute(setting["oracle"], setting["holdout"], **options)


def test_jacobian_augmentation_by_hand() -> None:
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(9, 3))
    x = 0.2 + 0.6 * torch.rand(5, 1, 3, 3)
    labels = torch.tensor([0, 1, 2, 1, 0])
    weight = linear[1].weight.detach()
    # Logits of a linear model: the Jacobian row of class c is W_c.
    by_logits = jacobian_augmentation(linear, x, labels, lam=0.1, jacobian_of="logits")
    torch.testing.assert_close(by_logits, x + 0.1 * weight[labels].sign().view_as(x))
    # Softmax (the paper's F): d p_c / dx = p_c (W_c − Σ_j p_j W_j).
    with torch.no_grad():
        p = linear(x).softmax(dim=1)
    direction = weight[labels] - p @ weight
    by_softmax = jacobian_augmentation(linear, x, labels, lam=-0.1, batch_size=2)
    torch.testing.assert_close(by_softmax, x - 0.1 * direction.sign().view_as(x))
    # New points stay images unless clipping is turned off.
    far = jacobian_augmentation(linear, x, labels, lam=0.5, jacobian_of="logits")
    assert float(far.min()) >= 0.0 and float(far.max()) <= 1.0
    raw = jacobian_augmentation(linear, x, labels, lam=0.5, jacobian_of="logits", clip=None)
    assert float(raw.max()) > 1.0


@pytest.fixture(scope="module")
def trained(setting) -> dict[str, object]:
    """Four rounds of Algorithm 1 from the 100 holdout images, logging each round."""
    target, x = setting["target"], setting["x"]
    log: dict[str, list] = {"agreement": [], "sizes": []}

    def on_round(rho: int, substitute: nn.Module, x_sub: Tensor, y_sub: Tensor) -> None:
        log["sizes"].append(x_sub.shape[0])
        log["agreement"].append(
            float((predict(substitute, x) == predict(target, x)).float().mean())
        )

    return {"substitute": _train(setting, on_round=on_round), **log}


def test_substitute_learns_the_oracle_round_after_round(trained) -> None:
    agreement = trained["agreement"]
    assert trained["sizes"] == [100, 200, 400, 800]  # S_ρ doubles each round
    assert not trained["substitute"].training
    # The augmented points teach the substitute the oracle's boundaries: agreement grows.
    assert agreement[-1] > agreement[0] + 0.05, agreement
    assert agreement[-1] > 0.6, agreement


def test_labels_come_only_from_the_oracle(setting) -> None:
    oracle = setting["oracle"]
    queried: list[int] = []

    def counting_oracle(x: Tensor) -> Tensor:
        queried.append(x.shape[0])
        return oracle(x)

    def check(rho: int, substitute: nn.Module, x_sub: Tensor, y_sub: Tensor) -> None:
        assert torch.equal(y_sub, oracle(x_sub))

    train_substitute(
        counting_oracle,
        setting["holdout"],
        make_model=mlp,
        rounds=3,
        epochs=1,
        lr=1e-3,
        batch_size=50,
        on_round=check,
        progress=False,
    )
    assert queried == [100, 100, 200]
    # Defense-GAN's code protocol: the holdout's true labels, the oracle's for synthetic points.
    queried.clear()
    truth = setting["holdout_y"]

    def check_protocol(rho: int, substitute: nn.Module, x_sub: Tensor, y_sub: Tensor) -> None:
        assert torch.equal(y_sub[:100], truth)
        assert torch.equal(y_sub[100:], oracle(x_sub[100:]))

    train_substitute(
        counting_oracle,
        setting["holdout"],
        make_model=mlp,
        rounds=3,
        epochs=1,
        lr=1e-3,
        batch_size=50,
        y_holdout=truth,
        on_round=check_protocol,
        progress=False,
    )
    assert queried == [100, 200]


def test_periodic_step_size(setting, monkeypatch: pytest.MonkeyPatch) -> None:
    steps: list[float] = []
    real: Callable[..., Tensor] = pb.jacobian_augmentation

    def spy(substitute: nn.Module, x: Tensor, labels: Tensor, **kwargs: object) -> Tensor:
        steps.append(float(kwargs["lam"]))  # type: ignore[arg-type]
        return real(substitute, x, labels, **kwargs)

    monkeypatch.setattr(pb, "jacobian_augmentation", spy)
    _train(setting, rounds=5, epochs=1, tau=2)
    assert steps == [0.1, 0.1, -0.1, -0.1]  # λ·(−1)^⌊ρ/τ⌋ for ρ = 0..3
    steps.clear()
    _train(setting, rounds=3, epochs=1)
    assert steps == [0.1, 0.1]


def test_same_generator_same_substitute(setting) -> None:
    a = _train(setting, rounds=2, epochs=2)
    b = _train(setting, rounds=2, epochs=2)
    for pa, pb_ in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb_)


def test_fgsm_on_the_substitute_transfers_to_the_oracle(setting, trained) -> None:
    target, x, y = setting["target"], setting["x"], setting["y"]
    substitute = trained["substitute"]

    def attack(model: nn.Module, xb: Tensor, yb: Tensor) -> Tensor:
        return fgsm(model, xb, yb, eps=0.3)

    x_adv = blackbox_attack(substitute, x, y, attack)
    assert float((x_adv - x).abs().max()) <= 0.3 + 1e-6
    clean = accuracy(target, x, y)
    transferred = accuracy(target, x_adv, y)
    assert transferred < clean - 0.3, (clean, transferred)
    # The same through robust_accuracy: crafted on the substitute, scored on the target.
    via_helper = robust_accuracy(
        target, x, y, transfer(substitute, attack), require_clean=False, progress=False
    )
    assert via_helper == pytest.approx(transferred)
    # Without labels the substitute's own predictions are used (cleverhans' default).
    own = blackbox_attack(substitute, x, None, attack)
    assert torch.equal(own, fgsm(substitute, x, predict(substitute, x), eps=0.3))


def test_jacobian_augmentation_is_what_makes_examples_transfer(setting) -> None:
    """Agreement also grows when S_ρ is merely duplicated (λ = 0: the same number of training
    steps on the holdout alone), so growth alone does not show the augmentation's value. The
    attack's success does: the augmented substitute's FGSM examples fool the oracle more often."""
    target, x, y = setting["target"], setting["x"], setting["y"]

    def transferred_accuracy(lam: float) -> float:
        substitute = _train(setting, lam=lam)
        x_adv = blackbox_attack(substitute, x, y, lambda m, xb, yb: fgsm(m, xb, yb, eps=0.2))
        return accuracy(target, x_adv, y)

    # λ < 0 is the first phase of the paper's periodic step (cleverhans' tutorial starts with it).
    assert transferred_accuracy(-0.1) < transferred_accuracy(0.0) - 0.04


def test_bad_oracle_output_is_rejected(setting) -> None:
    target = setting["target"]
    with pytest.raises(ValueError, match="one label per input"):
        train_substitute(
            target,
            setting["holdout"],
            make_model=mlp,
            rounds=1,
            epochs=1,
            lr=1e-3,
            batch_size=50,
            progress=False,
        )
