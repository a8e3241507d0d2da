"""Our DeepFool against torchattacks' DeepFool, and box-constrained L-BFGS against DeepFool.

    python benchmarks/bench_deepfool.py [--device cpu|cuda] [--json OUT] [--n N] [--repeats R]

Both networks of DeepFool's Table 1 (LeNet and FC500-150-10, `repro.deepfool`) are trained
naturally for a short while on Fashion-MNIST; each DeepFool implementation then attacks the same
test images with the same settings (l2, overshoot 0.02, at most 50 iterations, every class a
candidate, the true labels, iterates clipped to [0, 1]). torchattacks loops over the images and
over the classes in Python (one backward pass per class and image); ours runs the whole batch
with one vectorised backward call per iteration (`repro.deepfool.boundary_terms`).

Reported per network: throughput (images/s over `--repeats` passes, timed batch by batch with the
two libraries back to back in alternating order, so that the load of a shared machine weighs on
both alike), the ratio ours / theirs (goal: >= 20) and the median of the per-batch ratios, the
median rho = ||r||_2 / ||x||_2 over the images both fooled (goal: ours no larger than theirs), and
each one's fooling rate. The two differ in one detail: torchattacks multiplies each step by
1 + overshoot, ours the accumulated perturbation (the official code's way); both are DeepFool.

Then L-BFGS (`repro.szegedy_lbfgs.lbfgs_attack`, towards the runner-up class, the line search over
c of the `small` scale: 6 values, 30 iterations each) on the first `--n-lbfgs` images: images/s
and the median rho against DeepFool's on the same images. Exit status 0 even when a goal is
missed: this is a measurement, not a test; the JSON says `goal_met` per network.
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

GOAL_RATIO = 20.0
OVERSHOOT = 0.02
STEPS = 50


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _run(attack: Callable[[Tensor, Tensor], Tensor], x: Tensor, y: Tensor, batch: int) -> Tensor:
    return torch.cat([attack(x[i : i + batch], y[i : i + batch]) for i in range(0, len(x), batch)])


def _paired_times(
    calls: dict[str, Callable[[Tensor, Tensor], Tensor]],
    x: Tensor,
    y: Tensor,
    batch: int,
    repeats: int,
    device: torch.device,
) -> dict[str, list[float]]:
    """Seconds per batch for each library, measured in pairs (alternating which runs first)."""
    times: dict[str, list[float]] = {who: [] for who in calls}
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


def build_models(
    args: argparse.Namespace, device: torch.device
) -> tuple[dict[str, nn.Module], Tensor, Tensor]:
    """LeNet and FC500-150-10 trained naturally (1 epoch), and the test images to attack."""
    from repro.data import load_dataset
    from repro.deepfool import fc_500_150, lenet
    from repro.env import forked_global_rng, seed_everything
    from repro.train import train_classifier

    gen = seed_everything(args.seed)
    train = load_dataset("fashion_mnist", "train", device=device)
    test = load_dataset("fashion_mnist", "test", device=device)
    models = {}
    for name, build in (("lenet", lenet), ("fc500_150", fc_500_150)):
        with forked_global_rng(gen):
            model = build().to(device)
        train_classifier(model, train.x[: args.n_train], train.y[: args.n_train], epochs=1,
                         batch_size=64, lr=1e-3, generator=gen, desc=name, progress=False)  # fmt: skip
        models[name] = model.eval()
    return models, test.x[: args.n], test.y[: args.n]


def _median(values: Tensor) -> float:
    return float(values.median()) if values.numel() else float("nan")


def bench_network(
    name: str, model: nn.Module, x: Tensor, y: Tensor, args: argparse.Namespace
) -> dict[str, Any]:
    import torchattacks

    from repro.deepfool import deepfool, rho_adv
    from repro.szegedy_lbfgs import lbfgs_attack, runner_up
    from repro.train import predict

    device = x.device
    theirs_attack = torchattacks.DeepFool(model, steps=STEPS, overshoot=OVERSHOOT)
    calls = {
        "ours": lambda xb, yb: deepfool(model, xb, yb, overshoot=OVERSHOOT, max_iter=STEPS),
        "theirs": lambda xb, yb: theirs_attack(xb, yb),
    }
    adv = {who: _run(call, x, y, args.batch) for who, call in calls.items()}  # also the warm-up
    times = _paired_times(calls, x, y, args.batch, args.repeats, device)
    images = len(y) * args.repeats
    tput = {who: images / sum(ts) for who, ts in times.items()}
    pair_ratios = [t / o for o, t in zip(times["ours"], times["theirs"], strict=True)]
    right = predict(model, x) == y
    fooled = {who: right & (predict(model, a) != y) for who, a in adv.items()}
    both = fooled["ours"] & fooled["theirs"]
    rho = {who: rho_adv(x[both], a[both]) for who, a in adv.items()}
    median_rho = {who: _median(r) for who, r in rho.items()}
    ratio = tput["ours"] / tput["theirs"]

    n_lb = min(args.n_lbfgs, len(y))
    x_lb, y_lb = x[:n_lb], y[:n_lb]
    keep = right[:n_lb]
    _sync(device)
    start = time.perf_counter()
    lb = lbfgs_attack(model, x_lb[keep], runner_up(model, x_lb[keep], y_lb[keep]),
                      search_steps=args.lbfgs_search_steps, max_iter=args.lbfgs_max_iter)  # fmt: skip
    _sync(device)
    lb_seconds = time.perf_counter() - start
    ours_lb = adv["ours"][:n_lb][keep]
    ok = lb.success & (predict(model, ours_lb) != y_lb[keep])
    return {
        "images_per_s": tput,
        "seconds_per_batch": times,
        "throughput_ratio": ratio,
        "throughput_ratio_median_pair": statistics.median(pair_ratios),
        "fooling_rate": {who: float(f.float().sum() / right.float().sum()) for who, f in fooled.items()},
        "median_rho": median_rho,
        "rho_images": int(both.sum()),
        "goal_met": ratio >= GOAL_RATIO and median_rho["ours"] <= median_rho["theirs"],
        "lbfgs": {
            "images": int(keep.sum()),
            "images_per_s": float(keep.sum()) / lb_seconds,
            "success_rate": float(lb.success.float().mean()),
            "median_rho": _median(rho_adv(x_lb[keep][ok], lb.x_adv[ok])),
            "deepfool_median_rho_same_images": _median(rho_adv(x_lb[keep][ok], ours_lb[ok])),
            "search_steps": args.lbfgs_search_steps,
            "max_iter": args.lbfgs_max_iter,
        },
    }  # fmt: skip


def bench(args: argparse.Namespace) -> dict[str, Any]:
    import torchattacks

    from repro.env import device_name, pick_device
    from repro.train import accuracy

    device = pick_device(args.device)
    models, x, y = build_models(args, device)
    report: dict[str, Any] = {
        "device": device_name(device),
        "torch": torch.__version__,
        "torchattacks": torchattacks.__version__,
        "threads": torch.get_num_threads(),
        "n": len(y),
        "n_train": args.n_train,
        "batch": args.batch,
        "repeats": args.repeats,
        "deepfool": {"overshoot": OVERSHOOT, "steps": STEPS, "norm": "l2", "clip": [0.0, 1.0]},
        "networks": {},
    }
    for name, model in models.items():
        entry = bench_network(name, model, x, y, args)
        entry["clean_accuracy"] = 100.0 * accuracy(model, x, y)
        report["networks"][name] = entry
    return report


def print_table(report: dict[str, Any]) -> None:
    print(
        f"\nDeepFool vs torchattacks {report['torchattacks']} on {report['device']} "
        f"({report['threads']} threads): {report['n']} Fashion-MNIST test images, batch "
        f"{report['batch']}, overshoot {OVERSHOOT}, at most {STEPS} iterations"
    )
    head = (
        f"{'network':<10} {'ours img/s':>11} {'theirs img/s':>13} {'ratio':>7} {'median':>7} "
        f"{'ours rho':>9} {'theirs rho':>11} {'fooled o/t %':>13} {'goal':>5}"
    )
    print(head)
    print("-" * len(head))
    for name, a in report["networks"].items():
        fooled = f"{100 * a['fooling_rate']['ours']:.0f}/{100 * a['fooling_rate']['theirs']:.0f}"
        print(
            f"{name:<10} {a['images_per_s']['ours']:>11.1f} {a['images_per_s']['theirs']:>13.2f} "
            f"{a['throughput_ratio']:>7.1f} {a['throughput_ratio_median_pair']:>7.1f} "
            f"{a['median_rho']['ours']:>9.4f} {a['median_rho']['theirs']:>11.4f} {fooled:>13} "
            f"{'yes' if a['goal_met'] else 'NO':>5}"
        )
    print(f"goals: ratio >= {GOAL_RATIO}, ours' median rho <= theirs (rho over images both fooled)")
    print(
        f"\n{'network':<10} {'L-BFGS img/s':>13} {'success %':>10} {'L-BFGS rho':>11} {'DeepFool rho':>13}"
    )
    for name, a in report["networks"].items():
        lb = a["lbfgs"]
        print(
            f"{name:<10} {lb['images_per_s']:>13.2f} {100 * lb['success_rate']:>10.0f} "
            f"{lb['median_rho']:>11.4f} {lb['deepfool_median_rho_same_images']:>13.4f}"
        )
    print("L-BFGS towards the runner-up class; medians over the images both attacks fooled")


def _defaults(args: argparse.Namespace, cuda: bool) -> None:
    args.n = args.n or (2000 if cuda else 100)
    args.batch = args.batch or (500 if cuda else 100)
    args.repeats = args.repeats or (3 if cuda else 1)


def main(argv: list[str] | None = None) -> int:
    parser = harness.parser(__doc__)
    parser.add_argument("--n", type=int, default=None, help="images to attack (cpu 100, cuda 2000)")
    parser.add_argument("--n-train", type=int, default=5000, help="training images (default 5000)")
    parser.add_argument("--batch", type=int, default=None, help="attack batch (cpu 100, cuda 500)")
    parser.add_argument("--repeats", type=int, default=None, help="timed passes (cpu 1, cuda 3)")
    parser.add_argument("--n-lbfgs", type=int, default=50, help="images for L-BFGS (default 50)")
    parser.add_argument("--lbfgs-search-steps", type=int, default=6)
    parser.add_argument("--lbfgs-max-iter", type=int, default=30)
    return harness.run(parser.parse_args(argv), _defaults, bench, print_table)


if __name__ == "__main__":
    sys.exit(main())
