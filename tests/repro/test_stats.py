"""Bootstrap intervals (`repro.stats`): the per-image vectors runs carry, intervals checked
against what a bootstrap must give, and claims reading them through `Results`."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from repro import ReproError
from repro.claims import Results
from repro.record import Recorder, read_results
from repro.stats import (
    Interval,
    auc_interval,
    claim_interval,
    difference_interval,
    interval_metrics,
    interval_note,
    mean_interval,
    means_interval,
    pack_bits,
    unpack_bits,
)


def test_pack_bits_round_trips_any_length() -> None:
    rng = np.random.default_rng(0)
    for n in (0, 1, 7, 8, 9, 200, 10_001):
        bits = rng.random(n) < 0.4
        text = pack_bits(bits)
        assert text.startswith(f"{n}:") and len(text) == len(f"{n}:") + 2 * ((n + 7) // 8)
        assert np.array_equal(unpack_bits(text), bits)
    assert pack_bits(torch.tensor([True, False, True])) == pack_bits([1, 0, 5])
    for bad in ("", "12", "3:zz", "20:00"):
        with pytest.raises(ReproError, match="malformed per-image vector"):
            unpack_bits(bad)


def test_mean_interval_brackets_the_estimate_and_shrinks_with_n() -> None:
    small = mean_interval(np.r_[np.ones(170), np.zeros(30)])
    assert small.estimate == pytest.approx(0.85)
    assert small.low < 0.85 < small.high
    # The binomial standard error at n = 200 is 0.025: a 95 % interval is about +-0.05.
    assert 0.07 < small.high - small.low < 0.13
    large = mean_interval(np.r_[np.ones(1700), np.zeros(300)])
    assert large.high - large.low < (small.high - small.low) / 2.5
    # Fixed seed: the same data give the same interval; a degenerate vector a point.
    assert mean_interval(np.r_[np.ones(170), np.zeros(30)]) == small
    assert mean_interval(np.ones(50)) == Interval(1.0, 1.0, 1.0)


def test_paired_difference_is_tighter_than_unpaired_for_correlated_vectors() -> None:
    """Two accuracies on the same images: a paired bootstrap sees that they move together."""
    rng = np.random.default_rng(1)
    a = rng.random(300) < 0.6
    b = a.copy()
    b[rng.choice(300, 15, replace=False)] ^= True  # differs on 5 % of the images
    paired = difference_interval(a, b)
    assert paired.estimate == pytest.approx(a.mean() - b.mean())
    ia, ib = mean_interval(a), mean_interval(b)
    unpaired_width = math.hypot(ia.high - ia.low, ib.high - ib.low)
    assert paired.high - paired.low < unpaired_width / 2
    # A margin function of several means: min(a, b) - 0.5 c.
    c = rng.random(300) < 0.9
    margin = means_interval([a, b, c], lambda m: m[:, :2].min(axis=1) - 0.5 * m[:, 2])
    assert margin.estimate == pytest.approx(min(a.mean(), b.mean()) - 0.5 * c.mean())
    assert margin.low <= margin.estimate <= margin.high


def test_unequal_or_empty_vectors_and_bad_settings_are_refused() -> None:
    with pytest.raises(ReproError, match="equally long"):
        difference_interval(np.ones(10), np.ones(11))
    with pytest.raises(ReproError, match="equally long"):
        mean_interval(np.ones(0))
    with pytest.raises(ReproError, match="resamples"):
        mean_interval(np.ones(5), resamples=0)


def test_auc_interval_against_the_rank_statistic() -> None:
    from repro.defense_gan.defense import roc_auc

    rng = np.random.default_rng(2)
    neg = rng.integers(0, 20, 120).astype(float)  # ties on purpose
    pos = rng.integers(5, 25, 80).astype(float)
    ci = auc_interval(neg, pos)
    assert ci.estimate == pytest.approx(roc_auc(torch.tensor(neg), torch.tensor(pos)), abs=1e-12)
    assert ci.low < ci.estimate < ci.high and ci.high - ci.low < 0.2
    assert auc_interval(np.zeros(5), np.ones(5)) == Interval(1.0, 1.0, 1.0)


def test_interval_reporting() -> None:
    ci = Interval(0.18, -0.02, 0.35)
    assert ci.straddles(0.0) and not ci.straddles(0.5)
    assert ci.format() == "0.180 [-0.020, 0.350]" and ci.format(100, 1) == "18.0 [-2.0, 35.0]"
    assert interval_note(ci) == "margin 0.180 [-0.020, 0.350], interval straddles 0"
    assert interval_note(Interval(0.2, 0.1, 0.3)) == "margin 0.200 [0.100, 0.300]"
    assert interval_note(None) == "no per-image vectors: no interval"
    assert interval_metrics("t4_x", ci) == {"t4_x.ci95_low": -0.02, "t4_x.ci95_high": 0.35}


def test_vectors_travel_from_the_recorder_to_claims(tmp_path) -> None:
    """A notebook records per-image vectors with rows and metrics; claims read them back."""
    rec = Recorder(tmp_path, echo=False)
    a = torch.tensor([True] * 30 + [False] * 10)
    b = torch.tensor([True] * 10 + [False] * 30)
    rec.row("row_a", a.float().mean(), dataset="fashion_mnist", correct=pack_bits(a))
    rec.metric("metric_b", b.float().mean(), correct=pack_bits(b))
    rec.metric("plain", 1.0)
    results = read_results(tmp_path)
    assert results["metrics"][-1] == {"name": "plain", "value": 1.0}  # no info when none given
    r = Results.from_results(results)
    assert r.per_image("plain") is None and r.per_image("absent") is None
    margin = claim_interval(r, ["row_a", "metric_b"], lambda m: m[:, 0] - m[:, 1] - 0.2)
    assert margin is not None and margin.estimate == pytest.approx(0.3)
    assert not margin.straddles(0.0)
    # The first 20 images only: a value measured on a subset pairs with the same images.
    first = claim_interval(r, ["row_a", "metric_b"], lambda m: m[:, 0] - m[:, 1], first=20)
    assert first is not None and first.estimate == pytest.approx(1.0 - 0.5)
    assert claim_interval(r, ["row_a", "plain"], lambda m: m[:, 0]) is None
    assert claim_interval(r, ["row_a"], first=41) is None
