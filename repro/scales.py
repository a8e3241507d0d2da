"""Scales: how big a run is.

- `smoke`: under a minute on a laptop CPU; for tests. Proves the pipeline, not the numbers.
- `small`: under ~20 minutes on 2 CPU cores; the paper's claims should already hold.
- `full`: the paper's own settings (usually needs a GPU); the only scale compared number for number
  with the paper.
- `auto`: `full` where CUDA is present, else `small`. The runner resolves it before the notebook
  starts, so a run's recorded scale is always one of the three concrete ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from repro import ReproError

if TYPE_CHECKING:
    import torch

__all__ = ["SCALES", "resolve_scale"]

SCALES = ("smoke", "small", "full")


def resolve_scale(scale: str, device: str | torch.device) -> str:
    """The concrete scale: `scale` itself, or for `"auto"` `"full"` on CUDA and `"small"` otherwise.

    `device` may be `"auto"` (resolved with `repro.env.pick_device`) or a concrete device.
    """
    name = str(scale).strip().lower()
    if name in SCALES:
        return name
    if name != "auto":
        raise ReproError(f"--scale {scale!r}: unknown scale; use {', '.join(SCALES)} or auto")
    kind = str(device).split(":")[0].strip().lower()
    if kind == "auto":
        from repro.env import pick_device

        kind = pick_device("auto").type
    return "full" if kind == "cuda" else "small"
