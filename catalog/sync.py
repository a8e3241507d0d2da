"""`catalog sync`: the text in `papers/` and `repro/` into the database.

Everything is read and validated first (`catalog.snapshot.read_snapshot`: references.bib, the
reading lists, the reviews, each `repro/<slug>/` through `catalog.schema.read_reproduction`), so bad
input — one clear `CatalogError` naming file, line and key — leaves the database as it was, and the
caller's `session_scope` rolls back anything else. Then every table goes through the same
diff-and-upsert (`upsert`, driven by a `TableSpec` per table): each row is compared with what the
files say and written only when it differs, so a second sync adds and updates nothing (timestamps
included). Rows whose source disappeared are reported as vanished and deleted only with
`prune=True`, after all upserts, children first. Runs are the system of record, never touched here.

Speed: existing rows are loaded once per table and writes are bulk `executemany` statements on the
session's connection (no per-row queries, no ORM objects), which keeps a 10,000-entry
`references.bib` well under the 5-second goal.

`sync_project` is what `catalog sync` runs: the sync in one transaction under `bib_lock`, the lock
`catalog add` takes, so a `sync --prune` can never delete a paper an add is storing.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Table, delete, insert, select, update
from sqlmodel import Session

from catalog import models as m
from catalog.config import project_root
from catalog.locks import bib_lock
from catalog.snapshot import (
    ListRecord,
    PaperRecord,
    ReproRecord,
    ReviewRecord,
    gc_paused,
    read_snapshot,
)

CHUNK = 500  # keys per IN (...) clause

PAPER_T: Table = m.Paper.__table__  # type: ignore[attr-defined]
AUTHOR_T: Table = m.Author.__table__  # type: ignore[attr-defined]
LINK_T: Table = m.PaperAuthor.__table__  # type: ignore[attr-defined]
LIST_T: Table = m.ReadingList.__table__  # type: ignore[attr-defined]
ENTRY_T: Table = m.ListEntry.__table__  # type: ignore[attr-defined]
REVIEW_T: Table = m.Review.__table__  # type: ignore[attr-defined]
REPRO_T: Table = m.Reproduction.__table__  # type: ignore[attr-defined]
EXPECTED_T: Table = m.ExpectedResult.__table__  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- the tables


@dataclass(frozen=True)
class TableSpec:
    """How one table follows the files: the report kind, the natural key (what identifies a row
    in the files; unique in the table) and the time stamps set on writes. Every other column
    except the surrogate `id` is compared, so a column added to a model is synced (and its
    record must supply it) without touching this module."""

    kind: str
    table: Table
    key: tuple[str, ...]
    sep: str = "/"  # joins a composite key in the report ("demo/row_a", "list#3")
    on_insert: tuple[str, ...] = ()
    on_update: tuple[str, ...] = ()

    @property
    def fields(self) -> tuple[str, ...]:
        """The compared columns."""
        skip = {*self.key, "id", *self.on_insert, *self.on_update}
        return tuple(c.name for c in self.table.c if c.name not in skip)

    def label(self, key: tuple[Any, ...]) -> str:
        """A row's name in the report."""
        return self.sep.join(str(k) for k in key)

    def where_key(self) -> sa.ColumnElement[bool]:
        """`key = :b_key AND ...`: one row by natural key, for executemany statements."""
        return sa.and_(*(self.table.c[c] == sa.bindparam(f"b_{c}") for c in self.key))

    def key_params(self, key: tuple[Any, ...]) -> dict[str, Any]:
        """The parameters of `where_key` for one row."""
        return {f"b_{c}": v for c, v in zip(self.key, key, strict=True)}


UPDATED = ("updated_at",)
PAPERS = TableSpec(
    "papers", PAPER_T, ("key",), on_insert=("created_at", *UPDATED), on_update=UPDATED
)
AUTHORS = TableSpec("authors", AUTHOR_T, ("name",))
LISTS = TableSpec("lists", LIST_T, ("slug",))
ENTRIES = TableSpec("list entries", ENTRY_T, ("list_slug", "position"), sep="#")
REVIEWS = TableSpec("reviews", REVIEW_T, ("paper_key",), on_insert=UPDATED, on_update=UPDATED)
REPROS = TableSpec("reproductions", REPRO_T, ("slug",))
EXPECTED = TableSpec("expected rows", EXPECTED_T, ("slug", "row_id"))
#: pruning deletes children before the rows they reference
PRUNE_ORDER = (EXPECTED, REPROS, REVIEWS, ENTRIES, LISTS, PAPERS, AUTHORS)


# --------------------------------------------------------------------------- report


@dataclass
class KindReport:
    """What sync did to one kind of row."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: int = 0
    vanished: list[str] = field(default_factory=list)
    pruned: bool = False


KINDS = tuple(spec.kind for spec in (PAPERS, AUTHORS, LISTS, ENTRIES, REVIEWS, REPROS, EXPECTED))


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
            "kinds": {k: asdict(r) for k, r in self.kinds.items()},
            "unresolved": self.unresolved,
        }


# --------------------------------------------------------------------------- the one upsert

Key = tuple[Any, ...]
Vanished = dict[str, list[Key]]  # report kind -> keys of rows whose source is gone


def _chunks(items: list[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def upsert(
    conn: Connection,
    spec: TableSpec,
    wanted: dict[Key, dict[str, Any]],
    report: SyncReport,
    *,
    force: Collection[Key] = (),
    keep: Collection[Key] = (),
    partial: bool = False,
) -> list[Key]:
    """Bring `spec.table` in line with `wanted` (natural key -> the compared columns' values).

    The table's rows are loaded once; wanted rows it lacks are inserted, rows whose compared
    columns differ (or whose key is in `force`) updated, all in bulk; the rest are counted
    unchanged. Returns the keys of rows no longer wanted (less `keep`), sorted, and reports them
    as vanished — unless `partial` (`wanted` is only part of the files: nothing has vanished).
    """
    rep = report.kinds[spec.kind]
    table, n, fields = spec.table, len(spec.key), spec.fields
    columns = [table.c[c] for c in (*spec.key, *fields)]
    existing = {tuple(row[:n]): tuple(row[n:]) for row in conn.execute(select(*columns))}
    now = datetime.now(UTC)
    new, changed = [], []
    for key, values in wanted.items():
        old = existing.get(key)
        if old is None:
            row = dict(zip(spec.key, key, strict=True)) | values
            new.append(row | dict.fromkeys(spec.on_insert, now))
            rep.added.append(spec.label(key))
        elif key in force or old != tuple(values[f] for f in fields):
            changed.append(spec.key_params(key) | values | dict.fromkeys(spec.on_update, now))
            rep.updated.append(spec.label(key))
        else:
            rep.unchanged += 1
    if changed:
        conn.execute(update(table).where(spec.where_key()), changed)
    if new:
        conn.execute(insert(table), new)
    if partial:
        return []
    gone = sorted(set(existing) - set(wanted) - set(keep))
    rep.vanished = [spec.label(k) for k in gone]
    return gone


def delete_rows(conn: Connection, spec: TableSpec, keys: list[Key]) -> None:
    """Delete rows of `spec.table` by natural key (in chunks)."""
    table = spec.table
    if len(spec.key) == 1:
        for chunk in _chunks([k[0] for k in keys]):
            conn.execute(delete(table).where(table.c[spec.key[0]].in_(chunk)))
    elif keys:
        conn.execute(delete(table).where(spec.where_key()), [spec.key_params(k) for k in keys])


# --------------------------------------------------------------------------- writing rows


def sync_papers(
    conn: Connection,
    records: dict[str, PaperRecord],
    report: SyncReport,
    *,
    partial: bool = False,
    prune: bool = False,
) -> Vanished:
    """Upsert papers, their authors and the ordered links between them.

    A paper whose author list changed is updated and relinked. Authors no paper of the files
    names are vanished, except (without `prune`) those of vanished papers, which stay linked."""
    linked: dict[str, list[str]] = {}
    for paper_key, name in conn.execute(
        select(LINK_T.c.paper_key, AUTHOR_T.c.name)
        .join(AUTHOR_T, AUTHOR_T.c.id == LINK_T.c.author_id)
        .order_by(LINK_T.c.paper_key, LINK_T.c.position)
    ):
        linked.setdefault(paper_key, []).append(name)
    relink = [k for k, r in records.items() if linked.get(k) != [a.name for a in r.authors]]
    wanted = {(k,): r.values for k, r in records.items()}
    gone = upsert(conn, PAPERS, wanted, report, force={(k,) for k in relink}, partial=partial)
    people: dict[Key, dict[str, Any]] = {}
    for r in records.values():
        for person in r.authors:
            people.setdefault((person.name,), {"last_name": person.last})
    keep = set() if prune else {(name,) for (k,) in gone for name in linked.get(k, [])}
    gone_authors = upsert(conn, AUTHORS, people, report, keep=keep, partial=partial)
    if relink:
        ids = dict(conn.execute(select(AUTHOR_T.c.name, AUTHOR_T.c.id)).all())
        for chunk in _chunks(relink):
            conn.execute(delete(LINK_T).where(LINK_T.c.paper_key.in_(chunk)))
        links = [
            {"paper_key": k, "author_id": ids[p.name], "position": i}
            for k in relink
            for i, p in enumerate(records[k].authors)
        ]
        conn.execute(insert(LINK_T), links)
    return {PAPERS.kind: gone, AUTHORS.kind: gone_authors}


def sync_lists(conn: Connection, lists: list[ListRecord], report: SyncReport) -> Vanished:
    """Upsert reading lists and their entries (an entry is known by its list and position)."""
    wanted_lists: dict[Key, dict[str, Any]] = {}
    wanted_entries: dict[Key, dict[str, Any]] = {}
    for rec in lists:
        p = rec.parsed
        wanted_lists[(p.slug,)] = {f: getattr(p, f) for f in LISTS.fields}
        for entry, key in rec.resolved:
            values = {f: getattr(entry, f) for f in ENTRIES.fields if f != "paper_key"}
            wanted_entries[(p.slug, entry.position)] = {"paper_key": key, **values}
            if key is None:
                report.unresolved.append(f"{p.slug}#{entry.position}")
    return {
        LISTS.kind: upsert(conn, LISTS, wanted_lists, report),
        ENTRIES.kind: upsert(conn, ENTRIES, wanted_entries, report),
    }


def sync_reviews(conn: Connection, reviews: list[ReviewRecord], report: SyncReport) -> Vanished:
    """Upsert our reviews (one per paper)."""
    wanted = {(r.key,): {f: getattr(r, f) for f in REVIEWS.fields} for r in reviews}
    return {REVIEWS.kind: upsert(conn, REVIEWS, wanted, report)}


def sync_repros(conn: Connection, repros: list[ReproRecord], report: SyncReport) -> Vanished:
    """Upsert reproductions, then their expected rows."""
    wanted = {(r.slug,): r.values for r in repros}
    rows = {(r.slug, row_id): values for r in repros for row_id, values in r.rows.items()}
    return {
        REPROS.kind: upsert(conn, REPROS, wanted, report),
        EXPECTED.kind: upsert(conn, EXPECTED, rows, report),
    }


def sync(session: Session, root: Path | None = None, *, prune: bool = False) -> SyncReport:
    """Bring the catalog in line with `papers/` and `repro/` under `root` (default: the project).

    Idempotent; vanished rows are reported and deleted only with `prune`. Raises `CatalogError`
    (before writing anything) on bad input. Hold `bib_lock` around the transaction where a
    `catalog add` may run at the same time (`sync_project` does).
    """
    root = Path(root) if root is not None else project_root()
    with gc_paused():
        snap = read_snapshot(root)
        conn = session.connection()
        report = SyncReport()
        vanished = sync_papers(conn, snap.papers, report, prune=prune)
        vanished |= sync_lists(conn, snap.lists, report)
        vanished |= sync_reviews(conn, snap.reviews, report)
        vanished |= sync_repros(conn, snap.repros, report)
    if prune:
        for spec in PRUNE_ORDER:
            keys = vanished[spec.kind]
            report.kinds[spec.kind].pruned = True
            if spec is PAPERS:
                for chunk in _chunks([k for (k,) in keys]):
                    conn.execute(delete(LINK_T).where(LINK_T.c.paper_key.in_(chunk)))
            delete_rows(conn, spec, keys)
    return report


def sync_project(root: Path | None = None, *, prune: bool = False) -> SyncReport:
    """`catalog sync`: `sync` in one transaction, holding the `papers/` lock until it commits.

    Without the lock, a `sync --prune` that read references.bib just before a `catalog add`
    rewrote it would find the added paper in the database but not in its snapshot, and delete it.
    """
    from catalog.db import session_scope

    root = Path(root) if root is not None else project_root()
    with bib_lock(root), session_scope() as session:
        return sync(session, root, prune=prune)
