"""The Defense-GAN experiments, as functions the notebook (`reproduce.py`) calls section by section.

Paper: Samangouei, Kabkab & Chellappa, ICLR 2018, https://arxiv.org/abs/1805.06605 (v2).
Reproduces: the protocols behind Tables 1-4, 8-11 and 13 and Figures 4-5, as the released code
runs them (kabkabm/defensegan `whitebox.py`, `blackbox.py`).

Map:
- the code's data split: train on (part of) the first 50,000 training images; the adversary's
  holdout is the first 150 test images, the evaluation set the next ones -> `load_data`.
- the classifiers: on clean images (Defense-GAN-Orig), on reconstructions G(z*) of the training
  images (Defense-GAN-Rec), with FGSM adversarial training at each eps_tr (the baseline columns)
  -> `train_orig`, `train_rec`, `train_advtr`.
- Table 4, white-box: FGSM eps 0.3; RAND+FGSM eps 0.3, alpha 0.05; CW-L2 with 1 binary-search
  step, 100 iterations, lr 10, c 100 -> `whitebox_attacks`, run by `batched`. Protocol rows: the
  attacker differentiates the classifier behind the projection, not the projection (`DefenseGAN`
  has a zero input gradient; see `repro.defense_gan.defense`), then the defense projects and
  classifies (`defended_accuracy`).
- what the official code's white-box attacker differentiated: the L unrolled descent steps of the
  projection -> `unrolled_gradient` (beside the bare classifier's `input_gradient`).
- Tables 1-3 and 8-11, black-box: Papernot et al.'s substitute trained from the 150 holdout
  images (true labels for those, as the code does) with oracle labels for the synthetic points,
  lambda 0.1 -> `substitute`; FGSM eps 0.3 crafted on the substitute with its own predicted
  labels (cleverhans' default) and transferred -> `transfer_fgsm`. The oracle is the defended
  model for the Defense-GAN columns (`defended_oracle`), the bare (or adversarially trained)
  classifier for the others (`label_oracle`); the released black-box script queries every oracle
  through the reconstruction, the paper text describes attacking the defended model (README).
- Tables 8-11, the L and R sweeps: every attacked set is projected once per (L, R) and fewer
  restarts are served as views -> `ProjectionCache` (`Projection.best_of`), which is what makes
  the sweeps affordable.
- Figures 4-5, the reconstruction-MSE detector -> `detection_auc`.
- Table 13, seconds per image of the projection -> `time_projection`.
- the protocol's labels: the official white-box calls pass no labels, so cleverhans attacks the
  model's own predictions -> `own_labels`.
- ours, not the paper's (README "Adaptive evaluation"): PGD against the whole defense with the
  identity backward pass through the projection (BPDA, `repro.obfuscated_gradients`)
  -> `bpda_pgd`; BPDA with EOT over the random restarts, the attacker given the defense's starts,
  best iterate -> `bpda_eot_pgd`; PGD through the true unrolled gradient -> `unrolled_pgd`,
  and that gradient beside BPDA's -> `unrolled_and_bpda_gradients`;
  Athalye et al.'s latent-space L2 attack -> `latent_attack`; a gradient-free check
  (torchattacks' Square) -> `square_attack`; an attack on the detector too (low reconstruction
  error) -> `low_mse_bpda_pgd`, scored by `detection_rate`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import torch
from torch import Tensor, nn

from repro.defense_gan.defense import (
    DefenseGAN,
    UnrolledDefense,
    classify_reconstructions,
    roc_auc,
)
from repro.defense_gan.models import DropoutMode, classifier
from repro.defense_gan.projection import DECAY, MAX_ROWS, MOMENTUM, REC_LR, Projection, project
from repro.env import forked_global_rng
from repro.train import Attack, frozen

EPS = 0.3  # FGSM / RAND+FGSM / black-box epsilon of every table
ALPHA = 0.05  # RAND+FGSM random step (Tramer et al.; Defense-GAN whitebox.py --alpha)
HOLDOUT = 150  # adversary's initial substitute set: the first 150 test images
LAMBDA = 0.1  # Jacobian augmentation step


@dataclass
class Data:
    """One dataset as the code splits it: train (first 50k of 60k), holdout, evaluation set."""

    name: str  # the dataset as measured ("fashion_mnist", "mnist-test-split")
    x_train: Tensor
    y_train: Tensor
    x_hold: Tensor
    y_hold: Tensor
    x_eval: Tensor
    y_eval: Tensor


def load_data(name: str, *, n_train: int, n_test: int, device: torch.device,
              data_dir: str | None = None) -> Data:  # fmt: skip
    """Train on the first `n_train` of the first 50,000 training images (the code keeps the last
    10,000 for validation); the adversary's holdout is the first 150 test images and the
    evaluation set the next `n_test` (0: all the rest), shared by every table."""
    from repro.data import load_dataset

    train = load_dataset(name, "train", data_dir=data_dir, device=device)
    test = load_dataset(name, "test", data_dir=data_dir, device=device)
    limit = min(50_000, len(train.y)) if name != "mnist-test-split" else len(train.y)
    n_train = limit if n_train <= 0 else min(n_train, limit)
    end = len(test.y) if n_test <= 0 else min(len(test.y), HOLDOUT + n_test)
    return Data(
        name=name,
        x_train=train.x[:n_train], y_train=train.y[:n_train],
        x_hold=test.x[:HOLDOUT], y_hold=test.y[:HOLDOUT],
        x_eval=test.x[HOLDOUT:end], y_eval=test.y[HOLDOUT:end],
    )  # fmt: skip


# --- projections ------------------------------------------------------------------------------


@dataclass
class ProjectionCache:
    """Projects named image sets once per (L, R); a request for fewer restarts is a view.

    Also keeps the accounting that the README's budget table reports: generator row-steps
    (image x restart x step) and seconds spent projecting.
    """

    generator: nn.Module
    rng: torch.Generator
    lr: float = REC_LR
    momentum: float = MOMENTUM
    decay: float = DECAY
    max_rows: int = MAX_ROWS
    store: dict[tuple[str, int, int], Projection] = field(default_factory=dict)
    row_steps: int = 0
    seconds: float = 0.0

    def get(self, name: str, x: Tensor, steps: int, restarts: int) -> Projection:
        for (n, s, r), proj in self.store.items():
            if n == name and s == steps and r >= restarts and proj.mse.shape[0] == x.shape[0]:
                return proj if r == restarts else proj.best_of(self.generator, restarts)
        start = time.perf_counter()
        proj = project(
            self.generator, x, steps=steps, restarts=restarts, lr=self.lr,
            momentum=self.momentum, decay=self.decay, generator_rng=self.rng,
            max_rows=self.max_rows,
        )  # fmt: skip
        _sync(x.device)
        self.seconds += time.perf_counter() - start
        self.row_steps += x.shape[0] * steps * restarts
        self.store[(name, steps, restarts)] = proj
        return proj

    def forget(self, prefix: str) -> None:
        """Drop cached sets whose name starts with `prefix` (frees memory between datasets)."""
        self.store = {k: v for k, v in self.store.items() if not k[0].startswith(prefix)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def defended_correct(clf: nn.Module, proj: Projection, y: Tensor) -> Tensor:
    """Per image: does `clf` classify the reconstruction G(z*) correctly (Defense-GAN's
    prediction)? The vector behind an accuracy and its bootstrap interval (`repro.stats`)."""
    return classify_reconstructions(clf, proj.reconstruction) == y


def defended_accuracy(clf: nn.Module, proj: Projection, y: Tensor) -> float:
    """Accuracy of `clf` on the reconstructions G(z*) (Defense-GAN's prediction)."""
    return float(defended_correct(clf, proj, y).float().mean())


def correct(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Per image: does `model` classify x correctly?"""
    from repro.train import predict

    return predict(model, x) == y


def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    from repro.train import accuracy as _accuracy

    return _accuracy(model, x, y)


# --- classifiers ------------------------------------------------------------------------------


@dataclass
class Classifiers:
    """Per architecture: trained on clean images ("orig"), on reconstructions ("rec"), and with
    FGSM adversarial training at each training epsilon ("advtr")."""

    orig: dict[str, nn.Module] = field(default_factory=dict)
    rec: dict[str, nn.Module] = field(default_factory=dict)
    advtr: dict[tuple[str, float], nn.Module] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def _seeded(make: Callable[[], nn.Module], rng: torch.Generator) -> nn.Module:
    """`make()` with initial weights drawn from a fork of `rng` (the global RNG is left alone)."""
    with forked_global_rng(rng):
        return make()


def train_orig(name: str, data: Data, *, epochs: int, batch_size: int, lr: float,
               dropout: DropoutMode, rng: torch.Generator, n: int = 0) -> nn.Module:  # fmt: skip
    """Classifier `name` trained on clean training images (Adam, the code's lr 1e-3)."""
    from repro.train import train_classifier

    model = _seeded(partial(classifier, name, dropout=dropout), rng).to(data.x_train.device)
    x, y = (data.x_train, data.y_train) if n <= 0 else (data.x_train[:n], data.y_train[:n])
    train_classifier(model, x, y, epochs=epochs, batch_size=batch_size, lr=lr, generator=rng,
                     desc=f"classifier {name}")  # fmt: skip
    return model.eval()


def train_advtr(name: str, data: Data, eps: float, *, epochs: int, batch_size: int, lr: float,
                dropout: DropoutMode, rng: torch.Generator, n: int = 0,
                init: nn.Module | None = None) -> nn.Module:  # fmt: skip
    """FGSM adversarial training at `eps` (the code: 0.5 CE(clean) + 0.5 CE(FGSM)); from scratch,
    or fine-tuned from `init` where a scale says so."""
    from repro.fgsm import fgsm
    from repro.train import train_classifier

    if init is None:
        model = _seeded(partial(classifier, name, dropout=dropout), rng)
    else:
        model = copy.deepcopy(init)
    model = model.to(data.x_train.device)
    x, y = (data.x_train, data.y_train) if n <= 0 else (data.x_train[:n], data.y_train[:n])
    train_classifier(model, x, y, epochs=epochs, batch_size=batch_size, lr=lr, generator=rng,
                     adversary=partial(fgsm, eps=eps), adv_weight=0.5,
                     desc=f"adv. training {name} eps {eps}")  # fmt: skip
    return model.eval()


def train_rec(name: str, recon: Tensor, y: Tensor, *, epochs: int, batch_size: int, lr: float,
              dropout: DropoutMode, rng: torch.Generator,
              init: nn.Module | None = None) -> nn.Module:  # fmt: skip
    """Defense-GAN-Rec's classifier: trained on reconstructions G(z*) of training images (the
    code's `--train_on_recs`); from scratch, or fine-tuned from the clean classifier `init`."""
    from repro.train import train_classifier

    if init is None:
        model = _seeded(partial(classifier, name, dropout=dropout), rng)
    else:
        model = copy.deepcopy(init)
    model = model.to(recon.device)
    train_classifier(model, recon, y, epochs=epochs, batch_size=batch_size, lr=lr, generator=rng,
                     desc=f"classifier {name} on reconstructions")  # fmt: skip
    return model.eval()


# --- attacks ----------------------------------------------------------------------------------


def whitebox_attacks(
    *, cw_steps: int = 100, rng: torch.Generator | None = None
) -> dict[str, Attack]:
    """Table 4's attacks with the code's settings (CW: 1 binary step, lr 10, c 100)."""
    from repro.carlini_wagner import cw_l2
    from repro.ensemble_adv import rand_fgsm
    from repro.fgsm import fgsm

    return {
        "fgsm": partial(fgsm, eps=EPS),
        "randfgsm": partial(rand_fgsm, eps=EPS, alpha=ALPHA, generator=rng),
        "cw": partial(cw_l2, c=100.0, steps=cw_steps, lr=10.0, binary_search_steps=1),
    }


def own_labels(model: nn.Module, x: Tensor) -> Tensor:
    """The model's own predictions: the labels cleverhans attacks when the official white-box
    calls pass none (`generate(x, eps=...)` without `y`)."""
    from repro.train import predict

    return predict(model, x)


def batched(attack: Attack, model: nn.Module, x: Tensor, y: Tensor, batch: int = 1000) -> Tensor:
    """`attack` over `x` in batches (bounds memory; attacks are per-example)."""
    return torch.cat([attack(model, x[i : i + batch], y[i : i + batch])
                      for i in range(0, x.shape[0], batch)])  # fmt: skip


def substitute(oracle: Callable[[Tensor], Tensor], data: Data, arch: str, *, rounds: int,
               epochs: int, lr: float, batch_size: int, dropout: DropoutMode,
               rng: torch.Generator) -> nn.Module:  # fmt: skip
    """Papernot et al.'s substitute of architecture `arch` for `oracle` (labels only)."""
    from repro.papernot_blackbox import train_substitute

    return train_substitute(
        oracle, data.x_hold, make_model=partial(classifier, arch, dropout=dropout),
        rounds=rounds, lam=LAMBDA, epochs=epochs, lr=lr, batch_size=batch_size,
        y_holdout=data.y_hold, generator=rng, progress=False,
    )  # fmt: skip


def label_oracle(model: nn.Module) -> Callable[[Tensor], Tensor]:
    """The bare classifier as a label oracle."""
    from repro.train import predict

    return lambda x: predict(model, x)


def defended_oracle(clf: nn.Module, cache: ProjectionCache, steps: int, restarts: int,
                    tag: str) -> Callable[[Tensor], Tensor]:  # fmt: skip
    """Defense-GAN as a label oracle: classify G(z*(x)); every query set is projected once."""
    counter = [0]

    def oracle(x: Tensor) -> Tensor:
        counter[0] += 1
        proj = cache.get(f"{tag}/query{counter[0]}", x, steps, restarts)
        return classify_reconstructions(clf, proj.reconstruction)

    return oracle


def transfer_fgsm(sub: nn.Module, x: Tensor, eps: float = EPS) -> Tensor:
    """FGSM crafted on the substitute with its own predicted labels, as cleverhans does."""
    from repro.fgsm import fgsm
    from repro.papernot_blackbox import blackbox_attack

    return torch.cat([blackbox_attack(sub, x[i : i + 1000], None, partial(fgsm, eps=eps))
                      for i in range(0, x.shape[0], 1000)])  # fmt: skip


# --- the adaptive attack and the official code's attacker -------------------------------------


def bpda_pgd(defense: DefenseGAN, x: Tensor, y: Tensor, *, eps: float, steps: int,
             step_size: float, rng: torch.Generator | None = None) -> Tensor:  # fmt: skip
    """PGD-linf on the whole defense with BPDA (projection forward, identity backward)."""
    from repro.madry_pgd import pgd_linf

    return pgd_linf(defense.bpda_view(), x, y, eps=eps, step_size=step_size, steps=steps,
                    random_start=True, generator=rng)  # fmt: skip


def bpda_eot_pgd(defense: DefenseGAN, x: Tensor, y: Tensor, *, eps: float, steps: int,
                 step_size: float, samples: int, restarts: int,
                 rng: torch.Generator | None = None) -> Tensor:  # fmt: skip
    """BPDA-PGD with EOT over the projection's random restarts, the best iterate kept: each step
    averages the BPDA gradient over `samples` fresh draws of the restarts; an iterate is judged
    on `defense` itself, whose fixed starts (`z_init`) the attacker is given, as the paper's
    white-box attacker was."""
    from repro.obfuscated_gradients import eot_pgd_linf

    if defense.z_init is None:
        raise ValueError("bpda_eot_pgd: the defense needs its fixed starts (z_init)")
    return eot_pgd_linf(defense.bpda_view(fresh=True), x, y, eps=eps, step_size=step_size,
                        steps=steps, samples=samples, restarts=restarts, judge=defense,
                        generator=rng)  # fmt: skip


def unrolled_pgd(defense: DefenseGAN, x: Tensor, y: Tensor, *, eps: float, steps: int,
                 step_size: float, rng: torch.Generator | None = None,
                 batch: int = 10) -> Tensor:  # fmt: skip
    """PGD-linf through the true gradient of the L unrolled descent steps of `defense` (with its
    fixed starts), `batch` images at a time (the unrolled graph's memory grows with L R N)."""
    from repro.madry_pgd import pgd_linf

    if defense.z_init is None:
        raise ValueError("unrolled_pgd: the defense needs its fixed starts (z_init)")
    model = UnrolledDefense(defense.generator, defense.classifier, steps=defense.steps,
                            z_init=defense.z_init, lr=defense.lr, momentum=defense.momentum,
                            decay=defense.decay)  # fmt: skip
    return torch.cat([pgd_linf(model, x[i : i + batch], y[i : i + batch], eps=eps,
                               step_size=step_size, steps=steps, generator=rng)
                      for i in range(0, x.shape[0], batch)])  # fmt: skip


def unrolled_and_bpda_gradients(defense: DefenseGAN, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """d CE / dx through the L unrolled steps (`UnrolledDefense`) and through BPDA, at the same
    points with the same fixed starts: how far the true gradient is from BPDA's approximation."""
    model = UnrolledDefense(defense.generator, defense.classifier, steps=defense.steps,
                            z_init=defense.z_init, lr=defense.lr, momentum=defense.momentum,
                            decay=defense.decay)  # fmt: skip
    grads = []
    for view in (model, defense.bpda_view()):
        with frozen(view):
            x_in = x.detach().clone().requires_grad_(True)
            loss = nn.functional.cross_entropy(view(x_in), y, reduction="sum")
            grads.append(torch.autograd.grad(loss, x_in)[0].detach())
    return grads[0], grads[1]


def latent_attack(generator: nn.Module, clf: nn.Module, x: Tensor, y: Tensor, latent: Tensor, *,
                  c: float, steps: int, lr: float, binary_search_steps: int) -> Tensor:  # fmt: skip
    """Athalye et al.'s attack on Defense-GAN: a misclassified G(z) near x, from the latent of x's
    own projection (`latent`, the inversion); `repro.obfuscated_gradients.latent_cw_l2`."""
    from repro.obfuscated_gradients import latent_cw_l2

    return latent_cw_l2(generator, clf, x, y, z_init=latent, c=c, steps=steps, lr=lr,
                        binary_search_steps=binary_search_steps)  # fmt: skip


def square_attack(defense: DefenseGAN, x: Tensor, y: Tensor, *, eps: float, queries: int,
                  seed: int = 0) -> Tensor:  # fmt: skip
    """Square (Andriushchenko et al. 2020; torchattacks' implementation), l_inf, margin loss: a
    random search that uses the defended model's outputs only, no gradient. Run on the defense
    with fixed starts (deterministic, so a query's answer does not change when repeated);
    torchattacks seeds torch's global RNG, which is restored afterwards."""
    import torchattacks

    if defense.z_init is None:
        raise ValueError("square_attack: the defense needs its fixed starts (z_init)")
    with torch.random.fork_rng(devices=[]), frozen(defense):
        attack = torchattacks.Square(defense, norm="Linf", eps=eps, n_queries=queries,
                                     n_restarts=1, seed=seed, loss="margin")  # fmt: skip
        x_adv = attack(x, y)
    return x_adv.detach().clamp(0.0, 1.0)


def low_mse_bpda_pgd(defense: DefenseGAN, x: Tensor, y: Tensor, *, eps: float, steps: int,
                     step_size: float, weight: float, threshold: float,
                     rng: torch.Generator | None = None) -> Tensor:  # fmt: skip
    """An attack on the classifier and the reconstruction-MSE detector at once (ours).

    PGD-linf on CE(C(G(z*(x))), y) - weight * ||G(z*(x)) - x||^2 / d, with BPDA (identity)
    through the projection for the first term and the reconstruction held fixed for the second
    (so that term pulls x towards its own reconstruction: the detector's score), on `defense`
    with its fixed starts. Per example the first iterate that is misclassified *and* under the
    detector's `threshold` wins, else the one with the highest objective. Returns x_adv.
    """
    from repro.train import frozen as _frozen

    x = x.detach()
    n = x.shape[0]
    lo, hi = (x - eps).clamp(min=0.0), (x + eps).clamp(max=1.0)
    device = rng.device if rng is not None else x.device
    u = torch.rand(x.shape, generator=rng, device=device, dtype=x.dtype).to(x.device)
    x_adv = (x + eps * (2 * u - 1)).clamp(0.0, 1.0)
    best, best_obj = x.clone(), torch.full((n,), -float("inf"), device=x.device)
    idx = torch.arange(n, device=x.device)  # examples not yet done (done ones drop out)
    ys = y
    dims = tuple(range(1, x.dim()))
    with _frozen(defense):
        for step in range(steps + 1):
            recon = defense.project(x_adv).reconstruction
            r = recon.detach().requires_grad_(True)
            logits = defense.classifier(r)
            ce = nn.functional.cross_entropy(logits, ys, reduction="none")
            (g_cls,) = torch.autograd.grad(ce.sum(), r)  # BPDA: d/dx taken as d/dG(z*)
            mse = (recon - x_adv).square().mean(dim=dims)
            objective = ce.detach() - weight * mse
            ok = (logits.argmax(dim=1) != ys) & (mse <= threshold)
            take = ok | (objective > best_obj[idx])
            shape = (idx.numel(),) + (1,) * (x.dim() - 1)
            best[idx] = torch.where(take.view(shape), x_adv, best[idx])
            best_obj[idx] = torch.where(take, objective, best_obj[idx])
            keep = ~ok
            if step == steps or not bool(keep.any()):
                break
            d = recon[0].numel()
            grad = (g_cls + weight * 2.0 * (recon - x_adv) / d)[keep]
            idx, ys, x_adv = idx[keep], ys[keep], x_adv[keep]
            x_adv = torch.clamp(x_adv + step_size * grad.sign(), lo[idx], hi[idx]).detach()
    return best.detach()


def detection_rate(clean: Tensor, adversarial: Tensor, fpr: float = 0.05) -> tuple[Tensor, float]:
    """The reconstruction-MSE detector at the threshold that flags a fraction `fpr` of clean
    inputs: (per adversarial input, flagged?) and the threshold."""
    threshold = float(torch.quantile(clean.detach().double().cpu(), 1.0 - fpr))
    return adversarial.detach().cpu().double() > threshold, threshold


def unrolled_gradient(generator: nn.Module, clf: nn.Module, x: Tensor, y: Tensor, *, steps: int,
                      restarts: int, lr: float = REC_LR, momentum: float = MOMENTUM,
                      decay: float = DECAY, rng: torch.Generator | None = None) -> Tensor:  # fmt: skip
    """d CE(clf(G(z_L(x))), y) / dx through all L unrolled descent steps: the gradient the
    official code's white-box attacker differentiated (its reconstruction layer was a
    `tf.while_loop` with back_prop=True). Memory grows with L; use a few images."""
    from repro.defense_gan.projection import initial_latents, lr_schedule

    r, n = restarts, x.shape[0]
    latent_dim = int(generator.latent_dim)
    z = initial_latents(n, r, latent_dim, device=x.device, generator_rng=rng).reshape(r * n, -1)
    with frozen(generator), frozen(clf):
        x_in = x.detach().clone().requires_grad_(True)
        target = x_in.unsqueeze(0).expand(r, *x.shape).reshape(r * n, *x.shape[1:])
        z = z.requires_grad_(True)
        v = torch.zeros_like(z)
        dims = tuple(range(1, target.dim()))
        for rate in lr_schedule(steps, lr, decay):
            loss = (generator(z) - target).square().mean(dim=dims).sum()
            (g,) = torch.autograd.grad(loss, z, create_graph=True)
            v = momentum * v + g
            z = z - rate * v
        recon = generator(z)
        mse = (recon - target).square().mean(dim=dims).view(r, n)
        best = mse.argmin(dim=0)
        chosen = recon.view(r, n, *x.shape[1:])[best, torch.arange(n, device=x.device)]
        out = nn.functional.cross_entropy(clf(chosen), y, reduction="sum")
        (grad,) = torch.autograd.grad(out, x_in)
    return grad.detach()


def input_gradient(clf: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """d CE(clf(x), y) / dx of the bare classifier (the protocol rows' attacker)."""
    with frozen(clf):
        x_in = x.detach().clone().requires_grad_(True)
        loss = nn.functional.cross_entropy(clf(x_in), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x_in)
    return grad.detach()


# --- detection and timing ---------------------------------------------------------------------


def detection_auc(clean: Projection, adversarial: Projection) -> float:
    """ROC AUC of the reconstruction-MSE detector: clean inputs negative, adversarial positive."""
    return roc_auc(clean.mse, adversarial.mse)


def time_projection(generator: nn.Module, x: Tensor, *, steps: int, restarts: int,
                    rng: torch.Generator | None = None, repeats: int = 1) -> float:  # fmt: skip
    """Seconds per image of projecting the batch `x` at (L, R) (best of `repeats`, after warm-up)."""
    project(generator, x[:2], steps=2, restarts=restarts, generator_rng=rng)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        _sync(x.device)
        start = time.perf_counter()
        project(generator, x, steps=steps, restarts=restarts, generator_rng=rng)
        _sync(x.device)
        best = min(best, time.perf_counter() - start)
    return best / x.shape[0]
