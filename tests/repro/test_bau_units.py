"""Bau et al.'s unit interventions (repro.bau_units): the ablation hooks against plain loops, the
balanced accuracy by hand, the ranking, the interventions and their statistics, the generator's
dissection and removals, the claims, and the smoke reproduction end to end through the runner."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from repro import ReproError
from repro.bau_units import (
    GEN_LAYER,
    ClassRemoval,
    Intervention,
    MeanVectors,
    SampleOutcomes,
    UnitCNN,
    ablate,
    ablate_each,
    balanced_accuracy,
    balanced_accuracy_vectors,
    class_interventions,
    class_removals,
    dissect,
    intervention_statistics,
    layer_units,
    predict_ablated,
    rank_units,
    removal_statistics,
    single_unit_ablation,
    unit_class_effect,
)
from repro.claims import Results, evaluate, load_claims
from repro.config import repro_path
from repro.dcgan import Generator

from .conftest import smoke_run

SLUG = "bau_units"


def _cnn(units: int = 8) -> UnitCNN:
    torch.manual_seed(0)
    return UnitCNN(units=units, hidden=16).eval()


# --------------------------------------------------------------------------- ablation


def test_ablate_zeroes_the_chosen_channels_and_removes_its_hook() -> None:
    conv = nn.Conv2d(1, 4, 3, padding=1)
    model = nn.Sequential(conv, nn.Identity())
    x = torch.rand(3, 1, 5, 5)
    plain = model(x)
    with ablate(model, "0", [1, 3]) as same:
        assert same is model
        out = model(x)
    assert torch.equal(out[:, [1, 3]], torch.zeros(3, 2, 5, 5))
    assert torch.equal(out[:, [0, 2]], plain[:, [0, 2]])
    assert torch.equal(model(x), plain)  # the hook is gone
    with pytest.raises(RuntimeError, match="boom"), ablate(model, conv, [0]):
        raise RuntimeError("boom")
    assert not conv._forward_hooks  # removed on an exception too
    with ablate(model, "0", []):
        assert torch.equal(model(x), plain)
    with pytest.raises(ReproError, match="outside"), ablate(model, "0", [4]):
        model(x)
    with pytest.raises(ReproError, match="no layer"), ablate(model, "conv9", [0]):
        pass
    assert layer_units(model, "0", x) == 4


def test_ablate_each_equals_one_ablation_per_copy() -> None:
    model = _cnn()
    x = torch.rand(5, 1, 28, 28)
    sets = [[2], [], [0, 5, 7], [3, 4]]
    with torch.no_grad(), ablate_each(model, "conv3", sets):
        batched = model(x).view(len(sets), len(x), -1)
    for j, units in enumerate(sets):
        with torch.no_grad(), ablate(model, "conv3", units):
            assert torch.allclose(batched[j], model(x), atol=1e-6)
    with torch.no_grad(), ablate_each(model, "conv3", range(8)):
        per_unit = model(x).view(8, len(x), -1)
    with torch.no_grad(), ablate(model, "conv3", [6]):
        assert torch.allclose(per_unit[6], model(x), atol=1e-6)
    model.train()
    with pytest.raises(ReproError, match="eval mode"), ablate_each(model, "conv3", [0]):
        pass


def test_ablate_each_in_a_dcgan_generator_with_batch_norm() -> None:
    torch.manual_seed(0)
    g = Generator(width=4).eval()
    z = torch.rand(6, 100) * 2 - 1
    assert layer_units(g, GEN_LAYER, z) == 8
    with torch.no_grad(), ablate_each(g, GEN_LAYER, [[1], [0, 7]]):
        both = g(z).view(2, 6, 1, 28, 28)
    with torch.no_grad(), ablate(g, GEN_LAYER, [0, 7]):
        assert torch.allclose(both[1], g(z), atol=1e-6)
        assert not torch.allclose(both[0], g(z))


def test_zeroing_the_pooled_block_output_is_zeroing_the_convolution() -> None:
    """UnitCNN hooks the block conv3 (conv, ReLU, max-pool): the same network output as zeroing
    the convolution's own output, which is what the code does to conv5_3."""
    model = _cnn()
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        with ablate(model, "conv3", [1, 6]):
            block = model(x)
        with ablate(model, "conv3.0", [1, 6]):
            conv = model(x)
    assert torch.allclose(block, conv, atol=1e-6)


# --------------------------------------------------------------------------- the classifier


def test_balanced_accuracy_by_hand() -> None:
    y = torch.tensor([0, 0, 1, 1, 2])
    pred = torch.tensor([0, 1, 1, 1, 0])
    ba = balanced_accuracy(pred, y, 3)
    # class 0: recall 1/2, true negatives 2 of 3; class 1: 2/2, 2/3; class 2: 0/1, 4/4
    assert torch.allclose(ba, torch.tensor([7 / 12, 5 / 6, 0.5], dtype=torch.float64))
    two = balanced_accuracy(torch.stack([pred, y]), y, 3)
    assert torch.allclose(two[1], torch.ones(3, dtype=torch.float64))
    for c in range(3):
        tp, tn, pos = balanced_accuracy_vectors(pred, y, c)
        p = pos.mean()
        assert float(0.5 * (tp.mean() / p + tn.mean() / (1 - p))) == pytest.approx(float(ba[c]))
    with pytest.raises(ReproError, match="positives"):
        balanced_accuracy(pred, torch.tensor([0, 0, 1, 1, 1]), 3)


def test_single_unit_ablation_and_ranking_match_a_plain_loop() -> None:
    model = _cnn()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(60, 1, 28, 28, generator=g)
    with torch.no_grad():
        logits = model(x)
    y = logits.argmax(1).clone()
    y[::7] = torch.arange(len(y[::7])) % 10  # every class present, not all predicted right
    y[:10] = torch.arange(10)
    result = single_unit_ablation(model, "conv3", x, y, batch_size=17, units_per_pass=3)
    assert torch.allclose(result.baseline, balanced_accuracy(logits.argmax(1), y, 10))
    for u in range(8):
        with torch.no_grad(), ablate(model, "conv3", [u]):
            alone = balanced_accuracy(model(x).argmax(1), y, 10)
        assert torch.allclose(result.ablated[u], alone)
    assert torch.allclose(result.drop, result.baseline[None] - result.ablated)
    score = torch.tensor([[0.5, 0.2], [0.1, 0.2], [0.5, 0.9]])  # (U=3, K=2)
    assert rank_units(score).tolist() == [[1, 0, 2], [0, 1, 2]]  # lowest first, ties stable
    assert rank_units(score, descending=True).tolist() == [[0, 2, 1], [2, 0, 1]]


def test_class_interventions_remove_the_right_units() -> None:
    model = _cnn()
    x = torch.rand(30, 1, 28, 28)
    ranking = torch.stack([torch.roll(torch.arange(8), c) for c in range(10)])
    iv = class_interventions(model, "conv3", x, ranking, 2, draws=3,
                             generator=torch.Generator().manual_seed(0), sets_per_pass=7)  # fmt: skip
    assert iv.top.shape == (10, 30) and iv.keep.shape == (10, 30) and iv.random.shape == (10, 3, 30)
    assert torch.equal(iv.baseline, model(x).argmax(1))
    c = 4
    top = ranking[c, :2].tolist()
    with torch.no_grad(), ablate(model, "conv3", top):
        assert torch.equal(iv.top[c], model(x).argmax(1))
    with torch.no_grad(), ablate(model, "conv3", [u for u in range(8) if u not in top]):
        assert torch.equal(iv.keep[c], model(x).argmax(1))
    draw = iv.random_units[c, 1].tolist()
    assert len(set(draw)) == 2
    with torch.no_grad(), ablate(model, "conv3", draw):
        assert torch.equal(iv.random[c, 1], model(x).argmax(1))
    again = class_interventions(model, "conv3", x, ranking, 2, draws=3,
                                generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert torch.equal(again.random_units, iv.random_units)
    assert torch.equal(predict_ablated(model, "conv3", [[]], x)[0], iv.baseline)


def test_intervention_statistics_against_direct_computation() -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(200) % 10

    def noisy(p: float) -> torch.Tensor:
        return torch.where(
            torch.rand(200, generator=g) < p, torch.randint(0, 10, (200,), generator=g), y
        )

    base = noisy(0.1)
    top = torch.stack([torch.where(y == c, (y + 1) % 10, base) for c in range(10)])  # class c lost
    keep = torch.stack([noisy(0.3) for _ in range(10)])
    rand = torch.stack([torch.stack([noisy(0.15), noisy(0.15)]) for _ in range(10)])
    iv = Intervention(base, top, keep, rand, torch.zeros(10, 1), torch.zeros(10, 2, 1))
    s = intervention_statistics(iv, y)
    ba = lambda p: 100 * balanced_accuracy(p, y, 10)  # noqa: E731
    own = lambda preds: torch.stack([ba(preds[c])[c] for c in range(10)])  # noqa: E731
    assert s["ba_base"].estimate == pytest.approx(float(ba(base).mean()))
    assert s["ba_top"].estimate == pytest.approx(float(own(top).mean()))
    assert s["ba_keep"].estimate == pytest.approx(float(own(keep).mean()))
    rand_ba = torch.stack([torch.stack([ba(rand[c, r])[c] for r in range(2)]).mean()
                           for c in range(10)])  # fmt: skip
    assert s["ba_random"].estimate == pytest.approx(float(rand_ba.mean()))
    other = torch.stack([torch.cat([(ba(base) - ba(top[c]))[:c], (ba(base) - ba(top[c]))[c + 1:]]).mean()
                         for c in range(10)]).mean()  # fmt: skip
    assert s["drop_other"].estimate == pytest.approx(float(other))
    assert s["top_minus_random_drop"].estimate == pytest.approx(
        float(rand_ba.mean() - own(top).mean())
    )
    fraction = (own(keep).mean() - 50) / (ba(base).mean() - 50)
    assert s["keep_fraction"].estimate == pytest.approx(float(fraction))
    assert s["acc_base"].estimate == pytest.approx(100 * float((base == y).float().mean()))
    assert s["class3_drop_top"].estimate == pytest.approx(float(ba(base)[3] - own(top)[3]))
    assert s["drop_top"].low <= s["drop_top"].estimate <= s["drop_top"].high


def test_mean_vectors_interval_is_paired() -> None:
    v = MeanVectors()
    a = np.arange(50) % 2
    v.add("a", a)
    v.add("b", torch.tensor(a, dtype=torch.float64))
    same = v.interval(lambda m: m["a"] - m["b"], ["a", "b"])
    assert same.estimate == same.low == same.high == 0.0  # the same images in every resample
    assert v.estimate(lambda m: m["a"] + m["b"], ["a", "b"]) == pytest.approx(1.0)
    with pytest.raises(ReproError, match="differ"):
        v.add("c", np.ones(3))
    with pytest.raises(ReproError, match="no vector"):
        v.interval(lambda m: m["z"], ["z"])


# --------------------------------------------------------------------------- the generator


class _BrightnessClassifier(nn.Module):
    """Class 1 when the image's mean is above 0.5, else class 0 (10 logits)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.flatten(1).mean(1, keepdim=True)
        logits = torch.full((x.shape[0], 10), -10.0)
        return torch.cat([20 * (0.5 - m), 20 * (m - 0.5), logits[:, 2:]], dim=1)


def test_unit_class_effect_and_dissection_by_hand() -> None:
    torch.manual_seed(0)
    g = Generator(width=2).eval()
    clf = _BrightnessClassifier()
    z = torch.rand(40, 100) * 2 - 1
    effect = unit_class_effect(g, clf, GEN_LAYER, z, batch_size=13, sets_per_pass=3)
    with torch.no_grad():
        p0 = F.softmax(clf(g(z)), -1).mean(0)
        with ablate(g, GEN_LAYER, [2]):
            p2 = F.softmax(clf(g(z)), -1).mean(0)
    assert torch.allclose(effect[2], p0 - p2, atol=1e-6)
    # dissection: the formula written out for one unit and one class
    d = dissect(g, clf, GEN_LAYER, z, quantile=0.05, foreground=0.5, classes=10, batch_size=7)
    acts = []
    h = dict(g.named_modules())[GEN_LAYER].register_forward_hook(lambda m, i, o: acts.append(o))
    with torch.no_grad():
        images = g(z)
        pred = clf(images).argmax(1)
    h.remove()
    up = F.interpolate(acts[0][:, 1:2], size=(28, 28), mode="bilinear", align_corners=False)
    t = torch.quantile(up.flatten(), 0.95)
    mask = (up > t).flatten(1)
    for c in (0, 1):
        seg = (images.flatten(1) > 0.5) & (pred == c)[:, None]
        iou = (mask & seg).sum() / (mask | seg).sum()
        assert float(d.iou[1, c]) == pytest.approx(float(iou), rel=1e-6)
    assert float(d.threshold[1]) == pytest.approx(float(t))
    assert float(d.class_share.sum()) == pytest.approx(1.0)


def test_class_removals_and_their_statistics() -> None:
    torch.manual_seed(0)
    g = Generator(width=2).eval()
    clf = _BrightnessClassifier()
    z = torch.rand(30, 100) * 2 - 1
    rankings = {"causal": torch.stack([torch.arange(4)] * 10),
                "dissect": torch.stack([torch.arange(4).flip(0)] * 10)}  # fmt: skip
    rm = class_removals(g, clf, GEN_LAYER, z, rankings, 2, draws=2,
                        rng=torch.Generator().manual_seed(0))  # fmt: skip
    assert rm.outcomes.prob.shape == (1 + 10 * 4, 30, 10)
    with torch.no_grad(), ablate(g, GEN_LAYER, [3, 2]):
        assert torch.equal(rm.hits("dissect", 1), (clf(g(z)).argmax(1) == 1).double())
    # statistics on hand-made outcomes: two classes, class 0 loses half its samples to
    # its top units, nothing to random units
    pred = torch.zeros(1 + 2 * 2, 4, dtype=torch.long)
    pred[:, 2:] = 1  # samples 0-1: class 0, samples 2-3: class 1
    pred[1, 0] = 1  # class 0's top units turn sample 0 into class 1
    prob = F.one_hot(pred, 2).double()
    made = ClassRemoval(("causal",), {}, 1, SampleOutcomes(prob, torch.full((5, 4), 0.5)))
    s = removal_statistics(made, classes=2)
    assert s["class0_removed_causal"].estimate == pytest.approx(0.5)
    assert s["class1_removed_causal"].estimate == pytest.approx(0.0)
    assert s["removed_causal"].estimate == pytest.approx(0.25)  # 1 of the 4 class samples
    assert s["causal_minus_random"].estimate == pytest.approx(0.25)
    assert s["pixels_removed_causal"].estimate == pytest.approx(0.25)
    assert s["removed_random"].estimate == pytest.approx(0.0)


# --------------------------------------------------------------------------- claims


def _results(**overrides: float) -> Results:
    m = {
        "fm_ba_base": 95.0, "fm_ba_top": 70.0, "fm_ba_keep": 85.0, "fm_drop_top": 25.0,
        "fm_drop_random": 1.0, "fm_drop_other": 2.0,
        "fm_top_minus_random_drop": 24.0, "fm_top_minus_random_drop.ci95_low": 22.0,
        "fm_top_minus_random_drop.ci95_high": 26.0,
        "fm_own_minus_other_drop": 23.0, "fm_own_minus_other_drop.ci95_low": 21.0,
        "fm_own_minus_other_drop.ci95_high": 25.0,
        "fm_keep_fraction": 0.78, "fm_keep_fraction.ci95_low": 0.74,
        "fm_keep_fraction.ci95_high": 0.81,
        "fm_gen_removed_causal": 0.5, "fm_gen_removed_dissect": 0.45, "fm_gen_removed_random": 0.1,
        "fm_gen_causal_minus_random": 0.4, "fm_gen_causal_minus_random.ci95_low": 0.35,
        "fm_gen_causal_minus_random.ci95_high": 0.45,
        "fm_gen_dissect_minus_random": 0.35, "fm_gen_dissect_minus_random.ci95_low": 0.3,
        "fm_gen_dissect_minus_random.ci95_high": 0.4,
    }  # fmt: skip
    return Results({}, {**m, **overrides})


def test_claims_hold_fail_and_are_not_evaluated_without_results() -> None:
    claims = load_claims(repro_path(SLUG))
    assert all(c["holds"] is True for c in evaluate(claims, _results())), evaluate(
        claims, _results()
    )
    bad = _results(**{
        "fm_top_minus_random_drop.ci95_low": 9.0,  # the estimate clears 10, the interval does not
        "fm_own_minus_other_drop.ci95_low": 5.0,
        "fm_keep_fraction.ci95_low": 0.45,
        "fm_gen_causal_minus_random.ci95_low": 0.2,
        "fm_gen_dissect_minus_random.ci95_low": -0.05,
    })  # fmt: skip
    assert {c["id"]: c["holds"] for c in evaluate(claims, bad)} == {
        "top_units_destroy_class_more_than_random": False,
        "top_units_are_class_specific": False,
        "top_units_alone_keep_class": False,
        "generator_top_units_remove_class": False,
        "generator_dissected_units_remove_class": False,
    }
    assert all(c["holds"] is None for c in evaluate(claims, Results({})))


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_smoke_reproduction_through_the_runner(project: Path, tmp_path: Path) -> None:
    """The notebook runs under papermill at smoke scale, records its metrics, and is stored."""
    _result, summary = smoke_run(SLUG, tmp_path / "runs")
    assert {r["verdict"] for r in summary["rows"]} == {"not_run"}  # every paper row is Places/LSUN
    metrics = {m["name"]: m["value"] for m in summary["metrics"]}
    assert 0.0 <= metrics["fm_ba_base"] <= 100.0
    low, high = metrics["fm_drop_top.ci95_low"], metrics["fm_drop_top.ci95_high"]
    assert low <= metrics["fm_drop_top"] <= high
    assert 0.0 <= metrics["fm_gen_removed_random"] <= 1.0
    assert len(summary["figures"]) == 3
    assert all(c["holds"] is not None for c in summary["claims"]), summary["claims"]
