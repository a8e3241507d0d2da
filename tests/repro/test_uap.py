"""Universal adversarial perturbations (repro.uap): the projection and the fooling rate by hand,
Algorithm 1 against a plain image-by-image loop, the stopping rule, the claims, and the smoke
reproduction end to end through the runner."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from repro.claims import Results, evaluate, load_claims
from repro.config import repro_path
from repro.deepfool import deepfool_attack, fc_500_150
from repro.train import predict
from repro.uap import (
    apply_perturbation,
    fc_300_100,
    fooling_rate,
    project_lp,
    random_perturbation,
    strided_cnn,
    uap_attack,
    universal_perturbation,
)

from .conftest import smoke_run

SLUG = "uap"


def test_projection_on_the_lp_balls() -> None:
    v = torch.tensor([[[3.0, -4.0]]])
    assert torch.allclose(project_lp(v, 1.0, "l2"), v / 5)
    assert torch.equal(project_lp(v, 10.0, "l2"), v)
    assert torch.equal(project_lp(v, 1.0, "linf"), torch.tensor([[[1.0, -1.0]]]))
    with pytest.raises(ValueError, match="norm"):
        project_lp(v, 1.0, "l1")  # type: ignore[arg-type]


def test_fooling_rate_and_application_by_hand() -> None:
    class FirstPixel(nn.Module):
        """Class 1 when the first pixel exceeds 0.5, else class 0."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            p = x.flatten(1)[:, :1]
            return torch.cat([0.5 - p, p - 0.5], dim=1)

    x = torch.tensor([[[[0.1, 0.0]]], [[[0.45, 0.0]]], [[[0.9, 0.0]]], [[[0.3, 0.0]]]])
    v = torch.tensor([[[0.1, -0.5]]])
    assert torch.allclose(apply_perturbation(x, v)[:, 0, 0, 1], torch.zeros(4))  # clipped
    assert fooling_rate(FirstPixel(), x, v, batch_size=3) == pytest.approx(0.25)  # only 0.45
    attack = uap_attack(v)
    assert torch.equal(attack(None, x, None), apply_perturbation(x, v))  # type: ignore[arg-type]


def _plain_algorithm_1(model, x, xi, passes, generator):
    """Algorithm 1 as written: image by image, no batching of the check."""
    labels = predict(model, x)
    v = torch.zeros_like(x[0])
    for _ in range(passes):
        for i in torch.randperm(len(x), generator=generator).tolist():
            x_v = apply_perturbation(x[i : i + 1], v)
            if int(predict(model, x_v)) == int(labels[i]):
                step = deepfool_attack(model, x_v, labels[i : i + 1], max_iter=10)
                if bool(step.fooled[0]):
                    v = project_lp(v + (step.x_adv[0] - x_v[0]), xi, "linf")
    return v


def test_batched_check_gives_exactly_the_sequential_algorithm() -> None:
    torch.manual_seed(0)
    model = fc_500_150().eval()
    x = torch.rand(40, 1, 28, 28) * 0.5
    ours = universal_perturbation(
        model, x, xi=0.05, delta=0.0, max_passes=2, batch_size=7,
        generator=torch.Generator().manual_seed(3),
    )  # fmt: skip
    plain = _plain_algorithm_1(model, x, 0.05, 2, torch.Generator().manual_seed(3))
    assert torch.allclose(ours.v, plain, atol=1e-6)
    assert len(ours.fooling_history) == 2 and ours.updates > 0
    assert float(ours.v.abs().max()) <= 0.05 + 1e-7


def test_stops_once_the_fooling_rate_reaches_one_minus_delta() -> None:
    torch.manual_seed(0)
    model = fc_500_150().eval()
    x = torch.rand(30, 1, 28, 28)
    result = universal_perturbation(model, x, xi=1.0, delta=0.2, max_passes=5,
                                    generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert len(result.fooling_history) < 5
    assert result.fooling_history[-1] >= 0.8
    assert fooling_rate(model, x, result.v) == pytest.approx(result.fooling_history[-1])
    l2 = universal_perturbation(model, x, xi=2.0, norm="l2", max_passes=1,
                                generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert float(l2.v.norm()) <= 2.0 + 1e-5
    with pytest.raises(ValueError, match="xi"):
        universal_perturbation(model, x, xi=0.0)


def test_random_perturbations_have_the_norm() -> None:
    like = torch.zeros(1, 28, 28)
    g = torch.Generator().manual_seed(0)
    linf = random_perturbation(like, 0.1, "linf", g)
    assert torch.allclose(linf.abs(), torch.full_like(like, 0.1))
    assert float(random_perturbation(like, 3.0, "l2", g).norm()) == pytest.approx(3.0)
    for build in (fc_300_100, strided_cnn):
        assert build()(torch.rand(2, 1, 28, 28)).shape == (2, 10)


# --------------------------------------------------------------------------- claims

NETS = ("fc500_150", "fc300_100", "strided_cnn")


def _results(**overrides: float) -> Results:
    m = {f"{n}_fooling_on_x": 80.0 for n in NETS}
    for s in NETS:
        for t in NETS:
            m[f"{s}_to_{t}_fooling"] = 78.0 if s == t else 45.0
    m |= {f"random_to_{n}_fooling": 10.0 for n in NETS}
    m |= {"fc500_150_size100_fooling": 40.0, "fc500_150_size400_fooling": 70.0}
    m |= {"fc500_150_xi0.1_fooling": 50.0}  # must not be read as an |X| sweep value
    return Results({}, {k: overrides.get(k, v) for k, v in m.items()})


def test_claims_hold_fail_and_are_not_evaluated_without_results() -> None:
    claims = load_claims(repro_path(SLUG))
    assert all(c["holds"] is True for c in evaluate(claims, _results()))
    bad = _results(
        strided_cnn_to_strided_cnn_fooling=60.0,  # 20 points under X
        random_to_fc300_100_fooling=50.0,  # above the transfer from others, above half of 78
        fc500_150_size400_fooling=42.0,
    )
    holds = {c["id"]: c["holds"] for c in evaluate(claims, bad)}
    assert holds == {
        "universal_perturbation_generalises": False,
        "universal_beats_random_noise": False,
        "universal_perturbations_transfer": False,
        "fooling_grows_with_x": False,
    }
    assert all(c["holds"] is None for c in evaluate(claims, Results({})))


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_smoke_reproduction_through_the_runner(project: Path, tmp_path: Path) -> None:
    """The notebook runs under papermill at smoke scale, records its metrics, and is stored."""
    _result, summary = smoke_run(SLUG, tmp_path / "runs")
    assert {r["verdict"] for r in summary["rows"]} == {"not_run"}  # every paper row is ImageNet
    metrics = {m["name"]: m["value"] for m in summary["metrics"]}
    for s in NETS:
        assert 0.0 <= metrics[f"random_to_{s}_fooling"] <= 100.0
        for t in NETS:
            assert 0.0 <= metrics[f"{s}_to_{t}_fooling"] <= 100.0
    assert len(summary["figures"]) == 3
    assert all(c["holds"] is not None for c in summary["claims"]), summary["claims"]
