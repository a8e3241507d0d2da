"""The perceptual ball (repro.perceptual_ball): the batched L-BFGS against torch.optim.LBFGS image
by image, the loss and its minimiser against closed forms, the baselines on a linear model, the
pointing-game canvases, the metrics by hand, the claims, and the smoke reproduction end to end
through the runner."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from repro.claims import Results, evaluate, load_claims
from repro.config import repro_path
from repro.perceptual_ball import (
    RELU_LAYERS,
    capture,
    class_margin,
    gaussian_blur,
    gradient_saliency,
    integrated_gradients_saliency,
    lbfgs_batched,
    perceptual_ball,
    perceptual_ball_loss,
    perturbation_saliency,
    pointing_canvases,
    random_saliency,
    small_vgg,
)
from repro.perceptual_ball.metrics import (
    box_energy,
    curve_auc,
    deletion_curve,
    gini,
    insertion_curve,
    pixel_ranks,
    pointing_hits,
)

from .conftest import smoke_run

SLUG = "perceptual_ball"


def _frozen_vgg(dtype: torch.dtype = torch.float64) -> nn.Module:
    """A narrow VGG on 12 x 12 images: the same layers as the notebook's, cheap in float64."""
    torch.manual_seed(0)
    return small_vgg(image_size=12, channels=(4, 8)).to(dtype).eval().requires_grad_(False)


# --------------------------------------------------------------------------- L-BFGS


@pytest.mark.parametrize(("gamma", "history_size"), [(1e4, 100), (0.0, 100), (150.0, 3)])
def test_batched_lbfgs_ends_where_torch_lbfgs_ends_on_each_image(
    gamma: float, history_size: int
) -> None:
    """Each image of the batch follows exactly the path torch.optim.LBFGS takes on it alone
    (float64; history_size 3 exercises forgetting the oldest pairs)."""
    model = _frozen_vgg()
    x = torch.rand(3, 1, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    t = model(x).argmax(dim=1)
    loss = perceptual_ball_loss(model, x, t, layers=RELU_LAYERS, gamma=gamma)
    ours = lbfgs_batched(loss, x, max_iter=25, history_size=history_size)
    for i in range(3):
        single = perceptual_ball_loss(model, x[i : i + 1], t[i : i + 1], layers=RELU_LAYERS,
                                      gamma=gamma)  # fmt: skip
        v = x[i : i + 1].clone().requires_grad_(True)
        opt = torch.optim.LBFGS([v], max_iter=25, history_size=history_size)

        def closure(v: Tensor = v, opt: torch.optim.LBFGS = opt, single=single) -> Tensor:
            opt.zero_grad()
            value = single(v).sum()
            value.backward()
            return value

        opt.step(closure)
        assert torch.allclose(ours.x[i : i + 1], v.detach(), atol=1e-10, rtol=0)
        assert int(ours.iterations[i]) == opt.state[v]["n_iter"]


def test_batched_lbfgs_solves_independent_quadratics_and_skips_solved_images() -> None:
    """Per-image quadratics with very different curvatures are each solved; an image already
    at its minimum takes no step (torch returns at once when the gradient is ~0)."""
    curv = torch.tensor([[1.0, 3.0], [100.0, 0.5], [2.0, 2.0]], dtype=torch.float64)
    centre = torch.tensor([[1.0, -2.0], [0.3, 4.0], [0.0, 0.0]], dtype=torch.float64)

    def loss(z: Tensor) -> Tensor:
        return 0.5 * (curv * (z - centre) ** 2).sum(dim=1)

    x0 = torch.zeros(3, 2, dtype=torch.float64)
    res = lbfgs_batched(loss, x0, max_iter=50)
    assert torch.allclose(res.x, centre, atol=1e-6)
    assert int(res.iterations[2]) == 0
    assert torch.equal(x0, torch.zeros(3, 2, dtype=torch.float64))  # the input is left alone
    with pytest.raises(ValueError, match="max_iter"):
        lbfgs_batched(loss, x0, max_iter=0)
    with pytest.raises(ValueError, match="one loss per image"):
        lbfgs_batched(lambda z: loss(z).sum(), x0)


# --------------------------------------------------------------------------- the loss and method


class _Linear(nn.Module):
    """Two logits, affine in the pixels; `logits` is a named submodule, so its output can be the
    "layer" of the perceptual term."""

    def __init__(self, w: Tensor, b: Tensor) -> None:
        super().__init__()
        self.logits = nn.Linear(w.shape[1], 2).double()
        with torch.no_grad():
            self.logits.weight.copy_(w)
            self.logits.bias.copy_(b)
        self.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        return self.logits(x.flatten(1))


def test_class_margin_by_hand() -> None:
    logits = torch.tensor([[3.0, 1.0, 2.5], [0.0, 4.0, -1.0]])
    assert torch.allclose(class_margin(logits, torch.tensor([0, 0])), torch.tensor([0.5, -4.0]))


def test_loss_is_the_official_formula_image_by_image() -> None:
    w = torch.tensor([[1.0, -2.0, 0.5, 0.0], [0.0, 1.0, 1.0, -1.0]], dtype=torch.float64)
    model = _Linear(w, torch.tensor([0.1, -0.2], dtype=torch.float64)).eval()
    x = torch.rand(2, 1, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0, 1])
    x_new = x + 0.1 * torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator())
    loss = perceptual_ball_loss(model, x, t, layers=["logits"], gamma=7.0, pixel_weight=0.3,
                                margin_target=-2.0)  # fmt: skip
    for i in range(2):
        f_new, f_old = model(x_new[i : i + 1])[0], model(x[i : i + 1])[0]
        other = 1 - int(t[i])
        by_hand = (
            7.0 * ((f_new - f_old) ** 2).mean()
            + 0.3 * ((x_new[i] - x[i]) ** 2).mean()
            + (f_new[t[i]] - f_new[other] + 2.0) ** 2
        )
        assert float(loss(x_new)[i].detach()) == pytest.approx(float(by_hand), rel=1e-12)


@pytest.mark.parametrize("gamma", [0.0, 5.0])
def test_perceptual_ball_reaches_the_closed_form_minimiser_of_a_linear_model(gamma: float) -> None:
    """With two affine logits the loss is quadratic in delta = x' - x:
    (s/P) |delta|^2 + (gamma/2) |W delta|^2 + (m0 + w_d . delta - v)^2, whose minimiser solves
    ((s/P) I + (gamma/2) W^T W + w_d w_d^T) delta = -(m0 - v) w_d."""
    w = torch.tensor([[1.0, -2.0, 0.5, 0.3], [0.2, 1.0, 1.0, -1.0]], dtype=torch.float64)
    model = _Linear(w, torch.tensor([0.5, 0.0], dtype=torch.float64)).eval()
    x = torch.tensor([[[[0.9, 0.1], [0.6, 0.2]]]], dtype=torch.float64)
    t = torch.tensor([0])
    s, v, p = 0.5, -2.0, 4
    res = perceptual_ball(model, x, t, layers=["logits"], gamma=gamma, pixel_weight=s,
                          margin_target=v, max_iter=200)  # fmt: skip
    w_d = w[0] - w[1]
    m0 = float(class_margin(model(x), t))
    a = (s / p) * torch.eye(p, dtype=torch.float64) + (gamma / 2) * w.T @ w + torch.outer(w_d, w_d)
    delta = torch.linalg.solve(a, -(m0 - v) * w_d)
    assert torch.allclose((res.x_adv - x).flatten(), delta, atol=1e-6)
    assert float(res.margin[0]) == pytest.approx(m0 + float(w_d @ delta), abs=1e-6)


def test_perceptual_term_keeps_the_features_and_the_model_is_left_as_it_was() -> None:
    """On a network, gamma > 0 changes the regularised layers far less than gamma = 0 does;
    the model keeps its mode and flags; the same call gives the same result."""
    torch.manual_seed(0)
    model = small_vgg(image_size=12, channels=(4, 8)).double().train()
    x = torch.rand(4, 1, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    model.eval()
    t = model(x).argmax(dim=1)
    model.train()
    runs = {g: perceptual_ball(model, x, t, gamma=g, max_iter=30) for g in (0.0, 150.0)}
    assert model.training and all(p.requires_grad for p in model.parameters())
    again = perceptual_ball(model, x, t, gamma=150.0, max_iter=30)
    assert torch.equal(again.x_adv, runs[150.0].x_adv)
    model.eval()
    with torch.no_grad(), capture(model, RELU_LAYERS) as feats:
        model(x)
        ref = {k: v.clone() for k, v in feats.items()}
        change = {}
        for g, res in runs.items():
            model(res.x_adv)
            change[g] = sum(float((feats[k] - ref[k]).pow(2).mean()) for k in RELU_LAYERS)
    assert change[150.0] < 0.5 * change[0.0]
    assert float(runs[0.0].margin.max()) < 0  # gamma = 0 crosses the boundary
    assert not runs[0.0].x_adv.requires_grad
    with pytest.raises(ValueError, match="no module"):
        perceptual_ball_loss(model, x, t, layers=["features.99"])


def test_saliency_of_a_perturbation_and_the_blur() -> None:
    x = torch.zeros(1, 3, 5, 5)
    x_adv = x.clone()
    x_adv[0, :, 2, 2] = torch.tensor([3.0, 0.0, 0.0])
    sal = perturbation_saliency(x, x_adv)
    assert sal.shape == (1, 5, 5)
    assert float(sal[0, 2, 2]) == pytest.approx(3.0**0.5)  # sqrt(mean of 9, 0, 0)
    assert float(sal.sum()) == pytest.approx(3.0**0.5)
    assert torch.equal(gaussian_blur(sal, 0.0), sal)
    blurred = perturbation_saliency(x, x_adv, blur_sigma=1.0)
    assert float(blurred[0, 2, 2]) < float(sal[0, 2, 2])
    assert float(blurred.sum()) == pytest.approx(float(sal.sum()), rel=1e-5)
    assert torch.allclose(blurred[0], blurred[0].T)  # symmetric spread


def test_gradient_and_integrated_gradients_on_a_linear_model() -> None:
    """For affine logits the gradient is the row of W, and IG from a black image is x * W."""
    w = torch.tensor([[1.0, -2.0, 0.5, 0.0], [0.0, 1.0, 1.0, -1.0]], dtype=torch.float64)
    model = _Linear(w, torch.zeros(2, dtype=torch.float64)).eval()
    x = torch.rand(3, 1, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0, 1, 0])
    grad = gradient_saliency(model, x, t)
    assert torch.allclose(grad, w[t].abs().view(3, 2, 2))
    ig = integrated_gradients_saliency(model, x, t, steps=8)
    assert torch.allclose(ig, (x.view(3, 4) * w[t]).abs().view(3, 2, 2), atol=1e-10)
    rnd = random_saliency(x, torch.Generator().manual_seed(0))
    assert rnd.shape == (3, 2, 2)
    assert torch.equal(rnd, random_saliency(x, torch.Generator().manual_seed(0)))


# --------------------------------------------------------------------------- the pointing game


def _quarters(image: Tensor) -> set[tuple[float, ...]]:
    """The four 7 x 7 quarters of a 14 x 14 image, as a set (their places forgotten)."""
    return {tuple(image[r : r + 7, q : q + 7].flatten().tolist()) for r in (0, 7) for q in (0, 7)}


def test_canvases_put_the_garment_in_its_cell_and_a_shuffled_one_elsewhere() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(16, 1, 28, 28, generator=gen) * 0.5 + 0.5  # every pixel above the noise
    y = torch.arange(16) % 10
    noise = 0.2
    c = pointing_canvases(x, y, generator=torch.Generator().manual_seed(3), noise=noise)
    assert c.x.shape == (16, 1, 28, 28) and torch.equal(c.y, y)
    assert bool((c.cell != c.distractor_cell).all())
    pooled = torch.nn.functional.avg_pool2d(x, 2)
    for i in range(16):
        top, left, h, w = (int(v) for v in c.boxes[i])
        assert (h, w) == (14, 14) and (top, left) == (
            int(c.cell[i]) // 2 * 14,
            int(c.cell[i]) % 2 * 14,
        )
        assert torch.equal(c.x[i, :, top : top + h, left : left + w], pooled[i])
        dt, dl = int(c.distractor_cell[i]) // 2 * 14, int(c.distractor_cell[i]) % 2 * 14
        distractor = c.x[i, 0, dt : dt + 14, dl : dl + 14]
        assert float(distractor.min()) >= 0.5  # a garment's pixels, not noise
        quarters = _quarters(distractor)
        sources = [j for j in range(16) if j != i and quarters == _quarters(pooled[j, 0])]
        assert sources, "the distractor is another image's quarters"
        assert not torch.equal(distractor, pooled[sources[0], 0])  # ... moved
        for cell in set(range(4)) - {int(c.cell[i]), int(c.distractor_cell[i])}:
            r, q = cell // 2 * 14, cell % 2 * 14
            assert float(c.x[i, :, r : r + 14, q : q + 14].max()) <= noise
    again = pointing_canvases(x, y, generator=torch.Generator().manual_seed(3), noise=noise)
    assert torch.equal(again.x, c.x)


# --------------------------------------------------------------------------- the metrics


class _FirstPixel(nn.Module):
    """Class 1 is certain when the first pixel is 1 and impossible when it is 0."""

    def forward(self, x: Tensor) -> Tensor:
        p = x.flatten(1)[:, :1]
        return torch.cat([torch.zeros_like(p), 100.0 * (p - 0.5)], dim=1)


def test_deletion_and_insertion_curves_by_hand() -> None:
    x = torch.ones(2, 1, 2, 2)
    good = torch.tensor([[[4.0, 3.0], [2.0, 1.0]]])  # the first pixel first
    bad = torch.tensor([[[1.0, 3.0], [2.0, 4.0]]])  # the first pixel last
    sal = torch.cat([good, bad])
    t = torch.tensor([1, 1])
    dele = deletion_curve(_FirstPixel(), x, sal, t, steps=4)
    ins = insertion_curve(_FirstPixel(), x, sal, t, steps=4)
    expected_del = torch.tensor([[1.0, 0, 0, 0, 0], [1.0, 1, 1, 1, 0]])
    assert torch.allclose(dele, expected_del, atol=1e-6)
    assert torch.allclose(ins, 1 - expected_del, atol=1e-6)
    assert torch.allclose(curve_auc(dele), torch.tensor([1 / 8, 7 / 8]), atol=1e-6)
    assert torch.allclose(curve_auc(ins), torch.tensor([7 / 8, 1 / 8]), atol=1e-6)
    assert torch.equal(pixel_ranks(good), torch.tensor([[[0, 1], [2, 3]]]))
    assert torch.equal(pixel_ranks(torch.zeros(1, 1, 3)), torch.tensor([[[0, 1, 2]]]))  # stable


def test_auc_pointing_energy_and_gini_by_hand() -> None:
    assert torch.allclose(curve_auc(torch.tensor([[0.3, 0.3, 0.3], [0.0, 0.5, 1.0]])),
                          torch.tensor([0.3, 0.5]))  # fmt: skip
    sal = torch.zeros(3, 4, 4)
    sal[0, 1, 1] = 1.0  # inside the box
    sal[1, 3, 3] = 1.0  # outside
    sal[2] = 1.0  # flat: the first pixel (0, 0) is the maximum
    boxes = torch.tensor([[0, 0, 2, 2]] * 3)
    assert pointing_hits(sal, boxes).tolist() == [True, False, True]
    assert torch.allclose(box_energy(sal, boxes), torch.tensor([1.0, 0.0, 0.25]))
    assert float(box_energy(torch.zeros(1, 4, 4), boxes[:1])) == 0.0
    g = gini(torch.cat([sal, torch.zeros(1, 4, 4)]))
    assert torch.allclose(g, torch.tensor([1 - 1 / 16, 1 - 1 / 16, 0.0, 0.0]))
    spread = torch.tensor([[[0.0, 1.0], [1.0, 1.0]]])
    assert float(gini(spread)) < float(g[0])


# --------------------------------------------------------------------------- claims


def _results(**overrides: float) -> Results:
    m: dict[str, float] = {}
    values = {"deletion_auc": (0.10, 0.15), "insertion_auc": (0.60, 0.50), "gini": (0.7, 0.5),
              "pointing_pct": (80.0, 50.0), "pointing_energy": (0.6, 0.4)}  # fmt: skip
    for quantity, (pb, unreg) in values.items():
        m[f"fashion_mnist_perceptual_ball_{quantity}"] = pb
        m[f"fashion_mnist_unregularised_{quantity}"] = unreg
        diff = f"fashion_mnist_perceptual_ball_minus_unregularised_{quantity}"
        m[diff] = pb - unreg
        m[f"{diff}.ci95_low"] = pb - unreg - 0.01
        m[f"{diff}.ci95_high"] = pb - unreg + 0.01
    m["fashion_mnist_perceptual_ball_pointing_pct.ci95_low"] = 72.0
    m |= overrides
    return Results({}, m)


def test_claims_hold_fail_and_are_not_evaluated_without_results() -> None:
    claims = load_claims(repro_path(SLUG))
    assert all(c["holds"] is True for c in evaluate(claims, _results())), evaluate(
        claims, _results()
    )
    d = "fashion_mnist_perceptual_ball_minus_unregularised"
    bad = _results(**{
        f"{d}_deletion_auc.ci95_high": 0.001,  # straddles 0
        f"{d}_insertion_auc.ci95_low": -0.2,
        f"{d}_pointing_pct.ci95_low": 0.0,  # a tie is not "better"
        f"{d}_pointing_energy.ci95_low": -0.01,
        f"{d}_gini.ci95_low": -0.05,
        "fashion_mnist_perceptual_ball_pointing_pct.ci95_low": 50.0,  # not above twice chance
    })  # fmt: skip
    holds = {c["id"]: c["holds"] for c in evaluate(claims, bad)}
    assert holds == {c.id: False for c in claims}
    assert all(c["holds"] is None for c in evaluate(claims, Results({})))


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_smoke_reproduction_through_the_runner(project: Path, tmp_path: Path) -> None:
    """The notebook runs under papermill at smoke scale, records its metrics, and is stored."""
    result, summary = smoke_run(SLUG, tmp_path / "runs")
    assert {r["verdict"] for r in summary["rows"]} == {"not_run"}  # ImageNet, VOC, COCO
    metrics = {m["name"]: m["value"] for m in summary["metrics"]}
    for name in ("perceptual_ball", "unregularised", "gradient", "integrated_gradients", "random"):
        for quantity in ("deletion_auc", "insertion_auc", "pointing_energy", "gini"):
            assert 0.0 <= metrics[f"fashion_mnist_{name}_{quantity}"] <= 1.0
        assert 0.0 <= metrics[f"fashion_mnist_{name}_pointing_pct"] <= 100.0
    assert len(summary["figures"]) == 3
    for figure in summary["figures"]:
        assert (result.run_dir / figure["path"]).stat().st_size > 0
    assert all(c["holds"] is not None for c in summary["claims"]), summary["claims"]
