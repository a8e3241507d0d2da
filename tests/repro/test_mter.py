"""MTER (Zhong & Deng, ICCV 2019), `repro/mter`: the triplet term and the cosine distance against
hand computations, the feature-level attacks (they close the distance to the target, stay in the
ball and in [0, 1], stop early, are deterministic, leave the model as it was), the class split and
the pairing of Algorithm 1, the verification threshold and hit rates on hand-made embeddings, the
objective's gradients and epoch splits, the claims on hand-made results, and the smoke
reproduction end to end through the runner."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from repro.baselines import SmallCNN
from repro.claims import Results, evaluate, load_claims
from repro.config import repro_path
from repro.mter import (
    STEP,
    MTERObjective,
    class_split,
    cosine_distance,
    embed,
    feature_attack,
    feature_hits,
    ftgsm,
    iftgsm,
    itgsm,
    kurakin_steps,
    label_hits,
    pair_distances,
    pair_indices,
    random_pairs,
    triplet_regulariser,
    verification_rate,
    verification_threshold,
    vulnerability_exploitation,
)
from repro.stats import pack_bits

from .conftest import smoke_run

SLUG = "mter"
DS = "fashion_mnist"


def _net(seed: int = 0) -> SmallCNN:
    torch.manual_seed(seed)
    return SmallCNN().eval()


def _images(n: int = 8, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


class Identity2d(nn.Module):
    """Its output is the flattened image: the embedding of x is x / ||x||."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


# --------------------------------------------------------------------------- the embedding


def test_embedding_is_normalised_and_cosine_distance_is_half_the_squared_distance() -> None:
    e = embed(_net(), _images())
    assert e.shape == (8, 128)
    torch.testing.assert_close(e.norm(dim=1), torch.ones(8))
    a, b = e[:4], e[4:]
    torch.testing.assert_close(cosine_distance(a, b), ((a - b) ** 2).sum(1) / 2)
    # a model without `features`: its output is the embedding
    x = torch.tensor([[3.0, 4.0]]).view(1, 1, 1, 2)
    torch.testing.assert_close(embed(Identity2d(), x), torch.tensor([[0.6, 0.8]]))


def test_triplet_regulariser_against_a_hand_computation() -> None:
    e_src = torch.tensor([[1.0, 0.0]])
    e_tar = torch.tensor([[0.0, 1.0]])
    # the adversarial still sits on its source: ap = 0, an = sqrt(2) > alpha -> no loss
    assert float(triplet_regulariser(e_src, e_src, e_tar, alpha=0.2)) == 0.0
    # on its target: ap = sqrt(2), an = 0 -> sqrt(2) + alpha
    torch.testing.assert_close(
        triplet_regulariser(e_tar, e_src, e_tar, alpha=0.2), torch.tensor([2**0.5 + 0.2])
    )
    # halfway (normalised): ap = an -> alpha
    mid = F.normalize(torch.tensor([[1.0, 1.0]]), dim=1)
    torch.testing.assert_close(
        triplet_regulariser(mid, e_src, e_tar, alpha=0.2), torch.tensor([0.2])
    )


def test_kurakin_steps_rule() -> None:
    assert kurakin_steps(10 * STEP) == 12  # min(10 + 4, 12.5)
    assert kurakin_steps(5 * STEP) == 6  # min(9, 6.25)
    assert kurakin_steps(0.1) == 29  # 25.5 grey levels: min(29.5, 31.9)
    assert kurakin_steps(0.3) == 80  # min(80.5, 95.6)
    assert kurakin_steps(0.001) == 1


# --------------------------------------------------------------------------- the attacks


def test_feature_attack_closes_the_distance_to_the_target_inside_the_ball() -> None:
    model, x = _net(), _images(8)
    x_tar = _images(8, seed=2)
    before = cosine_distance(embed(model, x), embed(model, x_tar))
    x_adv = iftgsm(model, x, x_tar, eps=0.1, steps=20, step_size=0.01)
    after = cosine_distance(embed(model, x_adv), embed(model, x_tar))
    assert (after < before).all()
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert not x_adv.requires_grad and x_adv.shape == x.shape


def test_feature_attack_takes_sign_steps_of_the_step_size() -> None:
    model, x = _net(), _images(4) * 0.5 + 0.25  # away from the [0, 1] bounds
    x_adv = feature_attack(model, x, embed(model, _images(4, 3)).detach(), eps=1.0,
                           step_size=0.01, steps=1)  # fmt: skip
    moved = (x_adv - x).abs()
    assert torch.all((moved < 1e-6) | ((moved - 0.01).abs() < 1e-6))
    # FTGSM is one step of eps
    x_f = ftgsm(model, x, _images(4, 3), eps=0.05)
    step = (x_f - x).abs()
    assert torch.all(((step - 0.05).abs() < 1e-6) | (step < 1e-6))


def test_early_stop_when_every_distance_is_below_the_threshold() -> None:
    model, x, x_tar = _net(), _images(4), _images(4, 2)
    one = vulnerability_exploitation(model, x, x_tar, sigma=0.3, rounds=1, step_size=0.01)
    # a threshold every distance is below: the first step only, whatever the rounds
    stopped = vulnerability_exploitation(model, x, x_tar, sigma=0.3, rounds=50, step_size=0.01,
                                         threshold=2.5)  # fmt: skip
    torch.testing.assert_close(stopped, one)
    # no early stop (threshold 0): all rounds, further than one step
    full = vulnerability_exploitation(model, x, x_tar, sigma=0.3, rounds=5, step_size=0.01,
                                      threshold=0.0)  # fmt: skip
    assert (full - x).abs().max() > 0.01 + 1e-6


def test_attacks_are_deterministic_and_leave_the_model_as_it_was() -> None:
    model, x, x_tar = _net().train(), _images(4), _images(4, 2)
    flags = [p.requires_grad for p in model.parameters()]
    a = iftgsm(model, x, x_tar, eps=0.1, steps=3)
    b = iftgsm(model, x, x_tar, eps=0.1, steps=3)
    torch.testing.assert_close(a, b)
    itgsm(model, x, torch.tensor([1, 2, 3, 4]), eps=0.1, steps=3)
    assert model.training and [p.requires_grad for p in model.parameters()] == flags


def test_itgsm_moves_predictions_toward_the_target_class() -> None:
    model, x = _net(), _images(16)
    target = (model(x).argmax(1) + 3) % 10
    p_before = F.softmax(model(x), 1).gather(1, target[:, None])
    x_adv = itgsm(model, x, target, eps=0.3, steps=30, step_size=0.02)
    p_after = F.softmax(model(x_adv), 1).gather(1, target[:, None])
    assert (p_after > p_before).float().mean() == 1.0
    assert (x_adv - x).abs().max() <= 0.3 + 1e-6
    assert label_hits(model, x_adv, target).dtype == torch.bool


# --------------------------------------------------------------------------- Algorithm 1


def test_class_split_is_two_disjoint_halves_and_varies_with_the_generator() -> None:
    g = torch.Generator().manual_seed(0)
    splits = [class_split(10, generator=g) for _ in range(5)]
    for a, b in splits:
        assert len(a) == len(b) == 5
        assert sorted(torch.cat([a, b]).tolist()) == list(range(10))
    assert len({tuple(sorted(a.tolist())) for a, _ in splits}) > 1


def test_pair_indices_pair_sources_with_targets_in_batch_order() -> None:
    y = torch.tensor([0, 5, 1, 6, 2, 7, 8])
    src, tar = pair_indices(y, torch.tensor([0, 1, 2, 3, 4]), torch.tensor([5, 6, 7, 8, 9]))
    assert src.tolist() == [0, 2, 4] and tar.tolist() == [1, 3, 5]


def test_random_pairs_pick_another_class_reproducibly() -> None:
    y = torch.tensor([0, 0, 1, 2, 2, 3, 1, 0])
    a = random_pairs(y, generator=torch.Generator().manual_seed(3))
    b = random_pairs(y, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert (y[a] != y).all()


def test_objective_gradients_reach_the_embedding_and_split_once_per_epoch() -> None:
    model = _net().train()
    x = _images(32)
    y = torch.arange(32) % 10
    objective = MTERObjective(steps_per_epoch=2, sigma=0.1, rounds=2, step_size=0.05,
                              generator=torch.Generator().manual_seed(0))  # fmt: skip
    loss = objective(model, x, y)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert model.features[0].weight.grad is not None
    assert model.features[0].weight.grad.abs().sum() > 0
    assert model.training  # the exploitation ran frozen and restored the mode
    first = objective.split
    objective(model, x, y)
    assert objective.split is first  # same epoch
    objective(model, x, y)
    assert objective.split is not first  # a new epoch, a new split
    assert len(objective.triplet_log) == 3


def test_objective_mter_is_ce_plus_the_triplet_term_and_adv_is_ce_on_three_parts() -> None:
    x = _images(20)
    y = torch.arange(20) % 10
    kw = {"steps_per_epoch": 100, "sigma": 0.1, "rounds": 1, "step_size": 0.05}
    mter = MTERObjective(**kw, alpha=0.2, generator=torch.Generator().manual_seed(0))
    no_reg = MTERObjective(**kw, weight=0.0, generator=torch.Generator().manual_seed(0))
    model = _net().train()
    with torch.no_grad():
        ce = F.cross_entropy(model(x), y)
    torch.testing.assert_close(no_reg(model, x, y).detach(), ce)
    assert mter(model, x, y).detach() >= ce - 1e-6
    adv = MTERObjective(**kw, variant="adv", generator=torch.Generator().manual_seed(0))
    src, _ = pair_indices(y, *class_split(10, generator=torch.Generator().manual_seed(0)))
    assert adv(model, x, y).ndim == 0 and len(src) == 10
    with pytest.raises(ValueError):
        MTERObjective(steps_per_epoch=1, sigma=0.1, rounds=1, variant="other")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the hit rate


def _points(*angles_deg: float) -> torch.Tensor:
    """Unit vectors in the plane at these angles, as 1x1x2 images."""
    a = torch.tensor(angles_deg) * torch.pi / 180
    return torch.stack([a.cos(), a.sin()], 1).view(-1, 1, 1, 2)


def test_threshold_is_the_far_quantile_of_clean_impostor_distances() -> None:
    model = Identity2d()
    x = _points(0, 10, 90, 100)
    y = torch.tensor([0, 0, 1, 1])
    # impostor pairs (0, 90), (0, 100), (10, 90), (10, 100): angles 90, 100, 80, 90
    d80 = 1 - torch.cos(torch.tensor(80 * torch.pi / 180))
    thr = verification_threshold(model, x, y, far=0.25)  # 1 of 4 pairs -> the smallest
    assert abs(thr - float(d80)) < 1e-6
    # genuine pairs (0, 10) and (90, 100): 10 degrees apart, both below the threshold
    assert verification_rate(model, x, y, thr) == 1.0
    assert verification_rate(model, x, y, 1e-4) == 0.0
    hits = feature_hits(model, _points(85, 5), _points(90, 90), thr)
    assert hits.tolist() == [True, False]
    torch.testing.assert_close(pair_distances(model, _points(0), _points(60)), torch.tensor([0.5]))
    with pytest.raises(ValueError):
        verification_threshold(model, x, torch.zeros(4, dtype=torch.long))


# --------------------------------------------------------------------------- the claims


def _results(**values: float) -> Results:
    """Hand-made results: hit rates and accuracies (percent), per-pair vectors of 100 images."""
    metrics, per_image = {}, {}
    for name, value in values.items():
        metrics[name] = value
        k = round(value)
        per_image[name] = pack_bits([1] * k + [0] * (100 - k))
    return Results({}, metrics, per_image=per_image)


def _good() -> dict[str, float]:
    values = {}
    for model, hit, clean, bim in (("natural", 99, 88, 0), ("feature_at", 40, 86, 60),
                                   ("mter", 20, 87, 70)):  # fmt: skip
        for attack in ("ftgsm", "iftgsm_half", "iftgsm", "itgsm"):
            values[f"{DS}_{model}_hit_{attack}"] = hit
        values[f"{DS}_{model}_acc_clean"] = clean
        values[f"{DS}_{model}_acc_bim"] = bim
    values["robustness.mter.worst"] = 60
    values["robustness.mter.clean"] = 87
    return values


def _verdicts(values: dict[str, float]) -> dict[str, bool | None]:
    claims = evaluate(load_claims(repro_path(SLUG)), _results(**values))
    return {c["id"]: c["holds"] for c in claims}


def test_claims_hold_on_a_run_where_mter_works() -> None:
    assert all(_verdicts(_good()).values()), _verdicts(_good())


def test_claims_fail_where_mter_does_not_help_and_are_not_evaluated_without_values() -> None:
    bad = _good()
    bad[f"{DS}_mter_hit_iftgsm"] = 45  # above +adv.'s 40
    bad[f"{DS}_mter_acc_clean"] = 84  # 4 points below plain
    bad[f"{DS}_mter_hit_itgsm"] = 98  # interval of the difference straddles 0
    bad["robustness.mter.worst"] = 30
    verdicts = _verdicts(bad)
    assert verdicts["mter_at_most_adv_iftgsm_hit_rate"] is False
    assert verdicts["mter_keeps_clean_accuracy"] is False
    assert verdicts["mter_lowers_itgsm_hit_rate"] is False
    assert verdicts["mter_robust_worst_case"] is False
    assert verdicts["mter_lowers_iftgsm_hit_rate"] is True
    missing = _good()
    del missing[f"{DS}_natural_hit_ftgsm"]
    assert _verdicts(missing)["mter_lowers_ftgsm_hit_rate"] is None


# --------------------------------------------------------------------------- the smoke run


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_smoke_reproduction_through_the_runner(project: Path, tmp_path: Path) -> None:
    """The notebook runs under papermill at smoke scale, records its metrics, and is stored."""
    result, summary = smoke_run(SLUG, tmp_path / "runs")
    # every paper row is on faces or on MNIST with a training split: not run here
    assert {r["verdict"] for r in summary["rows"]} == {"not_run"}
    metrics = {m["name"]: m["value"] for m in summary["metrics"]}
    for model in ("natural", "pgd_at", "feature_at", "mter"):
        for attack in ("ftgsm", "iftgsm_half", "iftgsm", "itgsm"):
            assert 0.0 <= metrics[f"{DS}_{model}_hit_{attack}"] <= 100.0
        for attack in ("clean", "fgsm", "bim", "itgsm"):
            assert 0.0 <= metrics[f"{DS}_{model}_acc_{attack}"] <= 100.0
        assert metrics[f"{DS}_{model}_epoch_seconds"] > 0
        # the diagnostic: a looser threshold never hits less often
        assert metrics[f"{DS}_{model}_hit_iftgsm_far1e-1"] >= metrics[f"{DS}_{model}_hit_iftgsm"]
    assert "robustness.mter.worst" in metrics and "robustness.mter.paper" in metrics
    assert len(summary["figures"]) == 2
    assert all((result.run_dir / f["path"]).stat().st_size > 0 for f in summary["figures"])
    assert all(c["holds"] is not None for c in summary["claims"]), summary["claims"]
