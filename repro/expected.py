"""A reproduction's `expected.csv`: the paper's numbers, read for the runner's comparison.

Light module (csv only), the same reading as the catalog's (`catalog sync` stores these rows as
`ExpectedResult`): required columns `id` (snake_case, unique), `source`, `dataset`, `metric`,
`paper` (a number or empty), `tolerance` (absolute, >= 0, or empty); optional `higher_is_better`
(true/false), `provenance` (starts with `unverified` when the number was not checked against the
paper), `status` (empty, or `not_run: <reason>`); every other column is a setting (model, attack,
eps, ...), kept as text in `setting` (empty cells left out).
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from repro import ReproError

__all__ = ["REQUIRED_COLUMNS", "ExpectedRow", "read_expected"]

REQUIRED_COLUMNS = ("id", "source", "dataset", "metric", "paper", "tolerance")
KNOWN_COLUMNS = (*REQUIRED_COLUMNS, "higher_is_better", "provenance", "status")
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_]*$")  # snake_case; capitals tolerated (L25)


@dataclass(frozen=True)
class ExpectedRow:
    """One row of `expected.csv` (`line` is its line number in the file, for messages)."""

    id: str
    source: str
    dataset: str
    metric: str
    paper: float | None
    tolerance: float | None
    higher_is_better: bool | None = None
    provenance: str | None = None
    status: str | None = None
    setting: dict[str, str] = field(default_factory=dict)
    line: int = 0

    @property
    def not_run_reason(self) -> str | None:
        """The reason of a `status` `not_run: <reason>` (rows that cannot run here), else None."""
        if self.status and self.status.startswith("not_run"):
            return self.status.removeprefix("not_run").lstrip(" :") or "marked not_run"
        return None

    @property
    def unverified(self) -> bool:
        """Whether the paper's number was not checked against the paper (never compared)."""
        return bool(self.provenance) and self.provenance.strip().lower().startswith("unverified")


def _float(text: str, where: str, column: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError as exc:
        raise ReproError(f"{where}: column {column!r}: {text!r} is not a number") from exc
    if not math.isfinite(value):
        raise ReproError(f"{where}: column {column!r}: {text!r} is not a finite number")
    return value


def _bool(text: str, where: str) -> bool | None:
    value = text.strip().lower()
    if not value:
        return None
    if value in {"true", "yes", "1"}:
        return True
    if value in {"false", "no", "0"}:
        return False
    raise ReproError(f"{where}: column 'higher_is_better': {text!r} is not true/false")


def read_expected(path: str | Path) -> list[ExpectedRow]:
    """Read and check an `expected.csv`; `ReproError` naming file:line:column on bad input.

    A missing file is an empty table (a method-only folder has none).
    """
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [h.strip() for h in reader.fieldnames or []]
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise ReproError(f"{path}:1: missing column(s) {', '.join(missing)}")
        if len(set(header)) != len(header):
            raise ReproError(f"{path}:1: duplicate column names")
        reader.fieldnames = header
        rows: list[ExpectedRow] = []
        seen: dict[str, int] = {}
        for record in reader:
            line = reader.line_num
            where = f"{path}:{line}"
            if None in record:
                raise ReproError(f"{where}: more cells than columns")
            cells = {k: (v or "").strip() for k, v in record.items()}
            if not any(cells.values()):
                continue
            row_id = cells["id"]
            if not ID_RE.match(row_id):
                raise ReproError(f"{where}: id {row_id!r} is not snake_case (letters, digits, _)")
            if row_id in seen:
                raise ReproError(f"{where}: duplicate id {row_id!r} (first on line {seen[row_id]})")
            seen[row_id] = line
            for column in ("source", "dataset", "metric"):
                if not cells[column]:
                    raise ReproError(f"{where}: row {row_id}: column {column!r} is empty")
            tolerance = _float(cells["tolerance"], where, "tolerance")
            if tolerance is not None and tolerance < 0:
                raise ReproError(f"{where}: column 'tolerance': {tolerance} is negative")
            status = cells.get("status") or None
            if status and not status.startswith("not_run"):
                raise ReproError(f"{where}: column 'status': {status!r} is not 'not_run: <reason>'")
            rows.append(
                ExpectedRow(
                    id=row_id,
                    source=cells["source"],
                    dataset=cells["dataset"],
                    metric=cells["metric"],
                    paper=_float(cells["paper"], where, "paper"),
                    tolerance=tolerance,
                    higher_is_better=_bool(cells.get("higher_is_better", ""), where),
                    provenance=cells.get("provenance") or None,
                    status=status,
                    setting={k: v for k, v in cells.items() if k not in KNOWN_COLUMNS and v},
                    line=line,
                )
            )
    return rows
