"""Catalog performance: `sync` of a 10,000-entry BibTeX file, `search` over 1,000 papers, and the
start-up time of `catalog list` (which must not import torch).

Not a test: run it by hand (`python benchmarks/bench_catalog.py [--json out.json] [--pg URL]`).
It builds throw-away projects in a temporary folder — the real lists, reviews and references.bib
plus generated entries (deterministic, seeded) — so the numbers include list matching as a real
sync does. Goals (issue 2): sync < 5 s, search < 50 ms, `catalog list` < 0.5 s.

Wall-clock figures on a shared machine depend on its load, so the load average is printed with
them and the CPU time (user + system) of the `catalog list` processes is reported too.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

WORDS = [
    "adversarial",
    "robust",
    "training",
    "network",
    "deep",
    "learning",
    "generative",
    "model",
    "attack",
    "defense",
    "gradient",
    "perturbation",
    "certified",
    "bound",
    "convex",
    "relaxation",
    "lipschitz",
    "smoothing",
    "randomized",
    "ensemble",
    "transfer",
    "black-box",
    "white-box",
    "detection",
    "distillation",
    "regularization",
    "feature",
    "space",
    "manifold",
    "projection",
    "wasserstein",
    "discriminator",
    "generator",
    "latent",
    "sparse",
    "pruning",
    "quantization",
    "compression",
    "spectral",
    "normalization",
    "curvature",
    "landscape",
    "invariance",
    "rotation",
    "translation",
]
FIRST = [
    "Alice",
    "Bob",
    "Carla",
    "Deniz",
    "Emil",
    "Fatima",
    "Goran",
    "Hana",
    "Ivan",
    "Julia",
    "Kenji",
    "Lena",
    "Mateo",
    "Nadia",
    "Omar",
]
LAST = [
    "Smith",
    "Chen",
    "Garcia",
    "Müller",
    "Rossi",
    "Novak",
    "Kowalski",
    "Tanaka",
    "Silva",
    "Ivanova",
    "Dubois",
    "Jensen",
    "Kim",
    "Nguyen",
    "Haddad",
    "Costa",
    "Weber",
    "Fischer",
    "Schulz",
    "Wagner",
    "Becker",
    "Hoffmann",
    "Schäfer",
    "Koch",
    "Richter",
]
VENUES = (
    (
        "inproceedings",
        "booktitle",
        "International Conference on Learning Representations (ICLR)",
        "p-iclr",
    ),
    (
        "inproceedings",
        "booktitle",
        "Advances in Neural Information Processing Systems (NeurIPS)",
        "p-neurips",
    ),
    ("article", "journal", "Neurocomputing", "j-nc"),
    ("misc", None, None, "arxiv"),
)


def generated_entries(n: int, seed: int = 0) -> str:
    """`n` distinct, valid house-style entries with authors, arXiv ids and abstracts."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        year = rng.randint(2012, 2025)
        title_words = [rng.choice(WORDS) for _ in range(rng.randint(4, 10))]
        title = " ".join(title_words).capitalize() + f" {i}"
        authors = [
            (f"{rng.choice(LAST)}{rng.randint(0, 120)}", rng.choice(FIRST))
            for _ in range(rng.randint(1, 6))
        ]
        authors = list(dict.fromkeys(authors))
        entry_type, field, venue, code = rng.choice(VENUES)
        initials = "".join(w[0] for w in title_words) + str(i)
        last = authors[0][0].replace("ü", "u").replace("ä", "a")
        key = f"{year}_{last}_{authors[0][1][0]}_{code}_{initials}"
        lines = [
            f"@{entry_type}{{{key},",
            f"  title = {{{title}}},",
            "  author = {" + " and ".join(f"{a}, {b}" for a, b in authors) + "},",
        ]
        if field:
            lines.append(f"  {field} = {{{venue}}},")
        lines += [
            f"  year = {{{year}}},",
            f"  eprint = {{{year % 100:02d}{rng.randint(1, 12):02d}.{i:05d}}},",
            "  archiveprefix = {arXiv},",
            "  abstract = {" + " ".join(rng.choice(WORDS) for _ in range(60)) + "},",
            "}",
        ]
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def make_project(folder: Path, n_generated: int) -> Path:
    """A project with the real papers/ (lists, reviews, bib) plus `n_generated` entries."""
    shutil.copytree(REPO / "papers", folder / "papers")
    bib = folder / "papers" / "references.bib"
    extra = folder / "papers" / "lists" / "extra.toml"
    extra.unlink(missing_ok=True)
    bib.write_text(bib.read_text(encoding="utf-8") + "\n" + generated_entries(n_generated))
    return folder


def use(root: Path, url: str) -> None:
    from catalog.db import reset_engines

    os.environ["ADVREPRO_ROOT"] = str(root)
    os.environ["DATABASE_URL"] = url
    reset_engines()


def bench_sync(root: Path, url: str) -> dict[str, float]:
    from catalog.db import get_engine, session_scope
    from catalog.sync import sync

    use(root, url)
    get_engine()  # create the schema first: migrations are not part of sync
    start, cpu = time.perf_counter(), time.process_time()
    with session_scope() as session:
        report = sync(session, root)
    first, first_cpu = time.perf_counter() - start, time.process_time() - cpu
    start = time.perf_counter()
    with session_scope() as session:
        again = sync(session, root)
    second = time.perf_counter() - start
    assert not again.changed, "second sync changed something"
    return {
        "papers": len(report.kinds["papers"].added),
        "authors": len(report.kinds["authors"].added),
        "first_sync_s": first,
        "first_sync_cpu_s": first_cpu,  # this process only (not the database server)
        "second_sync_s": second,
    }


def bench_search(root: Path, url: str, repeats: int = 20) -> dict[str, float]:
    from catalog.db import get_engine, session_scope
    from catalog.queries import search
    from catalog.sync import sync

    use(root, url)
    with session_scope() as session:
        sync(session, root)
    queries = ["adversarial", "robust training", "wasserstein generator", "smith", "turtle", "zzz"]
    times, cpus = [], []
    engine = get_engine()
    with engine.connect() as connection:
        n = connection.exec_driver_sql("SELECT COUNT(*) FROM paper").scalar()
        for _ in range(repeats):
            for q in queries:
                start, cpu = time.perf_counter(), time.process_time()
                search(connection, q)
                times.append(time.perf_counter() - start)
                cpus.append(time.process_time() - cpu)
    return {
        "papers": n,
        "queries": len(times),
        "median_ms": statistics.median(times) * 1000,
        "median_cpu_ms": statistics.median(cpus) * 1000,
        "max_ms": max(times) * 1000,
    }


def bench_list_start(root: Path, url: str, runs: int = 7, env_extra: dict | None = None) -> dict:
    env = {**os.environ, "ADVREPRO_ROOT": str(root), "DATABASE_URL": url, **(env_extra or {})}
    exe = Path(sys.executable).with_name("catalog")
    cmd = [str(exe), "list"] if exe.exists() else [sys.executable, "-m", "catalog.cli", "list"]
    subprocess.run(cmd, env=env, capture_output=True, check=True)  # warm the OS file cache
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(cmd, env=env, capture_output=True, check=True)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    probe = (
        "import sys\nfrom catalog.cli import main\nsys.argv = ['catalog', 'list']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO_TORCH', file=sys.stderr)\n"
    )
    probe_run = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    return {
        "median_wall_s": statistics.median(walls),
        "min_wall_s": min(walls),
        "median_cpu_s": statistics.median(cpus),
        "torch_imported": "NO_TORCH" not in probe_run.stderr,
    }


def fresh_pg_database(server_url: str) -> tuple[str, str]:
    """Create an empty database on the server (the server's own databases are never touched)."""
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"advrepro_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False), name


def drop_pg_database(server_url: str, name: str) -> None:
    """Drop the database `fresh_pg_database` made."""
    from sqlalchemy import create_engine, text

    from catalog.db import reset_engines

    reset_engines()
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--entries", type=int, default=10_000, help="generated entries for sync")
    parser.add_argument("--search-papers", type=int, default=1_000)
    parser.add_argument(
        "--pg", help="also time sync on PostgreSQL: a server URL (a fresh database is made there)"
    )
    args = parser.parse_args()

    results: dict = {"load_average": os.getloadavg(), "python": sys.version.split()[0]}
    with tempfile.TemporaryDirectory(prefix="bench-catalog-") as tmp:
        tmp_path = Path(tmp)
        big = make_project(tmp_path / "big", args.entries)
        results["sync_sqlite"] = bench_sync(big, f"sqlite:///{tmp_path / 'big.db'}")
        if args.pg:
            pg_url, pg_name = fresh_pg_database(args.pg)
            try:
                results["sync_postgres"] = bench_sync(big, pg_url)
            finally:
                drop_pg_database(args.pg, pg_name)
        small = make_project(tmp_path / "small", args.search_papers - 32)
        url = f"sqlite:///{tmp_path / 'small.db'}"
        results["search"] = bench_search(small, url)
        # `catalog list` start-up: on the project's own catalog, without and with a .pyc cache
        # (this machine sets PYTHONDONTWRITEBYTECODE and its venv has no .pyc), then 1,000 papers
        real = make_project(tmp_path / "real", 0)
        real_url = f"sqlite:///{tmp_path / 'real.db'}"
        results["real_papers"] = bench_sync(real, real_url)["papers"]
        pyc = {"PYTHONPYCACHEPREFIX": str(tmp_path / "pyc"), "PYTHONDONTWRITEBYTECODE": ""}
        results["list_start"] = bench_list_start(real, real_url)
        results["list_start_bytecode"] = bench_list_start(real, real_url, env_extra=pyc)
        results["list_1000_bytecode"] = bench_list_start(small, url, env_extra=pyc)

    s, q = results["sync_sqlite"], results["search"]
    rows = [
        ("sync, first (SQLite)", f"{s['papers']} papers", f"{s['first_sync_s']:.2f} s", "< 5 s"),
        ("sync, first: CPU of this process", "", f"{s['first_sync_cpu_s']:.2f} s", ""),
        ("sync, again (no change)", f"{s['papers']} papers", f"{s['second_sync_s']:.2f} s", ""),
    ]
    if "sync_postgres" in results:
        p = results["sync_postgres"]
        rows.append(
            (
                "sync, first (PostgreSQL)",
                f"{p['papers']} papers",
                f"{p['first_sync_s']:.2f} s",
                "< 5 s",
            )
        )
    rows += [
        ("search (median)", f"{q['papers']} papers", f"{q['median_ms']:.1f} ms", "< 50 ms"),
        ("search (median CPU)", f"{q['papers']} papers", f"{q['median_cpu_ms']:.1f} ms", ""),
        ("search (max)", f"{q['queries']} queries", f"{q['max_ms']:.1f} ms", ""),
    ]
    for name, label, goal in (
        ("list_start", f"{results['real_papers']} papers, no .pyc", "< 0.5 s"),
        ("list_start_bytecode", f"{results['real_papers']} papers, .pyc", "< 0.5 s"),
        ("list_1000_bytecode", "1000 papers, .pyc", ""),
    ):
        r = results[name]
        rows.append(("`catalog list` wall (median)", label, f"{r['median_wall_s']:.2f} s", goal))
        rows.append(("`catalog list` CPU (median)", label, f"{r['median_cpu_s']:.2f} s", ""))
    imported = results["list_start"]["torch_imported"]
    rows.append(("torch imported by `catalog list`", "", str(imported), "False"))
    width = [max(len(r[i]) for r in rows) for i in range(4)]
    load = ", ".join(f"{x:.2f}" for x in results["load_average"])
    print(f"catalog benchmark (Python {results['python']}, load average {load})")
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, width, strict=True)))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
