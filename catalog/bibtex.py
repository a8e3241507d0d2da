"""A small BibTeX reader and writer for `papers/references.bib`.

Why our own: the catalog needs what general parsers throw away — the exact text of every entry
(stored as `Paper.bibtex` and rewritten verbatim), the line of every entry and field (so an error
names `papers/references.bib:LINE: key KEY: ...`), and a writer that appends or replaces entries
without reformatting the rest of the file. The grammar handled is the BibTeX one people write by
hand: `@type{key, name = {braced {nested}} | "quoted" | 123 | macro # ...}`, `@string`, `@comment`,
`@preamble`, and free text between entries (a comment in BibTeX).

Parsing is regex-driven (jumps from brace to brace, never walks characters one by one in Python),
so a 10,000-entry file parses in a fraction of a second.
"""

from __future__ import annotations

import bisect
import os
import re
import tempfile
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from catalog import CatalogError

REQUIRED_FIELDS = ("title", "year", "author")
IGNORED_TYPES = {"comment", "preamble"}

_AT = re.compile(r"@[ \t]*([A-Za-z][\w-]*)[ \t\r\n]*([{(])")
_WS = re.compile(r"\s*")
_KEY = re.compile(r"[^\s,{}()=\"#%']+")
_FIELD = re.compile(r"([A-Za-z_][\w\-:.+/]*)\s*=\s*")
_NUMBER = re.compile(r"\d+")
_MACRO = re.compile(r"[A-Za-z_][\w\-:.+/]*")
_CONCAT = re.compile(r"\s*#\s*")
_BRACES = re.compile(r"[{}]")
_QUOTE_OR_BRACES = re.compile(r'[{}"]')
_ENTRY_START_IN_VALUE = re.compile(r"\n[ \t]*@[A-Za-z]+[ \t]*[{(]")
_ARXIV_ID = re.compile(
    r"(?<![\w.])(\d{4}\.\d{4,5}|[a-z\-]+(?:\.[A-Z]{2})?/\d{7})(?:v\d+)?(?![\w])", re.IGNORECASE
)
_ARXIV_URL = re.compile(
    r"arxiv\.org/(?:abs|pdf)/(\d{4}\.\d{4,5}|[a-z\-]+(?:\.[A-Z]{2})?/\d{7})(?:v\d+)?",
    re.IGNORECASE,
)
_DOI_URL = re.compile(r"doi\.org/(10\.\S+)", re.IGNORECASE)
_AND = re.compile(r"\s+and\s+", re.IGNORECASE)

MONTHS = {
    m: m.capitalize()
    for m in ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
}

# LaTeX accent commands -> combining characters (enough for author names and titles).
_ACCENTS = {
    "'": "\u0301",
    "`": "\u0300",
    "^": "\u0302",
    '"': "\u0308",
    "~": "\u0303",
    "=": "\u0304",
    ".": "\u0307",
    "c": "\u0327",
    "v": "\u030c",
    "u": "\u0306",
    "H": "\u030b",
    "k": "\u0328",
}
_SYMBOLS = {
    "ss": "ß",
    "o": "ø",
    "O": "Ø",
    "l": "ł",
    "L": "Ł",
    "ae": "æ",
    "AE": "Æ",
    "aa": "å",
    "AA": "Å",
    "i": "ı",
}
_ACCENT_CMD = re.compile(r"\\([`'^\"~=.])\s*(?:\{\s*(\\?[A-Za-z])\s*\}|(\\?[A-Za-z]))")
_LETTER_ACCENT_CMD = re.compile(r"\\([cvuHk])(?:\s*\{\s*([A-Za-z])\s*\}|\s+([A-Za-z]))")
_SYMBOL_CMD = re.compile(r"\\(ss|ae|AE|aa|AA|o|O|l|L|i)(?![A-Za-z])\s*")
_ESCAPED = re.compile(r"\\([&%$#_{}])")
_COMMAND_WITH_ARG = re.compile(r"\\[A-Za-z]+\*?\s*(?=\{)")
_COMMAND = re.compile(r"\\([A-Za-z]+)\s?")


@dataclass
class BibField:
    """One `name = value` of an entry: `raw` is the value as written, `value` its plain text."""

    name: str
    raw: str
    value: str
    line: int


@dataclass
class BibEntry:
    """One `@type{key, ...}` entry with its position in the file and its exact text."""

    entry_type: str
    key: str
    fields: dict[str, BibField]
    line: int
    start: int
    end: int
    text: str

    def get(self, name: str) -> str | None:
        """The plain-text value of field `name` (case-insensitive), or None."""
        f = self.fields.get(name.lower())
        return f.value if f is not None else None


@dataclass
class BibProblem:
    """A defect found while reading a file (what `CatalogError` would say, kept for `check`)."""

    source: str
    line: int
    key: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}"
        return (
            f"{where}: key {self.key}: {self.message}" if self.key else f"{where}: {self.message}"
        )


@dataclass
class BibFile:
    """A parsed file: entries in file order, `@string` macros, and any problems found."""

    source: str
    text: str
    entries: list[BibEntry] = field(default_factory=list)
    macros: dict[str, str] = field(default_factory=dict)
    problems: list[BibProblem] = field(default_factory=list)

    def by_key(self) -> dict[str, BibEntry]:
        """Entries by key (the first one wins when a key is duplicated)."""
        out: dict[str, BibEntry] = {}
        for entry in self.entries:
            out.setdefault(entry.key, entry)
        return out


class _Fatal(Exception):
    """An entry whose structure is broken: report it and resume at the next `@`."""

    def __init__(self, pos: int, message: str) -> None:
        super().__init__(message)
        self.pos = pos
        self.message = message


class _Scanner:
    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source
        self.line_starts = [0] + [m.end() for m in re.finditer(r"\n", text)]
        self.result = BibFile(source=source, text=text)

    def line_of(self, pos: int) -> int:
        return bisect.bisect_right(self.line_starts, pos)

    def skip_ws(self, pos: int) -> int:
        return _WS.match(self.text, pos).end()  # type: ignore[union-attr]

    def problem(self, pos: int, key: str | None, message: str) -> None:
        self.result.problems.append(BibProblem(self.source, self.line_of(pos), key, message))

    # ------------------------------------------------------------------ values

    def braced(self, pos: int) -> int:
        """`pos` at `{`; return the index after its matching `}`."""
        depth = 0
        for m in _BRACES.finditer(self.text, pos):
            depth += 1 if m.group() == "{" else -1
            if depth == 0:
                return m.end()
        raise _Fatal(pos, "unbalanced braces: '{' is never closed")

    def quoted(self, pos: int) -> int:
        """`pos` at `"`; return the index after the closing `"` (braces inside nest)."""
        depth = 0
        for m in _QUOTE_OR_BRACES.finditer(self.text, pos + 1):
            c = m.group()
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth < 0:
                    raise _Fatal(pos, "unterminated quoted value: '\"' is never closed")
            elif depth == 0:
                return m.end()
        raise _Fatal(pos, "unterminated quoted value: '\"' is never closed")

    def value(self, pos: int) -> tuple[int, str, str]:
        """Parse `part (# part)*` at `pos`; return (end, raw text, plain text)."""
        parts: list[str] = []
        start = pos
        while True:
            if pos >= len(self.text):
                raise _Fatal(pos, "value missing at end of file")
            c = self.text[pos]
            if c == "{":
                end = self.braced(pos)
                parts.append(self.text[pos + 1 : end - 1])
            elif c == '"':
                end = self.quoted(pos)
                parts.append(self.text[pos + 1 : end - 1])
            elif m := _NUMBER.match(self.text, pos):
                end = m.end()
                parts.append(m.group())
            elif m := _MACRO.match(self.text, pos):
                end = m.end()
                name = m.group().lower()
                if name in self.result.macros:
                    parts.append(self.result.macros[name])
                else:
                    parts.append(MONTHS.get(name, m.group()))
            else:
                raise _Fatal(pos, f"expected a value, found {self.text[pos : pos + 20]!r}")
            if _ENTRY_START_IN_VALUE.search(self.text, pos, end):
                nxt = _ENTRY_START_IN_VALUE.search(self.text, pos, end)
                assert nxt is not None
                raise _Fatal(
                    pos,
                    f"entry is not closed before the next entry at line {self.line_of(nxt.end())}",
                )
            pos = end
            m = _CONCAT.match(self.text, pos)
            if m and m.end() > pos and "#" in m.group():
                pos = m.end()
                continue
            return pos, self.text[start:pos], "".join(parts)

    # ------------------------------------------------------------------ entries

    def scan(self) -> BibFile:
        pos = 0
        seen: dict[str, int] = {}
        while True:
            m = _AT.search(self.text, pos)
            if m is None:
                break
            line_start = self.text.rfind("\n", 0, m.start()) + 1
            if self.text[line_start : m.start()].lstrip().startswith("%"):
                nl = self.text.find("\n", m.start())  # a `%` comment line mentioning `@type(`
                pos = nl if nl >= 0 else len(self.text)
                continue
            kind = m.group(1).lower()
            close = "}" if m.group(2) == "{" else ")"
            try:
                if kind in IGNORED_TYPES:
                    pos = self.skip_block(m)
                elif kind == "string":
                    pos = self.string_def(m, close)
                else:
                    pos = self.entry(m, kind, close, seen)
            except _Fatal as exc:
                key = getattr(exc, "key", None)
                self.problem(exc.pos if exc.pos > m.start() else m.start(), key, exc.message)
                nxt = re.compile(r"\n[ \t]*@").search(self.text, max(exc.pos, m.end()))
                pos = nxt.start() + 1 if nxt else len(self.text)
        return self.result

    def skip_block(self, m: re.Match[str]) -> int:
        if m.group(2) == "{":
            return self.braced(m.end() - 1)
        end = self.text.find(")", m.end())
        if end < 0:
            raise _Fatal(m.start(), "unterminated @comment/@preamble")
        return end + 1

    def string_def(self, m: re.Match[str], close: str) -> int:
        pos = self.skip_ws(m.end())
        f = _FIELD.match(self.text, pos)
        if f is None:
            raise _Fatal(pos, "malformed @string: expected 'name = value'")
        pos, _raw, value = self.value(f.end())
        pos = self.skip_ws(pos)
        if not self.text.startswith(close, pos):
            raise _Fatal(pos, f"malformed @string: expected '{close}'")
        self.result.macros[f.group(1).lower()] = value
        return pos + 1

    def entry(self, m: re.Match[str], kind: str, close: str, seen: dict[str, int]) -> int:
        start = m.start()
        pos = self.skip_ws(m.end())
        k = _KEY.match(self.text, pos)
        if k is None:
            raise _Fatal(pos, f"@{kind} entry without a key")
        key = k.group()
        pos = self.skip_ws(k.end())
        fields: dict[str, BibField] = {}
        try:
            if self.text.startswith(close, pos):
                end = pos + 1
            elif not self.text.startswith(",", pos):
                raise _Fatal(pos, "expected ',' after the key")
            else:
                pos += 1
                while True:
                    pos = self.skip_ws(pos)
                    if self.text.startswith(close, pos):
                        end = pos + 1
                        break
                    self.unclosed(start, pos, close)
                    f = _FIELD.match(self.text, pos)
                    if f is None:
                        raise _Fatal(
                            pos,
                            f"expected 'name = value' or '{close}', found "
                            f"{self.text[pos : pos + 20]!r}",
                        )
                    name = f.group(1).lower()
                    vstart = f.end()
                    pos, raw, value = self.value(vstart)
                    if name in fields:
                        self.problem(f.start(), key, f"field {name!r} given twice")
                    fields[name] = BibField(f.group(1), raw, value, self.line_of(f.start()))
                    pos = self.skip_ws(pos)
                    if self.text.startswith(",", pos):
                        pos += 1
                    elif not self.text.startswith(close, pos):
                        self.unclosed(start, pos, close)
                        raise _Fatal(pos, f"expected ',' or '{close}' after field {f.group(1)!r}")
        except _Fatal as exc:
            exc.key = key  # type: ignore[attr-defined]
            raise
        entry = BibEntry(
            entry_type=kind,
            key=key,
            fields=fields,
            line=self.line_of(start),
            start=start,
            end=end,
            text=self.text[start:end],
        )
        self.validate(entry, seen)
        self.result.entries.append(entry)
        return end

    def unclosed(self, start: int, pos: int, close: str) -> None:
        """Raise the clear error when an entry runs into the end of file or the next entry."""
        if pos >= len(self.text):
            raise _Fatal(start, f"entry is never closed (missing '{close}' at the end of file)")
        if _AT.match(self.text, pos):
            raise _Fatal(
                start,
                f"entry is not closed (missing '{close}') before the next entry at line "
                f"{self.line_of(pos)}",
            )

    def validate(self, entry: BibEntry, seen: dict[str, int]) -> None:
        if entry.key in seen:
            self.problem(
                entry.start, entry.key, f"duplicate key (first defined at line {seen[entry.key]})"
            )
        else:
            seen[entry.key] = entry.line
        for name in REQUIRED_FIELDS:
            f = entry.fields.get(name)
            if f is None or not clean_text(f.value):
                self.problem(entry.start, entry.key, f"missing required field {name!r}")
        year = entry.fields.get("year")
        if year is not None and clean_text(year.value) and parse_year(year.value) is None:
            self.result.problems.append(
                BibProblem(self.source, year.line, entry.key, f"bad year {year.value.strip()!r}")
            )


def scan(text: str, source: str = "papers/references.bib") -> BibFile:
    """Parse `text`, collecting every problem instead of stopping at the first (for `check`)."""
    return _Scanner(text, source).scan()


def parse(text: str, source: str = "papers/references.bib") -> BibFile:
    """Parse `text`; raise `CatalogError` naming file, line and key at the first problem."""
    result = scan(text, source)
    if result.problems:
        first = min(result.problems, key=lambda p: p.line)
        raise CatalogError(str(first))
    return result


def read(path: Path, source: str | None = None) -> BibFile:
    """Read and parse a BibTeX file (strictly)."""
    source = source or str(path)
    return parse(read_text(path, source), source)


def read_text(path: Path, source: str) -> str:
    """A text file's content, or a one-line `CatalogError` saying why it cannot be read."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise CatalogError(f"{source}: file not found") from exc
    except IsADirectoryError as exc:
        raise CatalogError(f"{source}: is a directory, not a file") from exc
    except OSError as exc:
        raise CatalogError(f"{source}: cannot read: {exc.strerror or exc}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise CatalogError(
            f"{source}:{line}: not UTF-8 text (byte {data[exc.start]:#04x})"
        ) from exc
    return text.removeprefix("\ufeff")


# --------------------------------------------------------------------------- field semantics


_SPECIAL = re.compile(r"[\\{}~]")


def clean_text(value: str) -> str:
    """Plain text of a BibTeX value: LaTeX accents to Unicode, braces dropped, spaces collapsed."""
    if not _SPECIAL.search(value):
        return " ".join(value.split())
    if "\\" in value:

        def accent(m: re.Match[str]) -> str:
            letter = (m.group(2) or m.group(3)).lstrip("\\")
            return unicodedata.normalize("NFC", letter + _ACCENTS[m.group(1)])

        value = _ACCENT_CMD.sub(accent, value)
        value = _LETTER_ACCENT_CMD.sub(
            lambda m: unicodedata.normalize(
                "NFC", (m.group(2) or m.group(3)) + _ACCENTS[m.group(1)]
            ),
            value,
        )
        value = _SYMBOL_CMD.sub(lambda m: _SYMBOLS[m.group(1)], value)
        value = _ESCAPED.sub(lambda m: "\0" + m.group(1) + "\0", value)
        value = _COMMAND_WITH_ARG.sub("", value)
        value = _COMMAND.sub(lambda m: m.group(1), value)
    value = value.replace("{", "").replace("}", "").replace("~", " ")
    value = value.replace("\0{\0", "{").replace("\0}\0", "}").replace("\0", "")
    return " ".join(value.split())


def parse_year(value: str) -> int | None:
    """A four-digit year between 1000 and 2999, or None."""
    text = clean_text(value)
    return int(text) if re.fullmatch(r"[12]\d{3}", text) else None


@dataclass(frozen=True)
class Person:
    """An author: `name` for display ("Ian J. Goodfellow"), `last` for sorting and matching."""

    name: str
    last: str
    first: str = ""


def _split_depth0(text: str, sep: re.Pattern[str]) -> list[str]:
    """Split on `sep` where it is not inside braces."""
    if "{" not in text:
        return sep.split(text)
    out, depth, start, pos = [], 0, 0, 0
    while pos < len(text):
        c = text[pos]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        elif depth == 0:
            m = sep.match(text, pos)
            if m and m.end() > pos:
                out.append(text[start:pos])
                start = pos = m.end()
                continue
        pos += 1
    out.append(text[start:])
    return out


_COMMA = re.compile(r"\s*,\s*")
_SPACE = re.compile(r"\s+")


def parse_people(value: str) -> list[Person]:
    """`author`/`editor` value -> people, in order.

    Handles "Last, First", "Last, Jr, First", "First von Last" and braced corporate names
    ("{Google Brain}"); "and others" (et al.) is dropped.
    """
    people = []
    for part in _split_depth0(value.strip(), _AND):
        part = part.strip()
        if not part or part.lower() == "others":
            continue
        commas = [p.strip() for p in _split_depth0(part, _COMMA)]
        if len(commas) >= 2:
            last = clean_text(commas[0])
            jr = clean_text(commas[1]) if len(commas) >= 3 else ""
            first = clean_text(commas[-1]) if len(commas) >= 2 else ""
            name = " ".join(x for x in (first, last, jr) if x)
        else:
            words = [w for w in _split_depth0(part, _SPACE) if w]
            if len(words) == 1:
                first, last = "", clean_text(words[0])
            else:
                cut = len(words) - 1
                for i, w in enumerate(words[1:-1], start=1):
                    if w[:1].islower():
                        cut = i
                        break
                first = clean_text(" ".join(words[:cut]))
                last = clean_text(" ".join(words[cut:]))
            name = f"{first} {last}".strip()
        if name:
            people.append(Person(name=name, last=last or name, first=first))
    return people


def arxiv_id_of(entry: BibEntry) -> str | None:
    """The arXiv identifier (no version) from `eprint`, `arxiv`, `url` or `journal` fields."""
    prefix = (entry.get("archiveprefix") or entry.get("eprinttype") or "").lower()
    for name in ("eprint", "arxiv", "arxivid"):
        value = entry.get(name)
        if value and (name != "eprint" or prefix in ("", "arxiv")):
            m = _ARXIV_ID.search(clean_text(value))
            if m:
                return m.group(1)
    for name in ("url", "pdf", "howpublished", "note"):
        value = entry.get(name)
        if value:
            m = _ARXIV_URL.search(value)
            if m:
                return m.group(1)
    journal = entry.get("journal") or ""
    if "arxiv" in journal.lower():
        m = _ARXIV_ID.search(journal)
        if m:
            return m.group(1)
    return None


def arxiv_id_from_url(url: str | None) -> str | None:
    """The arXiv id in an arxiv.org abs/pdf link (version dropped), or None."""
    if not url:
        return None
    m = _ARXIV_URL.search(url)
    return m.group(1) if m else None


def doi_of(entry: BibEntry) -> str | None:
    """The DOI from `doi` (a bare DOI or a doi.org link) or from a doi.org `url`."""
    value = entry.get("doi")
    if value:
        value = clean_text(value)
        m = _DOI_URL.search(value)
        return m.group(1) if m else value
    url = entry.get("url")
    if url:
        m = _DOI_URL.search(url)
        if m:
            return m.group(1)
    return None


CODE_FIELDS = ("code", "codeurl", "code_url", "github")


def code_url_of(entry: BibEntry) -> str | None:
    """The official code's URL: the house field `code = {https://github.com/...}` (or an alias)."""
    for name in CODE_FIELDS:
        value = entry.get(name)
        if value:
            return clean_text(value)
    return None


def venue_of(entry: BibEntry) -> tuple[str | None, str | None]:
    """(venue, venue_kind) where kind is conference | journal | preprint."""
    booktitle = entry.get("booktitle")
    journal = entry.get("journal")
    kind_by_type = {
        "inproceedings": "conference",
        "conference": "conference",
        "proceedings": "conference",
        "article": "journal",
    }
    if booktitle:
        return clean_text(booktitle), "conference"
    if journal:
        j = clean_text(journal)
        if "arxiv" in j.lower() or j.lower() == "corr":
            return "arXiv", "preprint"
        return j, kind_by_type.get(entry.entry_type, "journal")
    if entry.entry_type in ("misc", "unpublished", "techreport", "online", "preprint"):
        if arxiv_id_of(entry) or "arxiv" in (entry.get("publisher") or "").lower():
            return "arXiv", "preprint"
        publisher = entry.get("publisher") or entry.get("institution")
        return (clean_text(publisher) if publisher else None), "preprint"
    return None, kind_by_type.get(entry.entry_type)


# --------------------------------------------------------------------------- house-style keys

STOP_WORDS = frozenset(
    {"a", "an", "the", "of", "to", "with", "through", "for", "on", "in", "by", "and", "or"}
    | {"via", "against", "into"}
)
HOUSE_KEY = re.compile(r"^(\d{4})_([A-Z][A-Za-z]*)_([A-Z])_([a-z]+(?:-[a-z]+)?)_([a-z0-9]+)$")


_NOT_ASCII_ALNUM = re.compile(r"[^A-Za-z0-9]+")


def ascii_fold(text: str) -> str:
    """'Moosavi-Dezfooli' -> 'MoosaviDezfooli', 'Mądry' -> 'Madry' (letters and digits only)."""
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text)
    return _NOT_ASCII_ALNUM.sub("", text)


def title_initials(title: str) -> str:
    """Initials of the title's words, stop words dropped, a hyphenated word counting once."""
    words = re.findall(r"[A-Za-z0-9][\w'’\-]*", clean_text(title))
    return "".join(w[0].lower() for w in words if w.lower() not in STOP_WORDS)


def house_key(year: int, first_author: Person, venue_code: str, title: str) -> str:
    """`YYYY_Lastname_F_<venue>_<title initials>`, the catalog's key style."""
    last = ascii_fold(first_author.last) or "Anon"
    initial = ascii_fold(first_author.first)[:1].upper() or "X"
    return f"{year}_{last[0].upper()}{last[1:]}_{initial}_{venue_code}_{title_initials(title)}"


# --------------------------------------------------------------------------- writing


@dataclass
class Style:
    """How the file writes entries, so appended ones look like their neighbours."""

    indent: str = "  "
    align: bool = False
    trailing_comma: bool = True
    type_case: str = "lower"  # lower | upper | capitalized
    blank_lines: int = 1


def detect_style(bib: BibFile) -> Style:
    """Infer indent, `=` alignment, trailing comma and type case from the existing entries."""
    style = Style()
    entries = [e for e in bib.entries if e.fields]
    if not entries:
        return style
    sample = entries[: min(len(entries), 20)]
    indents: dict[str, int] = {}
    aligned = trailing = 0
    for e in sample:
        lines = e.text.splitlines()
        for line in lines[1:]:
            m = re.match(r"([ \t]+)[A-Za-z]", line)
            if m:
                indents[m.group(1)] = indents.get(m.group(1), 0) + 1
        if re.search(r"\n[ \t]*\w+  +=", e.text):
            aligned += 1
        if re.search(r",\s*[})]\s*$", e.text):
            trailing += 1
    if indents:
        style.indent = max(indents, key=lambda k: indents[k])
    style.align = aligned * 2 > len(sample)
    style.trailing_comma = trailing * 2 >= len(sample)
    t = bib.text[sample[0].start + 1 : sample[0].start + 1 + len(sample[0].entry_type)]
    style.type_case = "upper" if t.isupper() else "capitalized" if t[:1].isupper() else "lower"
    gaps = [
        bib.text[a.end : b.start].count("\n") - 1
        for a, b in zip(bib.entries, bib.entries[1:], strict=False)
        if not bib.text[a.end : b.start].strip()
    ]
    if gaps:
        style.blank_lines = max(0, max(set(gaps), key=gaps.count))
    return style


def render_entry(entry_type: str, key: str, fields: Iterable[tuple[str, str]], style: Style) -> str:
    """Write an entry in `style`; `fields` are (name, raw value as it should appear) pairs."""
    items = list(fields)
    t = {"upper": entry_type.upper(), "capitalized": entry_type.capitalize()}.get(
        style.type_case, entry_type.lower()
    )
    width = max((len(n) for n, _ in items), default=0) if style.align else 0
    lines = [f"@{t}{{{key},"]
    for i, (name, raw) in enumerate(items):
        comma = "," if i < len(items) - 1 or style.trailing_comma else ""
        lines.append(f"{style.indent}{name.ljust(width)} = {raw}{comma}")
    lines.append("}")
    return "\n".join(lines)


def restyle(entry: BibEntry, style: Style) -> str:
    """An entry read from elsewhere, rewritten in the target file's style (values as written)."""
    return render_entry(
        entry.entry_type, entry.key, [(f.name, f.raw) for f in entry.fields.values()], style
    )


def braced(text: str) -> str:
    """A plain string as a BibTeX braced value (braces in it balanced by escaping)."""
    if text.count("{") != text.count("}"):
        text = text.replace("{", r"\{").replace("}", r"\}")
    return "{" + text + "}"


def merge_entries(bib: BibFile, new_texts: dict[str, str]) -> str:
    """The file's text with each `key -> entry text` replacing the entry of that key in place,
    or appended at the end (in the given order) when the key is new. The rest is untouched."""
    text = bib.text
    existing = bib.by_key()
    replacements = sorted(
        ((existing[k].start, existing[k].end, t) for k, t in new_texts.items() if k in existing),
        reverse=True,
    )
    for start, end, new in replacements:
        text = text[:start] + new + text[end:]
    appended = [t for k, t in new_texts.items() if k not in existing]
    if appended:
        style = detect_style(bib)
        sep = "\n" * (style.blank_lines + 1)
        body = sep.join(appended)
        text = (text.rstrip("\n") + sep if text.strip() else "") + body + "\n"
    return text


def atomic_write(path: Path, text: str) -> None:
    """Replace `path` by `text` all at once: a temp file in the same folder, fsync, `os.replace`.

    A reader (or a crash) sees the old file or the new one, never half of one.
    """
    path = Path(path)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
