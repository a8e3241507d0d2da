"""Seeding, devices, scales and progress bars (`repro.env`, `repro.scales`)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from repro import ReproError
from repro.env import device_name, pick_device, progress_bar, provenance, seed_everything
from repro.scales import resolve_scale


def draw(generator: torch.Generator) -> tuple[list[float], float, float, list[float]]:
    return (
        torch.rand(3, generator=generator).tolist(),
        random.random(),
        float(np.random.rand()),
        torch.randn(2).tolist(),  # the global torch RNG too
    )


def test_same_seed_same_numbers_other_seed_other_numbers() -> None:
    first = draw(seed_everything(7))
    again = draw(seed_everything(7))
    other = draw(seed_everything(8))
    assert first == again
    assert all(a != b for a, b in zip(first, other, strict=True))
    assert torch.are_deterministic_algorithms_enabled()


def test_seed_must_be_an_integer() -> None:
    with pytest.raises(ReproError, match="seed must be an integer"):
        seed_everything("0")  # type: ignore[arg-type]


def test_devices() -> None:
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device(" CPU ") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert pick_device("auto").type == expected
    assert device_name("cpu") == "cpu"
    with pytest.raises(ReproError, match="not a device"):
        pick_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ReproError, match="CUDA is not available"):
            pick_device("cuda")


def test_provenance_names_versions_and_device() -> None:
    info = provenance("cpu")
    assert info["device"] == "cpu" and info["cuda"] is None
    assert info["torch"] == torch.__version__ and info["python"].count(".") == 2
    assert info["host"]


@pytest.mark.parametrize(
    ("scale", "device", "expected"),
    [
        ("smoke", "cuda", "smoke"),
        ("small", "cpu", "small"),
        ("full", "cpu", "full"),  # explicitly asked: allowed on a CPU
        ("auto", "cpu", "small"),
        ("auto", "cuda", "full"),
        ("auto", "cuda:1", "full"),
        ("AUTO", torch.device("cpu"), "small"),
    ],
)
def test_resolve_scale(scale, device, expected) -> None:
    assert resolve_scale(scale, device) == expected


def test_resolve_scale_rejects_unknown_scales() -> None:
    with pytest.raises(ReproError, match="unknown scale"):
        resolve_scale("medium", "cpu")


def test_progress_bar_writes_to_stderr_and_can_be_silenced(capsys) -> None:
    for _ in progress_bar(range(3), desc="steps"):
        pass
    assert "steps" in capsys.readouterr().err
    for _ in progress_bar(range(3), desc="quiet", enabled=False):
        pass
    assert capsys.readouterr().err == ""
