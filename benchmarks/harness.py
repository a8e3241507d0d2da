"""What the attack benchmarks share: the common options, device-dependent defaults, one-line
errors and the JSON report (`python benchmarks/bench_X.py --json FILE`; `nox -s bench` runs all).

Benchmarks are scripts, so they import this as a sibling module (their folder is on sys.path).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser with the options every attack benchmark takes."""
    p = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    p.add_argument("--json", type=Path, help="write the report as JSON here")
    p.add_argument("--seed", type=int, default=0)
    return p


def run(
    args: argparse.Namespace,
    defaults: Callable[[argparse.Namespace, bool], None],
    bench: Callable[[argparse.Namespace], dict[str, Any]],
    print_table: Callable[[dict[str, Any]], None],
) -> int:
    """Fill the options left unset for the device (`defaults(args, cuda)`), run `bench`, print
    its table and write the JSON report; a `ReproError` is one line on stderr and exit status 1."""
    from repro import ReproError
    from repro.env import pick_device

    try:
        defaults(args, pick_device(args.device).type == "cuda")
        report = bench(args)
    except ReproError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print_table(report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0
