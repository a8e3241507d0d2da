"""A reproduction's `expected.csv`, for the runner and the notebooks: `catalog.schema` reads it.

The one schema of the file (columns, `status`, units, settings) is `catalog/schema.py`; this module
only turns its `SchemaError` into the toolkit's `ReproError`, so a notebook or `repro run` reports a
broken table the same way as every other bad input.
"""

from __future__ import annotations

from pathlib import Path

from catalog.schema import EXPECTED_REQUIRED, ExpectedRow, SchemaError
from catalog.schema import read_expected as _read
from repro import ReproError

__all__ = ["REQUIRED_COLUMNS", "ExpectedRow", "read_expected"]

REQUIRED_COLUMNS = EXPECTED_REQUIRED


def read_expected(path: str | Path) -> list[ExpectedRow]:
    """Read and check an `expected.csv`; `ReproError` naming file:line:column on bad input.

    A missing file is an empty table (a method-only folder has none). Units are not filled in
    here (they live in repro.toml): `repro.config.load_reproduction` reads both together.
    """
    try:
        return _read(path)
    except SchemaError as exc:
        raise ReproError(str(exc)) from None
