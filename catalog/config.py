"""Where the project's files and database live.

The project root is the folder holding `papers/references.bib` (and `repro/`), found in this order:

1. `ADVREPRO_ROOT`, when set: an explicit choice wins. Tests point it at temporary copies while
   pytest's working directory is the checkout, and the runner sets it for the notebooks it starts
   (their working directory is the run folder, which may lie outside any project).
2. The working directory or the nearest folder above it holding `papers/references.bib`: a second
   clone is its own project (`catalog add` run inside it writes that clone's `references.bib`,
   and its `catalog.db`), whichever checkout the environment was installed from.
3. The checkout this package was installed from (editable install), from anywhere else.

The issue that asked for this (issue 10) put the working directory before `ADVREPRO_ROOT`; the
variable comes first here because it is only ever set on purpose, and a cwd-first rule would
silently send every test that sets it back to the real checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
MARKER = Path("papers") / "references.bib"


def _enclosing_project(start: Path) -> Path | None:
    """`start` or the nearest folder above it that holds `papers/references.bib`."""
    for folder in (start, *start.parents):
        if (folder / MARKER).is_file():
            return folder
    return None


def project_root() -> Path:
    """The folder holding `papers/` and `repro/` (see the module docstring for the order)."""
    env = os.environ.get("ADVREPRO_ROOT")
    if env:
        return Path(env).resolve()
    try:
        cwd = Path.cwd()
    except OSError:  # the working directory was deleted under us
        return PACKAGE_ROOT
    return _enclosing_project(cwd) or PACKAGE_ROOT


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
