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
"""

from __future__ import annotations

import logging
import math
import os
import re
import secrets
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from catalog.schema import SUMMARY_SCHEMA_VERSION, ExpectedRow
from repro import ReproError
from repro.claims import Results, evaluate, load_claims
from repro.config import load_reproduction, repro_path
from repro.record import empty_results, read_results
from repro.scales import resolve_scale

__all__ = [
    "SUMMARY_FILE",
    "RunResult",
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
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


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
        """0 when fine; 1 for a failed run; 2 under `strict` for deviations or failed claims."""
        if not self.ok:
            return 1
        if strict and self.strict_failures():
            return 2
        return 0


# --------------------------------------------------------------------------- small helpers


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


# --------------------------------------------------------------------------- notebook execution


def _kernel_manager_class() -> type:
    """nbclient's kernel manager, with the `python3` kernelspec forced to `sys.executable`."""
    from jupyter_client.manager import AsyncKernelManager

    class SameInterpreterKernelManager(AsyncKernelManager):
        """Launch the kernel with the runner's own interpreter (the venv with torch)."""

        @property
        def kernel_spec(self):  # type: ignore[override]
            spec = super().kernel_spec
            if spec is not None and spec.argv[1:3] == ["-m", "ipykernel_launcher"]:
                spec.argv = [sys.executable, *spec.argv[1:]]
            return spec

    return SameInterpreterKernelManager


def _cell_titles(nb: Any) -> dict[int, str]:
    """1-based cell numbers (as papermill counts them after injecting the parameters cell) of code
    cells, with the first line worth showing."""
    titles: dict[int, str] = {}
    number = 0
    for cell in nb.cells:
        number += 1
        if cell.cell_type == "code":
            lines = [ln.strip() for ln in cell.source.splitlines()]
            first = next((ln for ln in lines if ln and not ln.startswith("#")), "")
            comment = next((ln.lstrip("# ") for ln in lines if ln.startswith("#")), "")
            titles[number] = (comment or first)[:70]
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            number += 1
            titles[number] = "(injected parameters)"
    titles[0] = str(number)  # total
    return titles


class _NotebookEcho(logging.Handler):
    """Echo papermill's `log_output` live: the notebook's own output raw (so tqdm's carriage
    returns redraw a bar in a terminal), a line per code cell, and papermill's warnings.

    When the stream is not a terminal (CI logs, nox), carriage-return redraws become lines, at most
    one every `throttle_s` seconds per bar, so the log shows progress without thousands of lines.
    """

    def __init__(self, stream: TextIO, titles: dict[int, str], throttle_s: float = 10.0) -> None:
        super().__init__(logging.INFO)
        self.stream = stream
        self.titles = titles
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.throttle_s = throttle_s
        self.last_frame = -math.inf
        self.at_line_start = True

    def _write(self, text: str) -> None:
        if not text:
            return
        self.stream.write(text)
        self.stream.flush()
        self.at_line_start = text.endswith(("\n", "\r"))

    def _line(self, text: str) -> None:
        if not self.at_line_start:
            self._write("\n")
        self._write(text + "\n")

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.funcName == "log_output_message":
                self._output(message)
            elif message.startswith("Executing Cell"):
                found = re.search(r"\d+", message)
                number = int(found.group()) if found else 0
                if number in self.titles:
                    self._line(f"── cell {number}/{self.titles[0]}: {self.titles[number]}")
            elif record.levelno >= logging.WARNING and not message.startswith("Ending Cell"):
                self._line(f"papermill: {message}")
        except Exception:
            self.handleError(record)

    def _output(self, text: str) -> None:
        if self.tty:
            self._write(text)
            return
        # Not a terminal: split redraws; keep complete lines, throttle bare redraw frames.
        for piece in re.split(r"(\r(?!\n))", text):
            if not piece or piece == "\r":
                continue
            if piece.endswith("\n"):
                self._line(piece.rstrip("\n"))
            elif time.monotonic() - self.last_frame >= self.throttle_s:
                self.last_frame = time.monotonic()
                self._line(piece)


def _notebook(source: Path) -> Any:
    """`reproduce.py` (Jupytext percent format) as a notebook with the `python3` kernelspec."""
    import jupytext

    try:
        nb = jupytext.read(source, fmt="py:percent")
    except Exception as exc:
        raise ReproError(f"{source}: cannot be read as a Jupytext notebook: {exc}") from exc
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata.setdefault("language_info", {"name": "python"})
    if not any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells):
        raise ReproError(f'{source}: no cell tagged parameters (# %% tags=["parameters"])')
    return nb


def _execute(
    nb: Any, output: Path, parameters: dict[str, Any], cwd: Path, progress: bool
) -> str | None:
    """Run the notebook with papermill into `output`; the error text when it fails, else None."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    logger = logging.getLogger("papermill")
    handler = _NotebookEcho(sys.stderr, _cell_titles(nb)) if progress else None
    saved = (logger.level, logger.propagate)
    if handler is not None:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    try:
        papermill.execute_notebook(
            nb,
            str(output),
            parameters=parameters,
            kernel_name="python3",
            cwd=str(cwd),
            log_output=progress,
            progress_bar=False,
            request_save_on_cell_execute=True,
            kernel_manager_class=_kernel_manager_class(),
        )
    except PapermillExecutionError as exc:
        trace = _ANSI.sub("", "\n".join(exc.traceback))
        return f"{exc.ename}: {exc.evalue} (cell {exc.exec_count})\n{trace}"
    except Exception:
        return f"the notebook could not be executed:\n{traceback.format_exc()}"
    finally:
        if handler is not None:
            logger.removeHandler(handler)
            logger.setLevel(saved[0])
            logger.propagate = saved[1]
    return None


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
) -> RunResult:
    """Execute the notebook into a fresh run directory and write its `summary.json` (not stored).

    Raises `ReproError` for problems found before the run starts (unknown slug, bad expected.csv,
    claims.py that does not import, CUDA asked for but absent, ...). Once the notebook starts, every
    outcome is a `RunResult`; a failed notebook has status `failed` and the traceback in `error`.
    """
    from catalog.config import project_root

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
        "seed": int(seed),
        "data_dir": str(Path(data_dir).expanduser().resolve()) if data_dir else None,
        "out_dir": str(run_dir),
    }
    commit, dirty = git_state(project_root())
    prov = {"git_commit": commit, "git_dirty": dirty, **prov, "executor": executor}

    interrupted = False
    try:
        error = _execute(nb, run_dir / NOTEBOOK_FILE, parameters, run_dir, progress)
    except KeyboardInterrupt:
        error, interrupted = "interrupted (KeyboardInterrupt)", True
    wall = time.monotonic() - clock
    summary = _finish(
        run_dir,
        {
            "run_id": run_id,
            "slug": slug,
            "scale": concrete,
            "seed": int(seed),
            "parameters": parameters,
            "started_at": started.isoformat(timespec="seconds"),
            "wall_seconds": round(wall, 3),
            "provenance": prov,
            "run_key": run_key,
        },
        error,
        expected,
        claims,
    )
    if interrupted:
        raise KeyboardInterrupt
    return RunResult(run_dir=run_dir, summary=summary, warnings=warnings)


def _finish(
    run_dir: Path,
    head: dict[str, Any],
    error: str | None,
    expected: list[ExpectedRow],
    claims: list[Any],
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
        "status": "failed" if error else "succeeded",
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
) -> RunResult:
    """`repro run`: execute the notebook (`execute_run`) and store the run (`store_summary`)."""
    result = execute_run(
        slug, scale=scale, device=device, seed=seed, data_dir=data_dir, out=out, progress=progress
    )
    if store:
        store_summary(result.summary, result.run_dir)
        result.stored = True
    return result
