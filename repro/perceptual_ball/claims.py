"""Elliott, Law & Russell (2021)'s qualitative claims, checked on the Fashion-MNIST analogue.

The paper's numbers are on ImageNet, PASCAL VOC 2007 and COCO 2014 with pretrained VGG/ResNet
networks, none of which is here (and none of its numbers was recovered: expected.csv keeps its
rows as not run). The claims are its qualitative statements about the perceptual ball against the
unregularised adversarial perturbation (the same loss with gamma = 0), checked on the same
protocol run on Fashion-MNIST (free metrics of the notebook, all `fashion_mnist_*`):

- insertion / deletion AUCs and the Gini sparsity of the maps of the first correctly classified
  test images (28 x 28), one value per image;
- the pointing-game analogue on 2 x 2 canvases (the garment in one cell, a patch-shuffled garment
  in another, noise everywhere): whether the map's maximum falls in the garment's cell, and the
  share of the map's mass that does.

"Better" means better beyond the images drawn: the paired bootstrap 95% interval of the
difference (perceptual ball minus gamma = 0, over the same images; repro.stats, B = 1,000,
seed 0), which the notebook records as `<name>.ci95_low` / `<name>.ci95_high`, lies entirely on
the better side of 0. A tie, or a difference whose interval straddles 0, is not "better".

The claims and their thresholds were written on 2026-12-02, before any run of this notebook and
before any saliency metric was computed, from the statements quoted in each claim; the thresholds
(the interval's side of 0, twice the chance rate of the pointing game) were not changed after.
"""

from __future__ import annotations

from repro.claims import Claim, Results

DS = "fashion_mnist"
PB = "perceptual_ball"
UNREG = "unregularised"
CHANCE_PCT = 25.0  # a 2 x 2 canvas: a random pixel falls in the garment's cell 1 time in 4


def _difference(r: Results, quantity: str) -> tuple[float, float, float]:
    """PB minus gamma = 0 for `quantity`, and its bootstrap interval (recorded by the notebook)."""
    name = f"{DS}_{PB}_minus_{UNREG}_{quantity}"
    return r.metric(name), r.metric(f"{name}.ci95_low"), r.metric(f"{name}.ci95_high")


def _both(r: Results, quantity: str, fmt: str = ".4f") -> str:
    pb, unreg = r.metric(f"{DS}_{PB}_{quantity}"), r.metric(f"{DS}_{UNREG}_{quantity}")
    return f"perceptual ball {pb:{fmt}}, gamma = 0 {unreg:{fmt}}"


def _better(quantity: str, higher: bool, fmt: str = ".4f"):
    def check(r: Results) -> tuple[bool, str]:
        diff, low, high = _difference(r, quantity)
        ok = low > 0 if higher else high < 0
        side = "above" if higher else "below"
        return ok, (
            f"{_both(r, quantity, fmt)}; difference {diff:+{fmt}} [{low:+{fmt}}, {high:+{fmt}}] "
            f"(claim: the 95% interval entirely {side} 0)"
        )

    return check


def _pointing_above_chance(r: Results) -> tuple[bool, str]:
    name = f"{DS}_{PB}_pointing_pct"
    hit, low = r.metric(name), r.metric(f"{name}.ci95_low")
    return low > 2 * CHANCE_PCT, (
        f"perceptual ball hits the garment's cell on {hit:.1f}% of canvases (95% interval from "
        f"{low:.1f}%; claim: above {2 * CHANCE_PCT:.0f}%, twice the chance rate of "
        f"{CHANCE_PCT:.0f}%)"
    )


CLAIMS = [
    Claim(
        "perceptual_ball_beats_unregularised_on_deletion",
        "Deleting pixels in the order of the perceptual ball's map destroys the class faster than "
        "in the order of the unregularised perturbation's (gamma = 0): lower deletion AUC, the "
        "paired 95% interval below 0 (Section 5, insertion/deletion; the issue's claim that the "
        "regularised maps score better)",
        _better("deletion_auc", higher=False),
    ),
    Claim(
        "perceptual_ball_beats_unregularised_on_insertion",
        "Inserting pixels in the order of the perceptual ball's map restores the class faster "
        "than in the order of the unregularised perturbation's: higher insertion AUC, the paired "
        "95% interval above 0 (Section 5, insertion/deletion)",
        _better("insertion_auc", higher=True),
    ),
    Claim(
        "perceptual_ball_beats_unregularised_on_pointing",
        "On the pointing-game analogue the perceptual ball's map peaks in the garment's cell more "
        "often than the unregularised perturbation's: the paired 95% interval of the difference "
        "in hit rate above 0 (Section 5, pointing game)",
        _better("pointing_pct", higher=True, fmt=".1f"),
    ),
    Claim(
        "perceptual_ball_leaves_background_unaltered",
        "The perceptual ball puts more of its perturbation on the object and less on the "
        "background than the unregularised perturbation: a larger share of the map's mass in the "
        "garment's cell of the canvas, the paired 95% interval above 0 (abstract: 'semi-sparse "
        "alterations that highlight objects ... while leaving the background unaltered')",
        _better("pointing_energy", higher=True),
    ),
    Claim(
        "perceptual_ball_is_sparser",
        "The perceptual ball's maps are sparser than the unregularised perturbation's: a higher "
        "Gini index per map, the paired 95% interval above 0 (abstract: 'semi-sparse "
        "alterations'; Introduction: adversarial perturbations 'make non-local changes')",
        _better("gini", higher=True),
    ),
    Claim(
        "perceptual_ball_points_at_the_object",
        "The perceptual ball's map is an effective pointer: its maximum falls in the garment's "
        "cell of the canvas on more than twice the chance rate (50%), the lower end of the 95% "
        "interval counted (Section 5, pointing game)",
        _pointing_above_chance,
    ),
]
