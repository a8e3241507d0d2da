"""A reproduction's `repro.toml`: its catalog key, datasets, `uses`, and per-scale parameters.

Light module (no torch): `repro list` and the catalog read configurations without paying for it.
Folders are found under `catalog.config.repro_dir()`, so `ADVREPRO_ROOT` points everything (the
runner, notebooks started by it, tests) at another project copy.

    slug = "fgsm"                     # must equal the folder name
    key = "2015_Goodfellow_I_p-iclr_ehae"
    title = "Explaining and Harnessing Adversarial Examples"
    datasets = ["mnist", "fashion_mnist"]
    uses = []                         # slugs whose code this folder imports
    notebook = true                   # false for method-only folders (no reproduce.py)

    [scales.smoke]                    # any keys; notebooks read them with `scale_params`
    epochs = 1
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from repro import ReproError
from repro.scales import SCALES

__all__ = ["list_slugs", "load_config", "repro_path", "scale_params"]

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


def _check_list(config: dict[str, Any], field: str, where: str) -> None:
    value = config.setdefault(field, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ReproError(f"{where}: {field!r} must be a list of strings")


def load_config(slug: str) -> dict[str, Any]:
    """Read and check `repro/<slug>/repro.toml`; defaults filled in (`datasets`, `uses`: [],
    `notebook`: whether `reproduce.py` exists, `scales`: {})."""
    folder = repro_path(slug)
    path = folder / "repro.toml"
    where = _relative(path)
    try:
        config = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ReproError(f"{where}: invalid TOML: {exc}") from exc
    if config.setdefault("slug", slug) != slug:
        raise ReproError(f"{where}: slug {config['slug']!r} differs from its folder name {slug!r}")
    if not isinstance(config.get("key"), str) or not config["key"]:
        raise ReproError(f"{where}: 'key' (the paper's catalog key) is missing")
    if not isinstance(config.setdefault("title", ""), str):
        raise ReproError(f"{where}: 'title' must be a string")
    _check_list(config, "datasets", where)
    _check_list(config, "uses", where)
    notebook = config.setdefault("notebook", (folder / "reproduce.py").is_file())
    if not isinstance(notebook, bool):
        raise ReproError(f"{where}: 'notebook' must be true or false")
    scales = config.setdefault("scales", {})
    if not isinstance(scales, dict) or not all(isinstance(v, dict) for v in scales.values()):
        raise ReproError(f"{where}: 'scales' must hold tables ([scales.smoke], ...)")
    unknown = sorted(set(scales) - set(SCALES))
    if unknown:
        raise ReproError(f"{where}: unknown scale(s) {', '.join(unknown)}; use {', '.join(SCALES)}")
    return config


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
