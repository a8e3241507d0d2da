"""Seeding, devices, scales and progress bars (`repro.env`, `repro.scales`)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from repro import ReproError
from repro.env import (
    device_name,
    fork_generator,
    forked_global_rng,
    pick_device,
    progress_bar,
    provenance,
    seed_everything,
)
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


def test_fork_generator_takes_exactly_one_draw_from_the_parent() -> None:
    parent, reference = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    child = fork_generator(parent)
    # the stream recorded runs depend on: the child's seed is one randint(0, 2**62) draw
    assert child.initial_seed() == int(torch.randint(0, 2**62, (1,), generator=reference))
    torch.rand(100, generator=child)  # whatever the child draws, the parent is one draw on
    assert torch.equal(torch.rand(3, generator=parent), torch.rand(3, generator=reference))
    again = fork_generator(torch.Generator().manual_seed(3))
    twin = fork_generator(torch.Generator().manual_seed(3))
    assert torch.equal(torch.rand(4, generator=again), torch.rand(4, generator=twin))
    # from a seed: the generator `seed_everything` returns
    assert torch.equal(
        torch.rand(3, generator=fork_generator(7)), torch.rand(3, generator=seed_everything(7))
    )
    for bad in ("7", True, 1.5):
        with pytest.raises(ReproError, match="fork_generator"):
            fork_generator(bad)  # type: ignore[arg-type]


def test_forked_global_rng_seeds_a_block_and_leaves_the_global_stream_alone() -> None:
    torch.manual_seed(0)
    undisturbed = torch.rand(3)
    torch.manual_seed(0)
    with forked_global_rng(torch.Generator().manual_seed(5)) as seed:
        inside = torch.rand(2)
    assert torch.equal(torch.rand(3), undisturbed)
    with forked_global_rng(torch.Generator().manual_seed(5)) as again:
        assert again == seed and torch.equal(torch.rand(2), inside)
    child = fork_generator(torch.Generator().manual_seed(5))  # the same draw, the same stream
    assert child.initial_seed() == seed and torch.equal(torch.rand(2, generator=child), inside)


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
