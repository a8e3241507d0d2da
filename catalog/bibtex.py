"""`papers/references.bib` through bibtexparser v2, with the catalog's house rules on top.

bibtexparser's splitter gives what the catalog needs from a BibTeX file: every block in file
order with its raw text and start line, the blocks that failed to parse (and why), duplicate keys.
Its name splitting (with a shortcut for plain "Last, First", same result) and its writer are
used as they are. What stays ours:

- values (`{braced}`, `"quoted"`, `123`, `macro`, joined by `#`) are evaluated here, in file
  order as BibTeX does (a `@string` must come before its use): v2 resolves a lone macro but
  leaves concatenations alone, and says nothing when a value is followed by junk (a lost comma).
- `clean_text`: plain text of a value. v2's `LatexDecodingMiddleware` (pylatexenc) costs ~4 ms
  an entry (40 s for the 10,000-entry benchmark) and turns `--` into an en dash and `~` into
  U+00A0, which would change titles and abstracts already in the catalog.
- the error contract: each problem is one line `FILE:LINE: key KEY: message`; `parse` raises the
  first as `CatalogError`, `scan` collects them all for `catalog check`.
- `crossref` (v2 leaves it alone): fields an entry lacks come from the entry it names, which must
  be in the same file.
- house-style keys and the venue / arXiv / DOI / code helpers. Writing (the file's style,
  `merge_entries`, `atomic_write`) is `catalog.bibwrite`.
"""

from __future__ import annotations

import bisect
import functools
import logging
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import bibtexparser
from bibtexparser import model
from bibtexparser.exceptions import ParsingException
from bibtexparser.middlewares import names

from catalog import CatalogError

# v2 logs each failed block as a multi-line warning; we report it ourselves, on one line.
logging.getLogger("bibtexparser").addHandler(logging.NullHandler())
logging.getLogger("bibtexparser").propagate = False

REQUIRED_FIELDS = ("title", "year", "author")
MONTHS = {
    m: m.capitalize()
    for m in ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
}

_KEY = re.compile(r"[^\s,{}()=\"#%']+")
_NAME = re.compile(r"[A-Za-z_][\w\-:.+/]*")
_PART = re.compile(r"\d+|[A-Za-z_][\w\-:.+/]*")  # a number or a macro name
_WS = re.compile(r"\s*")
_SEP = re.compile(r"\s*,?\s*")  # from the end of a value to the next field's name
_FIELD_AT = re.compile(r"\s*,?\s*([^\s=]*)\s*=\s*")  # ... and to its value
_BRACES = re.compile(r"(?<!\\)[{}]")  # v2's convention: a backslash escapes a delimiter
_QUOTE_OR_BRACES = re.compile(r'(?<!\\)[{}"]')
_HEADER = re.compile(r"@[ \t]*(\w*)[ \t]*([{(])\s*([^\s,{}()=\"#%']*)")
_PERCENT_LINE = re.compile(r"^[ \t]*%[^\n]*@[^\n]*", re.MULTILINE)
_ARXIV = r"(\d{4}\.\d{4,5}|[a-z\-]+(?:\.[A-Z]{2})?/\d{7})(?:v\d+)?"
_ARXIV_ID = re.compile(rf"(?<![\w.]){_ARXIV}(?![\w])", re.IGNORECASE)
_ARXIV_URL = re.compile(rf"arxiv\.org/(?:abs|pdf)/{_ARXIV}", re.IGNORECASE)
_DOI_URL = re.compile(r"doi\.org/(10\.\S+)", re.IGNORECASE)


@dataclass
class BibField:
    """One `name = value` of an entry: `raw` is the value as written, `value` its plain text."""

    name: str
    raw: str
    value: str
    line: int


@dataclass
class BibEntry:
    """One `@type{key, ...}` entry with its position in the file and its exact text.

    `fields` are its own, `inherited` those it takes through `crossref`, `macros` the `@string`
    names its values use (what `merge_entries` copies along)."""

    entry_type: str
    key: str
    fields: dict[str, BibField]
    line: int
    start: int
    end: int
    text: str
    inherited: dict[str, BibField] = field(default_factory=dict)
    macros: tuple[str, ...] = ()

    def get(self, name: str) -> str | None:
        """The plain-text value of field `name` (case-insensitive, own or inherited), or None."""
        f = self.fields.get(name.lower()) or self.inherited.get(name.lower())
        return f.value if f is not None else None


@dataclass
class BibString:
    """A `@string{name = value}` definition; `uses` are the macros its own value refers to."""

    name: str
    value: str
    line: int
    text: str
    uses: tuple[str, ...] = ()


@dataclass
class BibProblem:
    """A defect found while reading a file (what `CatalogError` would say, kept for `check`)."""

    source: str
    line: int
    key: str | None
    message: str

    def __str__(self) -> str:
        key = f"key {self.key}: " if self.key else ""
        return f"{self.source}:{self.line}: {key}{self.message}"


@dataclass
class BibFile:
    """A parsed file: entries in file order, `@string` definitions by lower-case name, problems.

    `text` is the file's text with line ends normalised to `\\n` (what offsets refer to)."""

    source: str
    text: str
    entries: list[BibEntry] = field(default_factory=list)
    strings: dict[str, BibString] = field(default_factory=dict)
    problems: list[BibProblem] = field(default_factory=list)

    def by_key(self) -> dict[str, BibEntry]:
        """Entries by key (the first one wins when a key is duplicated)."""
        out: dict[str, BibEntry] = {}
        for entry in self.entries:
            out.setdefault(entry.key, entry)
        return out


class _BadValue(Exception):
    """A value that is not one `part # part ...` expression, at `pos` in it (`message` None:
    something other than `#` follows a part)."""

    def __init__(self, pos: int, message: str | None = None) -> None:
        super().__init__(message)
        self.pos, self.message = pos, message


def _closing(raw: str, pos: int) -> int:
    """Index after the delimiter closing the `{` or `"` at `pos` (braces nest in both)."""
    depth, quote = 0, raw[pos] == '"'
    for m in (_QUOTE_OR_BRACES if quote else _BRACES).finditer(raw, pos + quote):
        c = m.group()
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0 and not quote:
                return m.end()
            if depth < 0:
                raise _BadValue(m.start(), "unbalanced '}' in a quoted value")
        elif depth == 0:
            return m.end()
    raise _BadValue(pos, "unterminated quoted value" if quote else "unbalanced braces")


def _evaluate(raw: str, strings: dict[str, BibString]) -> tuple[str, list[str], list[str]]:
    """(plain value, macros used, undefined macros) of `part # part ...`, where a part is a
    `{braced}` or `"quoted"` text, a number or a macro (an earlier `@string`, or a month)."""
    plain = raw[:1] == "{" and raw[-1:] == "}" and raw[-2:-1] != "\\"
    if plain and raw.count("{") == raw.count("}") == 1:  # the usual `{text}`, fast
        return raw[1:-1], [], []
    parts: list[str] = []
    used: list[str] = []
    undefined: list[str] = []
    pos = 0
    while True:
        if raw[pos : pos + 1] in ("{", '"'):
            end = _closing(raw, pos)
            parts.append(raw[pos + 1 : end - 1])
        elif m := _PART.match(raw, pos):
            end, name = m.end(), m.group().lower()
            if name in strings:
                used.append(name)
            elif not name.isdigit() and name not in MONTHS:
                undefined.append(m.group())
            parts.append(strings[name].value if name in strings else MONTHS.get(name, m.group()))
        else:
            raise _BadValue(pos, f"expected a value, found {raw[pos : pos + 20] or 'nothing'!r}")
        pos = _WS.match(raw, end).end()  # type: ignore[union-attr]
        if pos >= len(raw):
            return "".join(parts), used, undefined
        if raw[pos] != "#":
            raise _BadValue(pos)
        pos = _WS.match(raw, pos + 1).end()  # type: ignore[union-attr]


def _spots(raw: str, fields: list[model.Field], index: int) -> tuple[int, int]:
    """Where field `index` of an entry's raw text starts and where its value starts (only errors
    need to know: v2 gives the line of each field, not its offset)."""
    cursor = raw.find(",") + 1
    for f in fields[:index]:
        m = _FIELD_AT.match(raw, cursor)
        cursor = m.end() + len(f.value) if m else cursor  # the fields before it are well formed
    name_at = _SEP.match(raw, cursor).end()  # type: ignore[union-attr]
    m = _FIELD_AT.match(raw, cursor)
    return name_at, m.end() if m else name_at


def _open_quote(raw: str) -> int | None:
    """Where the `"` left open at the end of a block's text starts, if one is."""
    depth, quote = 0, None
    for m in _QUOTE_OR_BRACES.finditer(raw, raw.find("{") + 1):
        if m.group() == '"' and depth == 0:
            quote = m.start() if quote is None else None
        elif m.group() in "{}":
            depth = max(0, depth + (1 if m.group() == "{" else -1))
    return quote


class _Reader:
    """Turns v2's blocks into `BibFile` entries, strings and one-line problems."""

    def __init__(self, text: str, source: str) -> None:
        self.text = text = text.replace("\r\n", "\n").replace("\r", "\n")
        # `% ... @misc (x)` in a comment line starts no entry: hide its `@` from the splitter
        # (same length, so offsets and lines stay those of `text`).
        masked = _PERCENT_LINE.sub(lambda m: m.group().replace("@", " "), text)
        self.masked = text if masked == text else masked
        self.result = BibFile(source=source, text=text)
        self.seen: dict[str, int] = {}

    @functools.cached_property
    def line_starts(self) -> list[int]:  # (for problems and `@string`s: v2 gives the others)
        return [0] + [m.end() for m in re.finditer("\n", self.text)]

    def line_of(self, pos: int) -> int:
        return bisect.bisect_right(self.line_starts, pos)

    def problem(self, pos: int, key: str | None, message: str, line: int | None = None) -> None:
        line = self.line_of(pos) if line is None else line
        message = " ".join(message.splitlines())  # one line, whatever v2's reason says
        self.result.problems.append(BibProblem(self.result.source, line, key, message))

    def read(self) -> BibFile:
        try:
            blocks = bibtexparser.parse_string(self.masked, parse_stack=[]).blocks
        except ParsingException as exc:  # a state the splitter itself calls a bug
            self.problem(0, None, f"cannot parse BibTeX: {exc}")
            return self.result
        cursor = 0
        for block in blocks:
            if isinstance(block, model.DuplicateBlockKeyBlock | model.DuplicateFieldKeyBlock):
                block = block.ignore_error_block  # `entry` reports duplicates itself
            if isinstance(block, model.ImplicitComment):
                continue  # text between entries (a comment in BibTeX); its raw is stripped
            # v2 gives each block's raw text, in file order: where it starts is found from them
            start = max(self.masked.find(block.raw, cursor), cursor)
            cursor = start + len(block.raw)
            if isinstance(block, model.Entry):
                self.entry(block, start)
            elif isinstance(block, model.String):
                self.string(block, start)
            elif isinstance(block, model.ParsingFailedBlock):
                self.failed(block, start)
        self.resolve_and_validate()
        starts = [e.start for e in self.result.entries] if "\0" in self.text else []
        for m in re.finditer("\0", self.text):  # no two tools read past a NUL the same way
            i = bisect.bisect_right(starts, m.start()) - 1
            entry = self.result.entries[i] if i >= 0 else None
            key = entry.key if entry is not None and m.start() < entry.end else None
            self.problem(m.start(), key, "NUL byte (\\0) in the text")
        self.result.problems.sort(key=lambda p: p.line)
        return self.result

    def string(self, block: model.String, start: int) -> None:
        try:
            value, uses, undefined = _evaluate(block.value, self.result.strings)
        except _BadValue as exc:
            why = exc.message or "expected '}' after the value"
            return self.problem(start, None, f"malformed @string {block.key}: {why}")
        for name in undefined:
            self.problem(start, None, f"@string {block.key}: undefined @string macro {name!r}")
        text = self.text[start : start + len(block.raw)]
        uses = tuple(dict.fromkeys(uses))
        self.result.strings[block.key.lower()] = BibString(
            block.key, value, block.start_line + 1, text, uses
        )

    def entry(self, block: model.Entry, start: int) -> None:
        raw, kind, key, close = block.raw, block.entry_type, block.key, block.raw[-1:]
        if not kind:
            return  # `@{...}` names no type: BibTeX skips it as text
        if not _KEY.fullmatch(key):  # empty, or `k 1,`: what comes before the first space
            prefix = _KEY.match(key)
            if prefix is None:
                return self.problem(start, None, f"@{kind} entry without a key")
            return self.problem(start, prefix.group(), "expected ',' after the key")
        fields: dict[str, BibField] = {}
        used: list[str] = []
        for i, f in enumerate(block.fields):
            name, raw_value, line = f.key, f.value, f.start_line + 1  # v2: the `=`'s line
            if not _NAME.fullmatch(name):
                at = start + _spots(raw, block.fields, i)[0]
                found = f"found {self.text[at : at + 20]!r}"
                return self.problem(at, key, f"expected 'name = value' or '{close}', {found}")
            if self.masked is not self.text and "%" in raw_value:  # keep a masked `@` as written
                at = start + _spots(raw, block.fields, i)[1]
                raw_value = self.text[at : at + len(raw_value)]
            try:
                value, uses, undefined = _evaluate(raw_value, self.result.strings)
            except _BadValue as exc:
                why = exc.message or f"expected ',' or '{close}' after field {name!r}"
                return self.problem(start + _spots(raw, block.fields, i)[1] + exc.pos, key, why)
            for macro in undefined:
                self.problem(0, key, f"undefined @string macro {macro!r}", line)
            if (lower := name.lower()) in fields:
                self.problem(0, key, f"field {name!r} given twice", line)
            fields[lower] = BibField(name, raw_value, value, line)
            used += uses
        end, line = start + len(raw), block.start_line + 1
        macros = tuple(dict.fromkeys(used))
        entry = BibEntry(kind, key, fields, line, start, end, self.text[start:end], macros=macros)
        if key in self.seen:
            self.problem(start, key, f"duplicate key (first defined at line {self.seen[key]})")
        self.seen.setdefault(key, line)
        self.result.entries.append(entry)

    def failed(self, block: model.ParsingFailedBlock, start: int) -> None:
        """One line saying why v2 gave up on a block, in the words of the house messages."""
        raw = block.raw or ""
        header = _HEADER.match(raw)
        kind = header.group(1).lower() if header else ""
        close = ")" if header and header.group(2) == "(" else "}"
        key = (header.group(3) or None) if header and kind not in ("string", "comment") else None
        reason = str(getattr(block.error, "abort_reason", block.error))
        nxt = self.masked.find("@", start + max(len(raw) - 1, 1))
        before = (
            f"before the next entry at line {self.line_of(nxt if nxt >= 0 else len(self.text))}"
        )
        at_eof = "end of file" in reason
        quote = _open_quote(raw) if at_eof else None
        if at_eof and kind in ("comment", "preamble", "string"):
            message = f"unterminated @{kind}: '{close}' is never closed"
        elif 'closing `"`' in reason:
            message = f"unterminated quoted value: '\"' is never closed {before}"
        elif "block start" in reason or "found `@" in reason:
            message = f"entry is not closed (missing '{close}') {before}"
        elif quote is not None:
            start, message = start + quote, "unterminated quoted value: '\"' is never closed"
        elif at_eof:
            message = f"entry is never closed (missing '{close}' at the end of file)"
        elif "comma after entry key" in reason:
            message = "expected ',' after the key"
        elif "equals sign" in reason:
            message = "malformed @string: expected 'name = value'"
        elif "`=`" in reason:  # v2 stopped at the mark after a field name: show that field
            where = getattr(block.error, "end_index", None) or start + len(raw)
            at = raw.rfind(",", 0, where - 1 - start) + 1
            start += _WS.match(raw, at).end()  # type: ignore[union-attr]
            found = self.text[start : start + 20]
            message = f"expected 'name = value' or '{close}', found {found!r}"
        else:
            message = reason
        self.problem(start, key, message)

    def resolve_and_validate(self) -> None:
        """Apply `crossref` (BibTeX's inheritance of missing fields), then the house checks."""
        by_key = self.result.by_key()
        folded = {k.lower(): e for k, e in reversed(by_key.items())}
        for entry in self.result.entries:
            ref = entry.fields.get("crossref")
            if ref is not None:
                target = by_key.get(ref.value.strip()) or folded.get(ref.value.strip().lower())
                if target is None or target is entry:
                    why = f"crossref {ref.value.strip()!r} names no entry in this file"
                    self.problem(0, entry.key, why + " (add that entry to it)", ref.line)
                    continue
                own = entry.fields
                entry.inherited = {n: f for n, f in target.fields.items() if n not in own}
                entry.inherited.pop("crossref", None)  # BibTeX does not chain cross-references
                entry.macros += tuple(m for m in target.macros if m not in entry.macros)
            for name in REQUIRED_FIELDS:
                if not clean_text(entry.get(name) or ""):
                    self.problem(entry.start, entry.key, f"missing required field {name!r}")
            year = entry.fields.get("year") or entry.inherited.get("year")
            if year is not None and clean_text(year.value) and parse_year(year.value) is None:
                self.problem(0, entry.key, f"bad year {year.value.strip()!r}", year.line)


def scan(text: str, source: str = "papers/references.bib") -> BibFile:
    """Parse `text`, collecting every problem instead of stopping at the first (for `check`)."""
    return _Reader(text, source).read()


def parse(text: str, source: str = "papers/references.bib") -> BibFile:
    """Parse `text`; raise `CatalogError` naming file, line and key at the first problem."""
    result = scan(text, source)
    if result.problems:
        raise CatalogError(str(result.problems[0]))
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

# LaTeX accent commands -> combining characters, and letter commands (enough for names, titles)
_MARKS = "\u0301\u0300\u0302\u0308\u0303\u0304\u0307\u0327\u030c\u0306\u030b\u0328"
_ACCENTS = dict(zip("'`^\"~=.cvuHk", _MARKS, strict=True))
_SYMBOLS = {"ss": "ß", "ae": "æ", "AE": "Æ", "aa": "å", "AA": "Å"}
_SYMBOLS |= dict(zip("oOlLi", "øØłŁı", strict=True))
_ACCENT_CMD = re.compile(r"\\([`'^\"~=.])\s*(?:\{\s*(\\?[A-Za-z])\s*\}|(\\?[A-Za-z]))")
_LETTER_ACCENT_CMD = re.compile(r"\\([cvuHk])(?:\s*\{\s*([A-Za-z])\s*\}|\s+([A-Za-z]))")
_SYMBOL_CMD = re.compile(r"\\(ss|ae|AE|aa|AA|o|O|l|L|i)(?![A-Za-z])\s*")
_ESCAPED = re.compile(r"\\([&%$#_{}])")
_COMMAND_WITH_ARG = re.compile(r"\\[A-Za-z]+\*?\s*(?=\{)")
_COMMAND = re.compile(r"\\([A-Za-z]+)\s?")
_SPECIAL = re.compile(r"[\\{}~]")


def _accent(m: re.Match[str]) -> str:
    letter = (m.group(2) or m.group(3)).lstrip("\\")
    return unicodedata.normalize("NFC", letter + _ACCENTS[m.group(1)])


def clean_text(value: str) -> str:
    """Plain text of a BibTeX value: LaTeX accents to Unicode, braces dropped, spaces collapsed;
    `--`, quotes and math stay as typed (the catalog shows what the file says)."""
    if not _SPECIAL.search(value):
        return " ".join(value.split())
    if "\\" in value:
        value = _LETTER_ACCENT_CMD.sub(_accent, _ACCENT_CMD.sub(_accent, value))
        value = _SYMBOL_CMD.sub(lambda m: _SYMBOLS[m.group(1)], value)
        value = _ESCAPED.sub(lambda m: "\0" + m.group(1) + "\0", value)  # `\{` stays a brace
        value = _COMMAND.sub(lambda m: m.group(1), _COMMAND_WITH_ARG.sub("", value))
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


def parse_people(value: str) -> list[Person]:
    """`author`/`editor` value -> people, in order, split by bibtexparser with BibTeX's rules:
    "Last, First", "Last, Jr, First", "First von Last", braced corporate names ("{Google
    Brain}"); `last` keeps the von part ("van Beethoven"); "and others" is dropped."""
    people = [_person(written) for written in names.split_multiple_persons_names(value)]
    return [p for p in people if p is not None]


@functools.lru_cache(maxsize=1 << 16)  # a bibliography names the same people again and again
def _person(written: str) -> Person | None:
    """One name as written -> Person (None for "others", BibTeX's "et al.")."""
    if written.strip().lower() == "others":
        return None
    head, _, tail = written.partition(",")
    if "," not in tail and head.strip() and tail.strip() and not _SPECIAL.search(written):
        # plain "von Last, First" (most names): what v2 returns, joined as below, only faster
        last, first, jr = " ".join(head.split()), " ".join(tail.split()), ""
    else:
        parts = names.parse_single_name_into_parts(written, strict=False)
        first, jr = clean_text(" ".join(parts.first)), clean_text(" ".join(parts.jr))
        last = clean_text(" ".join(parts.von + parts.last))
    name = " ".join(x for x in (first, last, jr) if x)
    return Person(name=name, last=last or name, first=first) if name else None


def arxiv_id_of(entry: BibEntry) -> str | None:
    """The arXiv identifier (no version) from `eprint`, `arxiv`, `url` or `journal` fields."""
    prefix = (entry.get("archiveprefix") or entry.get("eprinttype") or "").lower()
    for name in ("eprint", "arxiv", "arxivid"):
        value = entry.get(name) if name != "eprint" or prefix in ("", "arxiv") else None
        if value and (m := _ARXIV_ID.search(clean_text(value))):
            return m.group(1)
    for name in ("url", "pdf", "howpublished", "note"):
        if m := _ARXIV_URL.search(entry.get(name) or ""):
            return m.group(1)
    journal = entry.get("journal") or ""
    m = _ARXIV_ID.search(journal) if "arxiv" in journal.lower() else None
    return m.group(1) if m else None


def arxiv_id_from_url(url: str | None) -> str | None:
    """The arXiv id in an arxiv.org abs/pdf link (version dropped), or None."""
    m = _ARXIV_URL.search(url) if url else None
    return m.group(1) if m else None


def doi_of(entry: BibEntry) -> str | None:
    """The DOI from `doi` (a bare DOI or a doi.org link) or from a doi.org `url`."""
    if value := entry.get("doi"):
        m = _DOI_URL.search(clean_text(value))
        return m.group(1) if m else clean_text(value)
    m = _DOI_URL.search(entry.get("url") or "")
    return m.group(1) if m else None


def code_url_of(entry: BibEntry) -> str | None:
    """The official code's URL: the house field `code = {https://github.com/...}` (or an alias)."""
    for name in ("code", "codeurl", "code_url", "github"):
        if value := entry.get(name):
            return clean_text(value)
    return None


_KIND_BY_TYPE = {"inproceedings": "conference", "conference": "conference"}
_KIND_BY_TYPE |= {"proceedings": "conference", "article": "journal"}


def venue_of(entry: BibEntry) -> tuple[str | None, str | None]:
    """(venue, venue_kind) where kind is conference | journal | preprint."""
    booktitle, journal = entry.get("booktitle"), entry.get("journal")
    if booktitle:
        return clean_text(booktitle), "conference"
    if journal:
        j = clean_text(journal)
        if "arxiv" in j.lower() or j.lower() == "corr":
            return "arXiv", "preprint"
        return j, _KIND_BY_TYPE.get(entry.entry_type, "journal")
    if entry.entry_type in ("misc", "unpublished", "techreport", "online", "preprint"):
        if arxiv_id_of(entry) or "arxiv" in (entry.get("publisher") or "").lower():
            return "arXiv", "preprint"
        publisher = entry.get("publisher") or entry.get("institution")
        return (clean_text(publisher) if publisher else None), "preprint"
    return None, _KIND_BY_TYPE.get(entry.entry_type)


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
