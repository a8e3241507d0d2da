"""Datasets as whole tensors on the device, found offline, checksummed, and cached once decoded.

Every reproduction here works on MNIST-sized data, which fits in memory (and on a GPU) as one
tensor: batching is indexing (`x[idx]`), no DataLoader, no worker processes, no per-sample Python.

Where the files come from, in order (the first root holding a dataset wins):

1. `data_dir` (the runner's `--data-dir`),
2. `REPRO_DATA_DIR` (several folders separated by `os.pathsep` are allowed),
3. the user cache, `$XDG_CACHE_HOME/advrepro/data` (default `~/.cache/advrepro/data`), which is also
   where `download=True` puts what torchvision downloads,
4. Debian's `/usr/share/datasets/fashion-mnist` (package `dataset-fashion-mnist`; Fashion-MNIST only).

Inside a root, a dataset is found as `<root>/<name>/` (`mnist`, `fashion_mnist` or `fashion-mnist`,
`cifar10`), in torchvision's own layout (`<root>/MNIST/raw/`, `<root>/FashionMNIST/raw/`,
`<root>/cifar-10-batches-py/`), or flat in the root itself (as Debian installs it; a flat folder is
identified by its checksums, since MNIST and Fashion-MNIST share file names). MNIST-format files
may be gzipped (`*.gz`, read as they are) or not.

Checksums: a file is accepted when its MD5 is the official one of the `.gz` (torchvision's
`resources`), or when the MD5 of its decompressed content is the official one of the raw IDX file:
Debian re-gzips the official files (different `.gz` bytes, identical content), and torchvision's
`raw/` folders hold uncompressed copies. A file of the right name with another checksum raises
`ChecksumMismatch` instead of being used.

Decoded tensors are cached (uint8, `<cache>/tensors/<name>-<split>-<key>.pt`, keyed by the MD5s of
the source files as they are), so a second load skips decompression and parsing.

Downloading (through torchvision, which checks each file's MD5 as it arrives; the files are then
verified again as above) happens only where asked and when the dataset's host accepts a connection
within `ONLINE_TIMEOUT_S` seconds; otherwise a missing dataset raises `DataUnavailable` with one line
naming every way to supply it. Nothing here ever waits on the network without a timeout.

Who asks for a download:

- `repro run` does, before it starts the notebook: `repro.provision.provide(datasets)` fetches each dataset of the
  reproduction's repro.toml (the scale's `datasets` when it names some) that is in none of the
  roots, into the user cache. So a researcher on a connected machine gets the MNIST, Fashion-MNIST
  and CIFAR-10 rows without reading anything, and the notebooks themselves never download (their
  `available()` checks then find the files).
- `load_dataset(..., download=True)`, for code run by hand.

`REPRO_OFFLINE=1` (what `repro run --offline` sets for its notebook) forbids both: no download and
no reachability probe at all; a missing dataset is then the immediate `DataUnavailable` error (or
the notebook's rows that need it are recorded as not run). The test suite runs with it set.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import socket
import tarfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from repro import ReproError

if (
    TYPE_CHECKING
):  # torch is imported by the functions that decode: `available` (and `repro.provision.provide`) go
    import torch  # without it, so the runner can look for data without paying torch's start-up
    from torch import Tensor

__all__ = [
    "DATASETS",
    "ChecksumMismatch",
    "DataUnavailable",
    "Dataset",
    "available",
    "cache_dir",
    "data_roots",
    "load_dataset",
    "offline",
]

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
TEST_SPLIT_TRAIN = 8000  # mnist-test-split: train on the first 8,000 MNIST test images ...
TEST_SPLIT_TEST = 2000  # ... and evaluate on the last 2,000 (shared/papers/README.md, Data policy)
ONLINE_TIMEOUT_S = 3.0

# MD5 of the *decompressed* official IDX files. The `.gz` MD5s come from torchvision's dataset
# classes (`MNIST.resources`, `FashionMNIST.resources`); these are the same files' contents, as
# published alongside the datasets and used by many loaders (they match the copies on this machine:
# Debian's re-gzipped Fashion-MNIST and the shared MNIST test split).
_RAW_MD5 = {
    "mnist": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
}
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class DataUnavailable(ReproError):
    """The dataset is in none of the roots and cannot be downloaded; the message says how to fix it."""


class ChecksumMismatch(DataUnavailable):
    """A file of the dataset was found but its checksum is not the official one (corrupt or other)."""


@dataclass
class Dataset:
    """A whole split as tensors: `x` float32 N×C×H×W in [0, 1], `y` int64 N (class indices)."""

    x: Tensor
    y: Tensor
    name: str
    split: str
    source: str = ""  # the folder the files were read from

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class _Spec:
    name: str
    kind: str  # "idx" (MNIST format) | "cifar"
    folders: tuple[str, ...]  # folder names under a root
    torchvision: str  # the torchvision class (its layout: <root>/<class>/raw/)
    host: str  # where torchvision downloads it from (for the reachability check)
    port: int = 443


DATASETS: dict[str, _Spec] = {
    "mnist": _Spec("mnist", "idx", ("mnist", "MNIST"), "MNIST", "ossci-datasets.s3.amazonaws.com"),
    "fashion_mnist": _Spec(
        "fashion_mnist",
        "idx",
        ("fashion_mnist", "fashion-mnist", "FashionMNIST"),
        "FashionMNIST",
        "fashion-mnist.s3-website.eu-central-1.amazonaws.com",
    ),
    "cifar10": _Spec("cifar10", "cifar", ("cifar10", "cifar-10"), "CIFAR10", "www.cs.toronto.edu"),
}
_ALIASES = {"mnist-test-split": "mnist", "fashion-mnist": "fashion_mnist", "cifar-10": "cifar10"}
NAMES = ("mnist", "fashion_mnist", "cifar10", "mnist-test-split")
SPLITS = ("train", "test")


# --------------------------------------------------------------------------- roots


def cache_dir() -> Path:
    """advrepro's user cache: `$XDG_CACHE_HOME/advrepro`, default `~/.cache/advrepro`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "advrepro"


def _user_data_root() -> Path:
    return cache_dir() / "data"


def data_roots(data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """The folders searched for datasets, in order (see the module docstring)."""
    roots: list[Path] = []
    if data_dir:
        roots.append(Path(data_dir).expanduser())
    for part in (os.environ.get("REPRO_DATA_DIR") or "").split(os.pathsep):
        if part.strip():
            roots.append(Path(part.strip()).expanduser())
    roots.append(_user_data_root())
    roots.append(DEBIAN_FASHION_MNIST)
    seen: set[Path] = set()
    return [r for r in roots if not (r in seen or seen.add(r))]


def _canonical(name: str) -> str:
    base = _ALIASES.get(name, name)
    if base not in DATASETS:
        raise ReproError(f"unknown dataset {name!r}; known: {', '.join(NAMES)}")
    return base


# --------------------------------------------------------------------------- checksums


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _gz_md5(name: str) -> dict[str, str]:
    """Official MD5s of the `.gz` files, from torchvision's dataset class (`resources`)."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, DATASETS[name].torchvision)
    return {file.removesuffix(".gz"): md5 for file, md5 in cls.resources}


def _identify(stem: str, path: Path, raw: bytes | None = None) -> str | None:
    """Which MNIST-format dataset this file is (by checksum), or None when it matches none.

    The `.gz` MD5 is tried first (cheap); the content's MD5 only when that fails (re-gzipped or
    uncompressed copies)."""
    as_is = _file_md5(path)
    for name in ("mnist", "fashion_mnist"):
        if as_is == _gz_md5(name).get(stem):
            return name
    content = _md5(raw if raw is not None else _read_bytes(path))
    for name in ("mnist", "fashion_mnist"):
        if content == _RAW_MD5[name].get(stem):
            return name
    return None


# --------------------------------------------------------------------------- MNIST-format files


def _idx_candidates(spec: _Spec, root: Path) -> list[tuple[Path, bool]]:
    """Folders of `root` that may hold the dataset; the flag says whether the folder is named for
    it (a wrong checksum there is an error) or generic (it may hold another dataset)."""
    named = [root / folder for folder in spec.folders] + [root / spec.torchvision / "raw"]
    if root == DEBIAN_FASHION_MNIST:
        return [(root, True)] if spec.name == "fashion_mnist" else []
    return [(folder, True) for folder in named] + [(root, False)]


def _idx_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def _find_idx(
    spec: _Spec, split: str, roots: list[Path], *, check_generic: bool = True
) -> tuple[Path, list[Path]] | None:
    """The first folder holding both files of the split, with the two file paths.

    A generic (flat) folder holding another dataset's files is passed over; one holding files that
    match no dataset is returned, so that loading it reports the checksum mismatch.
    """
    for root in roots:
        for folder, named in _idx_candidates(spec, root):
            files = [_idx_file(folder, stem) for stem in _IDX_FILES[split]]
            if not all(files):
                continue
            paths = [f for f in files if f is not None]
            if not named and check_generic and _other_dataset(spec.name, split, paths[1]):
                continue
            return folder, paths
    return None


def _other_dataset(name: str, split: str, labels: Path) -> bool:
    """Whether a flat folder's labels file is another dataset's (by the MD5 of its content; the
    labels file is small, and this needs no torchvision import). Unreadable files are not."""
    stem = _IDX_FILES[split][1]
    try:
        content = _md5(_read_bytes(labels))
    except (ChecksumMismatch, OSError):
        return False
    return any(content == _RAW_MD5[other][stem] for other in _RAW_MD5 if other != name)


def _read_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix == ".gz":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise ChecksumMismatch(f"{path}: not a readable gzip file ({exc})") from exc
    return data


def _parse_idx(raw: bytes, path: Path, ndim: int) -> np.ndarray:
    """Parse an IDX file (big-endian header: 0, 0, type 0x08 = uint8, ndim; then the dims)."""
    if len(raw) < 4 + 4 * ndim or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or raw[3] != ndim:
        raise ChecksumMismatch(f"{path}: not a uint8 IDX file with {ndim} dimensions")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    if len(raw) - offset != int(np.prod(dims)):
        raise ChecksumMismatch(f"{path}: {len(raw) - offset} bytes of data for dims {dims}")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def _decode_idx(spec: _Spec, split: str, folder: Path, files: list[Path]) -> tuple[Tensor, Tensor]:
    """Verify both files and decode them; uint8 images N×1×H×W and int64 labels."""
    arrays = []
    for path, stem, ndim in zip(files, _IDX_FILES[split], (3, 1), strict=True):
        raw = _read_bytes(path)
        if _identify(stem, path, raw) != spec.name:
            raise ChecksumMismatch(
                f"{path}: checksum does not match the official {spec.name} file {stem} (corrupt,"
                " truncated or another dataset's file); replace it with the official file"
            )
        arrays.append(_parse_idx(raw, path, ndim))
    images, labels = arrays
    import torch

    if images.shape[0] != labels.shape[0]:
        raise ChecksumMismatch(f"{folder}: {images.shape[0]} images but {labels.shape[0]} labels")
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


# --------------------------------------------------------------------------- CIFAR-10


def _cifar_md5() -> dict[str, str]:
    import torchvision.datasets as tvd

    return dict(tvd.CIFAR10.train_list + tvd.CIFAR10.test_list)


def _cifar_files(split: str) -> list[str]:
    return [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]


def _cifar_candidates(root: Path) -> tuple[list[Path], list[Path]]:
    """Folders of `root` that may hold the unpacked batches, and places of the official tarball."""
    if root == DEBIAN_FASHION_MNIST:
        return [], []
    names = DATASETS["cifar10"].folders
    folders = [
        root / "cifar-10-batches-py",
        *(root / name / "cifar-10-batches-py" for name in names),
        *(root / name for name in names),
    ]
    tarballs = [
        root / "cifar-10-python.tar.gz",
        *(root / n / "cifar-10-python.tar.gz" for n in names),
    ]
    return folders, tarballs


def _find_cifar(
    split: str, roots: list[Path], *, extract: bool = True
) -> tuple[Path, list[Path]] | None:
    """The first folder with the split's batch files; an official tarball is unpacked (into the
    user cache) when `extract`, else only reported as found."""
    for root in roots:
        folders, tarballs = _cifar_candidates(root)
        for folder in folders:
            files = [folder / f for f in _cifar_files(split)]
            if all(f.is_file() for f in files):
                return folder, files
        for tarball in tarballs:
            if tarball.is_file():
                return _extract_cifar(tarball, split) if extract else (tarball, [tarball])
    return None


def _extract_cifar(tarball: Path, split: str) -> tuple[Path, list[Path]]:
    """Unpack the official tarball (checksummed) once into the user cache."""
    import torchvision.datasets as tvd

    if _file_md5(tarball) != tvd.CIFAR10.tgz_md5:
        raise ChecksumMismatch(f"{tarball}: checksum does not match the official CIFAR-10 tarball")
    dest = _user_data_root()
    folder = dest / "cifar-10-batches-py"
    if not all((folder / f).is_file() for f in _cifar_files(split)):
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tarball, "r:gz") as archive:
            archive.extractall(dest, filter="data")
    return folder, [folder / f for f in _cifar_files(split)]


def _decode_cifar(folder: Path, files: list[Path]) -> tuple[Tensor, Tensor]:
    import torch

    md5 = _cifar_md5()
    xs, ys = [], []
    for path in files:
        if _file_md5(path) != md5[path.name]:
            raise ChecksumMismatch(
                f"{path}: checksum does not match the official CIFAR-10 file {path.name}"
            )
        with path.open("rb") as handle:
            batch = pickle.load(handle, encoding="latin1")  # checksummed official file
        xs.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(batch["labels"], dtype=np.int64))
    return torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))


# --------------------------------------------------------------------------- download


def _reachable(host: str, port: int = 443, timeout: float = ONLINE_TIMEOUT_S) -> bool:
    """Whether `host:port` accepts a TCP connection within `timeout` seconds.

    Runs in a daemon thread so that a hanging DNS lookup (which `socket.create_connection`'s
    timeout does not cover) cannot stall the caller either.
    """
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(result and result[0])


DOWNLOAD_TIMEOUT_S = 60.0  # per socket operation of torchvision's download (it sets none itself)


def offline() -> bool:
    """Whether downloading is forbidden: `REPRO_OFFLINE` set to 1/true/yes (`repro run --offline`)."""
    return os.environ.get("REPRO_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _download(spec: _Spec, split: str) -> None:
    """Let torchvision download (and checksum) the official files into the user cache."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, spec.torchvision)
    root = _user_data_root()
    before = socket.getdefaulttimeout()
    try:
        root.mkdir(parents=True, exist_ok=True)
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # torchvision's urlopen has no timeout
        cls(root=str(root), train=split == "train", download=True)
    except Exception as exc:
        raise DataUnavailable(f"{spec.name}: download into {root} failed: {exc}") from exc
    finally:
        socket.setdefaulttimeout(before)


def _unavailable_message(name: str, split: str, roots: list[Path], why: str) -> str:
    spec = DATASETS[_canonical(name)]
    user = _user_data_root()
    folder = spec.folders[0]
    ways = [
        "pass --data-dir DIR (data_dir=DIR)",
        "set REPRO_DATA_DIR=DIR",
        f"put the official files in {user / folder}/",
    ]
    if spec.name == "fashion_mnist":
        ways.append(
            "`apt-get install dataset-fashion-mnist` (Fashion-MNIST in /usr/share/datasets)"
        )
    ways.append(
        f"or let `repro run` (without --offline) or download=True fetch it on a machine that can"
        f" reach {spec.host}"
    )
    layout = (
        f"DIR/{folder}/*.gz or torchvision's DIR/{spec.torchvision}/raw/"
        if spec.kind == "idx"
        else "DIR/cifar-10-batches-py/ or DIR/cifar-10-python.tar.gz"
    )
    return (
        f"dataset {name} ({split} split) is not available: {why}; searched "
        f"{', '.join(str(r) for r in roots)}. To supply it ({layout}): {'; '.join(ways)}."
    )


# --------------------------------------------------------------------------- public API


def _locate(spec: _Spec, split: str, roots: list[Path]) -> tuple[Path, list[Path]] | None:
    return _find_idx(spec, split, roots) if spec.kind == "idx" else _find_cifar(split, roots)


def available(
    name: str, data_dir: str | os.PathLike[str] | None = None, *, split: str | None = None
) -> bool:
    """Whether `load_dataset(name, split)` can find the files without downloading (all splits when
    `split` is None). Cheap: looks for the files, does not checksum them."""
    spec = DATASETS[_canonical(name)]
    splits = ["test"] if name == "mnist-test-split" else [split] if split else list(SPLITS)
    roots = data_roots(data_dir)
    if spec.kind == "idx":
        return all(_find_idx(spec, s, roots) is not None for s in splits)
    return all(_find_cifar(s, roots, extract=False) is not None for s in splits)


def _cache_path(name: str, split: str, files: list[Path]) -> Path:
    key = _md5("".join(_file_md5(f) for f in files).encode())[:16]
    return cache_dir() / "tensors" / f"{name}-{split}-{key}.pt"


def _load_uint8(
    name: str, split: str, roots: list[Path], download: bool, label: str
) -> tuple[Tensor, Tensor, str]:
    """Locate (or download), verify and decode one split as uint8; `label` names it in errors."""
    spec = DATASETS[name]
    found = _locate(spec, split, roots)
    if found is None and download:
        if offline():
            raise DataUnavailable(
                _unavailable_message(
                    label, split, roots, "download=True but REPRO_OFFLINE=1 forbids downloading"
                )
            )
        if not _reachable(spec.host, spec.port):
            raise DataUnavailable(
                _unavailable_message(
                    label,
                    split,
                    roots,
                    f"download=True but {spec.host} is not reachable (offline?)",
                )
            )
        _download(spec, split)
        found = _locate(spec, split, roots)
    if found is None:
        why = "no files found" + ("" if download else " and downloading is off")
        raise DataUnavailable(_unavailable_message(label, split, roots, why))
    folder, files = found
    import torch

    cached = _cache_path(name, split, files)
    if cached.is_file():
        try:
            blob = torch.load(cached, weights_only=True)
            return blob["x"], blob["y"], str(folder)
        except Exception:  # a broken cache entry is rebuilt below
            pass
    if spec.kind == "idx":
        x, y = _decode_idx(spec, split, folder, files)
    else:
        x, y = _decode_cifar(folder, files)
    _save_cache(cached, x, y)
    return x, y, str(folder)


def _save_cache(path: Path, x: Tensor, y: Tensor) -> None:
    """Best effort: a read-only or full cache only costs the next load its decoding time."""
    import torch

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save({"x": x, "y": y}, tmp)
        os.replace(tmp, path)
    except OSError:
        pass


def load_dataset(
    name: str,
    split: str = "train",
    *,
    data_dir: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    download: bool = False,
) -> Dataset:
    """Load a whole split as one float32 tensor in [0, 1] (N×C×H×W) and int64 labels on `device`.

    `name`: `mnist`, `fashion_mnist`, `cifar10`, or `mnist-test-split` (the official MNIST test set
    cut in two: `train` = its first 8,000 images, `test` = its last 2,000; for machines that only
    have the MNIST test split; such results are never compared number-for-number with a paper).
    Raises `DataUnavailable` (one line naming the ways to supply the data) when the files are
    nowhere and cannot be downloaded, `ChecksumMismatch` when a file is not the official one.
    """
    import torch

    if split not in SPLITS:
        raise ReproError(f"dataset {name}: unknown split {split!r}; use 'train' or 'test'")
    base = _canonical(name)
    roots = data_roots(data_dir)
    if name == "mnist-test-split":
        x8, y, source = _load_uint8(base, "test", roots, download, name)
        total = TEST_SPLIT_TRAIN + TEST_SPLIT_TEST
        if x8.shape[0] != total:
            raise ReproError(
                f"mnist-test-split: expected {total} MNIST test images, got {x8.shape[0]}"
            )
        part = slice(0, TEST_SPLIT_TRAIN) if split == "train" else slice(TEST_SPLIT_TRAIN, total)
        x8, y = x8[part], y[part]
    else:
        x8, y, source = _load_uint8(base, split, roots, download, name)
    x = x8.to(device=device).to(torch.float32).div_(255.0)
    return Dataset(x=x, y=y.to(device=device), name=name, split=split, source=source)
