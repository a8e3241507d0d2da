"""`catalog sync` and `catalog add`: the text in `papers/` and `repro/` into the database.

Everything is read and validated before the database is touched, so bad input (one clear
`CatalogError` naming file, line and key) leaves the database as it was — and the caller's
`session_scope` rolls back anything else. Sync is idempotent: each row is compared with what the
files say and written only when it differs, so a second sync adds and updates nothing (timestamps
included). Rows whose source disappeared are reported as vanished and deleted only with
`prune=True`. Runs are the system of record, never touched here.

Speed: existing rows are loaded once per table and writes are bulk `executemany` statements on the
session's connection (no per-row queries, no ORM objects), which keeps a 10,000-entry
`references.bib` well under the 5-second goal.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Table, bindparam, delete, insert, select, update
from sqlmodel import Session

from catalog import CatalogError
from catalog import bibtex as bt
from catalog.config import project_root
from catalog.lists import (
    Addition,
    IndexedPaper,
    PaperIndex,
    ParsedEntry,
    ParsedList,
    additions_text,
    extra_path,
    read_additions,
    read_lists,
    resolve,
)
from catalog.models import (
    Author,
    ExpectedResult,
    ListEntry,
    Paper,
    PaperAuthor,
    ReadingList,
    Reproduction,
    Review,
)

BIB = "papers/references.bib"
CHUNK = 500  # keys per IN (...) clause

PAPER_T: Table = Paper.__table__  # type: ignore[attr-defined]
AUTHOR_T: Table = Author.__table__  # type: ignore[attr-defined]
LINK_T: Table = PaperAuthor.__table__  # type: ignore[attr-defined]
LIST_T: Table = ReadingList.__table__  # type: ignore[attr-defined]
ENTRY_T: Table = ListEntry.__table__  # type: ignore[attr-defined]
REVIEW_T: Table = Review.__table__  # type: ignore[attr-defined]
REPRO_T: Table = Reproduction.__table__  # type: ignore[attr-defined]
EXPECTED_T: Table = ExpectedResult.__table__  # type: ignore[attr-defined]

PAPER_FIELDS = (
    "entry_type",
    "title",
    "year",
    "venue",
    "venue_kind",
    "arxiv_id",
    "doi",
    "url",
    "code_url",
    "abstract",
    "bibtex",
)
LIST_FIELDS = ("title", "format", "source_file", "description", "provenance")
ENTRY_FIELDS = (
    "paper_key",
    "cited_title",
    "cited_key",
    "cited_arxiv_id",
    "cited_url",
    "note",
    "source_line",
)
REVIEW_FIELDS = ("body", "front_matter", "source_file")
REPRO_FIELDS = (
    "paper_key",
    "title",
    "uses",
    "datasets",
    "needs_gpu",
    "has_notebook",
    "config",
    "path",
)
EXPECTED_FIELDS = (
    "position",
    "source",
    "dataset",
    "metric",
    "paper_value",
    "tolerance",
    "higher_is_better",
    "provenance",
    "setting",
)
EXPECTED_REQUIRED = ("id", "source", "dataset", "metric", "paper", "tolerance")
EXPECTED_KNOWN = (*EXPECTED_REQUIRED, "higher_is_better", "provenance")


# --------------------------------------------------------------------------- report


@dataclass
class KindReport:
    """What sync did to one kind of row."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: int = 0
    vanished: list[str] = field(default_factory=list)
    pruned: bool = False


KINDS = ("papers", "authors", "lists", "list entries", "reviews", "reproductions", "expected rows")


@dataclass
class SyncReport:
    """Per kind: added, updated, unchanged, vanished (deleted only when `pruned`)."""

    kinds: dict[str, KindReport] = field(default_factory=lambda: {k: KindReport() for k in KINDS})
    unresolved: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """Whether anything was written."""
        return any(r.added or r.updated or (r.pruned and r.vanished) for r in self.kinds.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for `catalog sync --json` and tests)."""
        return {
            "kinds": {
                name: {
                    "added": r.added,
                    "updated": r.updated,
                    "unchanged": r.unchanged,
                    "vanished": r.vanished,
                    "pruned": r.pruned,
                }
                for name, r in self.kinds.items()
            },
            "unresolved": self.unresolved,
        }


# --------------------------------------------------------------------------- helpers


def _now() -> datetime:
    return datetime.now(UTC)


def _chunks(items: list[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


_LENGTHS: dict[tuple[str, str], int | None] = {}


def _limit(table: Table, column: str, value: Any, where: str) -> None:
    """Raise a clear error where a value would not fit its column (PostgreSQL enforces it)."""
    if not isinstance(value, str):
        return
    ident = (table.name, column)
    if ident not in _LENGTHS:
        _LENGTHS[ident] = getattr(table.c[column].type, "length", None)
    length = _LENGTHS[ident]
    if length and len(value) > length:
        raise CatalogError(f"{where}: {column} is {len(value)} characters, at most {length} fit")


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


# --------------------------------------------------------------------------- what the files say


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


def review_record(path: Path, root: Path, keys: set[str] | dict[str, Any]) -> ReviewRecord:
    """One review file; its key (the file name) must be a catalog paper."""
    from catalog.lists import front_matter

    source = _relative(path, root)
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


def review_records(root: Path, keys: set[str] | dict[str, Any]) -> list[ReviewRecord]:
    """Every review file, validated."""
    return [review_record(p, root, keys) for p in review_files(root)]


@dataclass
class ReproRecord:
    """`repro/<slug>/repro.toml` and its `expected.csv`."""

    slug: str
    values: dict[str, Any]
    expected: list[dict[str, Any]]
    toml_source: str


def _line_of(text: str, pattern: str) -> int:
    m = re.search(pattern, text, re.M)
    return text.count("\n", 0, m.start()) + 1 if m else 1


def _number(text: str, where: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise CatalogError(f"{where}: {name} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise CatalogError(f"{where}: {name} {text!r} is not a finite number")
    return value


def _setting_value(text: str) -> Any:
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    if re.fullmatch(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?", text):
        return float(text)
    return text


_BOOL = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False}


def read_expected(path: Path, source: str) -> list[dict[str, Any]]:
    """Validate and convert an `expected.csv` (see the brief's contract) to ExpectedResult rows."""
    text = bt.read_text(path, source)
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    missing = [c for c in EXPECTED_REQUIRED if c not in header]
    if missing:
        raise CatalogError(f"{source}:1: missing required column(s) {', '.join(missing)}")
    dupes = {c for c in header if header.count(c) > 1}
    if dupes:
        raise CatalogError(f"{source}:1: column(s) {', '.join(sorted(dupes))} given twice")
    rows: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    line = 1
    for position, raw in enumerate(reader):
        line = reader.line_num
        if None in raw:
            raise CatalogError(f"{source}:{line}: more fields than the header has columns")
        row_id = (raw.get("id") or "").strip()
        where = f"{source}:{line}: row {row_id or '?'}"
        if not row_id:
            raise CatalogError(f"{source}:{line}: empty id")
        if row_id in seen:
            raise CatalogError(f"{where}: duplicate id (first at line {seen[row_id]})")
        seen[row_id] = line
        for name in ("source", "dataset", "metric"):
            if not (raw.get(name) or "").strip():
                raise CatalogError(f"{where}: empty {name}")
        paper = _number((raw["paper"] or "").strip(), where, "paper")
        tolerance = _number((raw["tolerance"] or "").strip(), where, "tolerance")
        if tolerance < 0:
            raise CatalogError(f"{where}: tolerance {tolerance} is negative")
        hib_text = (raw.get("higher_is_better") or "").strip().lower()
        if hib_text and hib_text not in _BOOL:
            raise CatalogError(f"{where}: higher_is_better {hib_text!r} is not true/false")
        setting = {
            k: _setting_value(v.strip())
            for k, v in raw.items()
            if k not in EXPECTED_KNOWN and v is not None and v.strip()
        }
        record = {
            "row_id": row_id,
            "position": position,
            "source": raw["source"].strip(),
            "dataset": raw["dataset"].strip(),
            "metric": raw["metric"].strip(),
            "paper_value": paper,
            "tolerance": tolerance,
            "higher_is_better": _BOOL[hib_text] if hib_text else None,
            "provenance": (raw.get("provenance") or "").strip() or None,
            "setting": setting,
        }
        for column in ("row_id", "source", "dataset", "metric"):
            _limit(EXPECTED_T, column, record[column], where)
        rows.append(record)
    return rows


def repro_files(root: Path) -> list[Path]:
    """`repro/*/repro.toml`."""
    folder = root / "repro"
    return sorted(folder.glob("*/repro.toml")) if folder.is_dir() else []


def repro_records(root: Path, keys: set[str] | dict[str, Any]) -> list[ReproRecord]:
    """Every `repro/<slug>/repro.toml` (with its expected.csv), validated against the catalog."""
    return [repro_record(p, root, keys) for p in repro_files(root)]


def repro_record(path: Path, root: Path, keys: set[str] | dict[str, Any]) -> ReproRecord:
    """One reproduction folder's `repro.toml` and `expected.csv`, validated."""
    import tomllib

    source = _relative(path, root)
    text = bt.read_text(path, source)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"{source}: {exc}") from exc
    folder_slug = path.parent.name
    slug = data.get("slug", folder_slug)
    if slug != folder_slug:
        line = _line_of(text, r"^slug\s*=")
        raise CatalogError(
            f"{source}:{line}: slug {slug!r} differs from the folder name {folder_slug!r}"
        )
    key = data.get("key")
    key_line = _line_of(text, r"^key\s*=")
    if not isinstance(key, str) or not key:
        raise CatalogError(f"{source}:{key_line}: missing 'key' (the paper's catalog key)")
    if key not in keys:
        raise CatalogError(f"{source}:{key_line}: key {key}: not in {BIB}")
    for name in ("uses", "datasets"):
        value = data.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            line = _line_of(text, rf"^{name}\s*=")
            raise CatalogError(f"{source}:{line}: {name} must be a list of strings")
    scales = data.get("scales", {})
    full = scales.get("full", {}) if isinstance(scales, dict) else {}
    needs_gpu = data.get(
        "needs_gpu", full.get("needs_gpu", False) if isinstance(full, dict) else False
    )
    notebook = data.get("notebook", (path.parent / "reproduce.py").exists())
    values = {
        "paper_key": key,
        "title": data.get("title"),
        "uses": list(data.get("uses", [])),
        "datasets": list(data.get("datasets", [])),
        "needs_gpu": bool(needs_gpu),
        "has_notebook": bool(notebook),
        "config": json_safe(data),
        "path": _relative(path.parent, root),
    }
    _limit(REPRO_T, "title", values["title"], source)
    expected_path = path.parent / "expected.csv"
    expected = (
        read_expected(expected_path, _relative(expected_path, root))
        if expected_path.exists()
        else []
    )
    return ReproRecord(slug, values, expected, source)


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


# --------------------------------------------------------------------------- writing rows


def _changed(old: dict[str, Any], new: dict[str, Any], fields: Iterable[str]) -> bool:
    return any(old.get(f) != new.get(f) for f in fields)


def _sync_papers(
    conn: Connection,
    records: dict[str, PaperRecord],
    report: SyncReport,
    *,
    partial: bool = False,
    prune: bool = False,
) -> list[str]:
    """Upsert papers and their ordered authors; return the keys no longer in the files.

    Authors whose every paper vanished are reported as vanished too (deleted with the papers
    when pruning)."""
    papers = report.kinds["papers"]
    authors_report = report.kinds["authors"]
    cols = [PAPER_T.c.key, *(PAPER_T.c[f] for f in PAPER_FIELDS)]
    if partial:
        existing: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(list(records)):
            for row in conn.execute(select(*cols).where(PAPER_T.c.key.in_(chunk))).mappings():
                existing[row["key"]] = dict(row)
    else:
        existing = {row["key"]: dict(row) for row in conn.execute(select(*cols)).mappings()}
    link_rows = conn.execute(
        select(LINK_T.c.paper_key, AUTHOR_T.c.name)
        .join(AUTHOR_T, AUTHOR_T.c.id == LINK_T.c.author_id)
        .order_by(LINK_T.c.paper_key, LINK_T.c.position)
    ).all()
    existing_authors: dict[str, list[str]] = {}
    for paper_key, name in link_rows:
        existing_authors.setdefault(paper_key, []).append(name)
    author_ids: dict[str, tuple[int, str]] = {
        name: (aid, last)
        for aid, name, last in conn.execute(
            select(AUTHOR_T.c.id, AUTHOR_T.c.name, AUTHOR_T.c.last_name)
        )
    }

    now = _now()
    to_insert, to_update, relink = [], [], []
    for key, rec in records.items():
        names = [a.name for a in rec.authors]
        old = existing.get(key)
        if old is None:
            to_insert.append({"key": key, **rec.values, "created_at": now, "updated_at": now})
            papers.added.append(key)
            relink.append(key)
        elif _changed(old, rec.values, PAPER_FIELDS) or existing_authors.get(key) != names:
            to_update.append({"b_key": key, **rec.values, "updated_at": now})
            papers.updated.append(key)
            if existing_authors.get(key) != names:
                relink.append(key)
        else:
            papers.unchanged += 1

    # authors: new names inserted in bulk, changed last names fixed
    wanted: dict[str, str] = {}
    for rec in records.values():
        for person in rec.authors:
            wanted.setdefault(person.name, person.last)
    new_authors = [
        {"name": n, "last_name": last} for n, last in wanted.items() if n not in author_ids
    ]
    fixed = [n for n, last in wanted.items() if n in author_ids and author_ids[n][1] != last]
    if new_authors:
        conn.execute(insert(AUTHOR_T), new_authors)
        authors_report.added.extend(a["name"] for a in new_authors)
        for chunk in _chunks([a["name"] for a in new_authors]):
            for aid, name in conn.execute(
                select(AUTHOR_T.c.id, AUTHOR_T.c.name).where(AUTHOR_T.c.name.in_(chunk))
            ):
                author_ids[name] = (aid, wanted[name])
    if fixed:
        conn.execute(
            update(AUTHOR_T).where(AUTHOR_T.c.id == bindparam("b_id")),
            [{"b_id": author_ids[n][0], "last_name": wanted[n]} for n in fixed],
        )
        authors_report.updated.extend(fixed)

    if to_insert:
        conn.execute(insert(PAPER_T), to_insert)
    if to_update:
        conn.execute(update(PAPER_T).where(PAPER_T.c.key == bindparam("b_key")), to_update)
    if relink:
        for chunk in _chunks(relink):
            conn.execute(delete(LINK_T).where(LINK_T.c.paper_key.in_(chunk)))
        links = [
            {"paper_key": key, "author_id": author_ids[p.name][0], "position": i}
            for key in relink
            for i, p in enumerate(records[key].authors)
        ]
        if links:
            conn.execute(insert(LINK_T), links)

    vanished = [] if partial else sorted(set(existing) - set(records))
    papers.vanished = vanished
    if not partial:
        kept_names = set(wanted)
        for key in [] if prune else vanished:
            kept_names.update(existing_authors.get(key, []))
        authors_report.vanished = sorted(set(author_ids) - kept_names)
        authors_report.unchanged = len(set(wanted) - set(authors_report.added) - set(fixed))
    return vanished


def _sync_lists(conn: Connection, lists: list[ListRecord], report: SyncReport, prune: bool) -> None:
    """Upsert reading lists and their entries (entries compared by position)."""
    lists_report = report.kinds["lists"]
    entries_report = report.kinds["list entries"]
    existing = {
        row["slug"]: dict(row)
        for row in conn.execute(
            select(LIST_T.c.slug, *(LIST_T.c[f] for f in LIST_FIELDS))
        ).mappings()
    }
    existing_entries = {
        (row["list_slug"], row["position"]): dict(row)
        for row in conn.execute(
            select(
                ENTRY_T.c.id,
                ENTRY_T.c.list_slug,
                ENTRY_T.c.position,
                *(ENTRY_T.c[f] for f in ENTRY_FIELDS),
            )
        ).mappings()
    }
    new_lists, upd_lists, new_entries, upd_entries = [], [], [], []
    wanted_entries: set[tuple[str, int]] = set()
    for rec in lists:
        p = rec.parsed
        values = {
            "title": p.title,
            "format": p.format,
            "source_file": p.source_file,
            "description": p.description,
            "provenance": p.provenance,
        }
        old = existing.get(p.slug)
        if old is None:
            new_lists.append({"slug": p.slug, **values})
            lists_report.added.append(p.slug)
        elif _changed(old, values, LIST_FIELDS):
            upd_lists.append({"b_slug": p.slug, **values})
            lists_report.updated.append(p.slug)
        else:
            lists_report.unchanged += 1
        for entry, key in rec.resolved:
            values = {
                "paper_key": key,
                "cited_title": entry.cited_title,
                "cited_key": entry.cited_key,
                "cited_arxiv_id": entry.cited_arxiv_id,
                "cited_url": entry.cited_url,
                "note": entry.note,
                "source_line": entry.source_line,
            }
            name = f"{p.slug}#{entry.position}"
            wanted_entries.add((p.slug, entry.position))
            if key is None:
                report.unresolved.append(name)
            old_entry = existing_entries.get((p.slug, entry.position))
            if old_entry is None:
                new_entries.append({"list_slug": p.slug, "position": entry.position, **values})
                entries_report.added.append(name)
            elif _changed(old_entry, values, ENTRY_FIELDS):
                upd_entries.append({"b_id": old_entry["id"], **values})
                entries_report.updated.append(name)
            else:
                entries_report.unchanged += 1
    if new_lists:
        conn.execute(insert(LIST_T), new_lists)
    if upd_lists:
        conn.execute(update(LIST_T).where(LIST_T.c.slug == bindparam("b_slug")), upd_lists)
    if upd_entries:
        conn.execute(update(ENTRY_T).where(ENTRY_T.c.id == bindparam("b_id")), upd_entries)
    if new_entries:
        conn.execute(insert(ENTRY_T), new_entries)
    gone_lists = sorted(set(existing) - {r.parsed.slug for r in lists})
    gone_entries = sorted(set(existing_entries) - wanted_entries)
    lists_report.vanished = gone_lists
    entries_report.vanished = [f"{s}#{n}" for s, n in gone_entries]
    if prune:
        lists_report.pruned = entries_report.pruned = True
        ids = [existing_entries[k]["id"] for k in gone_entries]
        for chunk in _chunks(ids):
            conn.execute(delete(ENTRY_T).where(ENTRY_T.c.id.in_(chunk)))
        for chunk in _chunks(gone_lists):
            conn.execute(delete(ENTRY_T).where(ENTRY_T.c.list_slug.in_(chunk)))
            conn.execute(delete(LIST_T).where(LIST_T.c.slug.in_(chunk)))


def _sync_reviews(
    conn: Connection, reviews: list[ReviewRecord], report: SyncReport, prune: bool
) -> None:
    rep = report.kinds["reviews"]
    existing = {
        row["paper_key"]: dict(row)
        for row in conn.execute(
            select(REVIEW_T.c.paper_key, *(REVIEW_T.c[f] for f in REVIEW_FIELDS))
        ).mappings()
    }
    now = _now()
    for rec in reviews:
        values = {
            "body": rec.body,
            "front_matter": rec.front_matter,
            "source_file": rec.source_file,
        }
        old = existing.get(rec.key)
        if old is None:
            conn.execute(insert(REVIEW_T), [{"paper_key": rec.key, **values, "updated_at": now}])
            rep.added.append(rec.key)
        elif _changed(old, values, REVIEW_FIELDS):
            conn.execute(
                update(REVIEW_T).where(REVIEW_T.c.paper_key == rec.key),
                [{**values, "updated_at": now}],
            )
            rep.updated.append(rec.key)
        else:
            rep.unchanged += 1
    rep.vanished = sorted(set(existing) - {r.key for r in reviews})
    if prune and rep.vanished:
        rep.pruned = True
        conn.execute(delete(REVIEW_T).where(REVIEW_T.c.paper_key.in_(rep.vanished)))
    elif prune:
        rep.pruned = True


def _sync_repros(
    conn: Connection, repros: list[ReproRecord], report: SyncReport, prune: bool
) -> None:
    rep = report.kinds["reproductions"]
    rows_rep = report.kinds["expected rows"]
    existing = {
        row["slug"]: dict(row)
        for row in conn.execute(
            select(REPRO_T.c.slug, *(REPRO_T.c[f] for f in REPRO_FIELDS))
        ).mappings()
    }
    existing_rows = {
        (row["slug"], row["row_id"]): dict(row)
        for row in conn.execute(
            select(
                EXPECTED_T.c.id,
                EXPECTED_T.c.slug,
                EXPECTED_T.c.row_id,
                *(EXPECTED_T.c[f] for f in EXPECTED_FIELDS),
            )
        ).mappings()
    }
    new_rows, upd_rows = [], []
    wanted_rows: set[tuple[str, str]] = set()
    for rec in repros:
        old = existing.get(rec.slug)
        if old is None:
            conn.execute(insert(REPRO_T), [{"slug": rec.slug, **rec.values}])
            rep.added.append(rec.slug)
        elif _changed(old, rec.values, REPRO_FIELDS):
            conn.execute(update(REPRO_T).where(REPRO_T.c.slug == rec.slug), [rec.values])
            rep.updated.append(rec.slug)
        else:
            rep.unchanged += 1
        for row in rec.expected:
            ident = (rec.slug, row["row_id"])
            wanted_rows.add(ident)
            values = {f: row[f] for f in EXPECTED_FIELDS}
            name = f"{rec.slug}/{row['row_id']}"
            old_row = existing_rows.get(ident)
            if old_row is None:
                new_rows.append({"slug": rec.slug, "row_id": row["row_id"], **values})
                rows_rep.added.append(name)
            elif _changed(old_row, values, EXPECTED_FIELDS):
                upd_rows.append({"b_id": old_row["id"], **values})
                rows_rep.updated.append(name)
            else:
                rows_rep.unchanged += 1
    if upd_rows:
        conn.execute(update(EXPECTED_T).where(EXPECTED_T.c.id == bindparam("b_id")), upd_rows)
    if new_rows:
        conn.execute(insert(EXPECTED_T), new_rows)
    gone_rows = sorted(set(existing_rows) - wanted_rows)
    gone = sorted(set(existing) - {r.slug for r in repros})
    rep.vanished = gone
    rows_rep.vanished = [f"{s}/{r}" for s, r in gone_rows]
    if prune:
        rep.pruned = rows_rep.pruned = True
        ids = [existing_rows[k]["id"] for k in gone_rows]
        for chunk in _chunks(ids):
            conn.execute(delete(EXPECTED_T).where(EXPECTED_T.c.id.in_(chunk)))
        for chunk in _chunks(gone):
            conn.execute(delete(EXPECTED_T).where(EXPECTED_T.c.slug.in_(chunk)))
            conn.execute(delete(REPRO_T).where(REPRO_T.c.slug.in_(chunk)))


def _prune_papers(conn: Connection, vanished: list[str], report: SyncReport) -> None:
    """Delete vanished papers (and authors left without papers) — only with --prune."""
    report.kinds["papers"].pruned = report.kinds["authors"].pruned = True
    for chunk in _chunks(vanished):
        conn.execute(update(ENTRY_T).where(ENTRY_T.c.paper_key.in_(chunk)).values(paper_key=None))
        conn.execute(delete(REVIEW_T).where(REVIEW_T.c.paper_key.in_(chunk)))
        conn.execute(delete(LINK_T).where(LINK_T.c.paper_key.in_(chunk)))
        conn.execute(delete(PAPER_T).where(PAPER_T.c.key.in_(chunk)))
    orphans = report.kinds["authors"].vanished
    for chunk in _chunks(orphans):
        conn.execute(delete(AUTHOR_T).where(AUTHOR_T.c.name.in_(chunk)))


def sync(session: Session, root: Path | None = None, *, prune: bool = False) -> SyncReport:
    """Bring the catalog in line with `papers/` and `repro/` under `root` (default: the project).

    Idempotent; vanished rows are reported and deleted only with `prune`. Raises `CatalogError`
    (before writing anything) on bad input.
    """
    root = Path(root) if root is not None else project_root()
    snap = read_snapshot(root)
    conn = session.connection()
    report = SyncReport()
    vanished = _sync_papers(conn, snap.papers, report, prune=prune)
    _sync_lists(conn, snap.lists, report, prune)
    _sync_reviews(conn, snap.reviews, report, prune)
    _sync_repros(conn, snap.repros, report, prune)
    if prune:
        _prune_papers(conn, vanished, report)
    return report


# --------------------------------------------------------------------------- add


@contextmanager
def bib_lock(root: Path | None = None) -> Iterator[None]:
    """Serialise writers of `papers/` (two `catalog add` at once would each rewrite
    references.bib from the same old text and one addition would be lost).

    An exclusive `flock` on the `papers/` folder itself: no lock file to leave behind, and it
    still works although each write replaces references.bib by a new file. Readers never wait.
    """
    root = Path(root) if root is not None else project_root()
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; concurrent adds stay racy there
        yield
        return
    fd = os.open(root / "papers", os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


class FileGuard:
    """Files written during a command, restored to their old content if the command fails.

    Used around the database transaction: if anything after the atomic write fails (the database
    part included), every file is put back, so `references.bib` and the catalog never disagree.
    """

    def __init__(self) -> None:
        self._saved: dict[Path, bytes | None] = {}

    def __enter__(self) -> FileGuard:
        return self

    def write(self, path: Path, text: str) -> None:
        """Atomically replace `path`, remembering what it held first."""
        path = Path(path)
        if path not in self._saved:
            self._saved[path] = path.read_bytes() if path.exists() else None
        bt.atomic_write(path, text)

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            return
        for path, old in self._saved.items():
            if old is None:
                path.unlink(missing_ok=True)
            else:
                bt.atomic_write(path, old.decode("utf-8"))


@dataclass
class AddResult:
    """What `add` did: keys added or replaced, and list memberships written."""

    added: list[str]
    replaced: list[str]
    listed: list[str]
    report: SyncReport


def add_entries(
    session: Session,
    bibtex_text: str,
    *,
    source: str = "<input>",
    root: Path | None = None,
    list_slug: str | None = None,
    note: str | None = None,
    replace: bool = False,
    guard: FileGuard | None = None,
) -> AddResult:
    """Write new BibTeX entries to `references.bib` (atomically, in the file's style) and the
    catalog, and optionally add them to a reading list (`papers/lists/extra.toml`).

    Validation happens first (the entries, the whole resulting file, the list); files are written
    through `guard` so the caller can restore them if the database part fails.
    """
    root = Path(root) if root is not None else project_root()
    incoming = bt.parse(bibtex_text, source)
    if not incoming.entries:
        raise CatalogError(f"{source}: no BibTeX entry found")
    current = load_bib(root)
    existing = current.by_key()
    for entry in incoming.entries:
        if entry.key in existing and not replace:
            raise CatalogError(
                f"{source}:{entry.line}: key {entry.key}: already in {BIB} "
                f"(line {existing[entry.key].line}); use --replace to overwrite it"
            )
    style = bt.detect_style(current)
    texts = {e.key: bt.restyle(e, style) for e in incoming.entries}
    new_text = bt.merge_entries(current, texts)
    new_bib = bt.parse(new_text, BIB)
    records = paper_records(new_bib)
    keys = [e.key for e in incoming.entries]

    index = paper_index(records)
    additions: list[Addition] = []
    if list_slug is not None:
        current_lists = list_records(root, index)
        slugs = {rec.parsed.slug for rec in current_lists}
        if list_slug not in slugs:
            raise CatalogError(
                f"unknown reading list {list_slug!r} (lists: {', '.join(sorted(slugs))})"
            )
        present = {
            k for rec in current_lists if rec.parsed.slug == list_slug for _e, k in rec.resolved
        }
        additions = [Addition(list_slug, k, note, 0) for k in keys if k not in present]

    guard = guard or FileGuard()
    guard.write(root / BIB, new_text)
    if additions:
        guard.write(extra_path(root), additions_text(root, additions))
    # Lists are matched again against the new bibliography (an entry that matched nothing may
    # now name the added paper), so that a later `catalog sync` has nothing left to do.
    lists = list_records(root, index)

    conn = session.connection()
    report = SyncReport()
    # Every paper of the new file is upserted, not only the added ones: the lists synced next may
    # name papers a never-synced (or stale) database lacks, and their foreign keys need them.
    _sync_papers(conn, records, report, partial=True)
    _sync_lists(conn, lists, report, prune=False)
    return AddResult(
        added=[k for k in keys if k not in existing],
        replaced=[k for k in keys if k in existing],
        listed=[a.key for a in additions],
        report=report,
    )


# --------------------------------------------------------------------------- arXiv


ARXIV_API = "http://export.arxiv.org/api/query?id_list={id}"
_ARXIV_ARG = re.compile(r"^(?:arxiv:)?(\d{4}\.\d{4,5}|[a-z\-]+(?:\.[A-Z]{2})?/\d{7})(v\d+)?$", re.I)


def _arxiv_timeout() -> float:
    return float(os.environ.get("ADVREPRO_NET_TIMEOUT", "5"))


def fetch_arxiv(identifier: str, *, timeout: float | None = None) -> str:
    """A BibTeX entry (house-style key, `@misc`, arXiv fields) for an arXiv id, from arXiv's API.

    Offline, this fails at once (and never waits longer than `timeout` seconds, name resolution
    included) with a message suggesting `--bibtex`.
    """
    import urllib.error
    import urllib.request
    import xml.etree.ElementTree as ET

    m = _ARXIV_ARG.match(identifier.strip())
    if m is None:
        raise CatalogError(f"{identifier}: not an arXiv id (expected e.g. arxiv:1412.6572)")
    arxiv_id = m.group(1)
    timeout = _arxiv_timeout() if timeout is None else timeout
    url = os.environ.get("ADVREPRO_ARXIV_API", ARXIV_API).format(id=arxiv_id)
    hint = f"add the paper from a BibTeX file instead: catalog add --bibtex FILE (arxiv:{arxiv_id})"
    result: dict[str, Any] = {}

    def fetch() -> None:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                result["body"] = response.read()
        except (urllib.error.URLError, OSError, ValueError) as exc:
            result["error"] = getattr(exc, "reason", exc)

    worker = threading.Thread(target=fetch, daemon=True)
    worker.start()
    worker.join(timeout + 1)
    if worker.is_alive():
        raise CatalogError(f"arXiv did not answer within {timeout:g} s; {hint}")
    if "error" in result:
        raise CatalogError(f"cannot reach arXiv ({url.split('/')[2]}): {result['error']}; {hint}")
    ns = {"a": "http://www.w3.org/2005/Atom", "x": "http://arxiv.org/schemas/atom"}
    try:
        feed = ET.fromstring(result["body"])
    except ET.ParseError as exc:
        raise CatalogError(f"arXiv answered with malformed XML ({exc}); {hint}") from exc
    entry = feed.find("a:entry", ns)
    title = entry.findtext("a:title", default="", namespaces=ns) if entry is not None else ""
    if entry is None or not title.strip() or title.strip() == "Error":
        raise CatalogError(f"arxiv:{arxiv_id}: arXiv has no such paper")
    title = " ".join(title.split())
    names = [
        " ".join((a.findtext("a:name", default="", namespaces=ns)).split())
        for a in entry.findall("a:author", ns)
    ]
    names = [n for n in names if n]
    published = entry.findtext("a:published", default="", namespaces=ns)
    if not names or not re.match(r"\d{4}", published):
        raise CatalogError(f"arxiv:{arxiv_id}: arXiv's answer lacks authors or a date")
    year = int(published[:4])
    people = bt.parse_people(" and ".join(names))
    key = bt.house_key(year, people[0], "arxiv", title)
    abstract = " ".join(entry.findtext("a:summary", default="", namespaces=ns).split())
    doi = entry.findtext("x:doi", default="", namespaces=ns).strip()
    fields = [
        ("author", bt.braced(" and ".join(f"{p.last}, {p.first}".strip(", ") for p in people))),
        ("title", bt.braced(title)),
        ("year", str(year)),
        ("eprint", bt.braced(arxiv_id)),
        ("archiveprefix", "{arXiv}"),
        ("url", bt.braced(f"https://arxiv.org/abs/{arxiv_id}")),
    ]
    if doi:
        fields.append(("doi", bt.braced(doi)))
    if abstract:
        fields.append(("abstract", bt.braced(abstract)))
    return bt.render_entry("misc", key, fields, bt.Style())
