"""Wong & Kolter's dual network: certification throughput and one robust training epoch, on CPU.

    python benchmarks/bench_wong_kolter.py [--device cpu|cuda] [--json OUT] [--n N] ...

Two networks of `repro.wong_kolter`: the paper's conv net (`mnist_model`, the `full` scale's) and
the CPU scales' MLP (`mlp_model((100, 100))`). For each, on Fashion-MNIST at eps 0.1, batch 50
(the paper's), fp32 with TF32 off:

- one robust training epoch (Adam 1e-3 on the robust cross-entropy, v0.2's gradients) and one
  normal epoch on the same images, and their ratio. The MLP's epoch is timed whole on `--n-train`
  images; the conv net's from `--conv-steps` batches, extrapolated to an epoch of `--n-train`
  images and to the paper's 60,000 (a CPU epoch of it takes hours);
- certification of the first `--n` test images (`certify`, the layer bounds by the dual network
  run backwards per layer, the default), in examples per second, with the model as trained above
  (the throughput falls with the number of crossing ReLUs: a model early in training is the slow
  case);
- the same bounds by Algorithm 1 as printed (forwards, `mode="algorithm1"`) on `--n-modes`
  images, and the largest difference between the two modes' certified margins;
- the matmul/convolution FLOPs of one robust step (torch.utils.flop_counter), per step and per
  60,000-image epoch, and the rate this device achieved: the device-independent size of `full`,
  from which a GPU's epoch time is bounded below (FLOPs / its peak) before any GPU has run it.

Timings are wall seconds on this process's threads (`torch.get_num_threads()`, printed); on a
shared machine run with one thread. Exit status 0: a measurement, not a test.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import harness
import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _epoch(model, x, y, batch: int, objective, device) -> tuple[float, int]:
    """Seconds for one pass of Adam over (x, y) in batches; the number of batches."""
    from repro.train import train_classifier

    _sync(device)
    start = time.perf_counter()
    train_classifier(model, x, y, epochs=1, batch_size=batch, lr=1e-3, objective=objective,
                     generator=torch.Generator().manual_seed(0), progress=False)  # fmt: skip
    _sync(device)
    return time.perf_counter() - start, (len(y) + batch - 1) // batch


def _step_gflop(model, x, y, objective) -> float:
    """Matmul and convolution GFLOP of one robust training step (forward and backward) on the
    batch (x, y), counted by torch.utils.flop_counter on a copy of the model: the arithmetic a
    device must do whatever its speed (elementwise work not counted, so a lower bound)."""
    import copy

    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    clone = copy.deepcopy(model)
    with counter:
        objective(clone, x, y).backward()
    return counter.get_total_flops() / 1e9


def bench_network(name: str, args: argparse.Namespace, data) -> dict[str, Any]:
    from repro.env import forked_global_rng, seed_everything
    from repro.wong_kolter import (
        certify,
        dual_objective,
        exact_fp32,
        layer_bounds,
        margin_matrix,
        mlp_model,
        mnist_model,
        robust_loss,
    )

    device = data["device"]
    gen = seed_everything(args.seed)
    build = mnist_model if name == "mnist_model" else lambda: mlp_model((100, 100))
    with forked_global_rng(gen):
        robust = build().to(device)
    natural = build().to(device)
    natural.load_state_dict(robust.state_dict())
    eps, batch = args.eps, args.batch
    n_train = args.n_train
    timed = n_train if name != "mnist_model" else min(n_train, args.conv_steps * batch)
    x_tr, y_tr = data["x_train"][:timed], data["y_train"][:timed]

    def objective(model, xb, yb):
        return robust_loss(model, eps, xb, yb)[0]

    with exact_fp32():
        robust_s, steps = _epoch(robust, x_tr, y_tr, batch, objective, device)
        natural_s, _ = _epoch(natural, x_tr, y_tr, batch, None, device)
        per_step = robust_s / steps
        step_gflop = _step_gflop(robust, x_tr[:batch], y_tr[:batch], objective)
        robust.eval()
        n = args.n if name != "mnist_model" else args.n_conv
        x, y = data["x_test"][:n], data["y_test"][:n]
        certify(robust, x[:batch], y[:batch], eps)  # warm-up
        _sync(device)
        start = time.perf_counter()
        cert = certify(robust, x, y, eps, batch_size=batch)
        _sync(device)
        cert_s = time.perf_counter() - start
        k = min(args.n_modes, n)
        modes = {}
        margins = {}
        for mode in ("dual", "algorithm1"):
            _sync(device)
            start = time.perf_counter()
            with torch.no_grad():
                bounds = layer_bounds(robust, x[:k], eps, mode=mode)
                margins[mode] = dual_objective(bounds, margin_matrix(y[:k], 10))
            _sync(device)
            modes[mode] = k / (time.perf_counter() - start)
    diff = float((margins["dual"] - margins["algorithm1"]).abs().max())
    return {
        "timed_train_images": timed,
        "robust_step_seconds": per_step,
        "robust_epoch_seconds": per_step * ((n_train + batch - 1) // batch),
        "robust_epoch_seconds_60k": per_step * (60000 // batch),
        "robust_epoch_measured_whole": timed == n_train,
        "natural_epoch_seconds": natural_s / steps * ((n_train + batch - 1) // batch),
        "robust_over_natural": robust_s / natural_s,
        # arithmetic, device-independent: what a GPU's sustained TFLOP/s turns into an epoch time
        "robust_step_gflop": step_gflop,
        "robust_epoch_tflop_60k": step_gflop * (60000 // batch) / 1e3,
        "achieved_tflops": step_gflop / per_step / 1e3,
        "certify_images": n,
        "certify_images_per_s": n / cert_s,
        "certified_pct": 100.0 * float(cert.certified.float().mean()),
        "modes_images": k,
        "modes_images_per_s": modes,
        "modes_max_abs_margin_diff": diff,
    }


def bench(args: argparse.Namespace) -> dict[str, Any]:
    from repro.data import load_dataset
    from repro.env import device_name, pick_device

    device = pick_device(args.device)
    train = load_dataset("fashion_mnist", "train", device=device)
    test = load_dataset("fashion_mnist", "test", device=device)
    data = {"device": device, "x_train": train.x, "y_train": train.y, "x_test": test.x,
            "y_test": test.y}  # fmt: skip
    report: dict[str, Any] = {
        "device": device_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "eps": args.eps,
        "batch": args.batch,
        "n_train": args.n_train,
        "networks": {},
    }
    for name in args.networks:
        report["networks"][name] = bench_network(name, args, data)
    return report


def print_table(report: dict[str, Any]) -> None:
    print(
        f"\nWong & Kolter dual network on {report['device']} ({report['threads']} threads), "
        f"Fashion-MNIST, eps {report['eps']}, batch {report['batch']}"
    )
    head = (
        f"{'network':<12} {'step s':>8} {'epoch s':>9} {'60k epoch s':>12} {'x natural':>10} "
        f"{'certify img/s':>14} {'certified %':>12} {'alg.1 img/s':>12} {'dual img/s':>11}"
    )
    print(head)
    print("-" * len(head))
    for name, a in report["networks"].items():
        print(
            f"{name:<12} {a['robust_step_seconds']:>8.3f} {a['robust_epoch_seconds']:>9.1f} "
            f"{a['robust_epoch_seconds_60k']:>12.0f} {a['robust_over_natural']:>10.1f} "
            f"{a['certify_images_per_s']:>14.2f} {a['certified_pct']:>12.1f} "
            f"{a['modes_images_per_s']['algorithm1']:>12.2f} "
            f"{a['modes_images_per_s']['dual']:>11.2f}"
        )
    for name, a in report["networks"].items():
        print(
            f"{name}: one robust step is {a['robust_step_gflop']:.1f} GFLOP of matmul/conv "
            f"(a 60,000-image epoch {a['robust_epoch_tflop_60k']:.1f} TFLOP); achieved here "
            f"{a['achieved_tflops'] * 1e3:.2f} GFLOP/s"
        )
    print(
        f"epoch: {report['n_train']} images (the conv net's extrapolated from its timed batches); "
        "x natural: robust epoch / normal epoch; alg.1 vs dual: the same bounds, forwards as "
        "printed vs backwards per layer (max margin difference in the JSON)"
    )


def _defaults(args: argparse.Namespace, cuda: bool) -> None:
    args.n = args.n or (10000 if cuda else 1000)
    args.n_conv = args.n_conv or (10000 if cuda else 50)
    args.conv_steps = args.conv_steps or (200 if cuda else 2)
    args.n_modes = args.n_modes or (50 if cuda else 10)


def main(argv: list[str] | None = None) -> int:
    parser = harness.parser(__doc__)
    parser.add_argument("--networks", nargs="+", default=["mlp_100_100", "mnist_model"],
                        choices=["mlp_100_100", "mnist_model"])  # fmt: skip
    parser.add_argument("--n", type=int, default=None, help="MLP images to certify (cpu 1000)")
    parser.add_argument("--n-conv", type=int, default=None, help="conv images (cpu 50)")
    parser.add_argument("--n-train", type=int, default=10000, help="epoch size (default 10000)")
    parser.add_argument("--conv-steps", type=int, default=None, help="conv batches timed (cpu 2)")
    parser.add_argument("--n-modes", type=int, default=None, help="images for Alg. 1 (cpu 10)")
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--eps", type=float, default=0.1)
    return harness.run(parser.parse_args(argv), _defaults, bench, print_table)


if __name__ == "__main__":
    sys.exit(main())
