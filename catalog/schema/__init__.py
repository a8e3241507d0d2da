"""The schema of every file format advrepro reads: one model per format, read by everyone.

    expected.csv   `read_expected`     -> list[ExpectedRow]   (catalog sync, runner, notebooks, site)
    repro.toml     `read_repro_toml`   -> ReproConfig         (catalog sync, runner, run key, site)
    both, checked against each other: `read_reproduction(folder)` -> Reproduction
    summary.json   `validate_summary`  -> dict                (runner, catalog ingest, site)
    results.json   `validate_results`  -> dict                (runner)

Models are pydantic (which SQLModel brings), so the rules live in one place and the errors come from
one formatter: `SchemaError` (a `CatalogError`), one line naming file, line and field, e.g.
``repro/fgsm/expected.csv:7: row t1_a: column 'paper': 'n/a' is not a number``.

expected.csv (the paper's numbers; a header, then one row per number):
- required columns `id` (snake_case, unique), `source` ("Table 2"), `dataset`, `metric`, `paper`
  (the number as printed), `tolerance` (absolute, >= 0, the band a `full` run is held to);
  `paper` and `tolerance` may be empty only on a row whose `status` is `not_run: <reason>`;
- optional `higher_is_better` (true/false), `provenance` (where the number was read; starting with
  `unverified` when it was not checked against the paper: such rows are never compared), `status`
  (empty, or `not_run: <reason>` for rows that cannot run here), `paper_std` (the paper's spread);
- every other column is a setting (model, attack, eps, ...): empty cells are left out, integers and
  decimals become numbers, the rest stays text.
- The unit of a metric is declared in repro.toml's `[metrics]` table, never guessed from the name or
  the value: `accuracy = "fraction"`, `accuracy_pct = "percent"`.

repro.toml (a reproduction folder's configuration):

    slug = "fgsm"                          # must equal the folder name
    key = "2015_Goodfellow_I_p-iclr_ehae"  # the paper's catalog key
    title = "Explaining and Harnessing Adversarial Examples"
    datasets = ["mnist", "fashion_mnist"]
    uses = []                              # slugs whose code this folder imports
    notebook = true                        # default: whether reproduce.py exists

    [metrics]                              # the unit of every metric of expected.csv
    error_pct = "percent"

    [scales.smoke]                         # any parameters; `wall_minutes`, `needs_gpu` are read here
    epochs = 1

    [site]                                 # how the site shows the paper (all optional)
    headline = "mnist_maxout_fgsm_error"   # the row the index shows as "paper X · ours Y"
    [site.tables."Table 4"]                # a source table's printed shape
    rows = ["model", "attack"]             # setting columns that form the rows
    columns = ["defense"]                  # ... and the columns

Run records (`summary.json`, `results.json`): see `RunSummary` and `Results`.
"""

from __future__ import annotations

import csv
import io
import math
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
)

from catalog.schema.errors import SchemaError
from catalog.schema.records import (
    RESULTS_SCHEMA_VERSION,
    SUMMARY_SCHEMA_VERSION,
    Results,
    RunSummary,
    read_json,
    validate_results,
    validate_summary,
)

__all__ = [
    "EXPECTED_KNOWN",
    "EXPECTED_REQUIRED",
    "RESULTS_SCHEMA_VERSION",
    "SCALES",
    "SUMMARY_SCHEMA_VERSION",
    "UNITS",
    "ExpectedRow",
    "ReproConfig",
    "Reproduction",
    "Results",
    "RunSummary",
    "SchemaError",
    "TableLayout",
    "as_percent",
    "parse_setting_value",
    "read_expected",
    "read_json",
    "read_repro_toml",
    "read_reproduction",
    "validate_results",
    "validate_summary",
]


SCALES = ("smoke", "small", "full")
Unit = Literal[
    "fraction", "percent", "count", "seconds", "nats", "bits", "ratio", "distance", "score"
]
#: what each unit means (the site and `as_percent` rely on the first two)
UNITS: dict[str, str] = {
    "fraction": "a proportion in [0, 1] (accuracy 0.97, AUC)",
    "percent": "a proportion in [0, 100] (error 1.5 %)",
    "count": "a number of things (queries, pixels)",
    "seconds": "time in seconds",
    "nats": "log-likelihood in nats",
    "bits": "log-likelihood or entropy in bits",
    "ratio": "a ratio or factor without bounds",
    "distance": "a norm of a perturbation (l2, linf)",
    "score": "a score with its own scale (Inception score, FID)",
}

EXPECTED_REQUIRED = ("id", "source", "dataset", "metric", "paper", "tolerance")
#: columns that describe the number, not its setting
EXPECTED_KNOWN = (*EXPECTED_REQUIRED, "higher_is_better", "provenance", "status", "paper_std")
#: database column sizes (catalog.models.ExpectedResult), checked here so sync fails with a line
_MAX_LEN = {"id": 120, "source": 120, "dataset": 60, "metric": 120}
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_]*$")  # snake_case; capitals tolerated
_SLUG = re.compile(r"^[a-z][a-z0-9_]*$")
_INT = re.compile(r"[+-]?\d+")
_DECIMAL = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?")
_BOOL = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def parse_setting_value(text: str) -> int | float | str:
    """A setting cell as a number when it reads as one (`0.3` -> 0.3, `40` -> 40), else the text."""
    if _INT.fullmatch(text):
        return int(text)
    if _DECIMAL.fullmatch(text):
        return float(text)
    return text


def as_percent(value: float | None, unit: str | None) -> float | None:
    """A proportion in percent, from its declared unit; None for other units (never guessed)."""
    if value is None:
        return None
    if unit == "percent":
        return value
    if unit == "fraction":
        return 100.0 * value
    return None


# --------------------------------------------------------------------------- expected.csv


class ExpectedRow(BaseModel):
    """One row of `expected.csv`: the paper's number, where it was printed, the tolerance a `full`
    run is held to, and its setting. `line` is its line in the file (for messages); `unit` is filled
    from repro.toml's `[metrics]` by `read_reproduction`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    source: str
    dataset: str
    metric: str
    paper: float | None
    tolerance: float | None = Field(default=None, ge=0)
    higher_is_better: bool | None = None
    provenance: str | None = None
    status: str | None = None
    paper_std: float | None = None
    setting: dict[str, int | float | str] = Field(default_factory=dict)
    line: int = 0
    unit: Unit | None = None

    @field_validator("paper", "tolerance", "paper_std")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError(f"{value!r} is not a finite number")
        return value

    @field_validator("status")
    @classmethod
    def _status(cls, value: str | None) -> str | None:
        if value and not value.startswith("not_run"):
            raise ValueError(f"{value!r} is not 'not_run: <reason>'")
        return value or None

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


def _error_text(exc: ValidationError) -> str:
    """The first pydantic error as `column 'x': message` (one line)."""
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"] if p != "__root__"]
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] in {"float_parsing", "bool_parsing", "float_type"}:
        message = f"{err['input']!r} is not a {'true/false' if 'bool' in err['type'] else 'number'}"
    if err["type"] == "greater_than_equal":
        message = f"{err['input']} is negative"
    return f"column {loc[0]!r}: {message}" if loc else message


def _read_text(path: Path, source: str) -> str:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SchemaError(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise SchemaError(f"{source}: cannot read: {exc.strerror or exc}") from exc
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise SchemaError(f"{source}:{line}: NUL byte in the file")
    return text


def read_expected(path: str | Path, source: str | None = None) -> list[ExpectedRow]:
    """Read and check an `expected.csv`; a `SchemaError` naming file:line on bad input.

    A missing file is an empty table (a method-only folder has none). `source` names the file in
    messages (default: the path as given).
    """
    path = Path(path)
    source = source or str(path)
    if not path.is_file():
        return []
    reader = csv.DictReader(io.StringIO(_read_text(path, source), newline=""))
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in EXPECTED_REQUIRED if c not in header]
    if missing:
        raise SchemaError(f"{source}:1: missing required column(s) {', '.join(missing)}")
    dupes = sorted({c for c in header if header.count(c) > 1})
    if dupes:
        raise SchemaError(f"{source}:1: column(s) {', '.join(dupes)} given twice")
    reader.fieldnames = header
    rows: list[ExpectedRow] = []
    seen: dict[str, int] = {}
    for record in reader:
        line = reader.line_num
        if None in record:
            raise SchemaError(f"{source}:{line}: more cells than the header has columns")
        cells = {k: (v or "").strip() for k, v in record.items()}
        if not any(cells.values()):
            continue
        row_id = cells["id"]
        where = f"{source}:{line}: row {row_id or '?'}"
        if not _ID.match(row_id):
            raise SchemaError(f"{where}: id {row_id!r} is not snake_case (letters, digits, _)")
        if row_id in seen:
            raise SchemaError(f"{where}: duplicate id (first at line {seen[row_id]})")
        seen[row_id] = line
        for column, limit in _MAX_LEN.items():
            if not cells[column]:
                raise SchemaError(f"{where}: column {column!r} is empty")
            if len(cells[column]) > limit:
                raise SchemaError(f"{where}: column {column!r} is longer than {limit} characters")
        if not cells.get("status"):
            for column in ("paper", "tolerance"):
                if not cells[column]:
                    raise SchemaError(
                        f"{where}: column {column!r} is empty (a number is required unless the "
                        "row's status is 'not_run: <reason>')"
                    )
        hib = cells.get("higher_is_better", "").lower()
        if hib and hib not in _BOOL:
            raise SchemaError(f"{where}: column 'higher_is_better': {hib!r} is not true/false")
        try:
            row = ExpectedRow(
                id=row_id,
                source=cells["source"],
                dataset=cells["dataset"],
                metric=cells["metric"],
                paper=cells["paper"] or None,
                tolerance=cells["tolerance"] or None,
                higher_is_better=_BOOL[hib] if hib else None,
                provenance=cells.get("provenance") or None,
                status=cells.get("status") or None,
                paper_std=cells.get("paper_std") or None,
                setting={
                    k: parse_setting_value(v)
                    for k, v in cells.items()
                    if k not in EXPECTED_KNOWN and v
                },
                line=line,
            )
        except ValidationError as exc:
            raise SchemaError(f"{where}: {_error_text(exc)}") from None
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- repro.toml


class TableLayout(BaseModel):
    """How a source table of the paper is laid out: setting columns forming its rows / columns."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rows: list[str] = Field(default_factory=list)
    columns: list[str] = Field(default_factory=list)


class SiteConfig(BaseModel):
    """`[site]`: what the site shows first (`headline` row id) and each table's printed shape."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    headline: str | None = None
    tables: dict[str, TableLayout] = Field(default_factory=dict)


class ReproConfig(BaseModel):
    """A reproduction folder's `repro.toml` (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    slug: str
    key: str = Field(min_length=1)
    title: str = ""
    datasets: list[str] = Field(default_factory=list)
    uses: list[str] = Field(default_factory=list)
    notebook: StrictBool = False
    needs_gpu: StrictBool = False
    metrics: dict[str, Unit] = Field(default_factory=dict)
    scales: dict[Literal["smoke", "small", "full"], dict[str, Any]] = Field(default_factory=dict)
    site: SiteConfig = Field(default_factory=SiteConfig)

    @field_validator("slug")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not _SLUG.match(value):
            raise ValueError(f"{value!r} is not a slug (lower-case letters, digits, _)")
        return value

    def scale(self, name: str) -> dict[str, Any]:
        """The parameters of one scale (a copy); `SchemaError` when the table is absent."""
        if name not in self.scales:
            raise SchemaError(f"repro/{self.slug}/repro.toml: no [scales.{name}] table")
        return dict(self.scales[name])

    def wall_minutes(self, scale: str) -> float | None:
        """The expected wall time of a scale, as the folder declares it."""
        value = self.scales.get(scale, {}).get("wall_minutes")  # type: ignore[call-overload]
        return float(value) if isinstance(value, int | float) else None

    def as_dict(self) -> dict[str, Any]:
        """Plain data (JSON-safe) for the catalog's `Reproduction.config` and the CLI."""
        return self.model_dump(mode="json")


def _at(text: str, *loc: str) -> str:
    """`:N`, the line of a TOML key given by its path (`[a.b]`, then `b = ...`, then `a`); ''
    when none is there (a missing key)."""
    patterns = [rf"\[{re.escape('.'.join(loc))}\]"] if len(loc) > 1 else []
    patterns += [
        rf"{re.escape(loc[-1])}\s*=",
        rf"\[{re.escape(loc[0])}\b",
        rf"{re.escape(loc[0])}\s*=",
    ]
    for pattern in patterns:
        m = re.search(rf"^\s*{pattern}", text, re.M)
        if m:
            return f":{text.count(chr(10), 0, m.start()) + 1}"
    return ""


def read_repro_toml(path: str | Path, source: str | None = None) -> ReproConfig:
    """Read and check a folder's `repro.toml`; defaults filled in (`slug`: the folder's name,
    `notebook`: whether `reproduce.py` exists, `needs_gpu`: also read from `[scales.full]`)."""
    path = Path(path)
    source = source or str(path)
    text = _read_text(path, source)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SchemaError(f"{source}: invalid TOML: {exc}") from None
    folder = path.parent.name
    data.setdefault("slug", folder)
    if data["slug"] != folder:
        raise SchemaError(
            f"{source}{_at(text, 'slug')}: slug {data['slug']!r} differs from its folder "
            f"name {folder!r}"
        )
    data.setdefault("notebook", (path.parent / "reproduce.py").is_file())
    full = data.get("scales", {}).get("full") if isinstance(data.get("scales"), dict) else None
    if "needs_gpu" not in data and isinstance(full, dict) and "needs_gpu" in full:
        data["needs_gpu"] = full["needs_gpu"]
    try:
        return ReproConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(p) for p in err["loc"]]
        line = _at(text, *loc[:2]) if loc else ""
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            message = f"{loc[0]!r} is missing" + (
                " (the paper's catalog key)" if loc == ["key"] else ""
            )
        elif err["type"] == "extra_forbidden":
            message = f"unknown key {'.'.join(loc)!r}"
        elif err["type"] == "literal_error" and loc[:1] == ["scales"]:
            message = f"unknown scale {loc[1]!r}; use {', '.join(SCALES)}"
        elif err["type"] == "literal_error" and loc[:1] == ["metrics"]:
            message = f"metric {loc[1]!r}: unit {err['input']!r} unknown; use {', '.join(UNITS)}"
        else:
            message = f"{'.'.join(loc)}: {message}"
        raise SchemaError(f"{source}{line}: {message}") from None


class Reproduction(BaseModel):
    """A folder's `repro.toml` and `expected.csv`, checked against each other (every metric's unit
    declared; every site table and headline naming rows and columns that exist)."""

    model_config = ConfigDict(frozen=True)

    config: ReproConfig
    expected: list[ExpectedRow]

    def by_id(self) -> dict[str, ExpectedRow]:
        """The expected rows by id."""
        return {row.id: row for row in self.expected}


def read_reproduction(folder: str | Path, root: str | Path | None = None) -> Reproduction:
    """Read `folder/repro.toml` and `folder/expected.csv` and check them together.

    Messages name files relative to `root` (the project root) when given.
    """
    folder = Path(folder)

    def name(path: Path) -> str:
        if root is None:
            return str(path)
        try:
            return path.resolve().relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            return str(path)

    toml = folder / "repro.toml"
    if not toml.is_file():
        raise SchemaError(f"{name(toml)}: no repro.toml (not a reproduction folder?)")
    config = read_repro_toml(toml, name(toml))
    csv_path = folder / "expected.csv"
    rows = read_expected(csv_path, name(csv_path))
    undeclared: dict[str, int] = {}
    for row in rows:
        if row.metric not in config.metrics:
            undeclared.setdefault(row.metric, row.line)
    if undeclared:
        metric, line = next(iter(undeclared.items()))
        raise SchemaError(
            f"{name(csv_path)}:{line}: metric {metric!r} has no unit: declare it in "
            f'{name(toml)} under [metrics] ({metric} = "fraction" | "percent" | ...)'
        )
    rows = [row.model_copy(update={"unit": config.metrics[row.metric]}) for row in rows]
    ids = {row.id for row in rows}
    if config.site.headline is not None and config.site.headline not in ids:
        raise SchemaError(
            f"{name(toml)}{_at(open_text(toml), 'headline')}: site.headline "
            f"{config.site.headline!r} is not a row of expected.csv"
        )
    for source, layout in config.site.tables.items():
        table_rows = [row for row in rows if row.source == source]
        if not table_rows:
            raise SchemaError(f"{name(toml)}: [site.tables.{source!r}]: no expected row has it")
        known = {k for row in table_rows for k in row.setting} | {"dataset", "metric"}
        for column in (*layout.rows, *layout.columns):
            if column not in known:
                raise SchemaError(
                    f"{name(toml)}: [site.tables.{source!r}]: {column!r} is not a setting "
                    f"column of its rows (known: {', '.join(sorted(known))})"
                )
    return Reproduction(config=config, expected=rows)


def open_text(path: Path) -> str:
    """A text file's content (for line look-ups in messages)."""
    return path.read_text(encoding="utf-8", errors="replace")
