"""`catalog ingest-runs DIR`: store run directories produced elsewhere (the nightly's GPU runners).

The nightly workflow runs each reproduction on a GPU runner with `repro run --no-store` and uploads
its run directory as an artifact; the publish job downloads them all into one folder and ingests
them here. Layouts found by walking DIR: any folder holding a `summary.json` is a run directory,
so `DIR/run-<slug>/<run-id>/summary.json` (downloaded artifacts), `DIR/<slug>/<run-id>/` (a local
`runs/` folder) and a single `DIR/<run-id>/` all work.

Each run directory is validated on its own (`catalog.runs.load_summary`, plus: `slug` and `run_id`
usable as folder names, figure and notebook paths inside the run directory, `results.json` a JSON
object when present, no symbolic link anywhere in it). A malformed one is rejected with one line
naming its file and the fault; the others are still stored (the command then exits 1, so CI shows
the rejection, but one broken artifact never costs the night's other results). Each run is
stored in its own savepoint, so even a fault only the database sees (a value a column refuses)
rejects that run alone.

A folder that looks like a run directory (`results.json` or `reproduce.ipynb`) but has no
`summary.json` is a run killed before it finished (or still running): it is reported as rejected,
not skipped silently.

Symbolic links: a run directory comes from elsewhere (an artifact) and its files are copied into
`runs/` and published on the site, so a link (`figures/x.png -> /etc/passwd`) would publish
whatever it points to. A run directory holding any symbolic link is rejected; nothing is followed.

Files: each accepted run directory is copied to `<runs dir>/<slug>/<run-id>/` (default
`<project root>/runs`, where `repro run` writes and `catalog publish` looks), and the stored
`Run.run_dir` points at the copy (relative to the project root when inside it). Why copy: the
download folder is temporary, and the site needs the figures and executed notebooks of every run in
its history, not only tonight's. `--no-copy` stores the directories where they are. A reused run
made on a GPU runner (summary only: the original's files were not there) gets the files its
summary lists copied from the original run's directory.

Idempotent: a run is keyed by its `run_id`; ingesting the same directory again replaces the row
with an identical one and re-copies identical files. After storing, the drift markers of the
affected reproductions are recomputed (`catalog.drift.mark_changes`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from sqlmodel import Session

from catalog import CatalogError
from catalog.config import project_root
from catalog.drift import Drift, mark_changes, strip_markers
from catalog.models import Run
from catalog.runs import load_summary, store_run

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
RUN_FILES = ("summary.json", "results.json", "reproduce.ipynb")  # what makes a run directory


@dataclass
class Rejected:
    """A run directory that was not stored, and why (one line)."""

    path: Path
    reason: str


@dataclass
class IngestReport:
    """What `ingest_runs` did: stored run ids (new or replaced), rejections, drift of stored runs."""

    stored: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    drift: list[Drift] = field(default_factory=list)


def find_run_dirs(directory: Path) -> list[Path]:
    """Every folder under `directory` (itself included) that holds a `summary.json`, or the other
    files of a run directory without one (an unfinished run, rejected by `check_run_dir`), sorted.
    The inside of a run directory is not searched further (its `checkpoints/` are not runs)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames.sort()
        if any(name in filenames for name in RUN_FILES):
            found.append(Path(dirpath))
            dirnames.clear()
    return sorted(found)


def _no_symlinks(run_dir: Path) -> None:
    """Refuse a run directory holding a symbolic link (to a file or a folder), without following it."""
    for dirpath, dirnames, filenames in os.walk(run_dir):
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            if path.is_symlink():
                raise CatalogError(
                    f"{path}: is a symbolic link (to {os.readlink(path)}); run directories must "
                    "hold their own files, links are never followed"
                )


def _relative_inside(value: Any, where: str) -> None:
    if not isinstance(value, str) or not value:
        raise CatalogError(f"{where}: must be a non-empty relative path")
    path = PurePosixPath(value.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or re.match(r"^[A-Za-z]:", value):
        raise CatalogError(f"{where}: {value!r} points outside the run directory")


def check_run_dir(run_dir: Path) -> dict[str, Any]:
    """Validate one run directory; return its summary or raise `CatalogError` (one line)."""
    source = run_dir / "summary.json"
    if not source.is_file() and not source.is_symlink():
        present = ", ".join(name for name in RUN_FILES if (run_dir / name).exists())
        raise CatalogError(
            f"{run_dir}: no summary.json beside {present}: the run did not finish (killed, or "
            "still running); nothing stored"
        )
    _no_symlinks(run_dir)
    summary = load_summary(run_dir)
    for name in ("slug", "run_id"):
        if not SAFE_NAME.match(summary[name]) or summary[name] in {".", ".."}:
            raise CatalogError(f"{source}: {name} {summary[name]!r} is not usable as a folder name")
    for i, figure in enumerate(summary.get("figures", [])):
        if not isinstance(figure, dict):
            raise CatalogError(f"{source}: figures[{i}] must be an object with a 'path'")
        _relative_inside(figure.get("path"), f"{source}: figures[{i}].path")
    if summary.get("notebook") is not None:
        _relative_inside(summary["notebook"], f"{source}: notebook")
    results = run_dir / "results.json"
    if results.is_file():
        try:
            data = json.loads(results.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CatalogError(f"{results}: malformed JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise CatalogError(f"{results}: top level must be a JSON object")
    return summary


def _stored_path(path: Path, root: Path) -> str:
    """`path` relative to the project root when it is inside it (portable catalogs), else absolute."""
    resolved = path.resolve()
    try:
        return resolved.relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(resolved)


def _copy_run(source: Path, dest: Path) -> None:
    if dest.resolve() == source.resolve():
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    # symlinks=True: a link (refused by `check_run_dir` already) is never followed, even if one
    # appeared since the check
    shutil.copytree(source, dest, dirs_exist_ok=True, symlinks=True)


def _begin(session: Session) -> None:
    """Open the database transaction now, so the per-run savepoints nest inside it.

    Python's sqlite3 module starts SQLite's transaction only at the first write; a SAVEPOINT
    issued before that is the outermost transaction, and releasing it would commit the run
    at once, outside the command's one transaction. PostgreSQL needs nothing.
    """
    connection = session.connection()
    if connection.dialect.name == "sqlite":
        dbapi = connection.connection.dbapi_connection
        if dbapi is not None and not dbapi.in_transaction:
            connection.exec_driver_sql("BEGIN")


def _fill_reused(session: Session, summary: dict[str, Any], dest: Path, root: Path) -> None:
    """A reused run recorded where the original's files were not at hand (a GPU runner) lists
    them without having them: copy the missing ones from the original run's directory, if kept."""
    if not summary.get("reused_from"):
        return
    original = session.get(Run, summary["reused_from"])
    if original is None or not original.run_dir:
        return
    source = Path(original.run_dir)
    source = source if source.is_absolute() else root / source
    wanted = [f["path"] for f in summary.get("figures", [])] + [
        p for p in (summary.get("notebook"), "results.json") if p
    ]
    for rel in wanted:
        original_file = source / rel
        if original_file.is_symlink():
            raise CatalogError(f"{original_file}: is a symbolic link; not copied")
        if not (dest / rel).exists() and original_file.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / rel, dest / rel)


def ingest_runs(
    session: Session,
    directory: Path | str,
    *,
    runs_dir: Path | str | None = None,
    copy: bool = True,
    root: Path | None = None,
) -> IngestReport:
    """Validate, copy and store every run directory under `directory` in the caller's
    transaction; malformed ones are reported in `IngestReport.rejected`, not raised."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CatalogError(f"{directory}: no such folder (nothing to ingest)")
    root = root or project_root()
    runs_dir = Path(runs_dir) if runs_dir is not None else root / "runs"
    if not runs_dir.is_absolute():
        runs_dir = root / runs_dir
    report = IngestReport()
    accepted: dict[str, tuple[dict[str, Any], Path]] = {}
    for run_dir in find_run_dirs(directory):
        try:
            summary = check_run_dir(run_dir)
        except CatalogError as exc:
            report.rejected.append(Rejected(run_dir, str(exc)))
            continue
        run_id = summary["run_id"]
        if run_id in accepted:
            if accepted[run_id][0] != summary:
                report.rejected.append(
                    Rejected(
                        run_dir,
                        f"{run_dir / 'summary.json'}: run {run_id} also in "
                        f"{accepted[run_id][1]} with different content",
                    )
                )
            continue
        accepted[run_id] = (summary, run_dir)
    pairs: set[tuple[str, str]] = set()
    _begin(session)
    for run_id, (summary, run_dir) in sorted(accepted.items()):
        stored_dir = runs_dir / summary["slug"] / run_id if copy else run_dir
        created = copy and not stored_dir.exists()
        try:
            with session.begin_nested():  # one run's fault rolls back that run only
                if copy:
                    _copy_run(run_dir, stored_dir)
                    _fill_reused(session, summary, stored_dir, root)
                stored_path = _stored_path(stored_dir, root)
                existing = session.get(Run, run_id)
                if (
                    existing is not None
                    and strip_markers(existing.summary or {}) == summary
                    and existing.run_dir == stored_path
                ):
                    report.unchanged.append(run_id)
                    continue
                store_run(session, summary, run_dir=stored_path)
        except Exception as exc:  # a database refusal, a copy that failed: this run only
            if created:
                shutil.rmtree(stored_dir, ignore_errors=True)
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            first = reason[0] if reason else type(exc).__name__
            report.rejected.append(
                Rejected(run_dir, f"{run_dir}: run {run_id} not stored: {first}")
            )
            continue
        report.stored.append(run_id)
        pairs.add((summary["slug"], summary["scale"]))
    if pairs:
        wanted = {r for r in report.stored}
        report.drift = [d for d in mark_changes(session, pairs) if d.run_id in wanted]
    return report


def print_report(report: IngestReport, out: Any, err: Any) -> None:
    """One line per stored run (with its changes), one red line per rejected directory."""
    from rich.text import Text

    for rejected in report.rejected:
        err.print(Text("rejected: ", style="bold red") + Text(rejected.reason, style="red"))
    changes = {d.run_id: d for d in report.drift}
    for run_id in report.stored:
        drift = changes.get(run_id)
        note = ""
        if drift is not None and drift.changes:
            note = f" ({len(drift.changes)} changes, {len(drift.regressions)} regressions)"
        out.print(f"stored {run_id}{note}", markup=False)
    out.print(
        f"{len(report.stored)} stored, {len(report.unchanged)} already stored, "
        f"{len(report.rejected)} rejected",
        markup=False,
    )
