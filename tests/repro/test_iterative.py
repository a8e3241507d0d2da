"""BIM and MIM (`repro.iterative`): known reductions (one step is FGSM, zero momentum is BIM) and
that momentum changes the path; the shared invariants are in test_attack_invariants."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from repro.fgsm import fgsm
from repro.iterative import bim_linf, mim_linf
from repro.madry_pgd import pgd_linf


@pytest.fixture
def victim() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10))
    g = torch.Generator().manual_seed(1)
    return (
        model.eval(),
        torch.rand(16, 1, 8, 8, generator=g),
        torch.randint(0, 10, (16,), generator=g),
    )


def test_one_step_is_fgsm(victim) -> None:
    model, x, y = victim
    assert torch.allclose(bim_linf(model, x, y, eps=0.1, steps=1), fgsm(model, x, y, eps=0.1))
    assert torch.allclose(mim_linf(model, x, y, eps=0.1, steps=1), fgsm(model, x, y, eps=0.1))


def test_bim_is_pgd_without_random_start(victim) -> None:
    model, x, y = victim
    ref = pgd_linf(model, x, y, eps=0.1, step_size=0.01, steps=10, random_start=False)
    assert torch.equal(bim_linf(model, x, y, eps=0.1, steps=10), ref)


def test_zero_momentum_is_bim_and_momentum_changes_the_path(victim) -> None:
    model, x, y = victim
    bim = bim_linf(model, x, y, eps=0.1, steps=10)
    assert torch.allclose(mim_linf(model, x, y, eps=0.1, steps=10, decay=0.0), bim)
    mim = mim_linf(model, x, y, eps=0.1, steps=10, decay=1.0)
    assert not torch.allclose(mim, bim)
    assert (mim - x).abs().max() <= 0.1 + 1e-6


def test_bad_arguments(victim) -> None:
    model, x, y = victim
    with pytest.raises(ValueError, match="steps"):
        bim_linf(model, x, y, eps=0.1, steps=0)
    with pytest.raises(ValueError, match="decay"):
        mim_linf(model, x, y, eps=0.1, decay=-1.0)
