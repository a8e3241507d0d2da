"""advrepro's sessions: `nox -l` lists them; `nox -s reproduce -- fgsm` runs one paper.

Every session runs in ONE shared environment (`.nox/shared`, built with uv from pyproject's
`dev` dependency group), so torch (~5 GB) is installed once, not once per session. The environment
is rebuilt only when pyproject.toml changes (a hash stamp inside it).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

import nox

nox.options.default_venv_backend = "none"
nox.options.sessions = ["lint", "tests"]

ROOT = Path(__file__).resolve().parent
SHARED = ROOT / ".nox" / "shared"
STAMP = SHARED / ".advrepro-deps"


def _bin(name: str) -> str:
    return str(SHARED / "bin" / name)


def _shared_env(session: nox.Session) -> dict[str, str]:
    """Create or refresh the shared environment; return the env vars that activate it."""
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not (STAMP.exists() and STAMP.read_text() == digest):
        uv = shutil.which("uv")
        if uv is None:
            session.run(sys.executable, "-m", "pip", "install", "-q", "uv", external=True)
            uv = shutil.which("uv") or "uv"
        if not (SHARED / "bin" / "python").exists():
            session.run(uv, "venv", "-q", "--python", sys.executable, str(SHARED), external=True)
        session.run(
            uv,
            "pip",
            "install",
            "-q",
            # precompiled bytecode: `catalog list` starts in ~0.4 s instead of ~1.3 s where
            # PYTHONDONTWRITEBYTECODE is set (as on these machines) and nothing caches .pyc files
            "--compile-bytecode",
            "--python",
            _bin("python"),
            "-e",
            ".",
            "--group",
            "dev",
            external=True,
        )
        STAMP.write_text(digest)
    path = f"{SHARED / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    return {"VIRTUAL_ENV": str(SHARED), "PATH": path, "PYTHONUNBUFFERED": "1"}


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (SQLite and PostgreSQL, smoke reproductions, browser tests)."""
    env = _shared_env(session)
    args = session.posargs or ["tests"]
    session.run(_bin("pytest"), *args, env=env, external=True)


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff lint and format check."""
    env = _shared_env(session)
    session.run(_bin("ruff"), "check", ".", env=env, external=True)
    session.run(_bin("ruff"), "format", "--check", ".", env=env, external=True)


@nox.session(default=False)
def reproduce(session: nox.Session) -> None:
    """Run one reproduction: `nox -s reproduce -- SLUG [--scale auto] [--device] [--seed] ...`."""
    if not session.posargs:
        session.error("usage: nox -s reproduce -- SLUG [--scale smoke|small|full|auto] [...]")
    env = _shared_env(session)
    session.run(_bin("repro"), "run", *session.posargs, env=env, external=True)


@nox.session(default=False)
def site(session: nox.Session) -> None:
    """Sync the catalog, ingest `records/`, build the static site into `_site/` (`-- --out DIR`)."""
    env = _shared_env(session)
    session.run(_bin("catalog"), "sync", env=env, external=True)
    # the runs of record kept in git (records/<slug>/<run-id>/): the numbers the READMEs report
    session.run(_bin("catalog"), "ingest-runs", "records", env=env, external=True)
    args = session.posargs or ["--out", "_site"]
    session.run(_bin("catalog"), "publish", *args, env=env, external=True)
    session.log(f"open {ROOT / '_site' / 'index.html'} (works from file://)")


@nox.session(default=False)
def nightly(session: nox.Session) -> None:
    """Every reproduction (unchanged ones reused), every run stored, drift reported, site rebuilt.

    `nox -s nightly -- [--scale smoke|small|full|auto] [--only SLUG...] [--force]
    [--executor local|slurm]` (more: `python -m repro.nightly --help`). Exits 1 when a claim that
    held in the previous run fails now; the site is rebuilt before that verdict.
    """
    env = _shared_env(session)
    session.run(_bin("catalog"), "sync", env=env, external=True)
    session.run(_bin("python"), "-m", "repro.nightly", *session.posargs, env=env, external=True)


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Benchmarks (not tests): catalog, site build, attacks vs torchattacks, projection."""
    env = _shared_env(session)
    out = ROOT / "artifacts" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    for script in sorted((ROOT / "benchmarks").glob("bench_*.py")):
        session.log(f"== {script.name}")
        json_out = out / f"{script.stem}.json"
        session.run(
            _bin("python"),
            str(script),
            "--json",
            str(json_out),
            *session.posargs,
            env=env,
            external=True,
        )
