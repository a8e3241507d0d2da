"""What `papers/` and `repro/` say, read and validated before the database is touched.

`read_snapshot` reads everything `catalog sync` stores — references.bib, the reading lists (entries
matched to papers), the reviews, each `repro/<slug>/` through `catalog.schema.read_reproduction` —
as table rows (`PaperRecord`, `ListRecord`, `ReviewRecord`, `ReproRecord`). Any bad input is one
`CatalogError` naming file, line and key, raised before a single row is written; values that would
not fit their column are caught here too (PostgreSQL would refuse them mid-transaction with a less
helpful message). `catalog sync` writes a snapshot (`catalog.sync`), `catalog add` builds the
records of the bibliography it is about to write, and `catalog check` reads the same records one
file at a time to report every problem at once.
"""

from __future__ import annotations

import functools
import gc
import math
import re
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from sqlalchemy import Table

from catalog import CatalogError
from catalog import bibtex as bt
from catalog import models as m
from catalog.lists import (
    Addition,
    IndexedPaper,
    PaperIndex,
    ParsedEntry,
    ParsedList,
    extra_path,
    front_matter,
    read_additions,
    read_lists,
    resolve,
)
from catalog.schema import open_text, read_reproduction

BIB = "papers/references.bib"

PAPER_T: Table = m.Paper.__table__  # type: ignore[attr-defined]
AUTHOR_T: Table = m.Author.__table__  # type: ignore[attr-defined]
LIST_T: Table = m.ReadingList.__table__  # type: ignore[attr-defined]
ENTRY_T: Table = m.ListEntry.__table__  # type: ignore[attr-defined]
REPRO_T: Table = m.Reproduction.__table__  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- helpers


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a whole bibliography is read and written.

    Reading a 10,000-entry references.bib makes about a million long-lived objects, and every
    generation-2 collection walks them all again: a quarter of a sync's CPU time, measured.
    Cycles made meanwhile are collected once the collector is back on.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _limit(table: Table, column: str, value: Any, where: str) -> None:
    """Raise a clear error where a value would not fit its column (PostgreSQL enforces it)."""
    length = _length(table, column) if isinstance(value, str) else None
    if length and len(value) > length:
        raise CatalogError(f"{where}: {column} is {len(value)} characters, at most {length} fit")


@functools.cache
def _length(table: Table, column: str) -> int | None:
    return getattr(table.c[column].type, "length", None)


def json_safe(value: Any) -> Any:
    """YAML/TOML values made JSON-storable: dates as ISO text, tuples as lists."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------- what the files say


@dataclass
class PaperRecord:
    """A paper as `references.bib` describes it, in table columns."""

    key: str
    values: dict[str, Any]
    authors: list[bt.Person]
    line: int


def paper_record(entry: bt.BibEntry, source: str = BIB) -> PaperRecord:
    """Table values for one (syntactically valid) entry; `CatalogError` if a value cannot be
    stored (bad year, no author, a value too long for its column, an author listed twice)."""
    where = f"{source}:{entry.line}: key {entry.key}"
    venue, venue_kind = bt.venue_of(entry)
    year = bt.parse_year(entry.get("year") or "")
    if year is None:
        raise CatalogError(f"{where}: bad year {entry.get('year')!r}")
    values = {
        "entry_type": entry.entry_type,
        "title": bt.clean_text(entry.get("title") or ""),
        "year": year,
        "venue": venue,
        "venue_kind": venue_kind,
        "arxiv_id": bt.arxiv_id_of(entry),
        "doi": bt.doi_of(entry),
        "url": bt.clean_text(entry.get("url")) if entry.get("url") else None,
        "code_url": bt.code_url_of(entry),
        "abstract": bt.clean_text(entry.get("abstract")) if entry.get("abstract") else None,
        "bibtex": entry.text,
    }
    _limit(PAPER_T, "key", entry.key, where)
    for column, value in values.items():
        _limit(PAPER_T, column, value, where)
    authors = bt.parse_people(entry.get("author") or "")
    if not authors:
        raise CatalogError(f"{where}: missing required field 'author'")
    names = [a.name for a in authors]
    for person in authors:
        _limit(AUTHOR_T, "name", person.name, where)
        _limit(AUTHOR_T, "last_name", person.last, where)
        if names.count(person.name) > 1:
            raise CatalogError(f"{where}: author {person.name!r} is listed twice")
    return PaperRecord(entry.key, values, authors, entry.line)


def paper_records(bib: bt.BibFile) -> dict[str, PaperRecord]:
    """Table rows for every entry of a (validated) bibliography, in file order."""
    return {entry.key: paper_record(entry, bib.source) for entry in bib.entries}


def paper_index(records: dict[str, PaperRecord]) -> PaperIndex:
    """The lookups list matching needs, over these papers."""
    return PaperIndex.build(
        [
            IndexedPaper(
                key=r.key,
                title=r.values["title"],
                year=r.values["year"],
                arxiv_id=r.values["arxiv_id"],
                first_author_last=r.authors[0].last if r.authors else None,
                code_url=r.values["code_url"],
            )
            for r in records.values()
        ]
    )


def load_bib(root: Path) -> bt.BibFile:
    """`papers/references.bib`, parsed strictly."""
    return bt.read(root / BIB, BIB)


@dataclass
class ListRecord:
    """A parsed list with each entry resolved to a paper key (or None)."""

    parsed: ParsedList
    resolved: list[tuple[ParsedEntry, str | None]]


def list_records(
    root: Path, index: PaperIndex, additions: list[Addition] | None = None
) -> list[ListRecord]:
    """Every reading list with its entries matched; additions from `extra.toml` appended.

    An entry naming a BibTeX key the catalog lacks is bad input (error); an entry whose title or
    link matches nothing is kept unresolved for `catalog check` to report.
    """
    parsed_lists = read_lists(root)
    by_slug = {p.slug: p for p in parsed_lists}
    additions = read_additions(root) if additions is None else additions
    extra_source = _relative(extra_path(root), root)
    for a in additions:
        target = by_slug.get(a.list_slug)
        if target is None:
            raise CatalogError(
                f"{extra_source}:{a.line}: key {a.key}: unknown reading list {a.list_slug!r} "
                f"(lists: {', '.join(sorted(by_slug))})"
            )
        target.entries.append(
            ParsedEntry(
                position=max((e.position for e in target.entries), default=0) + 1,
                cited_key=a.key,
                note=a.note,
                source_line=a.line,
            )
        )
    out = []
    for parsed in parsed_lists:
        where = parsed.source_file
        _limit(LIST_T, "slug", parsed.slug, where)
        _limit(LIST_T, "title", parsed.title, where)
        resolved = []
        for entry in parsed.entries:
            r = resolve(entry, index)
            if entry.cited_key and r.key is None:
                source = where
                if any(a.key == entry.cited_key and a.line == entry.source_line for a in additions):
                    source = extra_source
                raise CatalogError(
                    f"{source}:{entry.source_line}: key {entry.cited_key}: "
                    f"not in {BIB} (list {parsed.slug})"
                )
            for column in ("cited_key", "cited_arxiv_id", "cited_url"):
                _limit(ENTRY_T, column, getattr(entry, column), f"{where}:{entry.source_line}")
            resolved.append((entry, r.key))
        out.append(ListRecord(parsed, resolved))
    return out


@dataclass
class ReviewRecord:
    """`papers/reviews/<key>.md`."""

    key: str
    body: str
    front_matter: dict[str, Any]
    source_file: str


def review_record(path: Path, root: Path, keys: Collection[str]) -> ReviewRecord:
    """One review file; its key (the file name) must be a catalog paper. A symbolic link is
    refused: reviews are published, and a link could publish any file the builder can read."""
    source = _relative(path, root)
    if path.is_symlink():
        raise CatalogError(
            f"{source}: is a symbolic link; a review must be a regular file in papers/reviews/"
            " (nothing outside the project is published)"
        )
    text = bt.read_text(path, source)
    fm, _start, body = front_matter(text, source)
    key = path.stem
    if fm.get("key") not in (None, key):
        raise CatalogError(
            f"{source}:2: key {fm.get('key')}: front matter key differs from the file name"
        )
    if key not in keys:
        raise CatalogError(f"{source}: key {key}: not in {BIB} (a review of an unknown paper)")
    return ReviewRecord(key, "\n".join(body).strip() + "\n", json_safe(fm), source)


def review_files(root: Path) -> list[Path]:
    """`papers/reviews/*.md`, README excepted."""
    folder = root / "papers" / "reviews"
    if not folder.is_dir():
        return []
    return [
        p
        for p in sorted(folder.glob("*.md"))
        if p.stem.lower() != "readme" and not p.name.startswith(".")
    ]


def review_records(root: Path, keys: Collection[str]) -> list[ReviewRecord]:
    """Every review file, validated."""
    return [review_record(p, root, keys) for p in review_files(root)]


@dataclass
class ReproRecord:
    """`repro/<slug>/` (repro.toml and expected.csv, read through `catalog.schema`) as table rows:
    `values` for its `Reproduction` row, `rows` (by row id) for its `ExpectedResult` rows."""

    slug: str
    values: dict[str, Any]
    rows: dict[str, dict[str, Any]]
    toml_source: str


def repro_files(root: Path) -> list[Path]:
    """`repro/*/repro.toml`."""
    folder = root / "repro"
    return sorted(folder.glob("*/repro.toml")) if folder.is_dir() else []


def repro_record(path: Path, root: Path, keys: Collection[str]) -> ReproRecord:
    """One reproduction folder (`path` is its repro.toml), validated by `catalog.schema` and
    against the catalog (its key must be a paper of references.bib)."""
    source = _relative(path, root)
    repro = read_reproduction(path.parent, root)
    config = repro.config
    if config.key not in keys:
        text = open_text(path)
        found = re.search(r"^\s*key\s*=", text, re.M)
        line = text.count("\n", 0, found.start()) + 1 if found else 1
        raise CatalogError(f"{source}:{line}: key {config.key}: not in {BIB}")
    values = {
        "paper_key": config.key,
        "title": config.title or None,
        "uses": list(config.uses),
        "datasets": list(config.datasets),
        "needs_gpu": config.needs_gpu,
        "has_notebook": config.notebook,
        "config": config.as_dict(),
        "path": _relative(path.parent, root),
    }
    _limit(REPRO_T, "slug", config.slug, source)
    for column in ("title", "path"):
        _limit(REPRO_T, column, values[column], source)
    rows = {
        row.id: {
            "position": position,
            "source": row.source,
            "dataset": row.dataset,
            "metric": row.metric,
            "paper_value": row.paper,
            "tolerance": row.tolerance,
            "higher_is_better": row.higher_is_better,
            "provenance": row.provenance,
            "status": row.status,
            "unit": row.unit,
            "paper_std": row.paper_std,
            "setting": dict(row.setting),
        }
        for position, row in enumerate(repro.expected)
    }
    return ReproRecord(config.slug, values, rows, source)


def repro_records(root: Path, keys: Collection[str]) -> list[ReproRecord]:
    """Every `repro/<slug>/`, validated against the catalog."""
    return [repro_record(p, root, keys) for p in repro_files(root)]


@dataclass
class Snapshot:
    """Everything the files say, read and validated before the database is touched."""

    bib: bt.BibFile
    papers: dict[str, PaperRecord]
    index: PaperIndex
    lists: list[ListRecord]
    reviews: list[ReviewRecord]
    repros: list[ReproRecord]


def read_snapshot(root: Path) -> Snapshot:
    """Read and validate `papers/` and `repro/` under `root` (no database access)."""
    bib = load_bib(root)
    papers = paper_records(bib)
    index = paper_index(papers)
    return Snapshot(
        bib=bib,
        papers=papers,
        index=index,
        lists=list_records(root, index),
        reviews=review_records(root, papers),
        repros=repro_records(root, papers),
    )
