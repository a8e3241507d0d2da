"""A reproduction's `repro.toml`: its catalog key, datasets, `uses`, and per-scale parameters.

Light module (no torch): `repro list` and the catalog read configurations without paying for it.
The file's one schema is `catalog.schema.ReproConfig` (documented there, with `[metrics]` and
`[site]`); this module finds folders and turns schema errors into `ReproError`. Folders are found
under `catalog.config.repro_dir()`, so `ADVREPRO_ROOT` points everything (the runner, notebooks
started by it, tests) at another project copy.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from repro import ReproError
from repro.scales import SCALES

if TYPE_CHECKING:
    from catalog.schema import Reproduction

__all__ = ["list_slugs", "load_config", "load_reproduction", "repro_path", "scale_params"]

SLUG_RE = re.compile(r"^[a-z][a-z0-9_]*$")


def _root() -> Path:
    from catalog.config import repro_dir

    return repro_dir()


def _relative(path: Path) -> str:
    """`repro/<slug>/...` for messages (the project-relative path when there is one)."""
    try:
        return str(path.relative_to(_root().parent))
    except ValueError:
        return str(path)


def list_slugs() -> list[str]:
    """Every folder under `repro/` with a `repro.toml`, sorted."""
    root = _root()
    if not root.is_dir():
        return []
    return sorted(p.parent.name for p in root.glob("*/repro.toml") if SLUG_RE.match(p.parent.name))


def repro_path(slug: str) -> Path:
    """The folder `repro/<slug>/`; a `ReproError` when there is no such reproduction."""
    if not isinstance(slug, str) or not SLUG_RE.match(slug):
        raise ReproError(f"{slug!r} is not a reproduction slug (lower-case letters, digits, _)")
    folder = _root() / slug
    if not (folder / "repro.toml").is_file():
        known = ", ".join(list_slugs()) or "none"
        raise ReproError(
            f"no reproduction {slug!r}: {_relative(folder)}/repro.toml not found (known: {known})"
        )
    return folder


def load_config(slug: str) -> dict[str, Any]:
    """Read and check `repro/<slug>/repro.toml` (through `catalog.schema`); plain data with the
    defaults filled in (`datasets`, `uses`: [], `notebook`: whether `reproduce.py` exists,
    `scales`: {}, `metrics`: {}, `needs_gpu`, `site`)."""
    return load_reproduction(slug).config.as_dict()


def load_reproduction(slug: str) -> Reproduction:
    """`repro/<slug>/`'s repro.toml and expected.csv, checked together (units filled in)."""
    from catalog.schema import SchemaError, read_reproduction

    folder = repro_path(slug)
    try:
        return read_reproduction(folder, _root().parent)
    except SchemaError as exc:
        raise ReproError(str(exc)) from None


def scale_params(slug: str, scale: str) -> dict[str, Any]:
    """The `[scales.<scale>]` table of `repro/<slug>/repro.toml` (a copy).

    `"auto"` is resolved as the runner does (`full` on CUDA, else `small`), for notebooks run by hand.
    """
    from repro.scales import resolve_scale

    concrete = resolve_scale(scale, "auto") if str(scale).lower() == "auto" else scale
    if concrete not in SCALES:
        raise ReproError(f"scale {scale!r}: unknown; use {', '.join(SCALES)} or auto")
    config = load_config(slug)
    if concrete not in config["scales"]:
        raise ReproError(
            f"{_relative(repro_path(slug) / 'repro.toml')}: no [scales.{concrete}] table"
        )
    return dict(config["scales"][concrete])
