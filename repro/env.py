"""Seeding, determinism, devices, provenance and progress bars.

Determinism policy: the same seed gives the same numbers on the same CPU build. `seed_everything`
seeds Python, NumPy and torch, asks torch for deterministic algorithms (warn-only, so an operation
without a deterministic kernel warns instead of crashing a long run on a GPU), and returns a seeded
CPU `torch.Generator`. Code that draws random numbers (batch order, random starts, noise) takes
that generator explicitly instead of relying on global state, so adding a random call in one place
does not shift the numbers of another. Draw on the CPU with it and move the result to the device:
the numbers are then the same on every device. A stream derived from another (a child generator,
or a network's initialisation under the global RNG) is forked by `fork_generator` or
`forked_global_rng`, which take one draw from the parent, so the parent's later numbers do not
depend on how much the child draws.
"""

from __future__ import annotations

import os
import platform
import random
import socket
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
import torch

from repro import ReproError

__all__ = [
    "device_name",
    "fork_generator",
    "forked_global_rng",
    "pick_device",
    "progress_bar",
    "provenance",
    "seed_everything",
]

T = TypeVar("T")


def seed_everything(seed: int) -> torch.Generator:
    """Seed every global RNG, switch torch to deterministic algorithms, return a seeded generator.

    `CUBLAS_WORKSPACE_CONFIG` is set (if unset) because cuBLAS is only deterministic with it.
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ReproError(f"seed must be an integer, got {seed!r}")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    return fork_generator(seed)


def _child_seed(parent: torch.Generator) -> int:
    """One 62-bit seed drawn from `parent` (on its device): the parent advances by one draw."""
    return int(torch.randint(0, 2**62, (1,), generator=parent, device=parent.device))


def fork_generator(
    parent: torch.Generator | int, *, device: str | torch.device | None = None
) -> torch.Generator:
    """A new generator seeded from `parent`: the seed itself, or one draw from a parent generator.

    The toolkit's one way to derive a random stream: from an int it is
    `torch.Generator(device).manual_seed(seed)` (on the CPU unless `device` says otherwise); from a
    generator, the child's seed is one `randint(0, 2**62)` draw from the parent, so the child is
    reproducible and the parent's later numbers do not depend on what the child draws. A child
    lives on the parent's device unless `device` is given.
    """
    if isinstance(parent, torch.Generator):
        seed, place = _child_seed(parent), device or parent.device
    elif isinstance(parent, int) and not isinstance(parent, bool):
        seed, place = parent, device or "cpu"
    else:
        raise ReproError(
            f"fork_generator: need a torch.Generator or an integer seed, got {parent!r}"
        )
    child = torch.Generator(device=place)
    child.manual_seed(seed)
    return child


@contextmanager
def forked_global_rng(parent: torch.Generator) -> Iterator[int]:
    """Run a block under the global torch RNG seeded from one draw of `parent`; yield the seed.

    For code that can only use the global RNG, such as a network's initialisation inside
    `nn.Module.__init__`: the same parent state gives the same weights, and the global CPU stream
    after the block is where it was before. The seed is the same draw `fork_generator(parent)`
    makes. Kept exactly as the copies it replaces did it (Defense-GAN's classifiers, Papernot's
    substitute), so recorded runs keep their numbers: `torch.manual_seed` inside the block also
    re-seeds the CUDA generators, which `fork_rng(devices=[])` does not restore afterwards.
    """
    seed = _child_seed(parent)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield seed


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """`"auto"` → CUDA when available, else the CPU; `"cpu"`, `"cuda"`, `"cuda:1"` as asked.

    Asking for CUDA on a machine without it is an error, not a silent fallback: a `full` run
    quietly done on a CPU would take days and be recorded under the wrong device.
    """
    name = str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(name)
    except RuntimeError as exc:
        raise ReproError(f"--device {device!r}: not a device (use auto, cpu or cuda)") from exc
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise ReproError(f"--device {device}: CUDA is not available on this machine")
        if chosen.index is not None and chosen.index >= torch.cuda.device_count():
            raise ReproError(
                f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    elif chosen.type != "cpu":
        raise ReproError(f"--device {device}: unsupported device type {chosen.type!r}")
    return chosen


def device_name(device: str | torch.device) -> str:
    """A human name for provenance: `"cpu"` or the GPU's name (`"NVIDIA H100 80GB HBM3"`)."""
    chosen = pick_device(device)
    if chosen.type == "cuda":
        return torch.cuda.get_device_name(chosen)
    return "cpu"


def provenance(device: str | torch.device) -> dict[str, Any]:
    """Library versions, host and device of this process, for a run's summary."""
    import torchvision

    chosen = pick_device(device)
    return {
        "device": device_name(chosen),
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        # The CUDA runtime only matters (and is only reported) when the run used a GPU.
        "cuda": torch.version.cuda if chosen.type == "cuda" else None,
    }


def progress_bar(
    iterable: Iterable[T] | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    enabled: bool = True,
    unit: str = "it",
) -> Iterator[T] | Any:
    """A text tqdm bar on stderr that shows both in a terminal and in a papermill-executed notebook.

    The plain (non-widget) tqdm is used on purpose: widget bars are invisible in papermill's log
    output and in the saved notebook. Refreshes at most every 2 seconds when stderr is not a
    terminal (a kernel's stream, a CI log), so a long run's log stays readable.
    """
    from tqdm.std import tqdm

    interactive = getattr(sys.stderr, "isatty", lambda: False)()
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        disable=not enabled,
        file=sys.stderr,
        mininterval=0.2 if interactive else 2.0,
        ncols=100,
        unit=unit,
        dynamic_ncols=False,
    )
