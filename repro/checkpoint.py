"""Checkpoints that resume a long training exactly, and can outlive the run directory.

A long training (Defense-GAN's WGAN-GP, Wong & Kolter's robust training at `full`) can be stopped
before it ends: a device call's time limit, a pre-empted nightly runner, Ctrl-C. Its state is
saved at fixed points with the settings it depends on; the next run with the same settings
resumes where the last one stopped and, because the state holds the optimiser and the random
generators too, ends bit for bit where an uninterrupted run would have ended. A checkpoint made
with other settings is refused with a one-line `ReproError`, never silently mixed in.

- `checkpoint_root(out_dir)`: where a notebook keeps its checkpoints: `REPRO_CHECKPOINT_DIR` when
  set (a folder that outlives the run directory, which is what resuming needs: every run gets a
  new run directory), else `<out_dir>/checkpoints` (kept with the run, resumed by nothing), or
  with no `out_dir` None (the notebook then saves none: Wong & Kolter's).
- `save_checkpoint(path, state)`: written to a temporary file and renamed, so an interruption
  never leaves a half-written checkpoint.
- `load_checkpoint(path, config)`: the saved state, or None when there is none.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, overload

import torch

from repro import ReproError

__all__ = ["CHECKPOINT_DIR_VARIABLE", "checkpoint_root", "load_checkpoint", "save_checkpoint"]

#: The environment variable naming a checkpoint folder that survives run directories.
CHECKPOINT_DIR_VARIABLE = "REPRO_CHECKPOINT_DIR"


@overload
def checkpoint_root(out_dir: str | os.PathLike[str]) -> Path: ...
@overload
def checkpoint_root(out_dir: None = None) -> Path | None: ...
def checkpoint_root(out_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """`$REPRO_CHECKPOINT_DIR` when set, else `<out_dir>/checkpoints`, else (no `out_dir`) None:
    a notebook that checkpoints only when asked to passes no `out_dir`."""
    chosen = os.environ.get(CHECKPOINT_DIR_VARIABLE, "").strip()
    if chosen:
        return Path(chosen)
    return None if out_dir is None else Path(out_dir) / "checkpoints"


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Write `state` (which must hold its `config`) to `path` atomically."""
    if "config" not in state:
        raise ReproError(f"{path}: a checkpoint must hold the settings it was made with ('config')")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, target)  # atomic on one file system


def load_checkpoint(
    path: str | os.PathLike[str],
    config: dict[str, Any],
    *,
    map_location: torch.device | str | None = None,
) -> dict[str, Any] | None:
    """The state saved at `path`, or None when there is none; `ReproError` when it was made with
    settings other than `config` (remove it, or use another path) or cannot be read."""
    source = Path(path)
    if not source.exists():
        return None
    try:
        state = torch.load(source, map_location=map_location, weights_only=False)
    except Exception as exc:  # a truncated or foreign file: say which, never resume from it
        raise ReproError(f"{source}: not a readable checkpoint ({exc.__class__.__name__})") from exc
    if not isinstance(state, dict) or state.get("config") != config:
        saved = state.get("config") if isinstance(state, dict) else None
        raise ReproError(
            f"{source}: checkpoint settings {saved} differ from {config}; "
            "remove it or use another checkpoint path"
        )
    return state
