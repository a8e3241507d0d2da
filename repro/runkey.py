"""Run keys: what a run's numbers depend on, hashed, so that the nightly skips work it already did.

A reproduction's results are a function of its code, the code of the reproductions it imports
(`uses` in repro.toml, followed transitively: Defense-GAN uses Carlini-Wagner, which may use FGSM),
the shared toolkit (`repro/*.py`: data loading, training loops, the recorder, the runner), the
notebook parameters, the scale and the data. The run key is a SHA-256 over all of these; when it
equals the key of a stored *successful* run, running again would measure the same thing, so the
nightly reuses that run instead: it stores a new `Run` whose `reused_from` names the run that
actually measured the numbers (reported as "reused"), unless `--force`.

What goes into the key (`key_inputs`, hashed as canonical JSON):

- `files`: SHA-256 of every file under `repro/<slug>/` and under the folders of its `uses`
  (transitively), and of the toolkit files `repro/*.py`, by path relative to the project root.
  Caches (`__pycache__`, `*.pyc`, `.ipynb_checkpoints`) are left out: they change without the code
  changing. Paths are part of the hash, so renaming a file changes the key.
- `parameters`: the notebook parameters, without the ones that only say *where* things are
  (`out_dir`, `data_dir`): a run written to another folder measures the same thing.
- `scale`: the resolved scale (never `auto`).
- `data`: for each dataset of repro.toml `datasets`, per split, the official checksums of the files
  the loader would read, or `unavailable`. `repro.data` only accepts files whose MD5 is the official
  one (a mismatch is an error, not a different dataset), so the official checksums of the splits
  that are present identify the data exactly; a dataset becoming available (CIFAR-10 installed on a
  runner) changes the key and re-runs the reproductions that use it. The checksums come from
  torchvision's published `resources` lists, the same table `repro.data` verifies against.

Not in the key, on purpose: the versions of torch/CUDA and the device name (recorded in every run's
provenance; a new driver does not force every paper to re-run), the git commit (a commit that does
not touch a reproduction's inputs should not re-run it).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from repro import ReproError

if TYPE_CHECKING:
    from sqlmodel import Session

    from catalog.models import Run
    from catalog.schema import ReproConfig

KEY_VERSION = 1
KEY_PREFIX = "sha256:"
PATH_PARAMETERS = frozenset({"out_dir", "data_dir"})
IGNORED_DIRS = frozenset({"__pycache__", ".ipynb_checkpoints", ".pytest_cache", ".mypy_cache"})
IGNORED_SUFFIXES = (".pyc", ".pyo")
SPLITS = ("train", "test")


def _root(root: Path | None) -> Path:
    if root is not None:
        return Path(root)
    from catalog.config import project_root

    return project_root()


def _config(path: Path) -> ReproConfig:
    """A folder's repro.toml through its one schema (`catalog.schema`), errors as `ReproError`."""
    from catalog.schema import SchemaError, read_repro_toml

    if not path.is_file():
        raise ReproError(f"{path}: no repro.toml (not a reproduction folder?)")
    try:
        return read_repro_toml(path)
    except SchemaError as exc:
        raise ReproError(str(exc)) from None


def uses_closure(slug: str, root: Path | None = None) -> list[str]:
    """`slug` and every slug it uses, transitively (sorted, `slug` first); cycles are harmless."""
    base = _root(root) / "repro"
    seen: list[str] = []
    pending = [slug]
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        folder = base / current
        if not folder.is_dir():
            where = "" if current == slug else f" (in the `uses` of a reproduction using {slug})"
            raise ReproError(f"repro/{current}/: no such reproduction folder{where}")
        seen.append(current)
        toml = folder / "repro.toml"
        pending.extend(_config(toml).uses if toml.is_file() else [])
    return [slug, *sorted(s for s in seen if s != slug)]


def dependents(slug: str, slugs: list[str], root: Path | None = None) -> list[str]:
    """The reproductions among `slugs` whose key depends on `slug`'s folder (itself included)."""
    return [s for s in slugs if slug in uses_closure(s, root)]


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _folder_files(folder: Path) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if d not in IGNORED_DIRS)
        files.extend(
            Path(dirpath) / name for name in filenames if not name.endswith(IGNORED_SUFFIXES)
        )
    return sorted(files)


def code_files(slug: str, root: Path | None = None) -> dict[str, str]:
    """{path relative to the root: sha256} for the reproduction, what it uses, and the toolkit."""
    base = _root(root)
    paths: list[Path] = []
    for name in uses_closure(slug, base):
        paths.extend(_folder_files(base / "repro" / name))
    paths.extend(sorted(p for p in (base / "repro").glob("*.py") if p.is_file()))
    return {p.relative_to(base).as_posix(): _file_digest(p) for p in paths}


def _torchvision_checksums(name: str) -> dict[str, list[tuple[str, str]]]:
    """Official (file, md5) per split from torchvision's dataset classes (public attributes)."""
    import torchvision.datasets as tvd

    from repro.data import DATASETS

    spec = DATASETS.get(name)
    if spec is None:
        return {}
    cls = getattr(tvd, spec.torchvision)
    if spec.kind == "cifar":
        return {
            "train": [tuple(entry) for entry in cls.train_list],
            "test": [tuple(entry) for entry in cls.test_list],
        }
    prefix = {"train": "train-", "test": "t10k-"}
    return {
        split: [(file, md5) for file, md5 in cls.resources if file.startswith(prefix[split])]
        for split in SPLITS
    }


_CANONICAL = {"mnist-test-split": "mnist", "fashion-mnist": "fashion_mnist", "cifar-10": "cifar10"}


def data_checksums(datasets: list[str], data_dir: str | None = None) -> dict[str, Any]:
    """Per dataset and split: the official checksums of the files that would be read, or
    "unavailable". `mnist-test-split` reads only MNIST's test files. Unknown names are recorded as
    such (the runner reports them properly)."""
    from repro.data import available

    result: dict[str, Any] = {}
    for name in sorted(set(datasets)):
        canonical = _CANONICAL.get(name, name)
        checksums = _torchvision_checksums(canonical)
        if not checksums:
            result[name] = "unknown dataset"
            continue
        splits = ("test",) if name == "mnist-test-split" else SPLITS
        result[name] = {
            split: (
                [f"{file}:{md5}" for file, md5 in checksums[split]]
                if available(canonical, data_dir, split=split)
                else "unavailable"
            )
            for split in splits
        }
    return result


def reproduction_datasets(slug: str, root: Path | None = None) -> list[str]:
    """The `datasets` of `repro/<slug>/repro.toml` (empty when the folder has no repro.toml)."""
    toml = _root(root) / "repro" / slug / "repro.toml"
    if not toml.is_file():
        return []
    return list(_config(toml).datasets)


def key_inputs(
    slug: str,
    *,
    scale: str,
    parameters: dict[str, Any],
    data: dict[str, Any] | None = None,
    root: Path | None = None,
) -> dict[str, Any]:
    """Everything the key hashes, as a JSON-able dict (useful to see *why* a key changed).

    `data` defaults to `data_checksums` of the reproduction's datasets (with the parameters'
    `data_dir`)."""
    if scale == "auto":
        raise ReproError("run key: resolve the scale first (`auto` is not a scale of a run)")
    if data is None:
        data = data_checksums(reproduction_datasets(slug, root), parameters.get("data_dir") or None)
    params = {k: v for k, v in parameters.items() if k not in PATH_PARAMETERS}
    return {
        "version": KEY_VERSION,
        "slug": slug,
        "scale": scale,
        "parameters": params,
        "data": data,
        "files": code_files(slug, root),
    }


def hash_inputs(inputs: dict[str, Any]) -> str:
    """`sha256:<hex>` of the canonical JSON of `inputs` (sorted keys, no whitespace)."""
    blob = json.dumps(inputs, sort_keys=True, separators=(",", ":"), default=str)
    return KEY_PREFIX + hashlib.sha256(blob.encode()).hexdigest()


def compute_run_key(
    slug: str,
    *,
    scale: str,
    parameters: dict[str, Any],
    data: dict[str, Any] | None = None,
    root: Path | None = None,
) -> str:
    """The run key of `slug` at `scale` with these notebook parameters (see the module docstring)."""
    return hash_inputs(key_inputs(slug, scale=scale, parameters=parameters, data=data, root=root))


# --------------------------------------------------------------------------- reuse


def find_reusable(session: Session, slug: str, scale: str, run_key: str) -> Run | None:
    """The newest stored successful run of `slug` at `scale` with this key, or None."""
    from sqlmodel import select

    from catalog.models import Run

    query = (
        select(Run)
        .where(Run.slug == slug, Run.scale == scale, Run.run_key == run_key)
        .where(Run.status == "succeeded")
        .order_by(Run.recorded_at.desc(), Run.id.desc())
        .limit(1)
    )
    return session.exec(query).first()


def _resolve_run_dir(run_dir: str | None) -> Path | None:
    if not run_dir:
        return None
    path = Path(run_dir)
    if not path.is_absolute():
        path = _root(None) / path
    return path if path.is_dir() else None


def reuse_run(original: Run, out: Path, *, run_key: str | None = None) -> tuple[dict, Path]:
    """Write a new run directory `out/<slug>/<new id>/` that records `original`'s results as reused.

    The new summary is the original's (rows, claims, metrics, provenance: how the numbers were
    measured) with a new `run_id`, `started_at`/`finished_at` = now, `wall_seconds` 0 and
    `reused_from` naming the run that measured them (the first one of a chain of reuses). The
    original's files (executed notebook, results.json, figures) are copied when its directory is
    reachable, so the site shows them for the new run too. When it is not (a nightly GPU runner
    has the catalog, not the earlier run directories), the summary still lists them and
    `catalog ingest-runs` copies them from the original's directory where that one is kept.
    Returns (summary, run directory); storing it is the caller's business (`--no-store`).
    """
    from catalog.drift import strip_markers
    from repro.runner import new_run_id

    source = dict(original.summary or {})
    if not source:
        raise ReproError(f"run {original.id}: no stored summary to reuse")
    now = datetime.now(UTC)
    run_id = new_run_id(original.slug, original.scale, now)
    run_dir = out / original.slug / run_id
    run_dir.mkdir(parents=True, exist_ok=False)
    summary = json.loads(json.dumps(strip_markers(source)))  # a deep copy of plain JSON
    summary.update(
        run_id=run_id,
        started_at=now.isoformat(),
        finished_at=now.isoformat(),
        wall_seconds=0.0,
        reused_from=original.reused_from or original.id,
        run_key=run_key or original.run_key,
    )
    origin = _resolve_run_dir(original.run_dir)
    if origin is not None:
        for item in origin.iterdir():
            if item.name == "summary.json":
                continue
            if item.is_dir():
                shutil.copytree(item, run_dir / item.name)
            else:
                shutil.copy2(item, run_dir / item.name)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary, run_dir
