"""The baselines every robust-training paper compares against, trained once and reused.

Natural training, PGD adversarial training (Madry et al.) and TRADES (Zhang et al., ICML 2019) are
the reference points of MTER, PCL, GCE, LBGAT, RSLAD and AMP alike. Each folder training its own
would cost minutes per run and give each paper a slightly different baseline; here a baseline is
a `BaselineSpec` (kind, dataset, architecture, ε, budget, seed), trained once by the toolkit's loop
(`repro.train.train_classifier`, the attack through its `adversary` hook for PGD-AT and the TRADES
loss through its `objective` hook) and kept in the model cache with its checksum
(`repro.model_cache`). This module is toolkit, so a run's key already covers its code (`uses`
names paper folders); a run that compares against a baseline records `CachedModel.provenance()`
(the weights' checksum and the seconds one training epoch took: the per-epoch cost of PGD-AT and
TRADES that issue 17 asks for).

TRADES is not in our reading lists, so its loss lives here, as a baseline, rather than in a paper
folder: min_θ E[CE(f(x), y) + β · max_{‖x'−x‖∞ ≤ ε} KL(f(x) ‖ f(x'))], the inner maximum by
`steps` signed-gradient steps from x + 0.001·N(0, I) (the authors' code) -> `trades_objective`.
PGD-AT is `repro.madry_pgd.pgd_linf` as the adversary with `adv_weight=1` (Madry et al.'s
objective).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro import ReproError
from repro.model_cache import CachedModel, cached
from repro.train import Objective, frozen

__all__ = ["ARCHITECTURES", "BaselineSpec", "SmallCNN", "baseline", "trades_objective"]

Kind = Literal["natural", "pgd_at", "trades"]
KINDS = ("natural", "pgd_at", "trades")


class SmallCNN(nn.Module):
    """Two 3×3 convolutions (32, 64) with max-pooling, 128 hidden units, 10 logits: a fast
    baseline network for 28×28 greyscale images."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(2 * width * 49, 128), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Linear(128, 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def _madry() -> nn.Module:
    from repro.madry_pgd import madry_cnn

    return madry_cnn()


def _small_cnn_wide() -> nn.Module:
    return SmallCNN(width=64)


#: name -> builder of an untrained network (the same builder for every kind). `small_cnn_wide`
#: (twice the filters) is the larger teacher of the distillation papers (RSLAD).
ARCHITECTURES = {"small_cnn": SmallCNN, "small_cnn_wide": _small_cnn_wide, "madry_cnn": _madry}


@dataclass(frozen=True)
class BaselineSpec:
    """Everything a baseline's weights depend on (the cache key).

    ε, `steps` and `step_size` (default 2.5·ε/steps, Madry et al.'s rule) are the training
    attack's; `beta` is TRADES's trade-off (6, the authors' CIFAR setting). Adam (`lr`) for
    `epochs` over the first `n_train` training images (0 = all).
    """

    kind: Kind
    dataset: str = "fashion_mnist"
    arch: str = "small_cnn"
    eps: float = 0.1
    steps: int = 10
    step_size: float | None = None
    beta: float = 6.0
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    n_train: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ReproError(f"baseline: kind must be one of {KINDS}, got {self.kind!r}")
        if self.arch not in ARCHITECTURES:
            raise ReproError(
                f"baseline: unknown architecture {self.arch!r}; known: {sorted(ARCHITECTURES)}"
            )
        if self.kind != "natural" and not 0 < self.eps <= 1:
            raise ReproError(f"baseline: eps must be in (0, 1], got {self.eps}")

    @property
    def alpha(self) -> float:
        return self.step_size if self.step_size is not None else 2.5 * self.eps / max(self.steps, 1)

    @property
    def name(self) -> str:
        return f"baseline-{self.kind}-{self.dataset}-{self.arch}"


def trades_adversary(
    model: nn.Module,
    x: Tensor,
    *,
    eps: float,
    steps: int,
    step_size: float,
    generator: torch.Generator | None = None,
) -> Tensor:
    """TRADES's inner maximisation: from x + 0.001·N(0, I) (clipped to [0, 1]), `steps` times
    x' <- Π(x' + step_size · sign ∇ KL_sum(softmax f(x) ‖ softmax f(x'))), Π the projection onto
    the ℓ∞ ball of radius `eps` around x and [0, 1]. No labels: the attack moves away from the
    model's own clean prediction. One function for every method that trains on it (TRADES here,
    LBGAT's robust model, RSLAD-style students), so that they are attacked by the same computation.
    Returns a detached tensor like `x`; the model runs in eval mode with frozen parameters and is
    left as it was."""
    if eps < 0 or steps < 0 or step_size < 0:
        raise ReproError(f"trades_adversary: eps, steps, step_size must be >= 0, got "
                         f"{eps}, {steps}, {step_size}")  # fmt: skip
    x = x.detach()
    with frozen(model):
        p_clean = F.softmax(model(x), dim=1).detach()
        noise = torch.randn(
            x.shape, generator=generator, device=generator.device if generator else x.device
        )
        x_adv = (x + 0.001 * noise.to(x.device)).clamp(0.0, 1.0)
        for _ in range(steps):
            x_adv.requires_grad_(True)
            kl = F.kl_div(F.log_softmax(model(x_adv), dim=1), p_clean, reduction="sum")
            (grad,) = torch.autograd.grad(kl, x_adv)
            x_adv = x_adv.detach() + step_size * grad.sign()
            x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0.0, 1.0)
    return x_adv.detach()


def trades_objective(
    *,
    eps: float,
    steps: int,
    step_size: float,
    beta: float,
    generator: torch.Generator | None = None,
) -> Objective:
    """The TRADES loss as a `train_classifier` objective (see the module docstring)."""

    def objective(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        x_adv = trades_adversary(model, x, eps=eps, steps=steps, step_size=step_size,
                                 generator=generator)  # fmt: skip
        logits = model(x)
        robust = F.kl_div(F.log_softmax(model(x_adv), dim=1), F.softmax(logits, dim=1),
                          reduction="batchmean")  # fmt: skip
        return F.cross_entropy(logits, y) + beta * robust

    return objective


def baseline(
    spec: BaselineSpec,
    *,
    device: str | torch.device = "cpu",
    data_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> CachedModel:
    """The baseline `spec`, from the model cache or trained now (and then cached)."""
    from repro.data import load_dataset
    from repro.madry_pgd import pgd_linf
    from repro.train import accuracy, train_classifier

    def train(net: nn.Module) -> dict[str, float]:
        tr = load_dataset(spec.dataset, "train", data_dir=data_dir, device=device)
        te = load_dataset(spec.dataset, "test", data_dir=data_dir, device=device)
        x, y = (tr.x, tr.y) if spec.n_train <= 0 else (tr.x[: spec.n_train], tr.y[: spec.n_train])
        torch.manual_seed(spec.seed)
        net.load_state_dict(ARCHITECTURES[spec.arch]().state_dict())  # seeded initialisation
        attack_gen = torch.Generator(device=x.device).manual_seed(spec.seed + 1)
        kwargs: dict[str, object] = {}
        if spec.kind == "pgd_at":
            kwargs = {"adv_weight": 1.0, "adversary": lambda m, xb, yb: pgd_linf(
                m, xb, yb, eps=spec.eps, step_size=spec.alpha, steps=spec.steps,
                generator=attack_gen)}  # fmt: skip
        elif spec.kind == "trades":
            kwargs = {"objective": trades_objective(eps=spec.eps, steps=spec.steps,
                                                    step_size=spec.alpha, beta=spec.beta,
                                                    generator=attack_gen)}  # fmt: skip
        start = time.perf_counter()
        train_classifier(
            net, x, y, epochs=spec.epochs, batch_size=spec.batch_size, lr=spec.lr,
            generator=torch.Generator().manual_seed(spec.seed), desc=spec.name,
            progress=progress, **kwargs,  # type: ignore[arg-type]
        )  # fmt: skip
        seconds = time.perf_counter() - start
        return {"test_accuracy": accuracy(net, te.x, te.y), "train_seconds": seconds,
                "epoch_seconds": seconds / max(spec.epochs, 1), "device": str(device)}  # fmt: skip

    return cached(spec.name, asdict(spec), ARCHITECTURES[spec.arch], train, device=device)
