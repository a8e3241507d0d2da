"""Models trained once and reused: the toolkit's cache of trained networks, with checksums.

Some networks are not a paper's result but a fixture many reproductions share: the Fashion-MNIST
feature network of `repro.sample_quality`, the natural / PGD-AT / TRADES baselines of
`repro.baselines`. Training them in every folder would cost minutes per run and give every folder
a slightly different baseline. `cached` trains one the first time its settings are asked for, stores
the weights under `cache_dir()/models/<name>-<hash of the settings>.pt` with a JSON sidecar (the
settings, the weights' SHA-256, what training reported, the torch version), and afterwards loads
it, refusing a file whose checksum no longer matches. A run records `CachedModel.provenance()`, so a
number is traceable to the exact weights it was measured on.

Two processes asking for the same model at once: the second waits on a lock file and then loads
what the first stored (no double training, no torn files).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from repro.data import ChecksumMismatch, cache_dir

__all__ = ["CachedModel", "cached", "sha256_of"]


@dataclass(frozen=True)
class CachedModel:
    """A network from the cache: where it is, its SHA-256, and what its training reported."""

    net: nn.Module
    sha256: str
    meta: dict[str, Any]
    path: Path
    trained_now: bool

    def provenance(self) -> dict[str, Any]:
        """What a run records about the weights its numbers depend on."""
        keep = {k: v for k, v in self.meta.items() if k not in ("sha256",)}
        return {"sha256": self.sha256, "file": self.path.name, **keep}


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file, read in blocks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def cached(
    name: str,
    settings: Mapping[str, Any],
    build: Callable[[], nn.Module],
    train: Callable[[nn.Module], Mapping[str, Any]],
    *,
    device: str | torch.device = "cpu",
) -> CachedModel:
    """The network `name` with these `settings`: loaded from the cache, or built by `build()`,
    trained by `train(net)` (which returns what to store about it, e.g. its test accuracy) and
    stored. Raises `ChecksumMismatch` for a cached file that no longer matches its checksum.
    The returned network is on `device`, in eval mode."""
    key = hashlib.sha256(json.dumps(dict(settings), sort_keys=True).encode()).hexdigest()[:12]
    folder = cache_dir() / "models"
    path, meta_path = folder / f"{name}-{key}.pt", folder / f"{name}-{key}.json"
    with _locked(folder / f"{name}-{key}.lock"):
        if path.exists() and meta_path.exists():
            meta = json.loads(meta_path.read_text())
            digest = sha256_of(path)
            if digest != meta.get("sha256"):
                raise ChecksumMismatch(
                    f"{path}: SHA-256 {digest[:12]}… differs from the recorded "
                    f"{str(meta.get('sha256'))[:12]}…; delete the file to retrain {name}"
                )
            net = build()
            net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            return CachedModel(net.to(device).eval(), digest, meta, path, trained_now=False)
        net = build().to(device)
        report = dict(train(net))
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, tmp)
        digest = sha256_of(tmp)
        os.replace(tmp, path)  # atomic: a reader never sees half a file
        meta = {"name": name, "settings": dict(settings), **report, "sha256": digest,
                "torch": torch.__version__}  # fmt: skip
        meta_tmp = meta_path.with_suffix(f".{os.getpid()}.tmp")
        meta_tmp.write_text(json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")
        os.replace(meta_tmp, meta_path)
        return CachedModel(net.eval(), digest, meta, path, trained_now=True)
