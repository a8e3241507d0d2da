"""RP2 (repro.rp2): the sticker's pieces by hand (surface, printing, NPS, TV, the rectangles),
the objective's optimisation on small models, the held-out views and the success rate, the sticker
attack's invariants, the claims, and the smoke reproduction end to end through the runner."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from repro import ReproError
from repro.claims import Results, evaluate, load_claims
from repro.config import repro_path
from repro.rp2 import (
    PALETTE,
    apply_sticker,
    attack_success_rate,
    lisa_cnn,
    non_printability,
    object_surface,
    print_sticker,
    random_rectangle_mask,
    rectangle_mask,
    rp2,
    sticker_attack,
    total_variation,
    view_matrices,
    view_probabilities,
    view_scale,
)
from repro.transforms import TransformDistribution, Transforms

from .conftest import smoke_run

SLUG = "rp2"
CONDITIONS = TransformDistribution(scale=(0.7, 1.0), yaw_deg=30.0, brightness=0.1,
                                   blur_sigma=(0.0, 0.5))  # fmt: skip


def _linear(seed: int = 0) -> nn.Module:
    """A linear classifier with weights large enough that a sticker can move its outputs."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10)).eval()
    with torch.no_grad():
        model[1].weight.normal_(0.0, 0.2)
        model[1].bias.zero_()
    return model


def _blob(n: int = 3) -> torch.Tensor:
    """n images with a bright 12x16 object (a dark hole in its middle) on black."""
    x = torch.zeros(n, 1, 28, 28)
    x[:, :, 8:20, 6:22] = 0.8
    x[:, :, 12:15, 12:15] = 0.0
    return x


# --------------------------------------------------------------------------- the sticker


def test_lisa_cnn_has_the_papers_layers_on_28_and_32_pixels() -> None:
    for size in (28, 32):
        model = lisa_cnn(8, size=size)
        assert model(torch.rand(2, 1, size, size)).shape == (2, 10)
    convs = [m for m in lisa_cnn(64) if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (64, (8, 8), (2, 2)), (128, (6, 6), (2, 2)), (128, (5, 5), (1, 1))
    ]  # fmt: skip
    with pytest.raises(ReproError, match="too small"):
        lisa_cnn(8, size=12)


def test_object_surface_fills_holes_and_leaves_the_background() -> None:
    x = _blob(1)
    surface = object_surface(x)
    assert surface.shape == x.shape
    assert float(surface[0, 0, 13, 13]) == 1.0  # the hole is on the surface
    assert float(surface.sum()) == 12 * 16
    assert float(surface[0, 0, 0, 0]) == 0.0


def test_apply_and_print_the_sticker_by_hand() -> None:
    x = torch.full((1, 1, 2, 2), 0.5)
    mask = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    delta = torch.tensor([[[[0.1, 30.0], [0.4, -0.4]]]])
    x_adv = apply_sticker(x, delta, mask)
    assert torch.allclose(x_adv, torch.tensor([[[[0.6, 1.0], [0.5, 0.5]]]]))
    printed = print_sticker(x_adv, x, mask, palette=(0.0, 1 / 3, 2 / 3, 1.0))
    assert torch.allclose(printed, torch.tensor([[[[2 / 3, 1.0], [0.5, 0.5]]]]))
    # NPS: 0.6 is 0.6, 0.2667, 0.0667, 0.4 from the four levels; 1.0 is a level (0)
    nps = non_printability(x_adv, mask, palette=(0.0, 1 / 3, 2 / 3, 1.0))
    assert float(nps) == pytest.approx(0.6 * (0.6 - 1 / 3) * (2 / 3 - 0.6) * 0.4, rel=1e-4)
    assert float(non_printability(printed, mask)) == pytest.approx(0.0, abs=1e-7)
    assert float(non_printability(torch.full((1, 1, 1, 1), 0.5), torch.ones(1, 1, 1, 1),
                                  palette=(0.0, 1.0))) == pytest.approx(0.25)  # fmt: skip


def test_total_variation_by_hand() -> None:
    p = torch.tensor([[[[0.0, 1.0], [0.5, 0.5]]]])
    # down: |0.5 - 0| + |0.5 - 1|; across: |1 - 0| + |0.5 - 0.5|
    assert float(total_variation(p)) == pytest.approx(2.0)
    assert float(total_variation(torch.full((1, 1, 5, 5), 0.3))) == 0.0


def test_rectangles_go_where_the_scores_are_and_never_overlap() -> None:
    scores = torch.zeros(2, 1, 28, 28)
    scores[0, 0, 3:7, 10:15] = 5.0  # exactly one 4x5 rectangle
    scores[0, 0, 20:24, 2:7] = 1.0
    scores[1, 0, 10:14, 10:20] = 1.0  # room for two side by side
    mask = rectangle_mask(scores, count=2, height=4, width=5)
    assert mask.sum(dim=(1, 2, 3)).tolist() == [40.0, 40.0]
    assert float(mask[0, 0, 3:7, 10:15].sum()) == 20 and float(mask[0, 0, 20:24, 2:7].sum()) == 20
    assert float(mask[1, 0, 10:14, 10:20].sum()) == 40
    with pytest.raises(ReproError, match="fit"):
        rectangle_mask(scores, count=1, height=30, width=5)


def test_random_rectangles_have_the_same_area_on_the_object() -> None:
    surface = object_surface(_blob(8))
    g = torch.Generator().manual_seed(0)
    mask = random_rectangle_mask(surface, count=4, height=4, width=5, generator=g)
    assert mask.sum(dim=(1, 2, 3)).tolist() == [80.0] * 8  # 4 disjoint rectangles each
    assert float((mask * surface).sum() / mask.sum()) > 0.5  # mostly on the object
    again = random_rectangle_mask(surface, count=4, height=4, width=5,
                                  generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert torch.equal(mask, again)
    assert not torch.equal(mask[0], mask[1])  # each image draws its own places


# --------------------------------------------------------------------------- the RP2 objective


def test_rp2_moves_to_the_target_inside_the_mask_only_and_is_seeded() -> None:
    model, x = _linear(), _blob(4)
    mask = rectangle_mask(torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1)),
                          count=4, height=4, width=5)  # fmt: skip
    target = (model(x).argmax(dim=1) + 1) % 10

    def run(seed: int, **kw):
        return rp2(model, x, target, mask, conditions=CONDITIONS, samples=4, steps=60,
                   generator=torch.Generator().manual_seed(seed), **kw)  # fmt: skip

    result = run(0)
    assert result.objective[-1] < result.objective[0]
    assert torch.equal((result.x_printed != x), (result.x_printed != x) & (mask > 0))
    before, after = (
        F.softmax(model(v), dim=1).gather(1, target[:, None]) for v in (x, result.x_printed)
    )
    assert bool((after > before).all())  # the printed sticker pulls every image to its target
    assert torch.equal(result.x_printed, run(0).x_printed)
    assert not torch.equal(result.delta, run(1).delta)  # other views, other sticker
    l1 = run(0, norm="l1", lam=0.05, nps_weight=0.0)
    assert float((l1.delta.abs() < 1e-2).float().mean()) > float(
        (result.delta.abs() < 1e-2).float().mean()
    )  # the l1 penalty leaves more of delta at (about) zero
    with pytest.raises(ReproError, match="norm"):
        run(0, norm="linf")


def test_tv_and_nps_terms_do_what_they_are_for() -> None:
    model, x = _linear(), _blob(4)
    mask = object_surface(x)
    kw = {"conditions": None, "samples": 1, "steps": 80, "generator": None}
    plain = rp2(model, x, 4, mask, nps_weight=0.0, **kw)
    smooth = rp2(model, x, 4, mask, nps_weight=0.0, tv_weight=0.5, **kw)
    printable = rp2(model, x, 4, mask, nps_weight=50.0, **kw)
    tv = lambda r: float(total_variation(r.x_adv - x).mean())  # noqa: E731
    nps = lambda r: float(non_printability(r.x_adv, mask).mean())  # noqa: E731
    assert tv(smooth) < tv(plain)
    assert nps(printable) < nps(plain)


# --------------------------------------------------------------------------- evaluation


def test_views_map_the_papers_distances_and_angles() -> None:
    assert torch.allclose(view_scale(torch.tensor([5.0, 40.0])), torch.tensor([1.0, 0.5]))
    m = view_matrices([5, 40, 5], [0, 0, 60])
    assert torch.allclose(m[0], torch.eye(3), atol=1e-6)
    assert torch.allclose(m[1], torch.diag(torch.tensor([0.5, 0.5, 1.0])), atol=1e-6)
    assert not torch.allclose(m[2], torch.eye(3))
    with pytest.raises(ReproError, match="one angle per distance"):
        view_matrices([5, 10], [0])


def test_view_probabilities_are_the_models_outputs_on_each_view_and_draw() -> None:
    model, x = _linear(), torch.rand(2, 1, 28, 28)
    m = view_matrices([5, 20], [0, 15])
    probs = view_probabilities(model, x, m)
    assert probs.shape == (2, 2, 1, 10)
    assert torch.allclose(probs[:, 0, 0], F.softmax(model(x), dim=1), atol=1e-5)
    bright = torch.full((2, 2, 3), 0.1)
    blur = torch.zeros(2, 2, 3)
    drawn = view_probabilities(model, x, m, brightness=bright, blur=blur, batch_size=5)
    by_hand = Transforms(m[1].expand(2, 3, 3), torch.full((2,), 0.1)).apply(x)
    assert torch.allclose(drawn[:, 1, 2], F.softmax(model(by_hand), dim=1), atol=1e-5)
    with pytest.raises(ReproError, match="draws must"):
        view_probabilities(model, x, m, brightness=torch.zeros(2, 3, 1))


def test_attack_success_rate_counts_only_views_seen_correctly_when_clean() -> None:
    clean = torch.tensor([[7, 7, 3], [7, 1, 1]])
    adv = torch.tensor([[5, 7, 5], [5, 5, 5]])
    successes, correct = attack_success_rate(clean, adv, 7, 5)
    assert successes.tolist() == [1.0, 1.0] and correct.tolist() == [2.0, 1.0]


# --------------------------------------------------------------------------- the attack


def test_sticker_attack_is_a_well_behaved_attack() -> None:
    """The invariants of tests/repro/test_attack_invariants.py on a small model: images out,
    same seed same result, the model left as it was, and only the stickers changed."""
    model = lisa_cnn(4)
    x, y = _blob(3), torch.tensor([7, 7, 7])

    def attack(seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return sticker_attack(model, x, y, target=5, conditions=CONDITIONS, samples=2,
                              l1_steps=3, steps=5, generator=g)  # fmt: skip

    model.train()
    flags = [p.requires_grad for p in model.parameters()]
    x_adv = attack(0)
    assert model.training and [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and not x_adv.requires_grad
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    assert torch.equal(x_adv, attack(0))
    changed = (x_adv != x).flatten(1).sum(dim=1)
    assert bool((changed > 0).all()) and bool((changed <= 4 * 4 * 5).all())
    levels = torch.tensor(PALETTE)
    assert bool(torch.isclose(x_adv[x_adv != x].unsqueeze(-1), levels).any(dim=-1).all())


# --------------------------------------------------------------------------- claims


def _results(**overrides: float) -> Results:
    m = {
        "masked_success": 90.0,
        "random_mask_success": 60.0,
        "unmasked_success": 100.0,
        "single_view_success": 65.0,
        "no_tv_success": 91.0,
        "masked_tv": 40.0,
        "no_tv_tv": 50.0,
        "masked_minus_random.ci95_low": 20.0,
        "masked_minus_random.ci95_high": 40.0,
    }
    m.update(overrides)
    return Results({}, m)


def test_claims_hold_fail_and_are_not_evaluated_without_results() -> None:
    claims = load_claims(repro_path(SLUG))
    assert all(c["holds"] is True for c in evaluate(claims, _results()))
    bad = _results(random_mask_success=80.0, unmasked_success=130.0, single_view_success=80.0,
                   masked_tv=46.0)  # fmt: skip
    assert {c["id"]: c["holds"] for c in evaluate(claims, bad)} == {
        "l1_mask_beats_random_placement": False,
        "stickers_keep_most_of_poster_success": False,
        "sampled_transformations_make_it_robust": False,
        "tv_term_smooths_the_sticker": False,
    }
    never = {c["id"]: c["holds"] for c in evaluate(claims, _results(unmasked_success=0.0))}
    assert never["stickers_keep_most_of_poster_success"] is False
    assert all(c["holds"] is None for c in evaluate(claims, Results({})))


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_smoke_reproduction_through_the_runner(project: Path, tmp_path: Path) -> None:
    """The notebook runs under papermill at smoke scale, records its metrics, and is stored."""
    _result, summary = smoke_run(SLUG, tmp_path / "runs")
    assert {r["verdict"] for r in summary["rows"]} == {"not_run"}  # every paper row is physical
    metrics = {m["name"]: m["value"] for m in summary["metrics"]}
    for name in ("masked", "random_mask", "unmasked", "single_view", "no_tv", "no_nps"):
        assert 0.0 <= metrics[f"{name}_success"] <= 100.0
        assert metrics[f"{name}_tv"] >= 0.0
    assert metrics["sticker_pixels"] == 80.0
    assert len(summary["figures"]) == 3
    assert all(c["holds"] is not None for c in summary["claims"]), summary["claims"]
