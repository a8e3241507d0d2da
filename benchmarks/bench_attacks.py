"""Our FGSM and PGD against torchattacks' FGSM and PGD: same model, same inputs, one run.

    python benchmarks/bench_attacks.py [--device cpu|cuda] [--json OUT] [--n N] [--repeats R]

The model is the Madry et al. MNIST CNN (`repro.madry_pgd.madry_cnn`), trained naturally for a
short while on Fashion-MNIST so that its accuracy under the attacks is neither 0 nor 100% (an
agreement check on a model every attack fools completely would prove nothing). Both libraries
attack the same images with the same settings; PGD runs with random start OFF so that the two
implementations compute the same iterates and their robust accuracies must agree.

Reported per attack: throughput (images/s over `--repeats` passes, timed batch by batch with
the two libraries back to back in alternating order, so that the load of a shared machine weighs
on both alike), the ratio ours / theirs (goal: >= 1) and the median of the per-batch ratios, the
robust accuracy of each (plain accuracy on the adversarial images) and its difference (goal:
<= 0.5 points), and how many adversarial images are bit-identical. Exit status 0 even when a goal is
missed: this is a measurement, not a test; the JSON says `goal_met` per attack.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import harness
import torch
from torch import Tensor, nn

GOAL_RATIO = 1.0
GOAL_POINTS = 0.5


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _run(attack: Callable[[Tensor, Tensor], Tensor], x: Tensor, y: Tensor, batch: int) -> Tensor:
    return torch.cat([attack(x[i : i + batch], y[i : i + batch]) for i in range(0, len(x), batch)])


def _paired_times(
    ours: Callable[[Tensor, Tensor], Tensor],
    theirs: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    y: Tensor,
    batch: int,
    repeats: int,
    device: torch.device,
) -> dict[str, list[float]]:
    """Seconds per batch for each library, measured in pairs: for every batch of every repeat the
    two libraries run back to back, in alternating order. On a shared machine the load changes
    within seconds; pairing puts the same load on both sides of each comparison."""
    times: dict[str, list[float]] = {"ours": [], "theirs": []}
    calls = {"ours": ours, "theirs": theirs}
    for r in range(repeats):
        for k, i in enumerate(range(0, len(x), batch)):
            xb, yb = x[i : i + batch], y[i : i + batch]
            order = ("ours", "theirs") if (r + k) % 2 == 0 else ("theirs", "ours")
            for who in order:
                _sync(device)
                start = time.perf_counter()
                calls[who](xb, yb)
                _sync(device)
                times[who].append(time.perf_counter() - start)
    return times


def _accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    from repro.train import accuracy

    return 100.0 * accuracy(model, x, y)


def build_model(args: argparse.Namespace, device: torch.device) -> tuple[nn.Module, Tensor, Tensor]:
    """A naturally trained Madry CNN and the test images to attack."""
    from repro.data import load_dataset
    from repro.env import seed_everything
    from repro.madry_pgd import madry_cnn
    from repro.train import train_classifier

    gen = seed_everything(args.seed)
    train = load_dataset("fashion_mnist", "train", device=device)
    test = load_dataset("fashion_mnist", "test", device=device)
    model = madry_cnn(width=args.width, init="default").to(device)
    train_classifier(
        model,
        train.x[: args.n_train],
        train.y[: args.n_train],
        epochs=1,
        batch_size=128,
        lr=1e-3,
        generator=gen,
        desc="bench model",
        progress=False,
    )
    model.eval()
    return model, test.x[: args.n], test.y[: args.n]


def bench(args: argparse.Namespace) -> dict[str, Any]:
    import torchattacks

    from repro.env import device_name, pick_device
    from repro.fgsm import fgsm
    from repro.madry_pgd import pgd_linf

    device = pick_device(args.device)
    model, x, y = build_model(args, device)
    eps, steps = args.eps, args.steps
    step = args.step_size if args.step_size else eps / 4
    pairs = {
        "fgsm": (
            lambda xb, yb: fgsm(model, xb, yb, eps=eps),
            torchattacks.FGSM(model, eps=eps),
        ),
        "pgd": (
            lambda xb, yb: pgd_linf(
                model, xb, yb, eps=eps, step_size=step, steps=steps, random_start=False
            ),
            torchattacks.PGD(model, eps=eps, alpha=step, steps=steps, random_start=False),
        ),
    }
    clean = _accuracy(model, x, y)
    report: dict[str, Any] = {
        "device": device_name(device),
        "torch": torch.__version__,
        "torchattacks": torchattacks.__version__,
        "threads": torch.get_num_threads(),
        "model": f"madry_cnn(width={args.width}) trained 1 epoch on {args.n_train} F-MNIST images",
        "n": len(y),
        "batch": args.batch,
        "eps": eps,
        "pgd": {"steps": steps, "step_size": step, "random_start": False},
        "clean_accuracy": clean,
        "repeats": args.repeats,
        "attacks": {},
    }
    for name, (ours, theirs) in pairs.items():
        adv_ours = _run(ours, x, y, args.batch)  # also the warm-up
        adv_theirs = _run(theirs, x, y, args.batch)
        times = _paired_times(ours, theirs, x, y, args.batch, args.repeats, device)
        images = len(y) * args.repeats
        tput = {who: images / sum(ts) for who, ts in times.items()}
        pair_ratios = [t / o for o, t in zip(times["ours"], times["theirs"], strict=True)]
        acc = {"ours": _accuracy(model, adv_ours, y), "theirs": _accuracy(model, adv_theirs, y)}
        ratio = tput["ours"] / tput["theirs"]
        diff = abs(acc["ours"] - acc["theirs"])
        same = (adv_ours == adv_theirs).flatten(1).all(dim=1).float().mean().item()
        report["attacks"][name] = {
            "images_per_s": tput,
            "seconds_per_batch": times,
            "throughput_ratio": ratio,
            "throughput_ratio_median_pair": statistics.median(pair_ratios),
            "robust_accuracy": acc,
            "accuracy_diff_points": diff,
            "identical_images_pct": 100.0 * same,
            "max_abs_diff": float((adv_ours - adv_theirs).abs().max()),
            "goal_met": ratio >= GOAL_RATIO and diff <= GOAL_POINTS,
        }
    return report


def print_table(report: dict[str, Any]) -> None:
    print(
        f"\nattacks vs torchattacks {report['torchattacks']} on {report['device']} "
        f"({report['threads']} threads): {report['n']} images, batch {report['batch']}, "
        f"eps {report['eps']}, PGD {report['pgd']['steps']} steps of "
        f"{report['pgd']['step_size']:.4g} without random start; clean accuracy "
        f"{report['clean_accuracy']:.1f}%"
    )
    head = (
        f"{'attack':<6} {'ours img/s':>11} {'theirs img/s':>13} {'ratio':>6} {'median':>7} "
        f"{'ours acc%':>10} {'theirs acc%':>12} {'diff':>6} {'identical%':>11} {'goal':>5}"
    )
    print(head)
    print("-" * len(head))
    for name, a in report["attacks"].items():
        print(
            f"{name:<6} {a['images_per_s']['ours']:>11.1f} {a['images_per_s']['theirs']:>13.1f} "
            f"{a['throughput_ratio']:>6.2f} {a['throughput_ratio_median_pair']:>7.2f} "
            f"{a['robust_accuracy']['ours']:>10.2f} "
            f"{a['robust_accuracy']['theirs']:>12.2f} {a['accuracy_diff_points']:>6.2f} "
            f"{a['identical_images_pct']:>11.1f} {'yes' if a['goal_met'] else 'NO':>5}"
        )
    print(
        f"img/s over {report['repeats']} passes timed batch by batch in pairs (median of the "
        "per-batch ratios beside it); goals: "
        f"ratio >= {GOAL_RATIO}, |accuracy difference| <= {GOAL_POINTS} points"
    )


def _defaults(args: argparse.Namespace, cuda: bool) -> None:
    args.n = args.n or (10000 if cuda else 500)
    args.n_train = args.n_train or (60000 if cuda else 5000)
    args.batch = args.batch or (1000 if cuda else 100)


def main(argv: list[str] | None = None) -> int:
    parser = harness.parser(__doc__)
    parser.add_argument(
        "--n", type=int, default=None, help="images to attack (cpu 500, cuda 10000)"
    )
    parser.add_argument("--n-train", type=int, default=None, help="training images (cpu 5000)")
    parser.add_argument("--batch", type=int, default=None, help="attack batch (cpu 100, cuda 1000)")
    parser.add_argument("--eps", type=float, default=0.03, help="l_inf budget (default 0.03)")
    parser.add_argument("--steps", type=int, default=10, help="PGD steps (default 10)")
    parser.add_argument("--step-size", type=float, default=None, help="PGD step (default eps/4)")
    parser.add_argument("--width", type=float, default=1.0, help="CNN width (1.0 = the paper's)")
    parser.add_argument("--repeats", type=int, default=7, help="timed passes per library")
    return harness.run(parser.parse_args(argv), _defaults, bench, print_table)


if __name__ == "__main__":
    sys.exit(main())
