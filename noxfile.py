"""advrepro's sessions: `nox -l` lists them; `nox -s reproduce -- fgsm` runs one paper.

Every session runs in ONE shared environment (`.nox/shared`, built with uv from pyproject's
`dev` dependency group), so torch (~5 GB) is installed once, not once per session. The environment
is rebuilt only when pyproject.toml changes (a hash stamp inside it).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nox
from nox.command import CommandFailed

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
    """Run the test suite (SQLite and PostgreSQL, smoke reproductions, browser tests).

    Without arguments: on every core the machine has (pytest-xdist `-n auto`), one test file per
    worker at a time (`--dist loadfile`: a module's shared smoke run is made once). Each test
    uses its own database and temporary folders, and the model cache locks its entries, so the
    workers share nothing else. Arguments replace these (e.g. `nox -s tests -- tests/site -x`)."""
    env = _shared_env(session)
    args = session.posargs or ["-n", "auto", "--dist", "loadfile", "tests"]
    session.run(_bin("pytest"), *args, env=env, external=True)


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff lint and format check."""
    env = _shared_env(session)
    session.run(_bin("ruff"), "check", ".", env=env, external=True)
    session.run(_bin("ruff"), "format", "--check", ".", env=env, external=True)


DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


VALUE_OPTIONS = {"--scale", "--device", "--seed", "--data-dir", "--out", "--executor", "--threads"}


def _slug_and_options(posargs: list[str]) -> tuple[str | None, list[str]]:
    """`repro run`'s SLUG (the first argument that is neither an option nor an option's value)
    and the other arguments."""
    for i, arg in enumerate(posargs):
        if arg.startswith("-") or (i > 0 and posargs[i - 1] in VALUE_OPTIONS):
            continue
        return arg, posargs[:i] + posargs[i + 1 :]
    return None, list(posargs)


def _option(args: list[str], name: str) -> str | None:
    """The value of `--name VALUE` or `--name=VALUE` in `args`, if given."""
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _needs_fashion_mnist(slug: str) -> bool:
    """Whether `repro/<slug>/repro.toml` names Fashion-MNIST (at any scale)."""
    import tomllib

    path = ROOT / "repro" / slug / "repro.toml"
    try:
        config = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return False  # `repro run` reports a broken or unknown folder itself
    names = list(config.get("datasets") or [])
    for table in (config.get("scales") or {}).values():
        if isinstance(table, dict):
            names += list(table.get("datasets") or [])
    return any(name in ("fashion_mnist", "fashion-mnist") for name in names)


def _available_elsewhere(env: dict[str, str], data_dir: str | None) -> bool:
    """Whether repro.data finds Fashion-MNIST in `--data-dir`, `REPRO_DATA_DIR` or the cache."""
    check = (
        "import sys; from repro.data import available; "
        "sys.exit(0 if available('fashion_mnist', sys.argv[1] or None) else 3)"
    )
    done = subprocess.run(
        [_bin("python"), "-c", check, data_dir or ""],
        env={**os.environ, **env},
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


def _provide_debian_data(session: nox.Session, env: dict[str, str], args: list[str]) -> None:
    """Install Debian's `dataset-fashion-mnist` when the reproduction needs Fashion-MNIST, no root
    has it, and this is Debian run as root; otherwise leave it to `repro run` (which downloads it,
    or says clearly how to supply it). `--offline` installs nothing."""
    slug, options = _slug_and_options(args)
    if slug is None or "--offline" in options or not _needs_fashion_mnist(slug):
        return
    if (DEBIAN_FASHION_MNIST / "t10k-images-idx3-ubyte.gz").is_file():
        return
    if _available_elsewhere(env, _option(options, "--data-dir")):
        return
    debian = Path("/etc/debian_version").is_file() and shutil.which("apt-get")
    if not debian or os.geteuid() != 0:
        session.log(
            "Fashion-MNIST is missing; not installing it (needs Debian and root):"
            " repro run will try to download it"
        )
        return
    session.log("Fashion-MNIST is missing: installing Debian's dataset-fashion-mnist (apt-get)")
    apt_env = {"DEBIAN_FRONTEND": "noninteractive"}
    try:
        session.run("apt-get", "update", "-q", env=apt_env, external=True)
        session.run(
            "apt-get",
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            "dataset-fashion-mnist",
            env=apt_env,
            external=True,
        )
    except CommandFailed:
        session.warn(
            "apt-get could not install dataset-fashion-mnist; repro run will try to download"
        )


@nox.session(default=False)
def reproduce(session: nox.Session) -> None:
    """Run one reproduction: `nox -s reproduce -- SLUG [--scale auto] [--device] [--seed] ...`."""
    if not session.posargs:
        session.error("usage: nox -s reproduce -- SLUG [--scale smoke|small|full|auto] [...]")
    env = _shared_env(session)
    _provide_debian_data(session, env, list(session.posargs))
    session.run(_bin("repro"), "run", *session.posargs, env=env, external=True)


@nox.session(default=False)
def site(session: nox.Session) -> None:
    """Sync the catalog, ingest `records/`, build the site into `_site/` (`-- --screenshots DIR`).

    Posargs go to `catalog publish`: `--out DIR` (default `_site`), `--screenshots DIR` (full-page
    PNGs of the index, the Defense-GAN page and the scoreboard, taken in Chromium after the build).
    """
    env = _shared_env(session)
    session.run(_bin("catalog"), "sync", env=env, external=True)
    # the runs of record kept in git (records/<slug>/<run-id>/): the numbers the READMEs report
    session.run(_bin("catalog"), "ingest-runs", "records", env=env, external=True)
    args = list(session.posargs)
    if "--out" not in args and not any(a.startswith("--out=") for a in args):
        args = ["--out", "_site", *args]
    session.run(_bin("catalog"), "publish", *args, env=env, external=True)
    session.log(f"open {ROOT / '_site' / 'index.html'} (works from file://)")


@nox.session(default=False)
def nightly(session: nox.Session) -> None:
    """Every reproduction (unchanged ones reused), every run stored, drift reported, site rebuilt.

    `nox -s nightly -- [--scale smoke|small|full|auto] [--only SLUG...] [--force]
    [--executor local|slurm]` (more: `repro nightly --help`). Exits 1 when a claim that held in
    the previous run fails now; the site is rebuilt before that verdict.
    """
    env = _shared_env(session)
    session.run(_bin("catalog"), "sync", env=env, external=True)
    session.run(_bin("repro"), "nightly", *session.posargs, env=env, external=True)


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
