"""`repro new`: start a reproduction folder that already meets the contract every folder here meets.

    from repro.scaffold import new_reproduction
    folder = new_reproduction("kurakin_bim", "2017_Kurakin_A_p-iclr_aeitpw", datasets=["mnist"])

writes, from the templates in `repro/templates/new/` (Jinja2, package data):

- `repro/<slug>/__init__.py`: the module docstring skeleton (paper, reproduces, map, deviations);
- `repro/<slug>/repro.toml`: key, title, datasets, `uses`, `[metrics]` (the unit of every metric of
  expected.csv) and the three scales;
- `repro/<slug>/expected.csv`: the schema's header and one example row (see `EXAMPLE_ROW`);
- `repro/<slug>/claims.py`: one claim skeleton that reports "not written" until it is written;
- `repro/<slug>/reproduce.py`: the notebook with its parameters cell, data loading, the recorder,
  a placeholder measurement and the paper-vs-ours table already wired;
- `repro/<slug>/README.md`: what is reproduced, settings per scale, deviations, running;
- `tests/repro/test_<slug>.py`: the smoke run through the runner;
- `papers/reviews/<key>.md`: a review stub (kept as it is when the paper already has a review).

The fresh folder runs at `smoke` through the runner at once, with no dataset: the pipeline is proven
before the method exists. The paper's facts (title, authors, year, venue, link) come from the
catalog database, so the key must be there (`catalog add` puts it there).

Nothing is overwritten and nothing is half-written: every file is rendered and every target
checked before the first write, the folder is written under a temporary name and renamed into
place, and a failure after that removes what this call wrote.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from repro import ReproError

__all__ = [
    "EXAMPLE_ROW",
    "SCALE_SETTINGS",
    "PaperInfo",
    "expected_columns",
    "new_reproduction",
    "paper_info",
    "planned_paths",
    "render",
]

TEMPLATES = Path(__file__).resolve().parent / "templates" / "new"
SLUG_RE = re.compile(r"^[a-z][a-z0-9_]*$")
DATASET_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
RESERVED = frozenset({"templates", "tests"})  # folders of the toolkit that are not reproductions
SYNTHETIC = "synthetic"  # what the placeholder measures on when no dataset of repro.toml is here

# Files of the folder: template name -> file name.
FOLDER_FILES = {
    "__init__.py.j2": "__init__.py",
    "repro.toml.j2": "repro.toml",
    "claims.py.j2": "claims.py",
    "reproduce.py.j2": "reproduce.py",
    "README.md.j2": "README.md",
}

# The three scales of the new folder's repro.toml (and its README's table): sizes that prove the
# pipeline at smoke in seconds, fit 2 CPU cores at small, and stand for the paper's at full.
SCALE_SETTINGS: dict[str, dict[str, Any]] = {
    "smoke": {
        "wall_minutes": 1,
        "n_train": 512,
        "n_test": 256,
        "epochs": 1,
        "batch_size": 64,
        "lr": 0.001,
    },
    "small": {
        "wall_minutes": 20,
        "n_train": 10000,
        "n_test": 2000,
        "epochs": 5,
        "batch_size": 64,
        "lr": 0.001,
    },
    "full": {
        "wall_minutes": 60,
        "needs_gpu": True,
        "n_train": 0,
        "n_test": 0,
        "epochs": 50,
        "batch_size": 64,
        "lr": 0.001,
    },
}
SETTING_NOTES = {
    "wall_minutes": "expected wall time (smoke < 1 min on a laptop CPU, small < 20 on 2 cores)",
    "needs_gpu": "full is meant for a GPU",
    "n_train": "training images per dataset (0 = the whole split)",
    "n_test": "test images per dataset (0 = the whole split)",
    "epochs": "training epochs (TODO: the paper's at full)",
    "batch_size": "batch size (TODO: the paper's)",
    "lr": "learning rate (TODO: the paper's)",
}

# The example row of a new expected.csv. CSV has no comments, so the example is a row that parses
# under the schema and explains itself: a `not_run` status that says to replace it (which lets
# `paper` and `tolerance` stay empty: no invented paper number) and an `unverified` provenance
# (never compared with anything). The placeholder notebook measures it, so that the comparison
# table shows one row from the first run on.
EXAMPLE_ROW: dict[str, str] = {
    "id": "example_clean_accuracy",
    "source": "Table 1",
    "metric": "accuracy",
    "paper": "",
    "tolerance": "",
    "higher_is_better": "true",
    "provenance": "unverified: example row written by repro new; not a number of the paper",
    "status": "not_run: example row, replace it with the paper's rows",
    "model": "placeholder softmax classifier",
    "attack": "none",
    "eps": "0",
}
EXAMPLE_METRICS = {"accuracy": "fraction"}
SETTING_COLUMNS = ("model", "attack", "eps")  # setting columns most papers here need; edit freely


# --------------------------------------------------------------------------- the paper


@dataclass(frozen=True)
class PaperInfo:
    """What the scaffold writes about the paper, as the catalog has it."""

    key: str
    title: str
    year: int
    authors: list[str] = field(default_factory=list)  # display names, in order
    last_names: list[str] = field(default_factory=list)
    venue: str | None = None
    arxiv_id: str | None = None
    url: str | None = None
    doi: str | None = None

    @property
    def venue_short(self) -> str | None:
        """ "ICLR" from "International Conference on Learning Representations (ICLR)"."""
        if not self.venue:
            return None
        found = re.search(r"\(([^()]+)\)", self.venue)
        return found.group(1) if found else self.venue

    @property
    def authors_short(self) -> str:
        """ "Goodfellow, Shlens & Szegedy"; "Madry et al." from four authors on."""
        names = self.last_names or self.authors
        if not names:
            return "unknown authors"
        if len(names) > 3:
            return f"{names[0]} et al."
        return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} & {names[-1]}"

    @property
    def cite(self) -> str:
        """ "Goodfellow, Shlens & Szegedy, ICLR 2015": how docstrings and READMEs here cite."""
        venue = self.venue_short
        return f"{self.authors_short}, {venue + ' ' if venue else ''}{self.year}"

    @property
    def link(self) -> str | None:
        """The arXiv abstract page, else the entry's URL, else its DOI."""
        if self.arxiv_id:
            return f"https://arxiv.org/abs/{self.arxiv_id}"
        if self.url:
            return self.url
        return f"https://doi.org/{self.doi}" if self.doi else None


def _bib_keys(root: Path) -> list[str]:
    """The keys of `papers/references.bib` (empty when there is none)."""
    from catalog import bibtex as bt

    path = root / "papers" / "references.bib"
    if not path.is_file():
        return []
    return [entry.key for entry in bt.scan(path.read_text(encoding="utf-8"), str(path)).entries]


def paper_info(key: str, *, root: Path | None = None) -> PaperInfo:
    """The paper `key` from the catalog database (`DATABASE_URL` or `catalog.db`).

    A key that only `papers/references.bib` has asks for `catalog sync`; an unknown key asks for
    `catalog add` (with the closest known keys). Both are one-line `ReproError`s.
    """
    from catalog.config import project_root
    from catalog.db import session_scope
    from catalog.models import Paper

    with session_scope() as session:
        paper = session.get(Paper, key)
        if paper is not None:
            people = [link.author for link in sorted(paper.author_links, key=lambda a: a.position)]
            return PaperInfo(
                key=paper.key,
                title=paper.title,
                year=paper.year,
                authors=[a.name for a in people],
                last_names=[a.last_name for a in people],
                venue=paper.venue,
                arxiv_id=paper.arxiv_id,
                url=paper.url,
                doi=paper.doi,
            )
    keys = _bib_keys(root or project_root())
    if key in keys:
        raise ReproError(
            f"key {key}: in papers/references.bib but not in the catalog database; "
            "run `catalog sync` first"
        )
    close = difflib.get_close_matches(key, keys, n=3, cutoff=0.8)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ReproError(
        f"key {key}: not in the catalog{hint}; add the paper first: "
        "`catalog add arxiv:ID` or `catalog add --bibtex FILE`"
    )


# --------------------------------------------------------------------------- rendering


def expected_columns() -> list[str]:
    """The header of a new `expected.csv`: the schema's columns, then the usual setting columns."""
    from catalog.schema import EXPECTED_KNOWN

    return [*EXPECTED_KNOWN, *(c for c in SETTING_COLUMNS if c not in EXPECTED_KNOWN)]


def _csv_text(dataset: str) -> str:
    columns = expected_columns()
    row = {**EXAMPLE_ROW, "dataset": dataset}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerow([row.get(c, "") for c in columns])
    return out.getvalue()


def _toml(value: Any) -> str:
    """A TOML value: strings as basic strings (JSON's escapes are TOML's), lists of them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def _python_string(value: str) -> str:
    """A double-quoted Python string literal (what ruff format writes) of `value`."""
    return json.dumps(value, ensure_ascii=False)


def _docstring_text(value: str) -> str:
    """`value` made safe inside a triple-quoted docstring (no stray escapes, no closing quotes)."""
    return value.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')


def _wrap(value: str, width: int = 99) -> str:
    """Prose folded at `width` columns (URLs and code spans are never broken)."""
    import textwrap

    return textwrap.fill(value, width, break_long_words=False, break_on_hyphens=False)


def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # source code and markdown, not HTML
    )
    env.filters.update(toml=_toml, pystr=_python_string, doc=_docstring_text, wrap=_wrap)
    return env


def render(
    slug: str, paper: PaperInfo, datasets: Sequence[str], uses: Sequence[str]
) -> dict[str, str]:
    """Every file of the scaffold as text, by path relative to the project root (pure)."""
    context = {
        "slug": slug,
        "paper": paper,
        "datasets": list(datasets),
        "uses": list(uses),
        "example": EXAMPLE_ROW,
        "example_dataset": datasets[0] if datasets else SYNTHETIC,
        "metrics": EXAMPLE_METRICS,
        "scales": SCALE_SETTINGS,
        "notes": SETTING_NOTES,
        "synthetic": SYNTHETIC,
        "today": date.today().isoformat(),
        "scale_rows": [
            (
                note,
                [
                    _toml(SCALE_SETTINGS[s][name]) if name in SCALE_SETTINGS[s] else "–"
                    for s in SCALE_SETTINGS
                ],
            )
            for name, note in SETTING_NOTES.items()
        ],
    }
    env = _environment()
    files = {
        f"repro/{slug}/{name}": env.get_template(template).render(context)
        for template, name in FOLDER_FILES.items()
    }
    files[f"repro/{slug}/expected.csv"] = _csv_text(context["example_dataset"])
    files[f"tests/repro/test_{slug}.py"] = env.get_template("test_smoke.py.j2").render(context)
    files[f"papers/reviews/{paper.key}.md"] = env.get_template("review.md.j2").render(context)
    return files


# --------------------------------------------------------------------------- writing


def planned_paths(slug: str, key: str, *, root: Path | None = None) -> dict[str, Path]:
    """Where `new_reproduction` writes: `folder`, `test` and `review` (absolute paths)."""
    from catalog.config import project_root

    base = Path(root) if root is not None else project_root()
    return {
        "folder": base / "repro" / slug,
        "test": base / "tests" / "repro" / f"test_{slug}.py",
        "review": base / "papers" / "reviews" / f"{key}.md",
    }


def _check_names(slug: str, datasets: Sequence[str], uses: Sequence[str], base: Path) -> None:
    if not isinstance(slug, str) or not SLUG_RE.match(slug):
        raise ReproError(f"{slug!r} is not a reproduction slug (lower-case letters, digits, _)")
    toolkit = Path(__file__).resolve().parent  # a folder named like a module would shadow it
    if slug in RESERVED or any((d / f"{slug}.py").exists() for d in (toolkit, base / "repro")):
        raise ReproError(f"{slug!r} is a name of the toolkit (repro.{slug}); choose another slug")
    for name in datasets:
        if not DATASET_RE.match(name):
            raise ReproError(f"dataset {name!r}: use lower-case letters, digits, '_' or '-'")
    if len(set(datasets)) != len(datasets):
        raise ReproError(f"datasets {', '.join(datasets)}: a dataset is given twice")
    for used in uses:
        if used == slug:
            raise ReproError(f"uses {used!r}: a reproduction cannot use itself")
        if not SLUG_RE.match(used) or not (base / "repro" / used / "repro.toml").is_file():
            raise ReproError(f"uses {used!r}: no reproduction repro/{used}/ (with a repro.toml)")


def new_reproduction(
    slug: str,
    key: str,
    *,
    root: str | os.PathLike[str] | None = None,
    datasets: Sequence[str] = (),
    uses: Sequence[str] = (),
) -> Path:
    """Create `repro/<slug>/`, its smoke test and (if the paper has none) a review stub.

    `root` is the project root (default `catalog.config.project_root()`); `datasets` and `uses`
    go into repro.toml. Returns the new folder. Raises `ReproError` (nothing written) for a bad
    slug, a key the catalog lacks, an unknown `uses`, or a folder or test file that exists: it
    never overwrites. An existing review of the paper is kept as it is.
    """
    from catalog.config import project_root

    base = Path(root).resolve() if root is not None else project_root()
    datasets, uses = list(datasets), list(uses)
    _check_names(slug, datasets, uses, base)
    paths = planned_paths(slug, key, root=base)
    for what in ("folder", "test"):
        if paths[what].exists():
            raise ReproError(f"{paths[what].relative_to(base)} exists; repro new never overwrites")
    paper = paper_info(key, root=base)
    files = render(slug, paper, datasets, uses)

    folder = paths["folder"]
    staging = folder.parent / f".{slug}.new-{os.getpid()}"
    written: list[Path] = []
    try:
        staging.mkdir(parents=True)
        for relative, text in files.items():
            if relative.startswith(f"repro/{slug}/"):
                (staging / Path(relative).name).write_text(text, encoding="utf-8")
        if folder.exists():  # created by someone else since the check above
            raise ReproError(f"repro/{slug} exists; repro new never overwrites")
        staging.rename(folder)
        written.append(folder)
        for what in ("test", "review"):
            target = paths[what]
            if what == "review" and target.exists():
                continue  # the paper's review is per paper; a second folder keeps it
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("x", encoding="utf-8") as handle:
                written.append(target)
                handle.write(files[target.relative_to(base).as_posix()])
    except FileExistsError as exc:
        _undo(written, staging)
        raise ReproError(f"{exc.filename} exists; repro new never overwrites") from exc
    except BaseException:
        _undo(written, staging)
        raise
    return folder


def _undo(written: list[Path], staging: Path) -> None:
    """Remove what a failed `new_reproduction` wrote."""
    for path in reversed(written):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    shutil.rmtree(staging, ignore_errors=True)
