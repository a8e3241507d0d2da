"""A paper's qualitative claims, as checks over the measured results of a run.

`repro/<slug>/claims.py` defines `CLAIMS: list[Claim]`:

    from repro.claims import Claim, Results

    def _fgsm_fools(r: Results) -> tuple[bool, str]:
        err = r["mnist_maxout_fgsm_error"]            # a recorded row (Missing if not recorded)
        return err > 50, f"error under FGSM {err:.1f}% (claim: most examples fooled)"

    CLAIMS = [Claim("fgsm_fools", "FGSM at eps 0.25 fools a standard network most of the time",
                    _fgsm_fools)]

Claims are evaluated at every scale (numbers are compared with the paper only at `full`). A check
that reads a value the run did not record raises `Missing`; the claim is then reported with
`holds=None` ("not evaluated: ..."), never as failed. A check that crashes for another reason is
also reported `holds=None`, with the exception in the detail, so that a bug in a claim never costs
the measurements of a long run. A check that is still a skeleton (`repro new` writes one) raises
`NotWritten` and is reported `holds=None`, "not written: ...": never a pass, never a failure.

The runner loads `claims.py` by file path (not as `repro.<slug>.claims`), so that a reproduction
folder outside the installed package (a test's temporary project, `ADVREPRO_ROOT`) works too.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from repro import ReproError

__all__ = ["Claim", "Missing", "NotWritten", "Results", "evaluate", "load_claims", "per_dataset"]


class Missing(LookupError):
    """A value a claim needs was not recorded by the run (or was recorded as not run)."""


class NotWritten(NotImplementedError):
    """Raised by a claim check not written yet, so that a new reproduction's claim skeleton
    reports "not written" instead of a verdict (a pass would be a lie, a failure a false alarm)."""


class Results:
    """Read access to one run's measurements, for claim checks.

    `r[row_id]` → the recorded value of an `expected.csv` row; `r.metric(name)` → a free metric;
    both raise `Missing` when absent. `r.get(row_id, default)` and `row_id in r` for optional rows.
    `r.per_image(name)` → the per-image correctness vector recorded with a row or metric, or None.
    """

    def __init__(
        self,
        rows: Mapping[str, float],
        metrics: Mapping[str, float] | None = None,
        not_run: Mapping[str, str] | None = None,
        per_image: Mapping[str, str] | None = None,
    ) -> None:
        self.rows = dict(rows)
        self.metrics = dict(metrics or {})
        self.not_run = dict(not_run or {})
        self.per_image_vectors = dict(per_image or {})

    @classmethod
    def from_results(cls, results: Mapping[str, Any]) -> Results:
        """From a `results.json` record (`repro.record.read_results`); a row's or a metric's
        `info["correct"]` (`repro.stats.pack_bits`) becomes its per-image vector."""
        per_image = {}
        for key, entries in (("id", results.get("rows", [])), ("name", results.get("metrics", []))):
            for entry in entries:
                info = entry.get("info")
                if isinstance(info, Mapping) and isinstance(info.get("correct"), str):
                    per_image[entry[key]] = info["correct"]
        return cls(
            {r["id"]: r["value"] for r in results.get("rows", [])},
            {m["name"]: m["value"] for m in results.get("metrics", [])},
            {r["id"]: r.get("reason", "") for r in results.get("not_run", [])},
            per_image,
        )

    def __getitem__(self, row_id: str) -> float:
        if row_id in self.rows:
            return self.rows[row_id]
        if row_id in self.not_run:
            raise Missing(f"row {row_id} was not run ({self.not_run[row_id]})")
        raise Missing(f"row {row_id} was not recorded")

    def __contains__(self, row_id: object) -> bool:
        return row_id in self.rows

    def get(self, row_id: str, default: float | None = None) -> float | None:
        """The recorded value of a row, or `default`."""
        return self.rows.get(row_id, default)

    def metric(self, name: str) -> float:
        """A recorded free metric; `Missing` when the run did not record it."""
        if name not in self.metrics:
            raise Missing(f"metric {name} was not recorded")
        return self.metrics[name]

    def per_image(self, name: str) -> str | None:
        """The per-image 0/1 vector (`repro.stats.pack_bits` form) recorded with the row or metric
        `name`, for bootstrap intervals (`repro.stats`); None when the run did not record one."""
        return self.per_image_vectors.get(name)


Check = Callable[[Results], "tuple[bool, str]"]


@dataclass(frozen=True)
class Claim:
    """A qualitative claim of the paper: `check(results) -> (holds, short reason)`."""

    id: str
    text: str
    check: Check


def per_dataset(
    r: Results,
    datasets: Iterable[str],
    check: Callable[[Results, str], tuple[bool, str]],
) -> tuple[bool, str]:
    """Evaluate `check` on every dataset that ran; the claim holds when it holds on all of them.

    A paper's claim is usually stated once and tested on each dataset a reproduction runs (the
    paper's and its stated analogue). Datasets with no results are skipped; only when none ran is
    the claim `Missing` (not evaluated), naming what was missing for each.
    """
    verdicts, missing = [], []
    for dataset in datasets:
        try:
            verdicts.append((dataset, *check(r, dataset)))
        except Missing as exc:
            missing.append(f"{dataset}: {exc}")
    if not verdicts:
        raise Missing("; ".join(missing))
    detail = "; ".join(f"{d}: {text}" for d, _, text in verdicts)
    return all(ok for _, ok, _ in verdicts), detail


def evaluate(claims: Iterable[Claim], results: Results) -> list[dict[str, Any]]:
    """Run every check; one `{"id", "text", "holds", "detail"}` per claim (summary.json's shape)."""
    out = []
    for claim in claims:
        try:
            verdict = claim.check(results)
            if isinstance(verdict, tuple) and len(verdict) == 2:
                holds, detail = bool(verdict[0]), str(verdict[1])
            else:
                holds, detail = bool(verdict), ""
        except NotWritten as exc:
            holds, detail = None, "not written" + (f": {exc.args[0]}" if exc.args else "")
        except Missing as exc:
            holds, detail = None, f"not evaluated: {exc.args[0] if exc.args else exc}"
        except Exception as exc:
            holds, detail = None, f"not evaluated: the check raised {type(exc).__name__}: {exc}"
        out.append({"id": claim.id, "text": claim.text, "holds": holds, "detail": detail})
    return out


def load_claims(path: str | Path) -> list[Claim]:
    """Import a `claims.py` by file path and return its `CLAIMS` (empty when the file is absent).

    `path` is the file or its reproduction folder. Errors (a syntax error, a missing or malformed
    `CLAIMS`, duplicate ids) raise `ReproError` naming the file, before any run starts.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "claims.py"
    if not path.is_file():
        return []
    name = f"_repro_claims_{path.parent.name}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ReproError(f"{path}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        line = getattr(exc, "lineno", None)
        raise ReproError(
            f"{path}{':' + str(line) if line else ''}: import failed: {type(exc).__name__}: {exc}"
        ) from exc
    claims = getattr(module, "CLAIMS", None)
    if not isinstance(claims, list | tuple) or not all(isinstance(c, Claim) for c in claims):
        raise ReproError(f"{path}: CLAIMS must be a list of repro.claims.Claim")
    seen: set[str] = set()
    for claim in claims:
        if claim.id in seen:
            raise ReproError(f"{path}: duplicate claim id {claim.id!r}")
        if not callable(claim.check):
            raise ReproError(f"{path}: claim {claim.id!r}: check is not callable")
        seen.add(claim.id)
    return list(claims)
