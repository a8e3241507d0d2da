"""repro.sample_quality: FID and IS on our own Fashion-MNIST feature network behave as the metrics
should (near 0 / near 1 where they must, large where samples are wrong), and the cached network is
checksummed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from repro import ReproError
from repro.data import ChecksumMismatch, available, load_dataset
from repro.sample_quality import (
    FeatureExtractor,
    FIDReference,
    fid,
    fmnist_feature_net,
    inception_score,
)

pytestmark = pytest.mark.skipif(
    not available("fashion_mnist", "train"), reason="Fashion-MNIST is not on this machine"
)


@pytest.fixture(scope="module")
def extractor(tmp_path_factory: pytest.TempPathFactory) -> FeatureExtractor:
    cache = tmp_path_factory.mktemp("xdg")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(cache))
        return fmnist_feature_net(n_train=3000, epochs=2, progress=False)


def test_the_network_is_cached_with_its_checksum(
    extractor: FeatureExtractor, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert extractor.test_accuracy > 0.6
    monkeypatch.setenv("XDG_CACHE_HOME", str(extractor.path.parents[2]))
    again = fmnist_feature_net(n_train=3000, epochs=2, progress=False)
    assert again.sha256 == extractor.sha256
    for a, b in zip(
        again.net.state_dict().values(), extractor.net.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    assert extractor.provenance()["sha256"] == extractor.sha256


def test_a_corrupted_cache_file_is_refused(
    extractor: FeatureExtractor, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    copy = fmnist_feature_net(n_train=500, epochs=1, progress=False)
    copy.path.write_bytes(copy.path.read_bytes()[:-8] + b"corrupt!")
    with pytest.raises(ChecksumMismatch, match="delete the file to retrain"):
        fmnist_feature_net(n_train=500, epochs=1, progress=False)


def test_fid_is_small_between_halves_of_the_data_and_large_for_noise(
    extractor: FeatureExtractor,
) -> None:
    test = load_dataset("fashion_mnist", "test")
    a, b = test.x[:1000], test.x[1000:2000]
    same = fid(a, b, extractor)
    noise = fid(
        a, torch.rand(1000, 1, 28, 28, generator=torch.Generator().manual_seed(0)), extractor
    )
    one_class = fid(a, test.x[test.y == 0][:1000], extractor)
    assert 0 <= same < one_class < noise
    assert same < 0.1 * noise
    reference = FIDReference(a, extractor)  # the real features once, many fakes
    assert reference(test.x[test.y == 0][:1000]) == pytest.approx(one_class, rel=1e-6)
    assert reference(b) == pytest.approx(same, rel=1e-6)


def test_inception_score_rewards_confident_balanced_samples(extractor: FeatureExtractor) -> None:
    test = load_dataset("fashion_mnist", "test")
    balanced, _ = inception_score(test.x[:2000], extractor)
    single, _ = inception_score(test.x[test.y == 1][:1000], extractor)
    assert 1.0 <= single < 2.0 < balanced <= 10.0
    before = torch.random.get_rng_state()
    repeat = inception_score(test.x[:2000], extractor)
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's stream did not move
    assert repeat[0] == balanced


def test_bad_images_are_one_line_errors(extractor: FeatureExtractor) -> None:
    with pytest.raises(ReproError, match="1-channel"):
        fid(torch.rand(4, 3, 28, 28), torch.rand(4, 3, 28, 28), extractor)
    with pytest.raises(ReproError, match="at least 2"):
        inception_score(torch.rand(1, 1, 28, 28), extractor)


def test_the_default_extractor_is_the_file_of_record(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from repro import sample_quality
    from repro.train import accuracy

    pinned = fmnist_feature_net(progress=False)  # the defaults: no training, the shipped file
    assert pinned.path == sample_quality.PINNED and pinned.sha256 == sample_quality.PINNED_SHA256
    test = load_dataset("fashion_mnist", "test")
    assert accuracy(pinned.net, test.x[:1000], test.y[:1000]) > 0.8
    spoiled = tmp_path / "spoiled.pt"
    spoiled.write_bytes(sample_quality.PINNED.read_bytes() + b"x")
    monkeypatch.setattr(sample_quality, "PINNED", spoiled)
    with pytest.raises(ChecksumMismatch, match="restore the file from git"):
        fmnist_feature_net(progress=False)
