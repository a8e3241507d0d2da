"""The recorder a reproduction notebook writes its measurements with: `results.json` in the run dir.

    rec = Recorder(out_dir)
    rec.row("mnist_maxout_fgsm_error", 89.4, dataset="mnist")  # an expected.csv row, in its unit
    rec.not_run("cifar10_row", "CIFAR-10 is not available offline")
    rec.metric("train_seconds", 12.3)                          # a free metric
    rec.figure(fig, "adv_examples", "FGSM adversarial examples at eps 0.25")

`results.json` is rewritten (atomically) after every call, so a notebook that crashes keeps what it
recorded before the crash, and the runner's summary of a failed run still shows it.

results.json (schema_version 1), read by the runner (`read_results`), never by the site directly:

    {
      "schema_version": 1,
      "rows":    [{"id": "mnist_maxout_fgsm_error", "value": 89.4,
                   "info": {"dataset": "mnist", ...}}],     # info: the keyword arguments of row()
      "not_run": [{"id": "cifar10_row", "reason": "CIFAR-10 is not available offline"}],
      "metrics": [{"name": "train_seconds", "value": 12.3}],   # + "info": {...} when given
      "figures": [{"path": "figures/adv_examples.png", "caption": "..."}],
      "updated_at": "2026-11-21T05:01:02+00:00"
    }

Values are finite JSON numbers (a tensor or NumPy scalar is converted; NaN and infinities are
refused at the call, where the bug is). `info["dataset"]` is the dataset the row was measured on;
when it differs from the paper's (`expected.csv`'s `dataset`), the runner does not compare the
row with the paper. Recording an id again replaces the earlier entry (a row replaces a `not_run`
of the same id and vice versa), in the position of the first recording.
"""

from __future__ import annotations

import json
import math
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from catalog.schema import RESULTS_SCHEMA_VERSION
from repro import ReproError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["RESULTS_FILE", "SCHEMA_VERSION", "Recorder", "empty_results", "read_results"]

RESULTS_FILE = "results.json"
SCHEMA_VERSION = RESULTS_SCHEMA_VERSION  # catalog.schema.Results
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _number(value: Any, what: str) -> float:
    """A finite float from an int/float/NumPy scalar/one-element tensor."""
    if isinstance(value, bool | str):
        raise ReproError(f"{what}: expected a number, got {value!r}")
    try:
        number = float(value.item() if hasattr(value, "item") else value)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ReproError(f"{what}: expected a number, got {value!r}") from exc
    if not math.isfinite(number):
        raise ReproError(f"{what}: {number} is not a finite number")
    return number


def _jsonable(value: Any) -> Any:
    """Make an info value JSON-safe: scalars as they are, tensors/NumPy scalars as numbers."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        return _jsonable(value.item())
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


def _check_id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise ReproError(f"{what} {value!r}: use letters, digits, '_', '-', '.'")
    return value


class Recorder:
    """Collects a notebook's measurements and keeps `out_dir/results.json` up to date."""

    def __init__(self, out_dir: str | os.PathLike[str] = ".", *, echo: bool = True) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.echo = echo
        self.rows: list[dict[str, Any]] = []
        self.not_run_rows: list[dict[str, Any]] = []
        self.metrics: list[dict[str, Any]] = []
        self.figures: list[dict[str, Any]] = []
        self._write()

    @property
    def path(self) -> Path:
        """Where `results.json` is written."""
        return self.out_dir / RESULTS_FILE

    def row(self, id: str, value: Any, **info: Any) -> float:
        """Record the measured value of the `expected.csv` row `id`, in that row's unit."""
        _check_id(id, "row id")
        number = _number(value, f"row {id}")
        self.not_run_rows = [r for r in self.not_run_rows if r["id"] != id]
        _upsert(self.rows, "id", {"id": id, "value": number, "info": _jsonable(info)})
        self._write()
        self._say(f"row {id} = {number:.6g}")
        return number

    def not_run(self, id: str, reason: str) -> None:
        """Record that row `id` could not be measured here, and why (shown with the results)."""
        _check_id(id, "row id")
        if not isinstance(reason, str) or not reason.strip():
            raise ReproError(f"not_run {id}: give a reason")
        self.rows = [r for r in self.rows if r["id"] != id]
        _upsert(self.not_run_rows, "id", {"id": id, "reason": reason.strip()})
        self._write()
        self._say(f"row {id} not run: {reason.strip()}")

    def metric(self, name: str, value: Any, **info: Any) -> float:
        """Record a free metric (not in `expected.csv`): timings, losses, sizes. Keyword
        arguments, if any, are kept as the metric's `info` (as a row's), e.g. `correct=` the
        per-image vector behind an accuracy (`repro.stats.pack_bits`)."""
        _check_id(name, "metric name")
        number = _number(value, f"metric {name}")
        entry: dict[str, Any] = {"name": name, "value": number}
        if info:
            entry["info"] = _jsonable(info)
        _upsert(self.metrics, "name", entry)
        self._write()
        return number

    def figure(self, fig: Any, name: str, caption: str = "") -> Path:
        """Save a matplotlib figure as `figures/<name>.png` and record it with its caption."""
        _check_id(name, "figure name")
        folder = self.out_dir / "figures"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.png"
        fig.savefig(path, dpi=120, bbox_inches="tight")
        _upsert(self.figures, "path", {"path": f"figures/{name}.png", "caption": str(caption)})
        self._write()
        return path

    def comparison(self, slug: str, scale: str) -> pd.DataFrame:
        """What was recorded so far next to the paper's numbers: the runner's own comparison
        (`catalog.compare.compare_run`, the table `summary.json` will hold), for a notebook's last
        cell to display."""
        from catalog.compare import compare_run
        from repro.config import load_reproduction

        expected = load_reproduction(slug).expected
        return compare_run(expected, read_results(self.out_dir), scale)

    def _say(self, text: str) -> None:
        if self.echo:
            print(f"[record] {text}", flush=True)

    def _write(self) -> None:
        data = {
            "schema_version": SCHEMA_VERSION,
            "rows": self.rows,
            "not_run": self.not_run_rows,
            "metrics": self.metrics,
            "figures": self.figures,
            "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        tmp = self.path.with_suffix(f".json.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)


def _upsert(items: list[dict[str, Any]], key: str, entry: dict[str, Any]) -> None:
    for i, item in enumerate(items):
        if item[key] == entry[key]:
            items[i] = entry
            return
    items.append(entry)


def empty_results() -> dict[str, Any]:
    """The record of a notebook that recorded nothing."""
    return {
        "schema_version": SCHEMA_VERSION,
        "rows": [],
        "not_run": [],
        "metrics": [],
        "figures": [],
    }


def read_results(out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check `out_dir/results.json` against its schema (`catalog.schema.Results`); an
    empty record when the notebook never wrote one."""
    path = Path(out_dir) / RESULTS_FILE
    if not path.is_file():
        return empty_results()
    from catalog.schema import SchemaError, read_json, validate_results

    try:
        return validate_results(read_json(path), str(path))
    except SchemaError as exc:
        raise ReproError(str(exc)) from None
