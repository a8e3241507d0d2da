"""One robustness evaluation for every robust model of the project.

A paper's own attack (often FGSM or a short PGD) is where a defense is weakest to judge: gradient
masking and too few steps both make a model look robust. So every robust model, whatever its paper
reported, also runs through the same battery, and the site prints them side by side (the
"Robustness" page):

- `clean`: accuracy on the unperturbed images;
- `fgsm`: Goodfellow et al.'s single step (`repro.fgsm.fgsm`);
- `pgd20`: ℓ∞ PGD, 20 steps of 2.5·ε/20, one random start (`repro.madry_pgd.pgd_linf`);
- `pgd100`: 100 steps of 2.5·ε/100 with `restarts` random starts, per example the worst;
- `cw_pgd`: PGD-100 on Carlini & Wagner's margin loss (the "CW∞" column of the robust-training
  papers);
- `autoattack`: the standard AutoAttack of Croce & Hein (ICML 2020) — APGD-CE, APGD-T (9 target
  classes), FAB-T (9 targets), Square (5,000 queries), 100 iterations each, run in sequence on the
  points still classified correctly — assembled from torchattacks' implementations with the
  original's settings (torchattacks' own `AutoAttack` runs 10 iterations, not 100): an
  independent, maintained evaluator, not our code. `autoattack="apgd"` runs APGD-CE + APGD-T
  only (for smoke scales); it is recorded as `apgd_ce_t`, never as AutoAttack. The class count
  is the model's output width: APGD-T's loss needs 4 classes, so a binary task runs APGD-CE,
  FAB-T and Square (`autoattack_parts`; the reduced version is then `apgd_ce`);
- `worst`: per example, correct under every attack above (the robust accuracy to quote);
- `paper`: the paper's own attack, when the caller passes it.

Every accuracy counts an example only when it is right on the clean image too (RobustBench's
convention, `repro.train.robust_accuracy`), and comes with its per-image vector and a bootstrap
95 % interval (`repro.stats`). `RobustnessReport.gap` is the paper's attack's accuracy minus the
worst case; like RobustBench, a gap above `GAP_FLAG` points is flagged as a sign that the paper's
evaluation overestimated robustness.

Metric names, recorded by `RobustnessReport.record(rec, model)`: `robustness.<model>.<attack>`
(accuracy in percent, with `correct=` the packed per-image vector), `.ci95_low` / `.ci95_high`
beside each, and `robustness.<model>.eps`; the site reads them from every run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from repro import ReproError
from repro.env import progress_bar
from repro.train import Attack, frozen, predict

__all__ = [
    "ATTACKS",
    "GAP_FLAG",
    "Protocol",
    "RobustnessReport",
    "autoattack",
    "autoattack_parts",
    "evaluate",
]

#: The battery, in the order it runs and is printed.
ATTACKS = ("clean", "fgsm", "pgd20", "pgd100", "cw_pgd", "autoattack")
#: Points (percent) by which the paper's attack may exceed the worst case before the gap is flagged.
GAP_FLAG = 5.0
LABELS = {
    "clean": "clean",
    "fgsm": "FGSM",
    "pgd20": "PGD-20",
    "pgd100": "PGD-100 (restarts)",
    "cw_pgd": "CW∞ (PGD-100, margin loss)",
    "autoattack": "AutoAttack (standard)",
    "apgd_ce_t": "APGD-CE + APGD-T (not the full AutoAttack)",
    "apgd_ce": "APGD-CE (not the full AutoAttack; APGD-T needs 4 classes)",
    "worst": "worst case",
    "paper": "the paper's attack",
}


@dataclass(frozen=True)
class Protocol:
    """The battery's settings: ε (ℓ∞, images in [0, 1]); `restarts` for PGD-100 and CW;
    `autoattack` "standard" or "apgd" (smoke scales); `attacks` to run a subset."""

    eps: float
    restarts: int = 5
    autoattack: str = "standard"
    attacks: tuple[str, ...] = ATTACKS
    batch_size: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.eps <= 1:
            raise ReproError(f"robustness protocol: eps must be in (0, 1], got {self.eps}")
        unknown = [a for a in self.attacks if a not in ATTACKS]
        if unknown:
            raise ReproError(f"robustness protocol: unknown attacks {unknown}; known: {ATTACKS}")
        if self.autoattack not in ("standard", "apgd"):
            raise ReproError(
                f"robustness protocol: autoattack must be 'standard' or 'apgd', got {self.autoattack!r}"
            )
        if self.restarts < 1 or self.batch_size < 1:
            raise ReproError("robustness protocol: restarts and batch_size must be >= 1")


#: AutoAttack's targeted parts attack the 9 highest-ranked wrong classes (fewer when there are fewer).
AA_TARGETS = 9
#: APGD-T's targeted DLR loss reads the 3rd and 4th largest logits: it needs 4 classes or more.
APGDT_MIN_CLASSES = 4


def _class_count(model: nn.Module, x: Tensor) -> int:
    """The model's output width on one input (eval mode, no gradient): its number of classes."""
    with frozen(model), torch.no_grad():
        return int(model(x[:1]).shape[-1])


def autoattack_parts(n_classes: int, version: str = "standard") -> tuple[str, ...]:
    """The AutoAttack components that run on a `n_classes`-way classifier: APGD-CE, APGD-T (only
    with at least `APGDT_MIN_CLASSES` classes: its loss is undefined below), and for "standard"
    FAB-T and Square. A binary task therefore gets APGD-CE, FAB-T (toward the one other class) and
    Square."""
    if n_classes < 2:
        raise ReproError(f"AutoAttack: a classifier needs at least 2 classes, got {n_classes}")
    parts = ["apgd-ce"] + (["apgd-t"] if n_classes >= APGDT_MIN_CLASSES else [])
    return tuple(parts + (["fab-t", "square"] if version == "standard" else []))


def autoattack(
    model: nn.Module, x: Tensor, y: Tensor, *, eps: float, version: str = "standard", seed: int = 0
) -> Tensor:
    """AutoAttack (ℓ∞) from torchattacks' components with the original's settings; see the module
    docstring. The class count is the model's output width (`autoattack_parts` says what runs);
    the targeted parts attack min(9, classes − 1) targets, as the original does. torchattacks
    seeds torch's global generator, which is restored afterwards."""
    import torchattacks as ta

    with (
        torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []),
        frozen(model),
    ):
        n_classes = _class_count(model, x)
        # torchattacks targets the n_classes - 1 highest-ranked wrong classes: cap them at 9.
        ranked = min(n_classes, AA_TARGETS + 1)
        make = {
            "apgd-ce": lambda: ta.APGD(model, norm="Linf", eps=eps, steps=100, n_restarts=1,
                                       loss="ce", seed=seed),
            "apgd-t": lambda: ta.APGDT(model, norm="Linf", eps=eps, steps=100, n_restarts=1,
                                       n_classes=ranked, seed=seed),
            "fab-t": lambda: ta.FAB(model, norm="Linf", eps=eps, steps=100, n_restarts=1,
                                    multi_targeted=True, n_classes=ranked, seed=seed),
            "square": lambda: ta.Square(model, norm="Linf", eps=eps, n_queries=5000, n_restarts=1,
                                        seed=seed),
        }  # fmt: skip
        parts = [make[name]() for name in autoattack_parts(n_classes, version)]
        # MultiAttack wants two attacks or more (a binary task's reduced version has one)
        x_adv = ta.MultiAttack(parts)(x, y) if len(parts) > 1 else parts[0](x, y)
    return x_adv.detach().clamp(0.0, 1.0)


def _battery(protocol: Protocol, generator: torch.Generator) -> dict[str, Attack]:
    from repro.fgsm import fgsm
    from repro.madry_pgd import pgd_linf

    eps = protocol.eps

    def pgd(steps: int, restarts: int, loss: str) -> Attack:
        return lambda m, x, y: pgd_linf(
            m, x, y, eps=eps, step_size=2.5 * eps / steps, steps=steps, restarts=restarts,
            loss=loss, generator=generator,
        )  # fmt: skip

    return {
        "fgsm": lambda m, x, y: fgsm(m, x, y, eps=eps),
        "pgd20": pgd(20, 1, "ce"),
        "pgd100": pgd(100, protocol.restarts, "ce"),
        "cw_pgd": pgd(100, protocol.restarts, "margin"),
        "autoattack": lambda m, x, y: autoattack(
            m, x, y, eps=eps, version=protocol.autoattack, seed=protocol.seed
        ),
    }


@dataclass
class RobustnessReport:
    """Per-image correctness (clean and under attack) for each attack that ran."""

    eps: float
    correct: dict[str, Tensor] = field(default_factory=dict)  # name -> bool (n,)
    autoattack_version: str = "standard"
    n_classes: int = 10  # the model's output width: which AutoAttack parts ran (`autoattack_parts`)

    @property
    def n(self) -> int:
        return next(iter(self.correct.values())).numel() if self.correct else 0

    def name(self, attack: str) -> str:
        """The recorded name: `apgd_ce_t` for the reduced AutoAttack (`apgd_ce` where APGD-T cannot
        run, below `APGDT_MIN_CLASSES` classes); the standard one stays `autoattack` (its parts
        are recorded beside it)."""
        if attack == "autoattack" and self.autoattack_version == "apgd":
            return "apgd_ce_t" if self.n_classes >= APGDT_MIN_CLASSES else "apgd_ce"
        return attack

    def accuracy(self, attack: str) -> float:
        """Percent of the images right under `attack` (and clean)."""
        if attack not in self.correct:
            raise ReproError(f"robustness: {attack!r} was not run; ran {sorted(self.correct)}")
        return 100.0 * float(self.correct[attack].float().mean())

    def gap(self) -> float | None:
        """The paper's attack's accuracy minus the worst case, in points (None without one)."""
        if "paper" not in self.correct:
            return None
        return self.accuracy("paper") - self.accuracy("worst")

    def flagged(self) -> bool:
        gap = self.gap()
        return gap is not None and gap > GAP_FLAG

    def rows(self) -> list[dict[str, Any]]:
        """One dict per attack: name, label, accuracy (%), 95 % bootstrap interval."""
        from repro.stats import mean_interval

        out = []
        for attack, ok in self.correct.items():
            ci = mean_interval(ok.cpu().numpy().astype("float64"))
            name = self.name(attack)
            out.append({"attack": name, "label": LABELS.get(name, name),
                        "accuracy_pct": 100.0 * ci.estimate, "ci95_low": 100.0 * ci.low,
                        "ci95_high": 100.0 * ci.high, "n": ok.numel()})  # fmt: skip
        return out

    def record(self, rec: Any, model: str, **info: Any) -> None:
        """Write `robustness.<model>.<attack>` (+ intervals, eps, gap) to a `repro.record.Recorder`;
        `info` (dataset, training, ...) goes with every value."""
        from repro.stats import pack_bits

        if not model.replace("_", "").isalnum():
            raise ReproError(f"robustness: model name {model!r} must be letters, digits and _")
        base = f"robustness.{model}"
        rec.metric(f"{base}.eps", self.eps, **info)
        for attack, row in zip(self.correct, self.rows(), strict=True):  # rows() keeps the order
            name = f"{base}.{row['attack']}"
            extra = (
                {"parts": list(autoattack_parts(self.n_classes, self.autoattack_version))}
                if attack == "autoattack" else {}
            )  # fmt: skip
            rec.metric(name, row["accuracy_pct"], correct=pack_bits(self.correct[attack].cpu().numpy()),
                       n=row["n"], **extra, **info)  # fmt: skip
            rec.metric(f"{name}.ci95_low", row["ci95_low"])
            rec.metric(f"{name}.ci95_high", row["ci95_high"])
        gap = self.gap()
        if gap is not None:
            rec.metric(f"{base}.gap", gap, flagged=self.flagged(), **info)


def evaluate(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    protocol: Protocol,
    *,
    paper_attack: Attack | None = None,
    progress: bool = True,
    desc: str = "robustness",
) -> RobustnessReport:
    """Run the battery (and the paper's attack) on (x, y), batch by batch; the model is left as it
    was. Same protocol and seed, same numbers."""
    if x.shape[0] == 0:
        raise ReproError("robustness evaluation of an empty set")
    gen = torch.Generator(device=x.device).manual_seed(protocol.seed)
    battery = _battery(protocol, gen)
    names = [a for a in protocol.attacks if a != "clean"]
    attacks: list[tuple[str, Attack]] = [(a, battery[a]) for a in names]
    if paper_attack is not None:
        attacks.append(("paper", paper_attack))
    clean = predict(model, x, batch_size=protocol.batch_size) == y
    report = RobustnessReport(protocol.eps, {"clean": clean}, protocol.autoattack,
                              _class_count(model, x))  # fmt: skip
    steps = len(attacks) * math.ceil(x.shape[0] / protocol.batch_size)
    with progress_bar(total=steps, desc=desc, enabled=progress, unit="batch") as bar:
        for name, attack in attacks:
            ok = torch.zeros_like(clean)
            for i in range(0, x.shape[0], protocol.batch_size):
                xb, yb = x[i : i + protocol.batch_size], y[i : i + protocol.batch_size]
                x_adv = attack(model, xb, yb)
                ok[i : i + xb.shape[0]] = (
                    predict(model, x_adv, batch_size=protocol.batch_size) == yb
                )
                bar.update(1)
            report.correct[name] = ok & clean
    worst = clean.clone()
    for name, ok in report.correct.items():
        if name != "paper":
            worst &= ok
    report.correct["worst"] = worst
    return report
