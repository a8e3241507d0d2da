"""The runner: execute a reproduction's notebook, compare with the paper, record the run.

`repro run SLUG` is `run_reproduction(SLUG, ...)`, which is three steps with clean boundaries, so
that other drivers (the nightly, a SLURM executor, reuse of unchanged runs) can recombine them:

1. `execute_run(slug, ...) -> RunResult`: checks the folder (repro.toml, expected.csv, claims.py)
   before spending any time, reads `reproduce.py` with Jupytext, executes it with papermill into a
   fresh `runs/<slug>/<run-id>/` (parameters `scale` (resolved), `device`, `seed`, `data_dir`,
   `out_dir` = the run directory), then writes `summary.json` (`write_summary`). A notebook
   exception is a failed run: its traceback goes into the summary, the partial results stay.
2. `summarize(...)` (pure): results.json + expected.csv + claims -> the summary's rows and claims,
   with the verdict rules below.
3. `store_summary(summary, run_dir)`: stores it in the catalog (`catalog.runs.store_run`) in one
   transaction; the nightly's ingest does the same from the summary file alone.

Verdicts (per expected.csv row): `catalog/compare.py` states and applies the rules (`match` /
`deviates` at `full` only; `not_compared` with the reason otherwise; `not_run` with the reason).

Progress: papermill runs with `log_output=True`; the notebook's output (its tqdm bars for training
and attacks, `[record]` lines) is echoed live, and each code cell announces itself
(`── cell 3/12: model = ...`), so a run of many minutes never looks frozen. Papermill's own
cell progress bar is replaced by those cell lines because two bars on one stderr line overwrite
each other.

The kernel is the `python3` kernelspec, forced to this very interpreter (`sys.executable`), so a
user-level `python3` kernelspec pointing at another Python cannot run the notebook without torch.
Its environment is the runner's, plus: `ADVREPRO_ROOT` (the project the runner found, so that the
notebook reads the same repro.toml whatever its working directory), and `REPRO_OFFLINE=1` when
downloading is forbidden. CPU threads: torch's default (one per core) unless `threads` is given,
in which case the kernel runs `torch.set_num_threads(threads)` before the first cell (and gets
`OMP_NUM_THREADS`); no repro.toml pins them.

Data: before the notebook starts, the datasets of repro.toml (the scale's `datasets` when it names
some) that are nowhere on this machine are downloaded into the user cache (`repro.provision.provide`;
a connect timeout of a few seconds, checksums verified), unless `offline` (`repro run --offline`,
or `REPRO_OFFLINE=1`), in which case nothing is probed. What stays missing is a warning; the
notebook then records the rows that need it as not run, or fails with the data's clear error.

Interruption: SIGINT (Ctrl-C) or SIGTERM (a scheduler, `kill`) while the notebook runs stops the
kernel at once (its process group is killed, so it prints no traceback of its own), writes the
summary with status `interrupted`, and raises `RunInterrupted` (a `KeyboardInterrupt` that carries
the `RunResult`); `run_reproduction` stores the run before letting it propagate, and `repro run`
exits 130.

Bad input found before anything runs (a seed outside [0, 2**63 - 1], a `--data-dir` that is not a
folder, `threads` < 1) is a `ReproError`, and no run directory is created.
"""

from __future__ import annotations

import math
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from catalog.schema import SUMMARY_SCHEMA_VERSION, ExpectedRow
from repro import ReproError
from repro.claims import Results, evaluate, load_claims
from repro.config import load_reproduction, repro_path
from repro.notebook import (
    _execute,
    _kernel_environment,
    _notebook,
    _Stopped,
)
from repro.record import empty_results, read_results
from repro.scales import resolve_scale

__all__ = [
    "SEED_MAX",
    "SUMMARY_FILE",
    "RunInterrupted",
    "RunResult",
    "check_seed",
    "default_out_dir",
    "execute_run",
    "git_state",
    "new_run_id",
    "run_reproduction",
    "store_summary",
    "summarize",
    "write_summary",
]

SUMMARY_FILE = "summary.json"
NOTEBOOK_FILE = "reproduce.ipynb"
SUMMARY_SCHEMA = SUMMARY_SCHEMA_VERSION  # catalog.schema.RunSummary
SEED_MAX = 2**63 - 1  # the catalog's 64-bit seed column (catalog.runs.SEED_MAX)


@dataclass
class RunResult:
    """What a run left: its directory and its summary (as written to `summary.json`)."""

    run_dir: Path
    summary: dict[str, Any]
    stored: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return self.summary["run_id"]

    @property
    def status(self) -> str:
        return self.summary["status"]

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"

    def strict_failures(self) -> list[str]:
        """What `--strict` objects to: `full` rows that deviate and claims that do not hold."""
        problems = [
            f"row {row['id']} deviates (delta {row['delta']:+.4g})"
            for row in self.summary.get("rows", [])
            if row["verdict"] == "deviates"
        ]
        problems += [
            f"claim {claim['id']} does not hold"
            for claim in self.summary.get("claims", [])
            if claim["holds"] is False
        ]
        return problems

    def exit_code(self, strict: bool = False) -> int:
        """0 when fine; 1 for a failed run; 2 under `strict` for deviations or failed claims;
        130 for an interrupted run (the shell's code for Ctrl-C)."""
        if self.status == "interrupted":
            return 130
        if not self.ok:
            return 1
        if strict and self.strict_failures():
            return 2
        return 0


class RunInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped the notebook; `result` is the run, with status `interrupted` and
    its summary written (stored too once `run_reproduction` re-raises it)."""

    def __init__(self, result: RunResult, signal_name: str) -> None:
        super().__init__(f"run {result.run_id} interrupted by {signal_name}")
        self.result = result
        self.signal_name = signal_name


# --------------------------------------------------------------------------- small helpers


def check_seed(seed: object) -> int:
    """`seed` when it is an int in [0, 2**63 - 1] (what the catalog's 64-bit column holds and
    torch accepts); a one-line `ReproError` for an integer out of that range. Not an integer at
    all is a caller's bug (the CLI parses integers), a `TypeError`."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    if not 0 <= seed <= SEED_MAX:
        raise ReproError(f"--seed {seed}: out of range; a seed is an integer in [0, 2**63 - 1]")
    return seed


def _now() -> datetime:
    return datetime.now(UTC)


def default_out_dir() -> Path:
    """`runs/` at the project root (gitignored)."""
    from catalog.config import project_root

    return project_root() / "runs"


def new_run_id(slug: str, scale: str, when: datetime | None = None) -> str:
    """`20261121T050102Z-fgsm-small-1a2b3c`: sortable by time, unique by a random suffix."""
    when = when or _now()
    return f"{when.astimezone(UTC):%Y%m%dT%H%M%SZ}-{slug}-{scale}-{secrets.token_hex(3)}"


def git_state(root: Path) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout at `root`; (None, None) outside git or without git.

    Dirty counts untracked files too: a new, uncommitted file can change what a run computes.
    """

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(root), *args],
                capture_output=True,
                text=True,
                timeout=20,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout if done.returncode == 0 else None

    inside = git("rev-parse", "--is-inside-work-tree")
    if inside is None or inside.strip() != "true":
        return None, None
    head = git("rev-parse", "--verify", "HEAD")
    status = git("status", "--porcelain")
    return (head.strip() if head else None), (None if status is None else bool(status.strip()))


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_summary(run_dir: Path, summary: dict[str, Any]) -> Path:
    """Validate a summary against the catalog's contract and write `run_dir/summary.json`."""
    import json

    from catalog import CatalogError
    from catalog.runs import validate_summary

    try:
        validate_summary(summary, str(run_dir / SUMMARY_FILE))
    except CatalogError as exc:  # a bug here, not the user's: say so plainly
        raise ReproError(f"internal error, invalid summary: {exc}") from exc
    path = run_dir / SUMMARY_FILE
    _atomic_write(path, json.dumps(summary, indent=2, allow_nan=False) + "\n")
    return path


# --------------------------------------------------------------------------- comparison


def summarize(
    expected: list[ExpectedRow],
    results: dict[str, Any],
    scale: str,
    claims: list[Any],
    *,
    failed: bool = False,
) -> dict[str, Any]:
    """rows / metrics / claims / figures of a summary, from a notebook's results (pure function).

    The rows are `catalog.compare.compare_run`'s DataFrame (the verdict rules live there, once).
    """
    from catalog.compare import compare_run, records

    return {
        "rows": records(compare_run(expected, results, scale, failed=failed)),
        "metrics": [
            {"name": m["name"], "value": m["value"]}
            for m in results.get("metrics", [])
            if math.isfinite(m["value"])
        ],
        "claims": evaluate(claims, Results.from_results(results)),
        "figures": [
            {"path": f["path"], "caption": f.get("caption", "")}
            for f in results.get("figures", [])
            if isinstance(f, dict) and isinstance(f.get("path"), str)
        ],
    }


# --------------------------------------------------------------------------- the run


def _device_provenance(device: str) -> tuple[str, dict[str, Any]]:
    """The concrete device and this process's provenance.

    torch is only imported when it must be asked (auto, CUDA): for `--device cpu` the versions come
    from the installed distributions' metadata, which saves the runner seconds of start-up.
    """
    if str(device).strip().lower() != "cpu":
        from repro.env import pick_device, provenance

        chosen = pick_device(device)
        return str(chosen), provenance(chosen)
    import platform
    import socket
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return "cpu", {
        "device": "cpu",
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "torch": installed("torch"),
        "torchvision": installed("torchvision"),
        "cuda": None,
    }


def _check_folder(slug: str, scale: str) -> tuple[Path, dict[str, Any], list[ExpectedRow], list]:
    """Everything that can be checked before spending time on a run; `ReproError` otherwise."""
    folder = repro_path(slug)
    reproduction = load_reproduction(slug)
    config = reproduction.config.as_dict()
    if not config["notebook"] or not (folder / "reproduce.py").is_file():
        raise ReproError(f"{slug}: method-only folder, no reproduce.py to run")
    if scale not in config["scales"]:
        raise ReproError(f"repro/{slug}/repro.toml: no [scales.{scale}] table")
    claims = load_claims(folder / "claims.py")
    return folder, config, reproduction.expected, claims


def _datasets(config: dict[str, Any], scale: str) -> list[str]:
    """The datasets a run at `scale` reads: the scale's `datasets` when it lists some (Defense-GAN
    measures Fashion-MNIST only at smoke), else repro.toml's `datasets`."""
    listed = config["scales"][scale].get("datasets")
    if isinstance(listed, list) and listed and all(isinstance(d, str) for d in listed):
        return listed
    return list(config.get("datasets") or [])


def _provide_data(
    names: list[str], data_dir: str | None, offline: bool, progress: bool
) -> list[str]:
    """Download what is missing (unless `offline`); warnings for what stays missing."""
    from repro.provision import provide

    warnings = []
    for item in provide(names, data_dir, download=not offline):
        if item.status == "downloaded" and progress:
            print(f"data: downloaded {item.name} {item.detail}", file=sys.stderr, flush=True)
        elif item.status == "missing":
            warnings.append(f"dataset {item.name}: {item.detail}; the rows that need it cannot run")
    return warnings


def execute_run(
    slug: str,
    *,
    scale: str = "auto",
    device: str = "auto",
    seed: int = 0,
    data_dir: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    run_id: str | None = None,
    progress: bool = True,
    executor: str = "local",
    run_key: str | None = None,
    threads: int | None = None,
    offline: bool | None = None,
) -> RunResult:
    """Execute the notebook into a fresh run directory and write its `summary.json` (not stored).

    Raises `ReproError` for problems found before the run starts (unknown slug, bad expected.csv,
    claims.py that does not import, CUDA asked for but absent, a seed out of range, a `data_dir`
    that is not a folder, ...). Once the notebook starts, every outcome is a `RunResult`; a failed
    notebook has status `failed` and the traceback in `error`; SIGINT/SIGTERM raise
    `RunInterrupted` carrying the `interrupted` run. `threads`: torch's CPU threads in the kernel
    (None: torch's default); `offline`: never download (None: `REPRO_OFFLINE`).
    """
    from catalog.config import project_root
    from repro.data import offline as offline_env

    seed = check_seed(seed)
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)):
        raise ReproError(f"--threads {threads!r}: not an integer")
    if threads is not None and threads < 1:
        raise ReproError(f"--threads {threads}: must be at least 1 (omit it for torch's default)")
    if data_dir:
        data_path = Path(data_dir).expanduser()
        if not data_path.is_dir():
            what = "is not a folder" if data_path.exists() else "does not exist"
            raise ReproError(f"--data-dir {data_dir}: {what}")
        data_dir = str(data_path.resolve())
    else:
        data_dir = None
    offline = offline_env() if offline is None else bool(offline)
    repro_path(slug)  # an unknown slug or scale fails before torch is imported for the device
    if str(scale).strip().lower() != "auto":
        resolve_scale(scale, "cpu")
    device_str, prov = _device_provenance(device)
    concrete = resolve_scale(scale, device_str)
    folder, config, expected, claims = _check_folder(slug, concrete)
    warnings = []
    if config["scales"][concrete].get("needs_gpu") and not device_str.startswith("cuda"):
        warnings.append(f"{slug}: scale {concrete} is meant for a GPU; it ran on the CPU")
    nb = _notebook(folder / "reproduce.py")
    warnings += _provide_data(_datasets(config, concrete), data_dir, offline, progress)

    root = project_root()
    started, clock = _now(), time.monotonic()
    run_id = run_id or new_run_id(slug, concrete, started)
    base = Path(out) if out is not None else default_out_dir()
    run_dir = (base / slug / run_id).resolve()
    try:
        run_dir.mkdir(parents=True, exist_ok=False)
    except FileExistsError as exc:
        raise ReproError(f"run directory {run_dir} already exists") from exc
    except OSError as exc:
        raise ReproError(f"--out {base}: cannot create {run_dir}: {exc}") from exc
    parameters: dict[str, Any] = {
        "scale": concrete,
        "device": device_str,
        "seed": seed,
        "data_dir": data_dir,
        "out_dir": str(run_dir),
    }
    commit, dirty = git_state(root)
    prov = {"git_commit": commit, "git_dirty": dirty, **prov, "executor": executor}
    prov["threads"] = threads  # requested torch CPU threads; None = torch's default
    kernel_env = {"ADVREPRO_ROOT": str(root)}
    kernel_args = []
    if threads is not None:
        # OMP_NUM_THREADS for OpenMP/MKL (capped at the core count by them), and torch's own
        # setting before the first cell, which takes the number as given
        kernel_env["OMP_NUM_THREADS"] = str(threads)
        kernel_args.append(
            f"--IPKernelApp.exec_lines=import torch; torch.set_num_threads({int(threads)})"
        )
    if offline:
        kernel_env["REPRO_OFFLINE"] = "1"

    stopped_by: str | None = None
    try:
        with _kernel_environment(kernel_env):
            error = _execute(
                nb, run_dir / NOTEBOOK_FILE, parameters, run_dir, progress, kernel_args
            )
    except _Stopped as exc:
        stopped_by = exc.signal_name
        error = f"interrupted by {stopped_by} (the notebook was stopped; partial results kept)"
    wall = time.monotonic() - clock
    # a second Ctrl-C must not leave the run without its summary: finish first, then obey
    with _deferred_signals() as pending:
        summary = _finish(
            run_dir,
            {
                "run_id": run_id,
                "slug": slug,
                "scale": concrete,
                "seed": seed,
                "parameters": parameters,
                "started_at": started.isoformat(timespec="seconds"),
                "wall_seconds": round(wall, 3),
                "provenance": prov,
                "run_key": run_key,
            },
            error,
            expected,
            claims,
            interrupted=stopped_by is not None,
        )
    result = RunResult(run_dir=run_dir, summary=summary, warnings=warnings)
    stopped_by = stopped_by or pending.first
    if stopped_by is not None:
        raise RunInterrupted(result, stopped_by)
    return result


class _Pending:
    """Signals received while they were deferred (`first` names the first one)."""

    first: str | None = None


@contextmanager
def _deferred_signals() -> Iterator[_Pending]:
    """Hold SIGINT/SIGTERM while a run's record is written (and stored): they are noted, and the
    caller raises afterwards, so an impatient second Ctrl-C cannot leave a run half recorded."""
    pending = _Pending()
    if threading.current_thread() is not threading.main_thread():
        yield pending
        return

    def note(signum: int, _frame: Any) -> None:
        pending.first = pending.first or signal.Signals(signum).name

    saved = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(sig)
        if previous is signal.SIG_IGN:
            continue
        saved[sig] = previous
        signal.signal(sig, note)
    try:
        yield pending
    finally:
        for sig, previous in saved.items():
            signal.signal(sig, previous)


def _finish(
    run_dir: Path,
    head: dict[str, Any],
    error: str | None,
    expected: list[ExpectedRow],
    claims: list[Any],
    *,
    interrupted: bool = False,
) -> dict[str, Any]:
    """Compose and write `summary.json` once the notebook has stopped (succeeded or not)."""
    try:
        results = read_results(run_dir)
    except ReproError as exc:
        results = empty_results()
        error = (error + "\n" if error else "") + f"results.json unreadable: {exc}"
    body = summarize(expected, results, head["scale"], claims, failed=error is not None)
    summary = {
        "schema_version": SUMMARY_SCHEMA,
        **head,
        "status": "interrupted" if interrupted else "failed" if error else "succeeded",
        "finished_at": _now().isoformat(timespec="seconds"),
        "reused_from": None,
        "notebook": NOTEBOOK_FILE if (run_dir / NOTEBOOK_FILE).is_file() else None,
        "error": error,
        **body,
    }
    write_summary(run_dir, summary)
    return summary


def store_summary(summary: dict[str, Any], run_dir: str | os.PathLike[str] | None = None) -> None:
    """Store a run (its summary) in the catalog, in one transaction (`DATABASE_URL` or SQLite)."""
    from sqlalchemy.exc import SQLAlchemyError

    from catalog import CatalogError
    from catalog.db import session_scope
    from catalog.drift import mark_changes
    from catalog.runs import store_run

    try:
        with session_scope() as session:
            store_run(session, summary, str(run_dir) if run_dir is not None else None)
            mark_changes(session, {(summary["slug"], summary["scale"])})  # the site's markers
    except (CatalogError, SQLAlchemyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = f" (its directory {run_dir} keeps the whole record)" if run_dir else ""
        raise ReproError(f"storing run {summary.get('run_id')} failed{where}: {first}") from exc


def run_reproduction(
    slug: str,
    *,
    scale: str = "auto",
    device: str = "auto",
    seed: int = 0,
    data_dir: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    store: bool = True,
    progress: bool = True,
    threads: int | None = None,
    offline: bool | None = None,
) -> RunResult:
    """`repro run`: execute the notebook (`execute_run`) and store the run (`store_summary`).

    An interrupted run is stored too (status `interrupted`) before `RunInterrupted` propagates.
    """
    try:
        result = execute_run(
            slug,
            scale=scale,
            device=device,
            seed=seed,
            data_dir=data_dir,
            out=out,
            progress=progress,
            threads=threads,
            offline=offline,
        )
    except RunInterrupted as stop:
        if store:
            with _deferred_signals():
                store_summary(stop.result.summary, stop.result.run_dir)
            stop.result.stored = True
        raise
    if store:
        store_summary(result.summary, result.run_dir)
        result.stored = True
    return result
