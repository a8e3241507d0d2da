"""repro.checkpoint: where checkpoints live, that a write is atomic and a foreign or other-settings
checkpoint is refused in one line (the GAN loop's and Wong & Kolter's resumes are tested with
them)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from repro import ReproError
from repro.checkpoint import (
    CHECKPOINT_DIR_VARIABLE,
    checkpoint_root,
    load_checkpoint,
    save_checkpoint,
)


def test_the_root_is_the_variable_else_the_run_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(CHECKPOINT_DIR_VARIABLE, raising=False)
    assert checkpoint_root(tmp_path / "run") == tmp_path / "run" / "checkpoints"
    assert checkpoint_root() is None  # asked for none: the notebook saves none
    monkeypatch.setenv(CHECKPOINT_DIR_VARIABLE, str(tmp_path / "kept"))
    assert checkpoint_root(tmp_path / "run") == tmp_path / "kept"
    assert checkpoint_root() == tmp_path / "kept"


def test_save_then_load_round_trips_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "state.pt"
    assert load_checkpoint(path, {"a": 1}) is None
    save_checkpoint(path, {"config": {"a": 1}, "w": torch.arange(3)})
    state = load_checkpoint(path, {"a": 1})
    assert state is not None and torch.equal(state["w"], torch.arange(3))
    assert [p.name for p in path.parent.iterdir()] == ["state.pt"]


def test_other_settings_and_foreign_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.pt"
    save_checkpoint(path, {"config": {"eps": 0.1}})
    with pytest.raises(ReproError, match="differ from"):
        load_checkpoint(path, {"eps": 0.2})
    with pytest.raises(ReproError, match="'config'"):
        save_checkpoint(tmp_path / "other.pt", {"w": 1})
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(ReproError, match="not a readable checkpoint"):
        load_checkpoint(broken, {})
