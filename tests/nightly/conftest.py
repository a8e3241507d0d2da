"""A temporary project of tiny fake reproductions (no torch, no data): fast enough to run the whole
nightly — notebooks executed by papermill, runs stored, keys compared — many times per test.

    repro/tinyfake/        records `tiny_error` = [scales.<scale>] value; claim: error < 50
    repro/tinyfake_user/   uses = ["tinyfake"] (its key depends on tinyfake's folder)
    repro/tinyfake_other/  independent
    repro/tinyfake_method/ method-only folder (notebook = false): never run

`ADVREPRO_ROOT` points at it and `DATABASE_URL` at the `db_url` database (SQLite and PostgreSQL).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from catalog.db import reset_engines

NOTEBOOK = """\
# %% tags=["parameters"]
scale = "smoke"
device = "cpu"
seed = 0
data_dir = None
out_dir = "."

# %%
from repro.config import scale_params
from repro.record import Recorder

P = scale_params("{slug}", scale)
rec = Recorder(out_dir)
if P.get("crash"):
    raise RuntimeError("tiny fake crash")
rec.row("tiny_error", P["value"] + seed, dataset="mnist")
rec.row("tiny_seconds", 1.0, dataset="mnist")
rec.not_run("tiny_cifar", "CIFAR-10 is not available offline")
rec.metric("answer", 42)
"""

CLAIMS = """\
from repro.claims import Claim


def _low(r):
    value = r["tiny_error"]
    return value < 50, f"error {{value:.1f}} (claim: below 50)"


CLAIMS = [Claim("low_error", "The tiny error stays below 50", _low)]
"""

EXPECTED = """\
id,source,dataset,metric,paper,tolerance,provenance
tiny_error,Table 1,mnist,error_pct,10.0,1.0,arXiv 0000.00000 p.1
tiny_seconds,Table 2,mnist,seconds_per_image,1.0,0.5,arXiv 0000.00000 p.2
tiny_cifar,Table 3,cifar10,error_pct,5.0,1.0,arXiv 0000.00000 p.3
"""

KEYS = {
    "tinyfake": "2099_Fake_A_arxiv_tf",
    "tinyfake_user": "2099_Fake_A_arxiv_tu",
    "tinyfake_other": "2099_Fake_A_arxiv_to",
    "tinyfake_method": "2099_Fake_A_arxiv_tm",
}


def write_reproduction(
    root: Path,
    slug: str,
    *,
    value: float = 10.0,
    uses: Iterable[str] = (),
    notebook: bool = True,
    crash: bool = False,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write (or overwrite) `repro/<slug>/` in the project at `root`."""
    folder = root / "repro" / slug
    folder.mkdir(parents=True, exist_ok=True)
    smoke = {"wall_minutes": 1, "value": value, **({"crash": True} if crash else {})}
    smoke.update(extra or {})
    lines = [
        f'slug = "{slug}"',
        f'key = "{KEYS.get(slug, "2099_Fake_A_arxiv_tx")}"',
        f'title = "Tiny fake reproduction {slug}"',
        "datasets = []",
        f"uses = {json.dumps(list(uses))}",
        f"notebook = {'true' if notebook else 'false'}",
        "",
        "[metrics]",
        'error_pct = "percent"',
        'seconds_per_image = "seconds"',
        "",
        "[scales.smoke]",
        *(f"{k} = {json.dumps(v)}" for k, v in smoke.items()),
        "",
        "[scales.small]",
        "wall_minutes = 3",
        f"value = {json.dumps(value)}",
        "",
        "[scales.full]",
        "wall_minutes = 30",
        "needs_gpu = true",
        f"value = {json.dumps(value)}",
        "",
    ]
    (folder / "repro.toml").write_text("\n".join(lines), encoding="utf-8")
    (folder / "__init__.py").write_text(f'"""Tiny fake method {slug}."""\n', encoding="utf-8")
    if notebook:
        (folder / "reproduce.py").write_text(NOTEBOOK.format(slug=slug), encoding="utf-8")
        (folder / "claims.py").write_text(CLAIMS.format(), encoding="utf-8")
        (folder / "expected.csv").write_text(EXPECTED, encoding="utf-8")
    return folder


def make_tiny_project(root: Path) -> Path:
    """The four tiny reproductions, a one-file toolkit stand-in and their papers, under `root`."""
    (root / "repro").mkdir(parents=True, exist_ok=True)
    (root / "papers").mkdir(parents=True, exist_ok=True)
    (root / "papers" / "references.bib").write_text(
        "\n".join(
            f"@misc{{{key},\n  author = {{Fake, Alice}},\n  title = {{Tiny Fake Paper {slug}}},"
            f"\n  year = {{2099}},\n}}\n"
            for slug, key in KEYS.items()
        ),
        encoding="utf-8",
    )
    (root / "repro" / "__init__.py").write_text('"""toolkit stand-in"""\n', encoding="utf-8")
    write_reproduction(root, "tinyfake")
    write_reproduction(root, "tinyfake_user", value=20.0, uses=["tinyfake"])
    write_reproduction(root, "tinyfake_other", value=30.0)
    write_reproduction(root, "tinyfake_method", notebook=False)
    return root


@pytest.fixture
def tiny_project(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary project of tiny fake reproductions, on the `db_url` catalog."""
    root = make_tiny_project(tmp_path / "project")
    monkeypatch.setenv("ADVREPRO_ROOT", str(root))
    monkeypatch.delenv("REPRO_DATA_DIR", raising=False)
    reset_engines()
    return root


@pytest.fixture
def tiny_project_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The tiny project on a SQLite catalog only: for tests of command-line plumbing, where the
    database backend is not what is tested (keeps the slow subprocess tests to one backend)."""
    reset_engines()
    root = make_tiny_project(tmp_path / "project")
    monkeypatch.setenv("ADVREPRO_ROOT", str(root))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'catalog.db'}")
    monkeypatch.delenv("REPRO_DATA_DIR", raising=False)
    yield root
    reset_engines()


def summary(
    run_id: str,
    *,
    slug: str = "tinyfake",
    scale: str = "smoke",
    status: str = "succeeded",
    started: str = "2026-01-01T00:00:00+00:00",
    value: float | None = 10.0,
    verdict: str = "not_compared",
    holds: bool | None = True,
    **changes: Any,
) -> dict[str, Any]:
    """A summary.json record (schema 1) for catalog-side tests that need no notebook."""
    record: dict[str, Any] = {
        "schema_version": 1,
        "run_id": run_id,
        "slug": slug,
        "scale": scale,
        "status": status,
        "seed": 0,
        "parameters": {"scale": scale, "device": "cpu", "seed": 0},
        "started_at": started,
        "finished_at": started,
        "wall_seconds": 2.0,
        "provenance": {"device": "cpu", "executor": "local"},
        "run_key": None,
        "reused_from": None,
        "notebook": None,
        "error": None if status == "succeeded" else "Traceback ...\nRuntimeError: boom",
        "rows": [
            {
                "id": "tiny_error",
                "value": value,
                "paper": 10.0,
                "tolerance": 1.0,
                "delta": None if value is None else value - 10.0,
                "verdict": verdict,
                "reason": None,
            },
            {
                "id": "tiny_cifar",
                "value": None,
                "paper": 5.0,
                "tolerance": 1.0,
                "delta": None,
                "verdict": "not_run",
                "reason": "CIFAR-10 is not available offline",
            },
        ],
        "metrics": [{"name": "answer", "value": 42.0}],
        "claims": [{"id": "low_error", "text": "The tiny error stays low", "holds": holds}],
        "figures": [],
    }
    record.update(changes)
    return record
