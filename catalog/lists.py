"""Reading lists: the files under `papers/lists/`, the additions file, and the rules that match an
entry to a paper.

The lists in `papers/lists/*.txt` are the user's documents as given; each is read in its own format
by `catalog.list_formats` (review list, lecture slides, Jekyll page, papis export), recognised from
the content, not the file name.

Matching (`resolve`) uses only what the entry itself says — its BibTeX key, else its title, else its
arXiv id, else first author and year — never a per-list table. The title outranks the link because
a list names a paper by title and links it as an aside: the "Adversarial Robustness" list's
Defense-GAN entry links arXiv 1801.02613 (another paper); it must resolve to Defense-GAN and the
contradiction is kept in `cited_arxiv_id` for `catalog check` to report.

Papers added to a list with `catalog add --list SLUG` are not written into the user's files: they
go to `papers/lists/extra.toml` (one ``[[entry]]`` table per addition with ``list``, ``key`` and an
optional ``note``) and follow the list's own entries.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from catalog import CatalogError
from catalog.bibtex import ascii_fold, read_text
from catalog.list_formats import (
    FORMATS,
    ParsedEntry,
    ParsedList,
    detect_format,
    front_matter,
    parse_jekyll,
    parse_lecture,
    parse_list_text,
    parse_papis,
    parse_review_list,
    slugify,
)

__all__ = [
    "EXTRA_FILE",
    "FORMATS",
    "LIST_GLOB",
    "Addition",
    "IndexedPaper",
    "PaperIndex",
    "ParsedEntry",
    "ParsedList",
    "Resolution",
    "additions_text",
    "detect_format",
    "extra_path",
    "front_matter",
    "list_files",
    "normalise_title",
    "parse_jekyll",
    "parse_lecture",
    "parse_list_text",
    "parse_papis",
    "parse_review_list",
    "read_additions",
    "read_lists",
    "resolve",
    "slugify",
]

LIST_GLOB = "*.txt"
EXTRA_FILE = "extra.toml"


# --------------------------------------------------------------------------- the files


def list_files(root: Path) -> list[Path]:
    """The reading-list files under `papers/lists/` (every `*.txt`), in name order."""
    folder = root / "papers" / "lists"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(LIST_GLOB) if not p.name.startswith("."))


def read_lists(root: Path) -> list[ParsedList]:
    """Parse every list under `root/papers/lists/`; slugs must be distinct."""
    out: list[ParsedList] = []
    slugs: dict[str, str] = {}
    for path in list_files(root):
        source = path.relative_to(root).as_posix()
        parsed = parse_list_text(read_text(path, source), source)
        if parsed.slug in slugs:
            raise CatalogError(
                f"{source}: list slug {parsed.slug!r} is already used by {slugs[parsed.slug]}"
            )
        slugs[parsed.slug] = source
        out.append(parsed)
    return out


# --------------------------------------------------------------------------- additions


@dataclass
class Addition:
    """One `[[entry]]` of `papers/lists/extra.toml`: a paper added to a list by `catalog add`."""

    list_slug: str
    key: str
    note: str | None
    line: int


def extra_path(root: Path) -> Path:
    """`papers/lists/extra.toml`."""
    return root / "papers" / "lists" / EXTRA_FILE


def toml_tables(root: Path, source: str, name: str) -> list[tuple[int, dict[str, Any]]]:
    """The `[[name]]` tables of the TOML file `root/source`, each with the line it starts on (for
    error messages); none when the file does not exist. A file that is not TOML, or whose `name`
    is not an array of tables, is a `CatalogError` naming it."""
    import tomllib

    path = root / source
    if not path.exists():
        return []
    text = read_text(path, source)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"{source}: {exc}") from exc
    items = data.get(name, [])
    if not isinstance(items, list):
        raise CatalogError(f"{source}: {name!r} must be an array of tables ([[{name}]])")
    lines = [i for i, t in enumerate(text.splitlines(), 1) if t.strip() == f"[[{name}]]"]
    return [(lines[n] if n < len(lines) else 1, item) for n, item in enumerate(items)]


def read_additions(root: Path) -> list[Addition]:
    """The additions file's entries, in order (none when the file does not exist)."""
    source = extra_path(root).relative_to(root).as_posix()
    out = []
    for line, item in toml_tables(root, source, "entry"):
        if not isinstance(item.get("list"), str) or not isinstance(item.get("key"), str):
            raise CatalogError(f"{source}:{line}: an [[entry]] needs string 'list' and 'key'")
        note = item.get("note")
        out.append(Addition(item["list"], item["key"], str(note) if note else None, line))
    return out


def _toml_string(text: str) -> str:
    import json

    return json.dumps(text, ensure_ascii=False)


def additions_text(root: Path, new: list[Addition]) -> str:
    """The additions file's text with `new` entries appended (the file's text is kept as is)."""
    path = extra_path(root)
    text = (
        path.read_text(encoding="utf-8")
        if path.exists()
        else (
            "# Papers added to reading lists with `catalog add --list SLUG`.\n"
            "# The lists in *.txt are kept as given; these entries follow a list's own entries.\n"
        )
    )
    for a in new:
        block = f"\n[[entry]]\nlist = {_toml_string(a.list_slug)}\nkey = {_toml_string(a.key)}\n"
        if a.note:
            block += f"note = {_toml_string(a.note)}\n"
        text = text.rstrip("\n") + "\n" + block
    return text


# --------------------------------------------------------------------------- matching

_COMBINING = re.compile(r"[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]+")
_NON_WORD = re.compile(r"[\W_]+")


def normalise_title(title: str) -> str:
    """Case, accents, punctuation and spacing removed: the form titles are compared in."""
    folded = title if title.isascii() else _COMBINING.sub("", unicodedata.normalize("NFKD", title))
    return " ".join(_NON_WORD.sub(" ", folded.casefold()).split())


@dataclass
class IndexedPaper:
    """What matching needs to know about a catalog paper."""

    key: str
    title: str
    year: int
    arxiv_id: str | None
    first_author_last: str | None
    code_url: str | None = None


@dataclass
class PaperIndex:
    """Lookups from what a list may say (key, title, arXiv id, author+year) to catalog keys."""

    papers: dict[str, IndexedPaper] = field(default_factory=dict)
    by_title: dict[str, list[str]] = field(default_factory=dict)
    by_main_title: dict[str, list[str]] = field(default_factory=dict)
    by_arxiv: dict[str, list[str]] = field(default_factory=dict)
    by_author: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def build(cls, papers: list[IndexedPaper]) -> PaperIndex:
        index = cls()
        for p in papers:
            index.papers[p.key] = p
            norm = normalise_title(p.title)
            index.by_title.setdefault(norm, []).append(p.key)
            main = normalise_title(re.split(r"[:?]\s", p.title, maxsplit=1)[0])
            if main != norm:
                index.by_main_title.setdefault(main, []).append(p.key)
            if p.arxiv_id:
                index.by_arxiv.setdefault(p.arxiv_id, []).append(p.key)
            if p.first_author_last:
                index.by_author.setdefault(ascii_fold(p.first_author_last).lower(), []).append(
                    p.key
                )
        return index


@dataclass
class Resolution:
    """The paper an entry resolved to (`key` None: nothing matched) and how."""

    key: str | None
    how: str | None
    detail: str = ""


def _unique(keys: list[str] | None) -> str | None:
    return keys[0] if keys and len(set(keys)) == 1 else None


def _years(paper: IndexedPaper) -> set[int]:
    """The years a citation may give for a paper: its venue year and, for a new-style arXiv id
    (YYMM.NNNNN), the preprint's year. Slides cite preprints ("Athalye et al. 17'" is the July
    2017 preprint of an ICML 2018 paper), so an exact preprint-year match beats a ±1 venue year."""
    years = {paper.year}
    if paper.arxiv_id and (m := re.match(r"(\d{2})(\d{2})\.\d{4,5}$", paper.arxiv_id)):
        years.add(2000 + int(m.group(1)))
    return years


def resolve(entry: ParsedEntry, index: PaperIndex) -> Resolution:
    """Match a list entry to a catalog paper by key, else title, else arXiv id, else (when the
    entry gives neither title nor link) first author and year within one year."""
    if entry.cited_key:
        if entry.cited_key in index.papers:
            return Resolution(entry.cited_key, "key")
        return Resolution(None, None, f"key {entry.cited_key} is not in papers/references.bib")
    if entry.cited_title:
        norm = normalise_title(entry.cited_title)
        main = normalise_title(re.split(r"[:?]\s", entry.cited_title, maxsplit=1)[0])
        for keys in (
            index.by_title.get(norm),
            index.by_main_title.get(norm),
            index.by_title.get(main),
        ):
            if key := _unique(keys):
                return Resolution(key, "title")
    if entry.cited_arxiv_id and (key := _unique(index.by_arxiv.get(entry.cited_arxiv_id))):
        return Resolution(key, "arxiv")
    named = entry.cited_title or entry.cited_arxiv_id or entry.cited_url
    if entry.cited_author and entry.cited_year and not named:
        # only for what names no title and no link (a lecture slide "(Athalye et al. 17')"):
        # a title or link that matches nothing must stay unresolved, not be guessed
        candidates = index.by_author.get(ascii_fold(entry.cited_author).lower(), [])
        for delta in (0, 1, -1):
            hits = [k for k in candidates if entry.cited_year + delta in _years(index.papers[k])]
            if len(hits) == 1:
                return Resolution(hits[0], "author-year")
            if len(hits) > 1:
                return Resolution(
                    None, None, f"{entry.cited_author} {entry.cited_year} is ambiguous: {hits}"
                )
    said = entry.cited_title or entry.cited_arxiv_id or entry.cited_url or entry.note or "?"
    return Resolution(None, None, f"no catalog paper matches {said!r}")
