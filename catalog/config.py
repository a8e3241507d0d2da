"""Where the project's files and database live.

The project root is where `papers/` and `repro/` are: `ADVREPRO_ROOT` if set (tests point it at a
temporary copy), else the checkout this package was installed from (editable install).
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def project_root() -> Path:
    """The folder holding `papers/` and `repro/`."""
    env = os.environ.get("ADVREPRO_ROOT")
    return Path(env).resolve() if env else PACKAGE_ROOT


def references_path() -> Path:
    """`papers/references.bib`, the bibliography every catalog paper comes from."""
    return project_root() / "papers" / "references.bib"


def lists_dir() -> Path:
    """`papers/lists/`, the reading lists as given."""
    return project_root() / "papers" / "lists"


def reviews_dir() -> Path:
    """`papers/reviews/`, one markdown review per paper key."""
    return project_root() / "papers" / "reviews"


def repro_dir() -> Path:
    """`repro/`, the toolkit and one folder per reproduction."""
    return project_root() / "repro"


def database_url() -> str:
    """`DATABASE_URL` if set, else a SQLite file `catalog.db` at the project root."""
    return os.environ.get("DATABASE_URL") or f"sqlite:///{project_root() / 'catalog.db'}"
