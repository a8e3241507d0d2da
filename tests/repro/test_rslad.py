"""RSLAD (Zi et al., ICCV 2021), `repro/rslad`: the official KL form against torch's KL, the inner
maximisation against a hand-written reference loop and the attack invariants, the outer loss and
ARD's loss on known values, the students' initial weights against the shared baselines', a tiny
distillation that must pull a student onto its teacher, the claims on hand-made results, and the
smoke reproduction end to end through the runner."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro import ReproError
from repro.claims import Results, evaluate, load_claims
from repro.config import repro_path
from repro.rslad import (
    ALPHA,
    PAPER_STEP_RATIO,
    ard_loss,
    ard_objective,
    kl_loss,
    paper_pgd20,
    rslad_inner_max,
    rslad_loss,
    rslad_objective,
    soft_labels,
    student_init,
)
from repro.stats import pack_bits

from .conftest import smoke_run

SLUG = "rslad"


def _net(seed: int = 0, width: int = 8) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4), nn.Flatten(),
        nn.Linear(width * 49, 10),
    ).eval()  # fmt: skip


def _batch(n: int = 12, seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


def _state(model: nn.Module) -> list[bool]:
    """Every module's training flag and every parameter's requires_grad."""
    return [m.training for m in model.modules()] + [p.requires_grad for p in model.parameters()]


# --------------------------------------------------------------------------- the KL terms


def test_official_kl_is_torch_kl_up_to_the_log_offset() -> None:
    g = torch.Generator().manual_seed(0)
    b = F.softmax(3 * torch.randn(6, 10, generator=g), dim=1)
    a = F.log_softmax(torch.randn(6, 10, generator=g), dim=1)
    ours = kl_loss(a, b)
    assert ours.shape == (6, 10)
    torch_kl = F.kl_div(a, b, reduction="none")
    # b log(b + 1e-5) - b log(b) = b log(1 + 1e-5 / b) <= 1e-5 per element
    assert torch.all((ours - torch_kl).abs() <= 1e-5 + 1e-6)
    # a student equal to the teacher: KL ~ 0 (only the offset's b log(1 + 1e-5 / b))
    assert float(kl_loss(torch.log(b), b).sum(dim=1).abs().max()) < 1e-4
    with pytest.raises(ReproError):
        kl_loss(a, b[:, :5])


def test_soft_labels_are_the_teachers_softmax_in_eval_mode_and_restore_its_mode() -> None:
    teacher = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(784, 10))
    teacher.train()
    x, _ = _batch(5)
    probs = soft_labels(teacher, x, batch_size=2)
    assert teacher.training  # mode restored
    teacher.eval()
    assert torch.allclose(probs, F.softmax(teacher(x), dim=1))  # eval mode: no dropout
    assert torch.allclose(probs.sum(dim=1), torch.ones(5))
    assert not probs.requires_grad


@torch.no_grad()
def test_rslad_loss_weights_the_adversarial_and_natural_terms() -> None:
    student, teacher = _net(0), _net(1)
    x, _ = _batch(8)
    x_adv = (x + 0.05).clamp(0, 1)
    probs = soft_labels(teacher, x)
    adv = kl_loss(F.log_softmax(student(x_adv), dim=1), probs).mean()
    nat = kl_loss(F.log_softmax(student(x), dim=1), probs).mean()
    got = rslad_loss(student, x, x_adv, probs)
    assert float(got) == pytest.approx(float(5 / 6 * adv + 1 / 6 * nat), rel=1e-6)
    assert pytest.approx(5 / 6) == ALPHA
    assert float(rslad_loss(student, x, x_adv, probs, alpha=1.0)) == pytest.approx(float(adv))
    # the mean is over batch x classes (the official torch.mean), i.e. batchmean KL / classes
    batchmean = F.kl_div(F.log_softmax(student(x), dim=1), probs, reduction="batchmean")
    assert float(nat) == pytest.approx(float(batchmean) / 10, abs=1e-5)


@torch.no_grad()
def test_ard_loss_is_temperature_scaled_kl_plus_clean_cross_entropy() -> None:
    student, teacher = _net(0), _net(1)
    x, y = _batch(8)
    x_adv = (x - 0.05).clamp(0, 1)
    logits_t = teacher(x).detach()
    tau = 30.0
    kl = F.kl_div(F.log_softmax(student(x_adv) / tau, dim=1), F.softmax(logits_t / tau, dim=1),
                  reduction="sum") / (8 * 10)  # fmt: skip
    assert float(ard_loss(student, x, x_adv, y, logits_t)) == pytest.approx(
        float(tau**2 * kl), rel=1e-5
    )  # the defaults: alpha = 1 (no cross-entropy), tau = 30
    ce = F.cross_entropy(student(x), y)
    mixed = ard_loss(student, x, x_adv, y, logits_t, temperature=tau, alpha=0.9)
    assert float(mixed) == pytest.approx(float(0.9 * tau**2 * kl + 0.1 * ce), rel=1e-5)


# --------------------------------------------------------------------------- inner maximisation


def _reference_inner_max(
    student: nn.Module, x: Tensor, probs: Tensor, eps: float, step: float, steps: int
) -> Tensor:
    """The official loop (rslad_loss.py), started at x: sign ascent on the summed KLDivLoss."""
    x_adv = x.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = F.kl_div(F.log_softmax(student(x_adv), dim=1), probs, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = x_adv.detach() + step * grad.sign()
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0.0, 1.0)
    return x_adv


def test_inner_max_is_the_official_ascent_and_raises_the_kl() -> None:
    student, teacher = _net(0), _net(1)
    x, _ = _batch(10)
    probs = soft_labels(teacher, x)
    student.train()
    before = _state(student)
    x_adv = rslad_inner_max(student, x, probs, eps=0.1, step_size=0.025, steps=5)
    assert _state(student) == before  # mode and requires_grad restored
    student.eval()
    ref = _reference_inner_max(student, x, probs, 0.1, 0.025, 5)
    assert torch.allclose(x_adv, ref, atol=1e-6)
    assert not x_adv.requires_grad and x_adv.shape == x.shape
    assert float((x_adv - x).abs().max()) <= 0.1 + 1e-6
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0

    def kl(z: Tensor) -> Tensor:
        return F.kl_div(F.log_softmax(student(z), dim=1), probs, reduction="none").sum(dim=1)

    with torch.no_grad():
        assert float(kl(x_adv).sum()) > float(kl(x).sum())
    # deterministic (no random start) and zero steps return x
    assert torch.equal(x_adv, rslad_inner_max(student, x, probs, eps=0.1, step_size=0.025, steps=5))
    assert torch.equal(rslad_inner_max(student, x, probs, eps=0.1, step_size=0.025, steps=0), x)
    with pytest.raises(ReproError):
        rslad_inner_max(student, x, probs[:3], eps=0.1, step_size=0.025, steps=1)


def test_inner_max_against_a_confident_correct_teacher_lowers_accuracy(small_fashion_model) -> None:
    """Attack invariant 4 with a teacher that puts 0.91 on the true class: raising KL(T || S)
    pushes the student away from the label, so accuracy on x' never exceeds clean accuracy."""
    model, data = small_fashion_model("cnn")
    x, y = data.x[1000:1200], data.y[1000:1200]
    probs = F.one_hot(y, 10).float() * 0.9 + 0.01
    x_adv = rslad_inner_max(model, x, probs, eps=0.1, step_size=0.025, steps=10)
    with torch.no_grad():
        clean = float((model(x).argmax(1) == y).float().mean())
        adv = float((model(x_adv).argmax(1) == y).float().mean())
    assert adv < clean - 0.2


def test_paper_pgd20_scales_the_official_step_and_stays_in_the_ball() -> None:
    assert pytest.approx(0.003 * 255 / 8) == PAPER_STEP_RATIO
    model = _net(0)
    x, y = _batch(8)
    a = paper_pgd20(eps=0.1, generator=torch.Generator().manual_seed(3))(model, x, y)
    b = paper_pgd20(eps=0.1, generator=torch.Generator().manual_seed(3))(model, x, y)
    assert torch.equal(a, b)
    assert float((a - x).abs().max()) <= 0.1 + 1e-6
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0


# --------------------------------------------------------------------------- training


def test_students_start_from_the_shared_baselines_initial_weights() -> None:
    from repro.baselines import SmallCNN

    rng = torch.get_rng_state()
    student = student_init(0)
    assert torch.equal(torch.get_rng_state(), rng)  # the global RNG is left alone
    torch.manual_seed(0)
    reference = SmallCNN()  # repro.baselines: manual_seed(spec.seed), then the architecture
    for (k, v), (k2, v2) in zip(student.state_dict().items(), reference.state_dict().items(),
                                strict=True):  # fmt: skip
        assert k == k2 and torch.equal(v, v2)
    assert not torch.equal(student_init(1).head.weight, student.head.weight)
    with pytest.raises(ReproError):
        student_init(0, arch="resnet")


def test_objectives_train_the_student_only_and_rslad_ignores_the_labels() -> None:
    student, teacher = _net(0), _net(1)
    student.train()
    x, y = _batch(8)
    rslad = rslad_objective(teacher, eps=0.1, step_size=0.025, steps=3)
    loss = rslad(student, x, y)
    assert loss.dim() == 0 and loss.requires_grad
    loss.backward()
    assert all(p.grad is not None for p in student.parameters())
    assert all(p.grad is None for p in teacher.parameters())
    relabelled = rslad(student, x, y.flip(0)).detach()  # soft labels only: y is not used
    assert float(relabelled) == pytest.approx(float(loss.detach()))
    ard = ard_objective(teacher, eps=0.1, step_size=0.025, steps=3,
                        generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert math.isfinite(float(ard(student, x, y).detach()))


def test_rslad_distillation_pulls_the_student_onto_its_teacher() -> None:
    """25 epochs of RSLAD on random images: the student's agreement with the teacher's
    predictions rises from chance, and its KL to the soft labels falls."""
    from repro.train import train_classifier

    teacher = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    torch.manual_seed(5)
    nn.init.normal_(teacher[1].weight, std=0.2)
    teacher.eval()
    x, _ = _batch(256, seed=1)
    y = teacher(x).argmax(1).detach()
    student = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))

    def agreement() -> float:
        with torch.no_grad():
            return float((student(x).argmax(1) == y).float().mean())

    before = agreement()
    losses = train_classifier(student, x, y, epochs=25, batch_size=64, lr=1e-2,
                              objective=rslad_objective(teacher, eps=0.01, step_size=0.005, steps=2),
                              generator=torch.Generator().manual_seed(0), progress=False)  # fmt: skip
    assert losses[-1] < 0.5 * losses[0]
    assert before < 0.4 and agreement() > 0.8


# --------------------------------------------------------------------------- claims


def _results(**acc: tuple[float, float, float]) -> Results:
    """Hand-made results: per model (AutoAttack %, worst %, clean fraction), vectors on 100 images
    with the first k correct, so paired intervals are defined."""
    metrics: dict[str, float] = {}
    vectors: dict[str, str] = {}

    def put(name: str, value: float, n: int = 100, scale: float = 100.0) -> None:
        metrics[name] = value
        k = round(value / scale * n)
        vectors[name] = pack_bits([1] * k + [0] * (n - k))

    for model, (aa, worst, clean) in acc.items():
        put(f"robustness.{model}.autoattack", aa)
        put(f"robustness.{model}.worst", worst)
        put(f"fashion_mnist_{model}_clean", clean, scale=1.0)
    return Results({}, metrics, per_image=vectors)


GOOD = {"teacher": (60.0, 59.0, 0.86), "sat": (50.0, 49.0, 0.80), "trades": (52.0, 51.0, 0.78),
        "ard": (53.0, 52.0, 0.82), "rslad": (55.0, 54.0, 0.81)}  # fmt: skip


def test_claims_on_hand_made_results() -> None:
    claims = load_claims(repro_path(SLUG))
    got = {c["id"]: c["holds"] for c in evaluate(claims, _results(**GOOD))}
    assert got == {
        "rslad_beats_sat_under_autoattack": True,
        "rslad_at_least_ard_under_autoattack": True,
        "rslad_at_least_trades_under_autoattack": True,
        "rslad_clean_at_least_sat": True,
        "student_not_above_teacher": True,
    }
    # worse than SAT in the worst case only: the robustness claim fails
    bad = dict(GOOD, sat=(50.0, 55.0, 0.80))
    got = {c["id"]: c["holds"] for c in evaluate(claims, _results(**bad))}
    assert got["rslad_beats_sat_under_autoattack"] is False
    # a tie with SAT is not "more robust"; a tie with ARD is "at least"
    tie = dict(GOOD, sat=(55.0, 54.0, 0.81), ard=(55.0, 54.0, 0.82))
    got = {c["id"]: c["holds"] for c in evaluate(claims, _results(**tie))}
    assert got["rslad_beats_sat_under_autoattack"] is False
    assert got["rslad_at_least_ard_under_autoattack"] is True
    assert got["rslad_clean_at_least_sat"] is True
    # a student 30 points above its teacher on 100 images is beyond noise
    above = dict(GOOD, teacher=(25.0, 24.0, 0.86))
    got = {c["id"]: c["holds"] for c in evaluate(claims, _results(**above))}
    assert got["student_not_above_teacher"] is False
    assert all(c["holds"] is None for c in evaluate(claims, Results({})))


def test_claims_read_the_reduced_autoattack_when_the_standard_one_did_not_run() -> None:
    r = _results(**GOOD)
    metrics = {k.replace(".autoattack", ".apgd_ce_t"): v for k, v in r.metrics.items()}
    vectors = {k.replace(".autoattack", ".apgd_ce_t"): v for k, v in r.per_image_vectors.items()}
    out = evaluate(load_claims(repro_path(SLUG)), Results({}, metrics, per_image=vectors))
    assert all(c["holds"] is True for c in out), out
    assert "APGD-CE+T" in out[0]["detail"]


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_smoke_reproduction_through_the_runner(project: Path, tmp_path: Path) -> None:
    """The notebook runs under papermill at smoke scale: every CIFAR row is not run, the six
    models go through the shared battery (the paper's attack and the worst case included), the
    per-epoch costs are recorded, the figures exist and every claim gets a verdict."""
    result, summary = smoke_run(SLUG, tmp_path / "runs")
    assert {r["verdict"] for r in summary["rows"]} == {"not_run"}
    metrics = {m["name"]: m["value"] for m in summary["metrics"]}
    for model in ("teacher", "natural", "sat", "trades", "ard", "rslad"):
        for attack in ("clean", "fgsm", "pgd20", "paper", "worst"):
            assert 0.0 <= metrics[f"robustness.{model}.{attack}"] <= 100.0
        assert metrics[f"robustness.{model}.worst"] <= metrics[f"robustness.{model}.clean"]
        assert metrics[f"cost.{model}.epoch_seconds"] > 0
        assert 0.0 <= metrics[f"fashion_mnist_{model}_clean"] <= 1.0
    for model in ("teacher", "sat", "trades", "ard", "rslad"):
        assert f"robustness.{model}.apgd_ce_t" in metrics
    assert len(summary["figures"]) == 2
    assert all((result.run_dir / f["path"]).stat().st_size > 0 for f in summary["figures"])
    assert all(c["holds"] is not None for c in summary["claims"]), summary["claims"]
