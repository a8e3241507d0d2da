"""Robust Soft Label Adversarial Distillation, RSLAD (Zi, Zhao, Ma & Jiang, ICCV 2021).

Paper: "Revisiting Adversarial Robustness Distillation: Robust Soft Labels Make Student Better",
Bojia Zi, Shihao Zhao, Xingjun Ma, Yu-Gang Jiang, https://arxiv.org/abs/2108.07969 (catalog key
`2021_Zi_B_p-iccv_rardrslmsb`); official code zibojia/RSLAD (`rslad_loss.py`,
`resnet18_rslad_cifar10.py`), read, not copied.

Reproduces: the white-box comparison of students (natural, SAT, TRADES, ARD, RSLAD: clean, FGSM,
PGD, CW-inf, AutoAttack) distilled from / compared with a robust teacher. The paper's tables are
CIFAR-10/100 with ResNet-18 / MobileNetV2 students and a WRN-34-10 teacher: none can run here, so
every row of `expected.csv` is recorded as not run and the protocol runs on Fashion-MNIST at
eps = 0.1 as the stated analogue (teacher: the shared TRADES baseline of `small_cnn_wide`;
students: `small_cnn`, half its width). The SAT and TRADES students are the shared baselines
(`repro.baselines`); ARD and RSLAD are trained here with the same data, epochs, optimiser, batch
order and initial weights.

Map from the paper to the code:
- the KL term of every RSLAD loss, written as the official code writes it,
  KL(T(x) || S(.)) = sum_j -log S_j(.) T_j(x) + T_j(x) log(T_j(x) + 1e-5), averaged over
  batch x classes -> `kl_loss`
- the robust soft labels: the teacher's softmax on natural inputs, T(x), teacher frozen in eval
  mode -> `soft_labels`, `teacher_logits`
- inner maximisation, L_max = KL(S(x'), T(x)): x' maximises the summed KL(T(x) || S(x')) by
  `steps` signed-gradient steps inside the eps-ball -> `rslad_inner_max` (through
  `repro.madry_pgd.pgd_linf` with a per-example loss)
- outer minimisation, L_min = alpha KL(S(x'), T(x)) + (1 - alpha) KL(S(x), T(x)), alpha = 5/6
  -> `rslad_loss`
- one training step of RSLAD (soft labels, inner max, outer loss on every batch), as an objective
  of the toolkit's loop -> `rslad_objective`, `repro.train.train_classifier`
- ARD (Goldblum et al., AAAI 2020), the distillation baseline: x' by PGD on the student's
  cross-entropy with the true labels (uniform random start), loss
  alpha tau^2 KL(softmax(T(x) / tau) || softmax(S(x') / tau)) + (1 - alpha) CE(S(x), y), the KL
  with nn.KLDivLoss's default
  element-wise mean, tau = 30 and alpha = 1 (the official main.py's defaults) -> `ard_loss`,
  `ard_objective`
- the students (small_cnn, initialised from the seed exactly as the shared baselines are)
  -> `student_init`
- the teacher (the shared TRADES baseline of small_cnn_wide) and the SAT / TRADES students
  -> `repro.baselines.baseline`
- the paper's own evaluation attack (the official training script's PGD-20, step 0.003 at
  eps 8/255, uniform random start, cross-entropy), step scaled with eps -> `paper_pgd20`

Deviations (each also in README.md, with why):
- Data and models: Fashion-MNIST, eps = 0.1, a 2-conv `small_cnn` student (width 32) and a
  width-64 TRADES teacher instead of CIFAR, ResNet-18/MobileNetV2 and WRN-34-10.
- Optimiser: every student (SAT, TRADES, ARD, RSLAD) uses the shared baselines' recipe, Adam
  lr 1e-3, batch 128, no schedule, `epochs` over `n_train` images, not SGD 0.1 for 300 epochs
  with decays at 215/260/285; the inner maximisation uses the baselines' `steps` and step
  2.5 eps / steps (10 steps of eps / 4 at full, exactly the paper's 10 x 2/255 at 8/255; 7 at
  small, where the shared baselines use 7).
- The inner maximisation starts at x, not at x + 0.001 N(0, I): it runs through the toolkit's
  PGD, which starts from x or a uniform point. The Gaussian start exists in TRADES to leave
  x' = x, where the gradient of KL(f(x) || f(x')) vanishes; RSLAD's KL is between two different
  networks, whose gradient at x' = x is not zero.
- No data augmentation (the paper: random crop and flip on CIFAR).
- ARD with the official main.py's defaults (tau = 30, alpha = 1: no clean cross-entropy term);
  the RSLAD paper's own ARD settings were not read. No IAD (its rows stay not run).
- Evaluation: the project's battery (`repro.robust_eval`) in place of the paper's PGD_SAT /
  PGD_TRADES / CW-inf columns, the official PGD-20 as the paper's attack; the last checkpoint
  only (no best-checkpoint selection). At small the battery runs on 100 test images with the
  reduced AutoAttack (APGD-CE + APGD-T), at smoke on 16 without PGD-100 and CW (time).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro import ReproError
from repro.train import Objective

__all__ = [
    "ALPHA",
    "ARD_ALPHA",
    "ARD_TEMPERATURE",
    "PAPER_STEP_RATIO",
    "ard_loss",
    "ard_objective",
    "kl_loss",
    "paper_pgd20",
    "rslad_inner_max",
    "rslad_loss",
    "rslad_objective",
    "soft_labels",
    "student_init",
    "teacher_logits",
]

#: RSLAD's weight of the adversarial term (the official 5/6.0; the natural term gets 1/6).
ALPHA = 5.0 / 6.0
#: ARD's official defaults (main.py: `--alpha 1.0`, `--temp 30.0`): at alpha = 1 the clean
#: cross-entropy term has weight 0.
ARD_ALPHA = 1.0
ARD_TEMPERATURE = 30.0
#: The official evaluation PGD's step over eps: 0.003 / (8 / 255).
PAPER_STEP_RATIO = 0.003 / (8.0 / 255.0)
#: The `+ 1e-5` inside the official kl_loss's logarithm.
_LOG_EPS = 1e-5


def kl_loss(log_student: Tensor, teacher: Tensor) -> Tensor:
    """The official element-wise KL: -a * b + b * log(b + 1e-5) with a = log S(.), b = T(x).

    Returns the (n, classes) tensor; RSLAD averages it over every element (so over the classes
    too: the official README notes the CIFAR-100 loss is 10x smaller for this reason).
    """
    if log_student.shape != teacher.shape:
        raise ReproError(
            f"kl_loss: student {tuple(log_student.shape)} and teacher {tuple(teacher.shape)} differ"
        )
    return -log_student * teacher + teacher * torch.log(teacher + _LOG_EPS)


@torch.no_grad()
def teacher_logits(teacher: nn.Module, x: Tensor, *, batch_size: int = 1000) -> Tensor:
    """The teacher's logits on natural inputs, in eval mode without gradients (the teacher's
    mode is restored)."""
    was_training = teacher.training
    teacher.eval()
    try:
        out = [teacher(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)]
    finally:
        teacher.train(was_training)
    if not out:
        raise ReproError("teacher_logits of an empty batch")
    return torch.cat(out)


def soft_labels(teacher: nn.Module, x: Tensor, *, batch_size: int = 1000) -> Tensor:
    """The teacher's robust soft labels T(x) = softmax(teacher(x)) on natural inputs."""
    return F.softmax(teacher_logits(teacher, x, batch_size=batch_size), dim=1)


def rslad_inner_max(
    student: nn.Module,
    x: Tensor,
    teacher_probs: Tensor,
    *,
    eps: float,
    step_size: float,
    steps: int,
) -> Tensor:
    """x' = argmax_{||x' - x||inf <= eps} sum_i KL(T(x_i) || S(x'_i)) by `steps` sign steps from x.

    The official inner loss is torch's `KLDivLoss(reduction="none")` summed: sum_j T_j (log T_j -
    log S_j(x')). It runs through `repro.madry_pgd.pgd_linf` with a per-example loss; the labels
    it passes to the loss are the rows' indices into `teacher_probs`. Returns a detached tensor;
    the student is left as it was.
    """
    from repro.madry_pgd import pgd_linf

    if teacher_probs.shape[0] != x.shape[0]:
        raise ReproError(
            f"rslad_inner_max: {x.shape[0]} inputs but {teacher_probs.shape[0]} soft labels"
        )
    probs = teacher_probs.detach()
    log_probs = torch.log(probs.clamp_min(1e-30))

    def kl(logits: Tensor, rows: Tensor) -> Tensor:
        p = probs[rows]
        return (p * (log_probs[rows] - F.log_softmax(logits, dim=1))).sum(dim=1)

    rows = torch.arange(x.shape[0], device=x.device)
    return pgd_linf(student, x, rows, eps=eps, step_size=step_size, steps=steps,
                    random_start=False, loss=kl)  # fmt: skip


def rslad_loss(
    student: nn.Module, x: Tensor, x_adv: Tensor, teacher_probs: Tensor, *, alpha: float = ALPHA
) -> Tensor:
    """L_min = alpha mean KL(T(x) || S(x')) + (1 - alpha) mean KL(T(x) || S(x)) (`kl_loss`)."""
    adv = kl_loss(F.log_softmax(student(x_adv), dim=1), teacher_probs).mean()
    nat = kl_loss(F.log_softmax(student(x), dim=1), teacher_probs).mean()
    return alpha * adv + (1.0 - alpha) * nat


def rslad_objective(
    teacher: nn.Module, *, eps: float, step_size: float, steps: int, alpha: float = ALPHA
) -> Objective:
    """RSLAD as a `repro.train.train_classifier` objective: per batch, the teacher's soft labels
    on x, the inner maximisation on the (frozen) student, then `rslad_loss`. The labels y are
    not used: RSLAD trains on the teacher's soft labels only."""

    def objective(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        probs = soft_labels(teacher, x)
        x_adv = rslad_inner_max(model, x, probs, eps=eps, step_size=step_size, steps=steps)
        return rslad_loss(model, x, x_adv, probs, alpha=alpha)

    return objective


def ard_loss(
    student: nn.Module,
    x: Tensor,
    x_adv: Tensor,
    y: Tensor,
    teacher_logits: Tensor,
    *,
    temperature: float = ARD_TEMPERATURE,
    alpha: float = ARD_ALPHA,
) -> Tensor:
    """ARD: alpha tau^2 KL(S(x') / tau || T(x) / tau) (element-wise mean, `nn.KLDivLoss`'s
    default) + (1 - alpha) CE(S(x), y)."""
    soft = F.softmax(teacher_logits.detach() / temperature, dim=1)
    log_adv = F.log_softmax(student(x_adv) / temperature, dim=1)
    loss = alpha * temperature**2 * F.kl_div(log_adv, soft, reduction="none").mean()
    if alpha < 1.0:
        loss = loss + (1.0 - alpha) * F.cross_entropy(student(x), y)
    return loss


def ard_objective(
    teacher: nn.Module,
    *,
    eps: float,
    step_size: float,
    steps: int,
    temperature: float = ARD_TEMPERATURE,
    alpha: float = ARD_ALPHA,
    generator: torch.Generator | None = None,
) -> Objective:
    """ARD as a `train_classifier` objective: x' by `repro.madry_pgd.pgd_linf` (cross-entropy
    with the true labels, uniform random start) on the frozen student, then `ard_loss`."""
    from repro.madry_pgd import pgd_linf

    def objective(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        logits = teacher_logits(teacher, x)
        x_adv = pgd_linf(model, x, y, eps=eps, step_size=step_size, steps=steps,
                         generator=generator)  # fmt: skip
        return ard_loss(model, x, x_adv, y, logits, temperature=temperature, alpha=alpha)

    return objective


def student_init(seed: int = 0, arch: str = "small_cnn") -> nn.Module:
    """An untrained student with the shared baselines' initial weights for `seed` (they seed the
    global RNG with it and build the architecture); the global RNG is left as it was."""
    from repro.baselines import ARCHITECTURES

    if arch not in ARCHITECTURES:
        raise ReproError(
            f"student_init: unknown architecture {arch!r}; known: {sorted(ARCHITECTURES)}"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ARCHITECTURES[arch]()


def paper_pgd20(
    *, eps: float, generator: torch.Generator | None = None
) -> Callable[[nn.Module, Tensor, Tensor], Tensor]:
    """The official evaluation attack (PGD-20, CE, uniform random start, step 0.003 at eps 8/255)
    with its step scaled to `eps`, as a `repro.train.Attack`."""
    from repro.madry_pgd import pgd_linf

    def attack(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        return pgd_linf(model, x, y, eps=eps, step_size=PAPER_STEP_RATIO * eps, steps=20,
                        generator=generator)  # fmt: skip

    return attack
