"""`catalog check`: lint the literature files and the catalog, reporting every problem at once.

Unlike `sync`, which stops at the first bad input, `check` keeps going so one run lists
everything to fix. It reads the files (the source of truth) rather than trusting the database, and
compares the two at the end. Errors make `catalog check` exit non-zero; warnings do not (house-style
deviations, a list's code link that differs from ours, a database that needs a sync).

What it reports, and why it matters:
- BibTeX defects (malformed entries, missing title/year/author, duplicate keys, bad years) and
  duplicate titles — the catalog's identity is the key, and two keys for one paper split its
  list memberships and runs;
- a list entry that resolves to no paper, or names a key the catalog lacks;
- a list link that contradicts the catalog (the list's arXiv id is not the paper's) — recorded,
  never silently fixed: the lists are the user's documents;
- reviews and reproductions pointing at unknown keys, a reproduction `uses` an unknown slug, a
  broken `expected.csv`.

Known contradictions between a list and the catalog are acknowledged in
`papers/lists/acknowledged.toml`, beside the lists: each `[[contradiction]]` names the list file,
the paper key, the check's code and what the list cites, with the note that explains it. A finding
that matches one is reported as `acknowledged` (with that note) and does not fail the check; any
other contradiction still does, and an acknowledgement that matches nothing is a warning (the list
or the catalog changed: the note may no longer be true).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catalog import CatalogError
from catalog import bibtex as bt
from catalog.config import project_root


@dataclass
class Problem:
    """One finding. `where` is `file:line` (or a file), `key` the paper key when there is one."""

    severity: str  # error | warning | acknowledged
    code: str
    message: str
    where: str | None = None
    key: str | None = None
    cited: str | None = None  # what a list cites that contradicts the catalog (an arXiv id)

    def __str__(self) -> str:
        parts = [p for p in (self.where, f"key {self.key}" if self.key else None) if p]
        prefix = ": ".join(parts)
        return f"{prefix}: {self.message}" if prefix else self.message

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "severity": self.severity,
            "code": self.code,
            "where": self.where,
            "key": self.key,
            "message": self.message,
            "cited": self.cited,
        }


def _error_problem(exc: CatalogError, code: str) -> Problem:
    """A `CatalogError` message ("file:line: key K: what") as a problem."""
    text = str(exc)
    m = re.match(r"^(?P<where>[^\s:]+(?::\d+)?): (?:key (?P<key>\S+): )?(?P<msg>.*)$", text)
    if m and ("/" in m.group("where") or "." in m.group("where")):
        return Problem("error", code, m.group("msg"), m.group("where"), m.group("key"))
    return Problem("error", code, text)


def _norm_url(url: str | None) -> str:
    return (url or "").strip().rstrip("/").lower().removesuffix(".git")


def _check_bibliography(root: Path, problems: list[Problem]) -> dict[str, Any]:
    from catalog.lists import normalise_title
    from catalog.snapshot import BIB, paper_record

    source = BIB
    try:
        text = bt.read_text(root / BIB, source)
    except CatalogError as exc:
        problems.append(_error_problem(exc, "bibtex"))
        return {}
    bib = bt.scan(text, source)
    for p in bib.problems:
        code = "duplicate-key" if "duplicate key" in p.message else "bibtex"
        problems.append(Problem("error", code, p.message, f"{p.source}:{p.line}", p.key))
    records: dict[str, Any] = {}
    titles: dict[str, tuple[str, int]] = {}
    for entry in bib.entries:
        if entry.key in records:
            continue
        try:
            rec = paper_record(entry, source)
        except CatalogError as exc:
            if not any(
                p.key == entry.key and p.where == f"{source}:{entry.line}" for p in problems
            ):
                problems.append(_error_problem(exc, "bibtex"))
            continue
        records[entry.key] = rec
        norm = normalise_title(rec.values["title"])
        if norm in titles:
            other, line = titles[norm]
            problems.append(
                Problem(
                    "error",
                    "duplicate-title",
                    f"duplicate title {rec.values['title']!r} (also {other}, line {line})",
                    f"{source}:{entry.line}",
                    entry.key,
                )
            )
        else:
            titles[norm] = (entry.key, entry.line)
        _check_house_key(entry, rec, source, problems)
    return records


def _check_house_key(entry: bt.BibEntry, rec: Any, source: str, problems: list[Problem]) -> None:
    where = f"{source}:{entry.line}"
    m = bt.HOUSE_KEY.match(entry.key)
    if m is None:
        problems.append(
            Problem(
                "warning",
                "house-style",
                "key does not follow the house style YYYY_Lastname_F_<venue>_<title initials>",
                where,
                entry.key,
            )
        )
        return
    if int(m.group(1)) != rec.values["year"]:
        problems.append(
            Problem(
                "warning",
                "house-style",
                f"key year {m.group(1)} differs from the entry's year {rec.values['year']}",
                where,
                entry.key,
            )
        )
    first = rec.authors[0] if rec.authors else None
    if first is not None and bt.ascii_fold(first.last).lower() != m.group(2).lower():
        problems.append(
            Problem(
                "warning",
                "house-style",
                f"key names {m.group(2)} but the first author is {first.name}",
                where,
                entry.key,
            )
        )


def _check_lists(root: Path, records: dict[str, Any], problems: list[Problem]) -> None:
    from catalog.lists import extra_path, list_files, parse_list_text, read_additions, resolve
    from catalog.snapshot import paper_index

    index = paper_index(records)
    parsed = []
    for path in list_files(root):
        source = path.relative_to(root).as_posix()
        try:
            parsed.append(parse_list_text(bt.read_text(path, source), source))
        except CatalogError as exc:
            problems.append(_error_problem(exc, "list"))
    by_slug = {p.slug: p for p in parsed}
    extra_source = extra_path(root).relative_to(root).as_posix()
    try:
        additions = read_additions(root)
    except CatalogError as exc:
        problems.append(_error_problem(exc, "list"))
        additions = []
    items = [(p, e, p.source_file) for p in parsed for e in p.entries]
    for a in additions:
        target = by_slug.get(a.list_slug)
        if target is None:
            problems.append(
                Problem(
                    "error",
                    "unknown-list",
                    f"unknown reading list {a.list_slug!r}",
                    f"{extra_source}:{a.line}",
                    a.key,
                )
            )
            continue
        from catalog.lists import ParsedEntry

        entry = ParsedEntry(position=0, cited_key=a.key, note=a.note, source_line=a.line)
        items.append((target, entry, extra_source))
    seen: dict[tuple[str, str], int | None] = {}
    for plist, entry, source in items:
        where = f"{source}:{entry.source_line}" if entry.source_line else source
        label = f"list {plist.slug} entry {entry.position or '+'}"
        said = entry.cited_title or entry.note or entry.cited_url or entry.cited_key
        r = resolve(entry, index)
        if r.key is None:
            code = "unknown-key" if entry.cited_key else "unresolved"
            problems.append(
                Problem(
                    "error", code, f"{label} ({said!r}) resolves to no paper: {r.detail}", where
                )
            )
            continue
        if (plist.slug, r.key) in seen:
            problems.append(
                Problem(
                    "warning",
                    "duplicate-entry",
                    f"{label} names the same paper as line {seen[(plist.slug, r.key)]}",
                    where,
                    r.key,
                )
            )
        seen.setdefault((plist.slug, r.key), entry.source_line)
        paper = index.papers[r.key]
        cited = entry.cited_arxiv_id
        if cited and paper.arxiv_id and cited != paper.arxiv_id:
            owner = [k for k in index.by_arxiv.get(cited, []) if k != r.key]
            whose = f"; arXiv {cited} is {', '.join(owner)}" if owner else ""
            problems.append(
                Problem(
                    "error",
                    "arxiv-mismatch",
                    f"{label} ({said!r}) links arXiv {cited}, but the catalog paper is arXiv "
                    f"{paper.arxiv_id}{whose}",
                    where,
                    r.key,
                    cited,
                )
            )
        elif cited and not paper.arxiv_id:
            problems.append(
                Problem(
                    "warning",
                    "arxiv-missing",
                    f"{label} links arXiv {cited}; the catalog has no arXiv id for this paper",
                    where,
                    r.key,
                )
            )
        if (
            entry.cited_code_url
            and paper.code_url
            and _norm_url(entry.cited_code_url) != _norm_url(paper.code_url)
        ):
            problems.append(
                Problem(
                    "warning",
                    "code-mismatch",
                    f"{label} links code {entry.cited_code_url}, the catalog has {paper.code_url}",
                    where,
                    r.key,
                )
            )


def _check_reviews_and_repros(root: Path, records: dict[str, Any], problems: list[Problem]) -> None:
    from catalog.snapshot import repro_files, repro_record, review_files, review_record

    for path in review_files(root):
        try:
            review_record(path, root, records)
        except CatalogError as exc:
            problems.append(_error_problem(exc, "review"))
    repros = {}
    for path in repro_files(root):
        try:
            rec = repro_record(path, root, records)
        except CatalogError as exc:
            problems.append(_error_problem(exc, "reproduction"))
            repros[path.parent.name] = None
            continue
        repros[rec.slug] = rec
    for rec in repros.values():
        if rec is None:
            continue
        for used in rec.values["uses"]:
            if used not in repros:
                problems.append(
                    Problem(
                        "error",
                        "unknown-slug",
                        f"uses {used!r}, which is not a folder repro/{used}/ with a repro.toml",
                        rec.toml_source,
                        rec.values["paper_key"],
                    )
                )


def _check_database(session: Any, records: dict[str, Any], problems: list[Problem]) -> None:
    from sqlalchemy import text

    in_db = {row[0] for row in session.execute(text("SELECT key FROM paper"))}
    missing = sorted(set(records) - in_db)
    extra = sorted(in_db - set(records))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} paper(s) not yet in the database ({missing[0]}, ...)")
        if extra:
            parts.append(f"{len(extra)} no longer in references.bib ({extra[0]}, ...)")
        problems.append(
            Problem(
                "warning",
                "stale-database",
                "; ".join(parts) + ": run `catalog sync` (with --prune to delete)",
                "catalog database",
            )
        )


def check(session: Any, root: Path | None = None) -> list[Problem]:
    """Every problem in the catalog's files (and whether the database matches them), errors
    first; an empty list means a clean catalog."""
    root = Path(root) if root is not None else project_root()
    problems: list[Problem] = []
    records = _check_bibliography(root, problems)
    _check_lists(root, records, problems)
    _check_reviews_and_repros(root, records, problems)
    if session is not None:
        _check_database(session, records, problems)
    _apply_acknowledgements(root, problems)
    order = {"error": 0, "warning": 1, "acknowledged": 2}
    problems.sort(key=lambda p: order.get(p.severity, 3))
    return problems


ACKNOWLEDGED = "papers/lists/acknowledged.toml"


@dataclass
class Acknowledgement:
    """One `[[contradiction]]` of `papers/lists/acknowledged.toml`."""

    list_file: str
    key: str
    code: str
    cited: str
    note: str
    line: int

    def matches(self, problem: Problem) -> bool:
        """Whether `problem` is the contradiction this entry acknowledges (same list file, paper,
        check and cited id: a list that starts citing something else is a new finding)."""
        where = (problem.where or "").split(":", 1)[0]
        return (
            problem.severity == "error"
            and where == f"papers/lists/{self.list_file}"
            and problem.key == self.key
            and problem.code == self.code
            and problem.cited == self.cited
        )


def read_acknowledgements(root: Path) -> list[Acknowledgement]:
    """The acknowledged contradictions (none when the file does not exist); a malformed file is a
    `CatalogError` naming the file and line."""
    from catalog.lists import toml_tables

    out = []
    fields = ("list", "key", "code", "cited", "note")
    for line, item in toml_tables(root, ACKNOWLEDGED, "contradiction"):
        missing = [f for f in fields if not isinstance(item.get(f), str) or not item[f].strip()]
        if missing:
            raise CatalogError(
                f"{ACKNOWLEDGED}:{line}: a [[contradiction]] needs {', '.join(missing)} (strings)"
            )
        values = [item[f].strip() for f in fields]
        out.append(Acknowledgement(*values, line=line))
    return out


def _apply_acknowledgements(root: Path, problems: list[Problem]) -> None:
    """Mark the acknowledged contradictions (with their notes); warn about stale entries."""
    try:
        acks = read_acknowledgements(root)
    except CatalogError as exc:
        problems.append(_error_problem(exc, "acknowledged"))
        return
    for ack in acks:
        found = [p for p in problems if ack.matches(p)]
        for p in found:
            p.severity = "acknowledged"
            p.message = f"{p.message} (acknowledged: {' '.join(ack.note.split())})"
        if not found:
            problems.append(
                Problem(
                    "warning",
                    "stale-acknowledgement",
                    f"acknowledges a {ack.code} of list {ack.list_file} citing {ack.cited} that "
                    "check no longer finds: remove the entry or update it",
                    f"{ACKNOWLEDGED}:{ack.line}",
                    ack.key,
                )
            )
