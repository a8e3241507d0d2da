"""Fixtures for the catalog command tests (on top of `tests/conftest.py`'s `db_url`/`project`).

`lit` is the project copy with the real `papers/` (references.bib, the four reading lists as
given, reviews) and, instead of the in-progress `repro/` folders of other engineers, one small
reproduction written here, so these tests exercise the catalog and not the state of the tree.
`test_sync.py::test_sync_of_the_real_tree` covers the real `repro/` folders.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from catalog.db import session_scope
from catalog.sync import SyncReport, sync

FGSM = "2015_Goodfellow_I_p-iclr_ehae"
DEFENSE_GAN = "2018_Samangouei_P_p-iclr_dpcaaugm"
LID = "2018_Ma_X_p-iclr_casulid"

DEMO_TOML = f"""slug = "demo"
key = "{FGSM}"
title = "FGSM demo"
datasets = ["fashion_mnist"]
uses = []
notebook = false

[metrics]
error_pct = "percent"

[scales.smoke]
epochs = 1
[scales.full]
needs_gpu = true
"""

DEMO_CSV = """id,source,dataset,metric,paper,tolerance,higher_is_better,provenance,status,model,eps
maxout_fgsm_error,Table 1,mnist,error_pct,89.4,2.0,false,arXiv 1412.6572 p.3 [P],,maxout,0.25
cifar_row,Section 5 text,cifar10,error_pct,87.15,2.0,false,unverified: memory,not_run: CIFAR-10 is not available offline,maxout,0.1
"""


def write_demo_repro(root: Path) -> Path:
    """A minimal, valid `repro/demo/` (repro.toml + expected.csv) for the paper FGSM."""
    folder = root / "repro" / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "repro.toml").write_text(DEMO_TOML, encoding="utf-8")
    (folder / "expected.csv").write_text(DEMO_CSV, encoding="utf-8")
    return folder


@pytest.fixture
def lit(project: Path) -> Path:
    """The project copy with the real literature and one demo reproduction (see module doc)."""
    if (project / "repro").exists():
        shutil.rmtree(project / "repro")
    write_demo_repro(project)
    return project


@pytest.fixture
def synced(lit: Path) -> tuple[Path, SyncReport]:
    """`lit`, synced once into the test database."""
    with session_scope() as session:
        report = sync(session, lit)
    return lit, report


@pytest.fixture
def cli() -> Callable[..., Result]:
    """Run `catalog ARGS...` in-process; returns click's Result (stdout/stderr separate)."""
    from catalog.cli import app

    runner = CliRunner()

    def run(*args: str, input: str | None = None) -> Result:
        return runner.invoke(app, list(args), input=input, catch_exceptions=False)

    return run


LITERATURE_TABLES = (
    "paper",
    "author",
    "paperauthor",
    "readinglist",
    "listentry",
    "review",
    "reproduction",
    "expectedresult",
    "run",
)


def dump(url: str | None = None) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the catalog's tables, in a stable order, for before/after comparisons."""
    from sqlalchemy import text

    from catalog.db import get_engine

    out = {}
    with get_engine(url).connect() as connection:
        for table in LITERATURE_TABLES:
            rows = connection.execute(text(f"SELECT * FROM {table}")).all()
            out[table] = sorted(tuple(str(v) for v in row) for row in rows)
    return out


@pytest.fixture
def db_dump() -> Callable[..., dict[str, list[tuple[Any, ...]]]]:
    """`dump` as a fixture (test modules cannot import conftest)."""
    return dump
