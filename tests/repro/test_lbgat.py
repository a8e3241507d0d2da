"""LBGAT (Cui et al., ICCV 2021), `repro/lbgat`: the pair's initialisation and forward, the TRADES
inner maximisation against the shared TRADES baseline's, the loss against a hand computation and
its gradients (f_rob learns the labels only through f_nat when β = 0; the MSE term trains f_nat
too), the objective through the toolkit's loop, a robustness gain over natural training, the
paper-attack marking of the battery, the claims on hand-made results, and the smoke reproduction
end to end through the runner."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from repro import ReproError
from repro.baselines import SmallCNN
from repro.claims import Results, evaluate, load_claims
from repro.config import repro_path
from repro.data import available, load_dataset
from repro.lbgat import (
    LBGATPair,
    evaluate_as_paper,
    lbgat_loss,
    lbgat_objective,
    lbgat_pair,
    natural_cnn,
    seconds_per_epoch,
)
from repro.madry_pgd import pgd_linf
from repro.robust_eval import Protocol
from repro.stats import pack_bits
from repro.train import robust_accuracy, train_classifier

from .conftest import smoke_run

SLUG = "lbgat"
needs_fmnist = pytest.mark.skipif(
    not available("fashion_mnist", "test"), reason="Fashion-MNIST is not on this machine"
)


def _tiny_pair(seed: int = 0) -> LBGATPair:
    torch.manual_seed(seed)
    robust = nn.Sequential(nn.Conv2d(1, 4, 5, stride=2), nn.ReLU(), nn.Flatten(),
                           nn.Linear(4 * 12 * 12, 10))  # fmt: skip
    return LBGATPair(robust, nn.Sequential(nn.Flatten(), nn.Linear(784, 10)))


def _batch(n: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


# --------------------------------------------------------------------------- the pair


def test_the_pair_is_the_robust_model_initialised_as_the_baselines() -> None:
    state = torch.random.get_rng_state()
    pair = lbgat_pair(0)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global stream is untouched
    torch.manual_seed(0)
    reference = SmallCNN()  # what repro.baselines.baseline trains from with seed 0
    for a, b in zip(pair.robust.state_dict().values(), reference.state_dict().values(),
                    strict=True):  # fmt: skip
        assert torch.equal(a, b)
    x, _ = _batch()
    assert torch.equal(pair(x), pair.robust(x))
    n_rob = sum(p.numel() for p in pair.robust.parameters())
    n_nat = sum(p.numel() for p in natural_cnn().parameters())
    assert (n_rob, n_nat) == (421_642, 103_018)
    assert 0.23 < n_nat / n_rob < 0.26  # ResNet-18 / WRN-34-10 is 0.24
    assert set(dict(pair.named_children())) == {"robust", "natural"}


# --------------------------------------------------------------------------- inner maximisation


# --------------------------------------------------------------------------- the loss


def test_lbgat_loss_matches_a_hand_computation() -> None:
    """Logits fixed by hand (networks that ignore their input's content): MSE over N·C logits,
    batch-mean CE of f_nat, and β times the summed KL(f_rob(x) ‖ f_rob(x')) over N."""

    class Table(nn.Module):
        def __init__(self, clean: torch.Tensor, adv: torch.Tensor) -> None:
            super().__init__()
            self.clean, self.adv = clean, adv

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.adv if float(x.mean()) > 0.5 else self.clean

    rob_clean = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    rob_adv = torch.tensor([[0.0, 1.0, 0.0], [1.0, -1.0, 2.0]])
    nat = torch.tensor([[3.0, -1.0, 0.0], [0.0, 1.0, 1.0]])
    robust, natural = Table(rob_clean, rob_adv), Table(nat, nat)
    x, x_adv, y = torch.zeros(2, 1, 2, 2), torch.ones(2, 1, 2, 2), torch.tensor([0, 2])

    mse = sum((a - b) ** 2 for a, b in zip(rob_adv.flatten().tolist(), nat.flatten().tolist(),
                                           strict=True)) / 6  # fmt: skip
    z = nat.numpy()
    ce = -np.mean([np.log(np.exp(z[i, int(y[i])]) / np.exp(z[i]).sum()) for i in range(2)])
    p, q = np.exp(rob_clean.numpy()), np.exp(rob_adv.numpy())
    p, q = p / p.sum(1, keepdims=True), q / q.sum(1, keepdims=True)
    kl = float((p * np.log(p / q)).sum() / 2)
    assert float(lbgat_loss(robust, natural, x, x_adv, y, beta=0.0)) == pytest.approx(mse + ce)
    assert float(lbgat_loss(robust, natural, x, x_adv, y, beta=6.0)) == pytest.approx(
        mse + ce + 6.0 * kl, rel=1e-5
    )
    with pytest.raises(ReproError, match="beta"):
        lbgat_loss(robust, natural, x, x_adv, y, beta=-1.0)


def _grads(module: nn.Module, loss: torch.Tensor) -> list[torch.Tensor]:
    params = list(module.parameters())
    return list(torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True))


def test_lbgat0_teaches_the_labels_to_f_rob_only_through_f_nat() -> None:
    """β = 0: f_rob's gradient is the MSE's alone (other labels, same gradient); the MSE term is
    differentiated in f_nat as well (the official code does not detach f_nat's logits), so f_nat
    is pulled towards f_rob as f_rob towards it."""
    pair = _tiny_pair()
    x, y = _batch(8)
    x_adv = (x + 0.05).clamp(0, 1)
    other = (y + 1) % 10
    loss_y = lbgat_loss(pair.robust, pair.natural, x, x_adv, y, beta=0.0)
    loss_other = lbgat_loss(pair.robust, pair.natural, x, x_adv, other, beta=0.0)
    for a, b in zip(_grads(pair.robust, loss_y), _grads(pair.robust, loss_other), strict=True):
        assert torch.allclose(a, b)
    mse = F.mse_loss(pair.robust(x_adv), pair.natural(x))
    ce = F.cross_entropy(pair.natural(x), y)
    for g, g_mse, g_ce in zip(_grads(pair.natural, loss_y), _grads(pair.natural, mse),
                              _grads(pair.natural, ce), strict=True):  # fmt: skip
        assert torch.allclose(g, g_mse + g_ce, atol=1e-6)
    assert any(float(g.abs().max()) > 0 for g in _grads(pair.natural, mse))
    # β > 0 adds f_rob's own TRADES term: its gradient changes
    loss6 = lbgat_loss(pair.robust, pair.natural, x, x_adv, y, beta=6.0)
    assert not all(
        torch.allclose(a, b)
        for a, b in zip(_grads(pair.robust, loss6), _grads(pair.robust, loss_y), strict=True)
    )


def test_the_objective_trains_both_networks_in_one_optimizer() -> None:
    pair = _tiny_pair()
    before = [p.detach().clone() for p in pair.parameters()]
    x, y = _batch(32)
    objective = lbgat_objective(eps=0.1, steps=2, step_size=0.05, beta=6.0,
                                generator=torch.Generator().manual_seed(0))  # fmt: skip
    pair.eval()
    losses = train_classifier(pair, x, y, epochs=2, batch_size=16, lr=1e-2, objective=objective,
                              progress=False)  # fmt: skip
    assert len(losses) == 2 and all(np.isfinite(losses))
    assert not pair.training  # the loop restores the mode
    moved = [not torch.equal(a, b.detach()) for a, b in zip(before, pair.parameters(), strict=True)]
    n_rob = len(list(pair.robust.parameters()))
    assert all(moved[:n_rob]) and all(moved[n_rob:])  # f_rob and f_nat both learn
    with pytest.raises(ReproError, match="LBGATPair"):
        objective(pair.robust, x, y)
    seconds = seconds_per_epoch(pair, x, y, epoch_images=64, batch_size=16, objective=objective)
    assert seconds > 0
    with pytest.raises(ReproError):
        seconds_per_epoch(pair, x[:0], y[:0], epoch_images=64, objective=objective)


@needs_fmnist
def test_lbgat0_buys_robustness_over_natural_training() -> None:
    """The same small networks, the same 1,000 images and epochs: f_rob trained by LBGAT0 (it
    never sees a label directly) keeps far more accuracy under PGD than natural training."""
    data = load_dataset("fashion_mnist", "test")
    x, y = data.x[:1000], data.y[:1000]
    x_ev, y_ev = data.x[2000:2300], data.y[2000:2300]
    pair = _tiny_pair()
    train_classifier(pair, x, y, epochs=5, batch_size=64, lr=3e-3, progress=False,
                     generator=torch.Generator().manual_seed(0),
                     objective=lbgat_objective(eps=0.1, steps=3, step_size=0.04, beta=0.0,
                                               generator=torch.Generator().manual_seed(1)))  # fmt: skip
    natural = _tiny_pair().robust
    train_classifier(natural, x, y, epochs=5, batch_size=64, lr=3e-3, progress=False,
                     generator=torch.Generator().manual_seed(0))  # fmt: skip

    def pgd(m: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return pgd_linf(m, xb, yb, eps=0.1, step_size=0.025, steps=10,
                        generator=torch.Generator().manual_seed(2))  # fmt: skip

    robust = robust_accuracy(pair, x_ev, y_ev, pgd, progress=False)
    plain = robust_accuracy(natural, x_ev, y_ev, pgd, progress=False)
    clean = robust_accuracy(pair, x_ev, y_ev, lambda m, xb, yb: xb, progress=False)
    assert clean > 0.5  # f_rob learnt the task from f_nat's logits alone
    assert robust > plain + 0.10, (robust, plain)  # measured: 0.383 vs 0.217


# --------------------------------------------------------------------------- the evaluation


def test_the_paper_attack_is_the_batterys_full_autoattack_only() -> None:
    model = _tiny_pair().robust.eval()
    x, y = _batch(6)
    full = evaluate_as_paper(model, x, y, Protocol(eps=0.1, attacks=("clean", "autoattack")),
                             progress=False)  # fmt: skip
    assert torch.equal(full.correct["paper"], full.correct["autoattack"])
    assert full.gap() == pytest.approx(full.accuracy("autoattack") - full.accuracy("worst"))
    reduced = evaluate_as_paper(
        model,
        x,
        y,
        Protocol(eps=0.1, attacks=("clean", "autoattack"), autoattack="apgd"),
        progress=False,
    )
    assert "paper" not in reduced.correct and reduced.gap() is None


# --------------------------------------------------------------------------- claims


def _results(**values: tuple[float, int]) -> Results:
    """Metrics as (accuracy %, n) with per-image vectors whose mean is exactly that accuracy:
    round(acc·n/100) images right, at places drawn independently per model (so a paired
    difference has the spread of two independent classifiers')."""
    metrics, per_image = {}, {}
    for i, (key, (acc, n)) in enumerate(sorted(values.items())):
        kind, model = key.split("__")
        name = (
            f"fashion_mnist_{model}_clean_pct" if kind == "clean" else f"robustness.{model}.worst"
        )
        k = round(acc * n / 100)
        metrics[name] = 100.0 * k / n
        per_image[name] = pack_bits(np.random.default_rng(i).permutation(n) < k)
    return Results({}, metrics, per_image=per_image)


GOOD = {
    "clean__pgd_at": (80.0, 2000), "clean__trades": (78.0, 2000),
    "clean__lbgat0": (84.0, 2000), "clean__lbgat6": (80.0, 2000),
    "worst__pgd_at": (60.0, 200), "worst__trades": (64.0, 200),
    "worst__lbgat0": (62.0, 200), "worst__lbgat6": (66.0, 200),
}  # fmt: skip


def test_claims_hold_fail_and_are_not_evaluated_without_results() -> None:
    claims = load_claims(repro_path(SLUG))
    verdicts = {c["id"]: c for c in evaluate(claims, _results(**GOOD))}
    assert all(c["holds"] is True for c in verdicts.values()), verdicts
    bad = _results(**{
        **GOOD,
        "clean__lbgat0": (78.2, 2000),  # above TRADES, but the interval straddles 0
        "worst__lbgat0": (60.0, 200),  # 4 points under TRADES: not comparable
        "worst__lbgat6": (59.0, 200),  # under PGD-AT, under TRADES, under LBGAT0
    })  # fmt: skip
    holds = {c["id"]: c["holds"] for c in evaluate(claims, bad)}
    assert holds == {
        "lbgat0_natural_accuracy_above_trades": False,
        "lbgat0_robustness_comparable_to_trades": False,
        "lbgat_robustness_at_least_pgd_at": False,
        "lbgat_beats_trades_on_both_axes": False,
        "beta_trades_natural_accuracy_for_robustness": False,
    }
    edge = _results(**{**GOOD, "worst__lbgat0": (61.0, 200)})  # exactly TRADES - 3
    assert {c["id"]: c["holds"] for c in evaluate(claims, edge)}[
        "lbgat0_robustness_comparable_to_trades"
    ]
    assert all(c["holds"] is None for c in evaluate(claims, Results({})))


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_smoke_reproduction_through_the_runner(project: Path, tmp_path: Path) -> None:
    """The notebook runs under papermill at smoke scale, records the battery for every robust
    model, the per-epoch costs and the natural accuracies, and every claim is evaluated."""
    _result, summary = smoke_run(SLUG, tmp_path / "runs")
    assert {r["verdict"] for r in summary["rows"]} == {"not_run"}  # every row is CIFAR
    metrics = {m["name"]: m["value"] for m in summary["metrics"]}
    for model in ("pgd_at", "trades", "lbgat0", "lbgat6"):
        for attack in ("clean", "fgsm", "pgd20", "worst"):
            assert 0.0 <= metrics[f"robustness.{model}.{attack}"] <= 100.0
        assert metrics[f"robustness.{model}.worst"] <= metrics[f"robustness.{model}.clean"]
        assert metrics[f"cost.{model}.epoch_seconds"] > 0
        assert metrics[f"cost.{model}.epoch_seconds_same_batches"] > 0
        assert 0.0 <= metrics[f"fashion_mnist_{model}_clean_pct"] <= 100.0
    assert "robustness.lbgat0.gap" not in metrics  # smoke's battery is not the paper's attack
    assert len(summary["figures"]) == 2
    assert all(c["holds"] is not None for c in summary["claims"]), summary["claims"]
