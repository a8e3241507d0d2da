"""repro.robust_eval: the shared battery orders attacks as it must (clean ≥ FGSM ≥ worst case, more
PGD steps and restarts never help the model), repeats under a seed, flags a weak paper attack, and
records what the site reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from repro import ReproError
from repro.data import available
from repro.record import Recorder
from repro.robust_eval import GAP_FLAG, Protocol, autoattack, autoattack_parts, evaluate


@pytest.fixture(scope="module")
def victim(small_fashion_model) -> tuple[nn.Module, Tensor, Tensor]:
    """The attack tests' shared CNN (conftest.py), and 64 held-out test images."""
    if not available("fashion_mnist", split="test"):
        pytest.skip("Fashion-MNIST is not available")
    model, data = small_fashion_model("cnn")
    return model, data.x[2000:2064].clone(), data.y[2000:2064].clone()


def test_the_battery_orders_the_attacks(victim: tuple[nn.Module, Tensor, Tensor]) -> None:
    model, x, y = victim
    report = evaluate(model, x, y, Protocol(eps=0.05, restarts=2, autoattack="apgd"),
                      progress=False)  # fmt: skip
    acc = {a: report.accuracy(a) for a in report.correct}
    assert set(acc) == {"clean", "fgsm", "pgd20", "pgd100", "cw_pgd", "autoattack", "worst"}
    assert acc["clean"] > 50
    assert acc["clean"] >= acc["fgsm"] >= acc["worst"]
    assert acc["pgd100"] <= acc["clean"] - 10  # eps 0.05 breaks an undefended model
    assert acc["worst"] == min(acc[a] for a in acc)
    # the worst case is per example: no attack's survivors are fewer
    for name, ok in report.correct.items():
        assert bool((report.correct["worst"] <= ok).all()), name
    assert report.name("autoattack") == "apgd_ce_t"  # the reduced version is never called AA


def test_same_seed_same_numbers_and_the_model_is_left_as_it_was(
    victim: tuple[nn.Module, Tensor, Tensor],
) -> None:
    model, x, y = victim
    model.train()
    flags = [p.requires_grad for p in model.parameters()]
    proto = Protocol(
        eps=0.05, restarts=2, attacks=("clean", "pgd20", "autoattack"), autoattack="apgd"
    )
    a = evaluate(model, x, y, proto, progress=False)
    b = evaluate(model, x, y, proto, progress=False)
    assert model.training and [p.requires_grad for p in model.parameters()] == flags
    model.eval()
    for name in a.correct:
        assert torch.equal(a.correct[name], b.correct[name]), name


def test_a_weak_paper_attack_is_flagged(victim: tuple[nn.Module, Tensor, Tensor]) -> None:
    model, x, y = victim
    proto = Protocol(eps=0.05, attacks=("clean", "pgd20"))
    no_attack = evaluate(model, x, y, proto, paper_attack=lambda m, xb, yb: xb, progress=False)
    gap = no_attack.gap()
    assert gap is not None and gap > GAP_FLAG and no_attack.flagged()
    from repro.madry_pgd import pgd_linf

    strong = evaluate(model, x, y, proto, progress=False,
                      paper_attack=lambda m, xb, yb: pgd_linf(
                          m, xb, yb, eps=0.05, step_size=0.005, steps=40))  # fmt: skip
    strong_gap = strong.gap()
    assert strong_gap is not None and strong_gap <= GAP_FLAG and not strong.flagged()
    assert evaluate(model, x, y, proto, progress=False).gap() is None


def test_standard_autoattack_is_at_least_as_strong_as_its_first_two_parts(
    victim: tuple[nn.Module, Tensor, Tensor],
) -> None:
    model, x, y = victim
    x, y = x[:16], y[:16]
    full = autoattack(model, x, y, eps=0.05, version="standard")
    part = autoattack(model, x, y, eps=0.05, version="apgd")
    right_full = (model(full).argmax(1) == y).sum()
    right_part = (model(part).argmax(1) == y).sum()
    assert right_full <= right_part
    assert (full - x).abs().max() <= 0.05 + 1e-6 and full.min() >= 0 and full.max() <= 1


def test_autoattack_parts_follow_the_class_count() -> None:
    assert autoattack_parts(10) == ("apgd-ce", "apgd-t", "fab-t", "square")
    assert autoattack_parts(100, "apgd") == ("apgd-ce", "apgd-t")
    assert autoattack_parts(3) == ("apgd-ce", "fab-t", "square")  # APGD-T's loss needs 4 logits
    assert autoattack_parts(2, "apgd") == ("apgd-ce",)
    with pytest.raises(ReproError, match="at least 2 classes"):
        autoattack_parts(1)


class _TwoLogits(nn.Module):
    """A binary classifier cut from the ten-class one: its first two logits (T-shirt, trouser)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)[:, :2]


def test_a_binary_model_gets_the_autoattack_it_can_run(
    victim: tuple[nn.Module, Tensor, Tensor], tmp_path: Path
) -> None:
    model, x, y = victim
    keep = y < 2
    binary, xb, yb = _TwoLogits(model), x[keep], y[keep]
    assert len(yb) >= 4
    adv = autoattack(binary, xb, yb, eps=0.1, version="standard")  # no 10-class assumption
    assert (adv - xb).abs().max() <= 0.1 + 1e-6
    right = binary(xb).argmax(1) == yb
    assert bool(((binary(adv).argmax(1) == yb) <= right).all())  # never makes a wrong one right
    report = evaluate(binary, xb, yb, Protocol(eps=0.1, attacks=("clean", "autoattack"),
                      autoattack="apgd"), progress=False)  # fmt: skip
    assert report.n_classes == 2 and report.name("autoattack") == "apgd_ce"
    rec = Recorder(tmp_path, echo=False)
    report.record(rec, "binary")
    metrics = {m["name"]: m for m in json.loads(rec.path.read_text())["metrics"]}
    assert "robustness.binary.apgd_ce_t" not in metrics
    assert metrics["robustness.binary.apgd_ce"]["info"]["parts"] == ["apgd-ce"]


def test_record_writes_what_the_site_reads(
    victim: tuple[nn.Module, Tensor, Tensor], tmp_path: Path
) -> None:
    model, x, y = victim
    report = evaluate(model, x, y, Protocol(eps=0.05, attacks=("clean", "fgsm")),
                      paper_attack=lambda m, xb, yb: xb, progress=False)  # fmt: skip
    rec = Recorder(tmp_path, echo=False)
    report.record(rec, "natural", dataset="fashion_mnist")
    metrics = {m["name"]: m for m in json.loads(rec.path.read_text())["metrics"]}
    assert metrics["robustness.natural.eps"]["value"] == 0.05
    fgsm = metrics["robustness.natural.fgsm"]
    assert fgsm["value"] == pytest.approx(report.accuracy("fgsm"))
    assert fgsm["info"]["dataset"] == "fashion_mnist" and fgsm["info"]["correct"]
    low, high = (
        metrics["robustness.natural.fgsm.ci95_low"],
        metrics["robustness.natural.fgsm.ci95_high"],
    )
    assert low["value"] <= fgsm["value"] <= high["value"]
    assert metrics["robustness.natural.gap"]["info"]["flagged"] is True
    with pytest.raises(ReproError, match="letters, digits"):
        report.record(rec, "bad.name")


def test_bad_protocols_are_one_line_errors() -> None:
    with pytest.raises(ReproError, match="eps"):
        Protocol(eps=0)
    with pytest.raises(ReproError, match="unknown attacks"):
        Protocol(eps=0.1, attacks=("clean", "deepfool"))
    with pytest.raises(ReproError, match="autoattack"):
        Protocol(eps=0.1, autoattack="plus")
