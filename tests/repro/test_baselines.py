"""repro.baselines and repro.model_cache: a baseline is trained once and then loaded (same
checksum), PGD adversarial training buys robustness over natural training, TRADES's loss is
cross-entropy plus β·KL, and a tampered cache file is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from repro import ReproError
from repro.baselines import BaselineSpec, SmallCNN, baseline, trades_objective
from repro.data import ChecksumMismatch, available, load_dataset
from repro.madry_pgd import pgd_linf
from repro.train import robust_accuracy

pytestmark = pytest.mark.skipif(
    not available("fashion_mnist", "train"), reason="Fashion-MNIST is not on this machine"
)

SPEC = {"n_train": 2000, "epochs": 2, "steps": 3, "lr": 2e-3}


@pytest.fixture(autouse=True)
def cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "baseline-cache"))


def test_adversarial_training_buys_robustness_and_is_trained_once() -> None:
    test = load_dataset("fashion_mnist", "test")
    x, y = test.x[:300], test.y[:300]

    def pgd(m: torch.nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return pgd_linf(m, xb, yb, eps=0.1, step_size=0.025, steps=10)

    natural = baseline(BaselineSpec(kind="natural", **SPEC), progress=False)
    robust = baseline(BaselineSpec(kind="pgd_at", **SPEC), progress=False)
    assert natural.trained_now and robust.trained_now
    nat_acc = robust_accuracy(natural.net, x, y, pgd, progress=False)
    rob_acc = robust_accuracy(robust.net, x, y, pgd, progress=False)
    assert rob_acc > nat_acc + 0.1
    assert robust.meta["epoch_seconds"] > 0 and robust.provenance()["sha256"] == robust.sha256

    again = baseline(BaselineSpec(kind="pgd_at", **SPEC), progress=False)
    assert not again.trained_now and again.sha256 == robust.sha256
    for a, b in zip(again.net.state_dict().values(), robust.net.state_dict().values(), strict=True):
        assert torch.equal(a.cpu(), b.cpu())


def test_a_tampered_cache_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # its own cache: the file is spoiled
    spec = BaselineSpec(kind="natural", n_train=256, epochs=1)
    first = baseline(spec, progress=False)
    first.path.write_bytes(first.path.read_bytes() + b"tampered")
    with pytest.raises(ChecksumMismatch, match="delete the file to retrain"):
        baseline(spec, progress=False)


def test_trades_loss_is_cross_entropy_plus_beta_kl() -> None:
    torch.manual_seed(0)
    net = SmallCNN(width=8).eval().requires_grad_(False)
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    # eps 0: x' = x, so the KL term vanishes whatever beta is
    zero = trades_objective(eps=0.0, steps=3, step_size=0.01, beta=6.0,
                            generator=torch.Generator().manual_seed(0))(net, x, y)  # fmt: skip
    assert float(zero) == pytest.approx(float(F.cross_entropy(net(x), y)), rel=1e-4)
    beta0 = trades_objective(eps=0.1, steps=3, step_size=0.03, beta=0.0)(net, x, y)
    beta6 = trades_objective(eps=0.1, steps=3, step_size=0.03, beta=6.0)(net, x, y)
    assert float(beta0) == pytest.approx(float(zero), rel=1e-4) and float(beta6) > float(beta0)


def test_bad_specs_are_one_line_errors() -> None:
    with pytest.raises(ReproError, match="kind"):
        BaselineSpec(kind="mixup")  # type: ignore[arg-type]
    with pytest.raises(ReproError, match="architecture"):
        BaselineSpec(kind="natural", arch="resnet50")
    with pytest.raises(ReproError, match="eps"):
        BaselineSpec(kind="trades", eps=0.0)


def test_cache_names_carry_the_settings() -> None:
    a = BaselineSpec(kind="natural", n_train=256, epochs=1)
    b = BaselineSpec(kind="natural", n_train=256, epochs=1, seed=1)
    first, second = baseline(a, progress=False), baseline(b, progress=False)
    assert first.path != second.path and first.path.name.startswith(
        "baseline-natural-fashion_mnist"
    )
