"""Faults that probing found in the catalog (issue 10), each pinned by a test.

- `catalog ingest-runs`: a seed outside 64 bits, or any fault only the database sees, rejects that
  run alone and the others are stored (SQLite and PostgreSQL); a run folder without a summary is
  reported, not skipped; a symbolic link in a run folder is refused, never followed; so is a
  review file that is a link (at sync).
- A read-only SQLite catalog can still be listed and searched (opening it wrote to it before).
- A database file that is not a database is named in the error.
- `catalog export --out` to a place that cannot be written: one line, exit 1, nothing changed.
- The project root follows the working directory: `catalog add` inside a second clone writes that
  clone's `references.bib`.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from catalog import CatalogError
from catalog.cli import app
from catalog.db import get_engine, reset_engines, session_scope
from catalog.ingest_runs import ingest_runs
from catalog.models import Measurement, Paper, Run

REPO = Path(__file__).resolve().parents[2]


def record(run_id: str, **changes: Any) -> dict[str, Any]:
    """A valid summary.json (schema 1) of a run that needs no notebook."""
    data: dict[str, Any] = {
        "schema_version": 1,
        "run_id": run_id,
        "slug": "demo",
        "scale": "smoke",
        "status": "succeeded",
        "seed": 0,
        "parameters": {"scale": "smoke", "device": "cpu", "seed": 0},
        "started_at": "2026-01-01T00:00:00+00:00",
        "finished_at": "2026-01-01T00:00:02+00:00",
        "wall_seconds": 2.0,
        "provenance": {"device": "cpu", "executor": "local"},
        "run_key": None,
        "reused_from": None,
        "notebook": None,
        "error": None,
        "rows": [
            {
                "id": "row_a",
                "value": 1.0,
                "paper": 1.0,
                "tolerance": 0.1,
                "delta": 0.0,
                "verdict": "not_compared",
                "reason": None,
            }
        ],
        "metrics": [],
        "claims": [],
        "figures": [],
    }
    data.update(changes)
    return data


def write_run(base: Path, data: dict[str, Any]) -> Path:
    run_dir = base / data["run_id"]
    run_dir.mkdir(parents=True)
    (run_dir / "summary.json").write_text(json.dumps(data), encoding="utf-8")
    (run_dir / "results.json").write_text('{"schema_version": 1, "rows": []}', encoding="utf-8")
    return run_dir


@pytest.fixture
def root(project: Path) -> Path:
    """The project copy (ADVREPRO_ROOT) on the `db_url` catalog (SQLite and PostgreSQL)."""
    return project


def stored_ids() -> list[str]:
    with session_scope() as session:
        return sorted(r.id for r in session.exec(select(Run)))


# --------------------------------------------------------------------------- ingest-runs


def test_a_seed_outside_64_bits_rejects_that_run_only(root: Path, tmp_path: Path) -> None:
    incoming = tmp_path / "incoming"
    write_run(incoming, record("r1-ok"))
    write_run(incoming, record("r2-big-seed", seed=2**63))
    write_run(incoming, record("r3-huge-seed", seed=2**80))
    write_run(incoming, record("r4-ok", seed=2**63 - 1))  # the largest 64-bit seed is fine
    with session_scope() as session:
        report = ingest_runs(session, incoming)
    assert sorted(report.stored) == ["r1-ok", "r4-ok"]
    reasons = sorted(r.reason for r in report.rejected)
    assert len(reasons) == 2
    assert all("seed" in r and "outside [0, 2**63 - 1]" in r for r in reasons)
    assert "r2-big-seed" in reasons[0] and "r3-huge-seed" in reasons[1]
    assert stored_ids() == ["r1-ok", "r4-ok"]
    with session_scope() as session:
        run = session.get(Run, "r4-ok")
        assert run is not None and run.seed == 2**63 - 1
    assert not (root / "runs" / "demo" / "r2-big-seed").exists()  # nothing half-done


def test_a_fault_only_the_database_sees_costs_that_run_alone(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the seed check out of the way, the 64-bit column itself refuses the value (SQLite's
    driver and PostgreSQL's BIGINT alike): that run is rolled back to its savepoint, the others
    are committed, and its copy in runs/ is removed again."""
    import catalog.runs

    monkeypatch.setattr(catalog.runs, "check_seed", lambda seed, where="seed": seed)
    incoming = tmp_path / "incoming"
    write_run(incoming, record("r1-ok"))
    write_run(incoming, record("r2-overflow", seed=2**64))
    write_run(incoming, record("r3-ok"))
    with session_scope() as session:
        report = ingest_runs(session, incoming)
    assert sorted(report.stored) == ["r1-ok", "r3-ok"]
    assert len(report.rejected) == 1
    assert "run r2-overflow not stored" in report.rejected[0].reason
    assert stored_ids() == ["r1-ok", "r3-ok"]
    with session_scope() as session:  # none of the refused run's rows survived
        rows = session.exec(select(Measurement.run_id)).all()
    assert sorted(set(rows)) == ["r1-ok", "r3-ok"]
    assert not (root / "runs" / "demo" / "r2-overflow").exists()
    assert (root / "runs" / "demo" / "r1-ok" / "summary.json").is_file()


def test_the_cli_stores_the_good_runs_and_names_the_bad_one(root: Path, tmp_path: Path) -> None:
    incoming = tmp_path / "incoming"
    write_run(incoming, record("r1-ok"))
    write_run(incoming, record("r2-big-seed", seed=2**70))
    result = CliRunner().invoke(app, ["ingest-runs", str(incoming)], catch_exceptions=False)
    assert result.exit_code == 1
    assert "r2-big-seed" in result.stderr and "outside [0, 2**63 - 1]" in result.stderr
    assert "1 stored, 0 already stored, 1 rejected" in result.stdout
    assert stored_ids() == ["r1-ok"]


def test_a_run_folder_without_summary_is_reported(root: Path, tmp_path: Path) -> None:
    incoming = tmp_path / "incoming"
    write_run(incoming, record("r1-ok"))
    killed = incoming / "r2-killed"
    killed.mkdir()
    (killed / "reproduce.ipynb").write_text("{}", encoding="utf-8")
    (killed / "results.json").write_text('{"schema_version": 1}', encoding="utf-8")
    with session_scope() as session:
        report = ingest_runs(session, incoming)
    assert report.stored == ["r1-ok"]
    (rejected,) = report.rejected
    assert rejected.path == killed
    assert "no summary.json" in rejected.reason and "did not finish" in rejected.reason


def test_a_symlinked_figure_is_refused_not_copied(root: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:not for the site\n", encoding="utf-8")
    incoming = tmp_path / "incoming"
    run_dir = write_run(
        incoming, record("r1-link", figures=[{"path": "figures/f.png", "caption": "c"}])
    )
    (run_dir / "figures").mkdir()
    (run_dir / "figures" / "f.png").symlink_to(secret)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(secret, elsewhere / "f.png")
    linked_dir = write_run(incoming, record("r2-dirlink"))
    (linked_dir / "figures").symlink_to(elsewhere, target_is_directory=True)
    write_run(incoming, record("r3-ok"))
    with session_scope() as session:
        report = ingest_runs(session, incoming)
    assert report.stored == ["r3-ok"]
    reasons = sorted(r.reason for r in report.rejected)
    assert len(reasons) == 2 and all("is a symbolic link" in r for r in reasons)
    assert str(run_dir / "figures" / "f.png") in reasons[0]
    assert not (root / "runs" / "demo" / "r1-link").exists()
    copies = [p for p in (root / "runs").rglob("*") if p.is_file()]
    assert all("not for the site" not in p.read_text(errors="replace") for p in copies)


def test_a_symlinked_review_is_refused_at_sync(root: Path, tmp_path: Path) -> None:
    """A review that links to a file outside the project (/etc/passwd, say) is refused with one
    line naming it; nothing of it reaches the catalog, so the site cannot publish it."""
    from catalog.models import Review

    secret = tmp_path / "passwd"
    secret.write_text("root:x:0:0:not for the site\n", encoding="utf-8")
    review = root / "papers" / "reviews" / "2018_Ma_X_p-iclr_casulid.md"
    assert not review.exists()
    review.symlink_to(secret)
    result = CliRunner().invoke(app, ["sync"])
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert "papers/reviews/2018_Ma_X_p-iclr_casulid.md: is a symbolic link" in line
    with session_scope() as session:
        bodies = [r.body for r in session.exec(select(Review))]
    assert all("not for the site" not in body for body in bodies)
    review.unlink()
    assert CliRunner().invoke(app, ["sync"]).exit_code == 0


# --------------------------------------------------------------------------- the SQLite file


@pytest.fixture
def sqlite_catalog(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A SQLite catalog with one paper, in a folder other users may enter (for the
    unprivileged-reader test), as `DATABASE_URL`."""
    folder = Path(tempfile.mkdtemp(prefix="advrepro-ro-"))
    folder.chmod(0o755)
    path = folder / "catalog.db"
    url = f"sqlite:///{path}"
    reset_engines()
    with session_scope(url) as session:
        session.add(
            Paper(
                key="2018_Samangouei_P_p-iclr_dpcaaugm",
                title="Defense-GAN: Protecting Classifiers Against Adversarial Attacks",
                year=2018,
                venue="ICLR",
                bibtex="@inproceedings{2018_Samangouei_P_p-iclr_dpcaaugm, title={Defense-GAN}}",
            )
        )
    reset_engines()
    monkeypatch.setenv("DATABASE_URL", url)
    yield path
    reset_engines()
    for p in (folder, *folder.iterdir()):
        p.chmod(0o755 if p.is_dir() else 0o644)
    shutil.rmtree(folder, ignore_errors=True)


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _unprivileged(fn: Callable[[], Any]) -> Any:
    """`fn()` as a user who cannot write the catalog: directly when we are not root (the file
    permissions then apply), else in a forked child that drops to `nobody` (root writes through
    any permission). Everything `fn` imports must already be imported: `nobody` cannot read
    the virtual environment."""
    if os.geteuid() != 0:
        return fn()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop privileges, run, send the result back
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            try:
                payload = ("ok", fn())
            except BaseException as exc:
                payload = ("error", f"{type(exc).__name__}: {exc}")
            with os.fdopen(write, "wb") as out:
                pickle.dump(payload, out)
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as got:
        data = got.read()
    os.waitpid(pid, 0)
    status, value = pickle.loads(data)
    if status != "ok":
        raise AssertionError(f"in the unprivileged child: {value}")
    return value


def test_a_read_only_catalog_can_be_listed_and_searched(sqlite_catalog: Path) -> None:
    # everything the commands import, imported before a child drops to `nobody`
    import rich.console
    import rich.table
    import rich.text  # noqa: F401

    import catalog.queries  # noqa: F401

    folder = sqlite_catalog.parent
    for p in folder.iterdir():
        p.chmod(0o444)
    folder.chmod(0o555)
    before = _digest(folder)

    def read_only_commands() -> list[tuple[int, str, str]]:
        reset_engines()
        runner = CliRunner()
        out = []
        for args in (
            ["list"],
            ["search", "Defense-GAN"],
            ["show", "2018_Samangouei_P_p-iclr_dpcaaugm"],
        ):
            result = runner.invoke(app, args)
            out.append((result.exit_code, result.stdout, result.stderr))
        reset_engines()
        return out

    (list_code, listed, list_err), (search_code, found, _), (show_code, shown, _) = _unprivileged(
        read_only_commands
    )
    assert list_code == 0, list_err
    assert "2018_Samangouei_P_p-iclr_dpcaaugm" in listed
    assert search_code == 0 and "2018_Samangouei_P_p-iclr_dpcaaugm" in found
    assert show_code == 0 and "Defense-GAN" in shown
    assert _digest(folder) == before  # not a byte written, no -wal/-shm/lock files created


def test_reading_never_switches_the_journal_mode_of_a_read_only_file(
    sqlite_catalog: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the file is read-only, the engine opens it `mode=ro` and never issues the WAL switch
    (the write that made every read-only catalog unreadable); writes are refused by SQLite."""
    import catalog.db

    monkeypatch.setattr(catalog.db, "_read_only", lambda path: True)
    url = os.environ["DATABASE_URL"]
    before = sqlite_catalog.read_bytes()
    statements: list[str] = []
    engine = get_engine(url)
    from sqlalchemy import event, text

    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM paper")).scalar() == 1
        with pytest.raises(Exception, match="readonly"):
            connection.execute(text("DELETE FROM paper"))
    assert not any("journal_mode=WAL" in s for s in statements)
    assert sqlite_catalog.read_bytes() == before


def test_a_file_that_is_not_a_database_is_named(tmp_path: Path, monkeypatch) -> None:
    bad = tmp_path / "notes.db"
    bad.write_text("these are my notes, not a database\n" * 40, encoding="utf-8")
    reset_engines()
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{bad}")
    with pytest.raises(CatalogError, match=rf"cannot open database sqlite:///{bad}: file is not"):
        get_engine()
    result = CliRunner().invoke(app, ["list"])
    assert result.exit_code == 1
    assert str(bad) in result.stderr and "file is not a database" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    reset_engines()


# --------------------------------------------------------------------------- export --out


@pytest.mark.parametrize("target", ["a folder", "under a file"])
def test_export_to_a_place_that_cannot_be_written(
    sqlite_catalog: Path, tmp_path: Path, target: str
) -> None:
    if target == "a folder":
        out = tmp_path / "site"
        out.mkdir()
        (out / "keep.txt").write_text("kept", encoding="utf-8")
    else:
        (tmp_path / "plain.txt").write_text("a file", encoding="utf-8")
        out = tmp_path / "plain.txt" / "catalog.bib"
    before = sorted((p.relative_to(tmp_path), p.read_bytes()) for p in tmp_path.rglob("*.txt"))
    result = CliRunner().invoke(app, ["export", "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --out") and str(out) in lines[0]
    assert "Traceback" not in result.output
    after = sorted((p.relative_to(tmp_path), p.read_bytes()) for p in tmp_path.rglob("*.txt"))
    assert after == before
    assert not list(tmp_path.rglob("*.tmp"))


# --------------------------------------------------------------------------- project root


def test_project_root_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from catalog.config import PACKAGE_ROOT, project_root

    clone = tmp_path / "clone"
    (clone / "papers").mkdir(parents=True)
    (clone / "papers" / "references.bib").write_text("", encoding="utf-8")
    (clone / "repro" / "fgsm").mkdir(parents=True)
    monkeypatch.delenv("ADVREPRO_ROOT", raising=False)
    monkeypatch.chdir(clone / "repro" / "fgsm")  # anywhere inside the clone
    assert project_root() == clone.resolve()
    monkeypatch.setenv("ADVREPRO_ROOT", str(tmp_path / "explicit"))  # an explicit choice wins
    assert project_root() == (tmp_path / "explicit").resolve()
    monkeypatch.delenv("ADVREPRO_ROOT")
    monkeypatch.chdir(tmp_path)  # outside any project: the installed checkout
    assert project_root() == PACKAGE_ROOT


BIBTEX = """@inproceedings{2017_Kurakin_A_w-iclr_aeitpw,
  title = {Adversarial examples in the physical world},
  author = {Kurakin, Alexey and Goodfellow, Ian and Bengio, Samy},
  booktitle = {ICLR Workshop},
  year = {2017},
}
"""


def test_catalog_add_in_a_second_clone_writes_that_clone(tmp_path: Path) -> None:
    """`catalog add` run inside a second clone (no ADVREPRO_ROOT, no DATABASE_URL) writes the
    clone's references.bib and catalog.db; the checkout the environment came from is untouched."""
    clone = tmp_path / "second-clone"
    for name in ("papers", "repro"):
        shutil.copytree(
            REPO / name, clone / name, ignore=shutil.ignore_patterns("__pycache__", "runs")
        )
    (tmp_path / "new.bib").write_text(BIBTEX, encoding="utf-8")
    real_bib = REPO / "papers" / "references.bib"
    real_before = real_bib.read_bytes()
    env = {k: v for k, v in os.environ.items() if k not in ("ADVREPRO_ROOT", "DATABASE_URL")}
    done = subprocess.run(
        [sys.executable, "-m", "catalog.cli", "add", "--bibtex", str(tmp_path / "new.bib")],
        cwd=clone / "papers",
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "2017_Kurakin_A_w-iclr_aeitpw" in (clone / "papers" / "references.bib").read_text()
    assert (clone / "catalog.db").is_file()  # the clone's own catalog, at the clone's root
    assert real_bib.read_bytes() == real_before


# --------------------------------------------------------------------------- interrupted add

# `catalog add` in a child process that signals itself after references.bib is rewritten and the
# rows are written, before the commit: the worst moment to stop.
INTERRUPTED_ADD = """
import os, signal, sys
import catalog.add
from catalog.cli import app

# as in an interactive Python, whatever the parent did with SIGINT (a background job ignores it)
signal.signal(signal.SIGINT, signal.default_int_handler)
real = catalog.add.sync_lists

def sync_lists_then_signal(*args, **kwargs):
    real(*args, **kwargs)
    os.kill(os.getpid(), getattr(signal, sys.argv[1]))

catalog.add.sync_lists = sync_lists_then_signal
app(["add", "--bibtex", sys.argv[2]], prog_name="catalog")
"""


@pytest.mark.parametrize(("sig", "status"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_an_interrupted_add_changes_nothing(
    root: Path, tmp_path: Path, sig: str, status: int
) -> None:
    """Ctrl-C or SIGTERM in the middle of `catalog add`: references.bib goes back to its bytes,
    the catalog has no new row, and one line says so (SIGTERM used to kill it mid-way)."""
    assert CliRunner().invoke(app, ["sync"]).exit_code == 0
    bib = root / "papers" / "references.bib"
    before = bib.read_bytes()
    (tmp_path / "new.bib").write_text(BIBTEX, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_ADD, sig, str(tmp_path / "new.bib")],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == status, done.stderr
    assert f"interrupted ({sig}): nothing added" in done.stderr
    assert "Traceback" not in done.stderr
    assert bib.read_bytes() == before
    with session_scope() as session:
        assert session.get(Paper, "2017_Kurakin_A_w-iclr_aeitpw") is None


def test_add_where_references_bib_cannot_be_written(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`catalog add` when papers/ cannot be written (a read-only file system; simulated, since
    root may write anywhere): one line naming the file, exit 1, the file and catalog unchanged."""
    import catalog.bibwrite

    assert CliRunner().invoke(app, ["sync"]).exit_code == 0
    bib = root / "papers" / "references.bib"
    before = bib.read_bytes()
    (tmp_path / "new.bib").write_text(BIBTEX, encoding="utf-8")

    def read_only(*_args: Any, **_kwargs: Any) -> Any:
        raise PermissionError(30, "Read-only file system")

    monkeypatch.setattr(catalog.bibwrite.tempfile, "mkstemp", read_only)
    result = CliRunner().invoke(app, ["add", "--bibtex", str(tmp_path / "new.bib")])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    (line,) = result.output.strip().splitlines()
    assert "references.bib: cannot write: Read-only file system" in line
    assert bib.read_bytes() == before
    with session_scope() as session:
        assert session.get(Paper, "2017_Kurakin_A_w-iclr_aeitpw") is None
