"""Writing `papers/references.bib`: entries in the file's own style, merged in place, atomically.

`catalog add` reads the new entries with `catalog.bibtex`, rewrites them in the style of the file
they join (`detect_style` + `restyle`, rendered by bibtexparser v2's writer), brings along the
`@string` definitions they use, and replaces the file in one `os.replace` (`atomic_write`): every
other byte of the file is left as it was.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import bibtexparser
from bibtexparser import model

from catalog import CatalogError
from catalog.bibtex import BibEntry, BibFile

__all__ = [
    "Style",
    "atomic_write",
    "braced",
    "detect_style",
    "merge_entries",
    "render_entry",
    "restyle",
]


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
    sample = [e for e in bib.entries if e.fields][:20]
    if not sample:
        return style
    indents: dict[str, int] = {}
    aligned = trailing = 0
    for e in sample:
        for line in e.text.splitlines()[1:]:
            if m := re.match(r"([ \t]+)[A-Za-z]", line):
                indents[m.group(1)] = indents.get(m.group(1), 0) + 1
        aligned += bool(re.search(r"\n[ \t]*\w+  +=", e.text))
        trailing += bool(re.search(r",\s*[})]\s*$", e.text))
    if indents:
        style.indent = max(indents, key=lambda k: indents[k])
    style.align = aligned * 2 > len(sample)
    style.trailing_comma = trailing * 2 >= len(sample)
    t = bib.text[sample[0].start + 1 : sample[0].start + 1 + len(sample[0].entry_type)]
    style.type_case = "upper" if t.isupper() else "capitalized" if t[:1].isupper() else "lower"
    pairs = zip(bib.entries, bib.entries[1:], strict=False)
    gaps = [bib.text[a.end : b.start] for a, b in pairs]
    gaps = [g.count("\n") - 1 for g in gaps if not g.strip()]
    if gaps:
        style.blank_lines = max(0, max(set(gaps), key=gaps.count))
    return style


def render_entry(entry_type: str, key: str, fields: Iterable[tuple[str, str]], style: Style) -> str:
    """Write an entry in `style` (with v2's writer); `fields` are (name, raw value) pairs."""
    fmt = bibtexparser.BibtexFormat()
    fmt.indent, fmt.trailing_comma = style.indent, style.trailing_comma
    fmt.value_column = "auto" if style.align else 0
    cased = {"upper": entry_type.upper(), "capitalized": entry_type.capitalize()}
    typed = cased.get(style.type_case, entry_type.lower())
    library = bibtexparser.Library([model.Entry(typed, key, [model.Field(*f) for f in fields])])
    return bibtexparser.write_string(library, unparse_stack=[], bibtex_format=fmt).rstrip("\n")


def restyle(entry: BibEntry, style: Style) -> str:
    """An entry read from elsewhere, rewritten in the target file's style (values as written)."""
    own = [(f.name, f.raw) for f in entry.fields.values()]
    return render_entry(entry.entry_type, entry.key, own, style)


def braced(text: str) -> str:
    """A plain string as a BibTeX braced value (braces in it balanced by escaping)."""
    if text.count("{") != text.count("}"):
        text = text.replace("{", r"\{").replace("}", r"\}")
    return "{" + text + "}"


def _definitions(bib: BibFile, origin: BibFile, keys: list[str]) -> dict[str, list[str]]:
    """key -> texts of the `@string` definitions of `origin` to write just before that entry:
    those the entries `keys` use (directly or through another macro) and `bib` lacks, each before
    the first of `keys` that needs it. A definition `bib` has with another value is an error."""
    by_key, first_user = origin.by_key(), {}
    for key in keys:
        todo = list(by_key[key].macros) if key in by_key else []
        while todo:
            name = todo.pop()
            if name not in first_user and name in origin.strings:
                first_user[name] = key
                todo += origin.strings[name].uses
    out: dict[str, list[str]] = {}
    for name, s in origin.strings.items():  # in `origin`'s order: a macro after those it uses
        mine, user = bib.strings.get(name), first_user.get(name)
        if user is None or (mine is not None and mine.value == s.value):
            continue
        if mine is not None:
            raise CatalogError(
                f"{origin.source}:{s.line}: key {user}: @string {s.name} = {s.value!r} "
                f"conflicts with {bib.source}:{mine.line} ({mine.name} = {mine.value!r})"
            )
        out.setdefault(user, []).append(s.text)
    return out


def merge_entries(bib: BibFile, new_texts: dict[str, str], origin: BibFile | None = None) -> str:
    """The file's text with each `key -> entry text` replacing the entry of that key in place,
    or appended at the end (in the given order) when the key is new. The rest is untouched.

    `origin` is the file the new entries were read from: the `@string` definitions they use are
    written too (before the first entry that needs them) unless the file has them already."""
    text, existing = bib.text, bib.by_key()
    sep = "\n" * (detect_style(bib).blank_lines + 1)
    order = sorted(new_texts, key=lambda k: existing[k].start if k in existing else len(text))
    before = _definitions(bib, origin, order) if origin is not None else {}
    blocks = {k: sep.join([*before.get(k, []), t]) for k, t in new_texts.items()}
    blocks = {k: t.replace("\r\n", "\n").replace("\r", "\n") for k, t in blocks.items()}
    for key in sorted((k for k in blocks if k in existing), key=lambda k: -existing[k].start):
        text = text[: existing[key].start] + blocks[key] + text[existing[key].end :]
    appended = [t for k, t in blocks.items() if k not in existing]
    if appended:
        text = (text.rstrip("\n") + sep if text.strip() else "") + sep.join(appended) + "\n"
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
