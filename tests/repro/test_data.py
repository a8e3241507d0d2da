"""Dataset loading (`repro.data`): Debian's Fashion-MNIST, the shared MNIST test split, the three
folder layouts, the decoded-tensor cache, checksums, and a fast, clear error when data is missing.

Every test points the user cache (`XDG_CACHE_HOME`) at a temporary folder and clears
`REPRO_DATA_DIR`, so nothing depends on (or writes to) the developer's own cache.
"""

from __future__ import annotations

import gzip
import os
import shutil
import time
from pathlib import Path

import pytest
import torch

from repro import ReproError
from repro import data as rdata
from repro.data import ChecksumMismatch, DataUnavailable, available, data_roots, load_dataset

REPO = Path(__file__).resolve().parents[2]
SHARED_MNIST = Path(
    os.environ.get("REPRO_DATA_DIR") or REPO.parent / "shared" / "datasets"
).joinpath("mnist")
DEBIAN = Path("/usr/share/datasets/fashion-mnist")
needs_shared_mnist = pytest.mark.skipif(
    not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").is_file(),
    reason="the shared MNIST test split is not on this machine",
)
needs_debian = pytest.mark.skipif(
    not (DEBIAN / "t10k-images-idx3-ubyte.gz").is_file(),
    reason="apt-get install dataset-fashion-mnist",
)


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.delenv("REPRO_DATA_DIR", raising=False)
    return cache / "advrepro"


def check_mnist_like(ds: rdata.Dataset, n: int) -> None:
    assert ds.x.shape == (n, 1, 28, 28) and ds.x.dtype == torch.float32
    assert ds.y.shape == (n,) and ds.y.dtype == torch.int64
    assert float(ds.x.min()) == 0.0 and float(ds.x.max()) == 1.0
    assert set(ds.y.unique().tolist()) == set(range(10))
    assert len(ds) == n


@needs_debian
def test_fashion_mnist_from_debian_and_cached(private_cache: Path) -> None:
    ds = load_dataset("fashion_mnist", "test")
    check_mnist_like(ds, 10_000)
    assert ds.source == str(DEBIAN) and (ds.name, ds.split) == ("fashion_mnist", "test")
    assert torch.bincount(ds.y).tolist() == [1000] * 10  # the official test set is balanced
    (cached,) = (private_cache / "tensors").glob("fashion_mnist-test-*.pt")
    again = load_dataset("fashion-mnist", "test")  # alias; served from the cache
    assert torch.equal(again.x, ds.x) and torch.equal(again.y, ds.y)
    assert cached.stat().st_size > 7_000_000
    assert available("fashion_mnist")


@needs_shared_mnist
def test_mnist_test_split(private_cache: Path) -> None:
    full = load_dataset("mnist", "test", data_dir=SHARED_MNIST.parent)
    check_mnist_like(full, 10_000)
    assert full.y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]  # the famous first digits
    train = load_dataset("mnist-test-split", "train", data_dir=SHARED_MNIST.parent)
    test = load_dataset("mnist-test-split", "test", data_dir=SHARED_MNIST.parent)
    assert (len(train), len(test)) == (8000, 2000)
    assert torch.equal(train.x, full.x[:8000]) and torch.equal(test.y, full.y[8000:])
    assert train.name == "mnist-test-split"
    assert available("mnist-test-split", SHARED_MNIST.parent)
    assert not available("mnist", SHARED_MNIST.parent)  # no training split there


@needs_shared_mnist
def test_layouts_torchvision_raw_and_flat(tmp_path: Path) -> None:
    """torchvision's `<root>/MNIST/raw/` with uncompressed files (checked by their content's MD5),
    and a flat folder of `.gz` files (identified by checksum), load the same tensors."""
    reference = load_dataset("mnist", "test", data_dir=SHARED_MNIST.parent)
    raw = tmp_path / "tv" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for gz in SHARED_MNIST.glob("t10k-*.gz"):
        (raw / gz.name.removesuffix(".gz")).write_bytes(gzip.decompress(gz.read_bytes()))
    from_raw = load_dataset("mnist", "test", data_dir=tmp_path / "tv")
    assert from_raw.source == str(raw) and torch.equal(from_raw.x, reference.x)
    flat = tmp_path / "flat"
    shutil.copytree(SHARED_MNIST, flat)
    from_flat = load_dataset("mnist", "test", data_dir=flat)
    assert from_flat.source == str(flat) and torch.equal(from_flat.y, reference.y)


@needs_shared_mnist
@needs_debian
def test_a_flat_folder_of_another_dataset_is_passed_over(tmp_path: Path) -> None:
    """MNIST and Fashion-MNIST share file names: a flat MNIST folder is not Fashion-MNIST."""
    flat = tmp_path / "flat"
    shutil.copytree(SHARED_MNIST, flat)
    ds = load_dataset("fashion_mnist", "test", data_dir=flat)
    assert ds.source == str(DEBIAN)


def test_roots_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private_cache) -> None:
    monkeypatch.setenv("REPRO_DATA_DIR", f"{tmp_path / 'a'}{os.pathsep}{tmp_path / 'b'}")
    assert data_roots(tmp_path / "x") == [
        tmp_path / "x",
        tmp_path / "a",
        tmp_path / "b",
        private_cache / "data",
        DEBIAN,
    ]


def test_missing_dataset_fails_fast_with_every_way_to_supply_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private_cache: Path
) -> None:
    monkeypatch.setattr(rdata, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian")
    start = time.monotonic()
    with pytest.raises(DataUnavailable) as info:
        load_dataset("fashion_mnist", "train", data_dir=tmp_path / "empty")
    assert time.monotonic() - start < 2.0
    message = str(info.value)
    assert "\n" not in message
    for way in (
        "--data-dir",
        "REPRO_DATA_DIR",
        str(private_cache / "data" / "fashion_mnist"),
        "apt-get install dataset-fashion-mnist",
        "download=True",
    ):
        assert way in message
    assert not available("fashion_mnist", tmp_path / "empty")


def test_download_when_offline_fails_fast(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test touches the network: the reachability probe is replaced by an offline answer."""
    monkeypatch.delenv("REPRO_OFFLINE", raising=False)  # downloads allowed, the host unreachable
    monkeypatch.setattr(rdata, "_reachable", lambda host, *a, **k: False)
    with pytest.raises(DataUnavailable, match=r"download=True but www\.cs\.toronto\.edu"):
        load_dataset("cifar10", "test", data_dir=tmp_path, download=True)


def test_reachable_times_out_instead_of_hanging(monkeypatch: pytest.MonkeyPatch) -> None:
    """A connection (or DNS lookup) that never answers costs the timeout, not a hang."""
    import threading

    release = threading.Event()

    def hang(*args: object, **kwargs: object) -> None:
        release.wait(10)
        raise OSError("released")

    monkeypatch.setattr(rdata.socket, "create_connection", hang)
    start = time.monotonic()
    try:
        assert rdata._reachable("example.org", timeout=0.2) is False
        assert time.monotonic() - start < 2.0
    finally:
        release.set()


@needs_shared_mnist
def test_corrupted_file_fails_the_checksum(tmp_path: Path) -> None:
    folder = tmp_path / "mnist"
    shutil.copytree(SHARED_MNIST, folder)
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    content = bytearray(gzip.decompress(labels.read_bytes()))
    content[100] = (content[100] + 1) % 10  # one label changed, still a valid IDX file
    labels.write_bytes(gzip.compress(bytes(content)))
    with pytest.raises(ChecksumMismatch, match="checksum does not match the official mnist"):
        load_dataset("mnist", "test", data_dir=tmp_path)
    labels.write_bytes(b"not gzip at all")
    with pytest.raises(ChecksumMismatch, match="not a readable gzip file"):
        load_dataset("mnist", "test", data_dir=tmp_path)


def test_bad_arguments() -> None:
    with pytest.raises(ReproError, match="unknown dataset 'svhn'"):
        load_dataset("svhn")
    with pytest.raises(ReproError, match="unknown split 'val'"):
        load_dataset("mnist", "val")


def fake_cifar_batch(path: Path, n: int, seed: int) -> None:
    import pickle

    import numpy as np

    rng = np.random.default_rng(seed)
    batch = {
        "data": rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8),
        "labels": [int(v) for v in rng.integers(0, 10, n)],
    }
    path.write_bytes(pickle.dumps(batch))


def test_cifar10_layout_checksums_and_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No CIFAR-10 here: fake batches in torchvision's layout are found, refused by checksum, and
    (with their own checksums declared official) decoded to N×3×32×32 in [0, 1]."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    fake_cifar_batch(folder / "test_batch", 20, seed=0)
    assert available("cifar10", tmp_path, split="test")
    assert not available("cifar10", tmp_path)  # no training batches
    with pytest.raises(ChecksumMismatch, match="official CIFAR-10 file test_batch"):
        load_dataset("cifar10", "test", data_dir=tmp_path)
    monkeypatch.setattr(
        rdata, "_cifar_md5", lambda: {"test_batch": rdata._file_md5(folder / "test_batch")}
    )
    ds = load_dataset("cifar10", "test", data_dir=tmp_path)
    assert ds.x.shape == (20, 3, 32, 32) and ds.y.shape == (20,)
    assert float(ds.x.min()) >= 0.0 and float(ds.x.max()) <= 1.0
