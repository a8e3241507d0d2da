"""repro.baselines and repro.model_cache: a baseline is trained once and then loaded (same
checksum), PGD adversarial training buys robustness over natural training, TRADES's loss is
cross-entropy plus β·KL, and a tampered cache file is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from repro import ReproError
from repro.baselines import BaselineSpec, SmallCNN, baseline, trades_adversary, trades_objective
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


def _batch(n: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


def test_trades_adversary_stays_in_the_ball_repeats_and_leaves_the_model() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 5, stride=2), torch.nn.ReLU(),
                                torch.nn.Flatten(), torch.nn.Linear(4 * 12 * 12, 10)).train()  # fmt: skip
    flags = [p.requires_grad for p in model.parameters()]
    x, _ = _batch(16)
    x[:, :, :4] = 0.0  # pixels at the box's edge
    x[:, :, -4:] = 1.0

    def run(seed: int) -> torch.Tensor:
        return trades_adversary(model, x, eps=0.1, steps=5, step_size=0.03,
                                generator=torch.Generator().manual_seed(seed))  # fmt: skip

    adv = run(0)
    assert adv.shape == x.shape and not adv.requires_grad
    assert float((adv - x).abs().max()) <= 0.1 + 1e-6
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
    assert torch.equal(adv, run(0)) and not torch.equal(adv, run(1))
    assert model.training and [p.requires_grad for p in model.parameters()] == flags
    # the ascent works: the KL from the clean prediction is far above the start's
    with torch.no_grad():
        p = F.softmax(model.eval()(x), dim=1)
        kl_adv = F.kl_div(F.log_softmax(model(adv), dim=1), p, reduction="sum")
        start = trades_adversary(model, x, eps=0.1, steps=0, step_size=0.03,
                                 generator=torch.Generator().manual_seed(0))  # fmt: skip
        kl_start = F.kl_div(F.log_softmax(model(start), dim=1), p, reduction="sum")
    assert float((start - x).abs().max()) <= 0.005  # the 0.001·N(0, I) start
    assert float(kl_adv) > 10 * float(kl_start)
    with pytest.raises(ReproError):
        trades_adversary(model, x, eps=-0.1, steps=1, step_size=0.01)


def test_the_trades_loss_is_ce_plus_beta_kl_at_trades_adversarys_point() -> None:
    """TRADES's objective, recomputed from `trades_adversary` with the same noise (LBGAT's robust
    model is attacked by the same function)."""
    torch.manual_seed(1)
    net = SmallCNN(width=8)
    x, y = _batch(8, seed=3)
    settings = {"eps": 0.1, "steps": 4, "step_size": 0.04}
    theirs = trades_objective(**settings, beta=6.0, generator=torch.Generator().manual_seed(5))
    adv = trades_adversary(net, x, **settings, generator=torch.Generator().manual_seed(5))
    logits = net(x)
    ours = F.cross_entropy(logits, y) + 6.0 * F.kl_div(
        F.log_softmax(net(adv), dim=1), F.softmax(logits, dim=1), reduction="batchmean"
    )
    assert float(theirs(net, x, y).detach()) == pytest.approx(float(ours.detach()), rel=1e-5)
