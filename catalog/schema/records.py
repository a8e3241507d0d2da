"""The run records' schema: `summary.json` (a run, written by the runner) and `results.json`
(what a notebook recorded). Part of `catalog.schema`, which re-exports every name here."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator

from catalog.schema.errors import SchemaError

__all__ = [
    "RESULTS_SCHEMA_VERSION",
    "SUMMARY_SCHEMA_VERSION",
    "Results",
    "RunSummary",
    "read_json",
    "validate_results",
    "validate_summary",
]

SUMMARY_SCHEMA_VERSION = 1
RESULTS_SCHEMA_VERSION = 1
Verdict = Literal["match", "deviates", "not_compared", "not_run"]
_Number = float | None


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow")

    @field_validator("*", mode="before")
    @classmethod
    def _json_numbers(cls, value: Any, info: Any) -> Any:
        field = cls.model_fields.get(info.field_name)
        if field is not None and field.annotation in (_Number, float):
            if value is None:
                return None
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"expected a number or null, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"{value!r} is not a finite number")
        return value


class SummaryRow(_Record):
    """A row of a run's comparison with expected.csv (`summary.json` `rows`)."""

    id: str
    value: _Number = None
    paper: _Number = None
    tolerance: _Number = None
    delta: _Number = None
    verdict: Verdict
    reason: str | None = None


class MetricValue(_Record):
    """A free metric a notebook recorded (`name`, a finite `value`)."""

    name: str
    value: float


class SummaryMetric(_Record):
    """A free metric of a run's summary (`value` may be null)."""

    name: str
    value: _Number = None


class ClaimOutcome(_Record):
    """A claim's verdict: `holds` true, false, or null (not evaluated / not written)."""

    id: str
    text: str = ""
    holds: StrictBool | None = None
    detail: str = ""


class FigureRef(_Record):
    """A figure file of the run, relative to the run directory."""

    path: str
    caption: str = ""


class RunSummary(_Record):
    """`summary.json` (schema_version 1): the whole record of a run (catalog/runs.py documents it)."""

    schema_version: Literal[1]
    run_id: str = Field(min_length=1)
    slug: str = Field(min_length=1)
    scale: str = Field(min_length=1)
    status: Literal["succeeded", "failed", "interrupted"]
    started_at: str | None = None
    finished_at: str | None = None
    wall_seconds: _Number = None
    rows: list[SummaryRow] = Field(default_factory=list)
    metrics: list[SummaryMetric] = Field(default_factory=list)
    claims: list[ClaimOutcome] = Field(default_factory=list)
    figures: list[FigureRef] = Field(default_factory=list)

    @field_validator("started_at", "finished_at")
    @classmethod
    def _iso(cls, value: str | None) -> str | None:
        from datetime import datetime

        if value is not None:
            try:
                datetime.fromisoformat(value)
            except (TypeError, ValueError):
                raise ValueError(f"{value!r} is not an ISO 8601 time") from None
        return value


class ResultRow(_Record):
    """A row recorded by a notebook (`results.json` `rows`): its id, value and free `info`."""

    id: str
    value: float
    info: dict[str, Any] = Field(default_factory=dict)


class NotRunRow(_Record):
    """A row the notebook could not run, with the reason."""

    id: str
    reason: str = ""


class Results(_Record):
    """`results.json` (schema_version 1): what a notebook recorded (repro/record.py documents it)."""

    schema_version: Literal[1]
    rows: list[ResultRow] = Field(default_factory=list)
    not_run: list[NotRunRow] = Field(default_factory=list)
    metrics: list[MetricValue] = Field(default_factory=list)
    figures: list[FigureRef] = Field(default_factory=list)


def _record_error(exc: ValidationError, data: Mapping[str, Any], source: str) -> SchemaError:
    """One line naming the field: `x/summary.json: rows[0] (r).value: expected a number ...`."""
    err = exc.errors()[0]
    loc = list(err["loc"])
    parts: list[str] = []
    node: Any = data
    for i, part in enumerate(loc):
        if isinstance(part, int):
            parts[-1] += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            ident = node.get("id") or node.get("name") if isinstance(node, dict) else None
            if isinstance(ident, str) and i + 1 < len(loc):
                parts[-1] += f" ({ident})"
        else:
            parts.append(str(part))
            node = node.get(part) if isinstance(node, dict) else None
    field = ".".join(parts)
    if loc and loc[-1] in ("id", "name") and err["type"] in {"missing", "string_type"}:
        return SchemaError(f"{source}: {field.rsplit('.', 1)[0]} needs a string {loc[-1]!r}")
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        message = "is missing"
    elif err["type"] == "literal_error":
        message = f"{err['input']!r} is not one of {err['ctx']['expected']}"
    elif err["type"] in {"string_type", "bool_type"}:
        message = f"{err['input']!r} has the wrong type ({err['msg']})"
    return SchemaError(f"{source}: field {field!r}: {message}")


def validate_summary(summary: Any, source: str = "summary.json") -> dict[str, Any]:
    """Check a run's summary against its schema; the same dict back, or a `SchemaError` naming
    `source` and the field (`x/summary.json: rows[0] (r).value: expected a number ...`)."""
    if not isinstance(summary, dict):
        raise SchemaError(f"{source}: top level must be a JSON object")
    try:
        RunSummary.model_validate(summary)
    except ValidationError as exc:
        raise _record_error(exc, summary, source) from None
    return summary


def validate_results(data: Any, source: str = "results.json") -> dict[str, Any]:
    """Check a notebook's `results.json`; a normalised copy (missing lists empty, values floats)."""
    if not isinstance(data, dict):
        raise SchemaError(f"{source}: top level must be a JSON object")
    try:
        model = Results.model_validate(data)
    except ValidationError as exc:
        raise _record_error(exc, data, source) from None
    return model.model_dump(mode="json")


def read_json(path: Path) -> Any:
    """A JSON file's data; `SchemaError` with file and line when it is malformed."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SchemaError(f"{path}:{exc.lineno}: malformed JSON: {exc.msg}") from None
