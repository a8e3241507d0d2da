"""The four reading-list formats of `papers/lists/`, each read by its own parser.

The lists are the user's documents as given, so each is read in its own format rather than
converted by hand, and the format is recognised from the content, not the file name
(`detect_format`, `parse_list_text`):

- ``review-list`` — markdown: a numbered list of titles, then a ``####`` section per paper with
  "(VENUE YEAR)", a ``[Paper link](URL)`` and a review paragraph (the entry's note).
- ``lecture`` — slides as text: headings such as ``DeepFool algorithm (Moosavi-Dezfooli et al.
  15')`` and bare ``<https://arxiv.org/...>`` links closing each slide. A paper is an entry once per
  distinct link, in order of first appearance, its note the headings of the slides that link it;
  an author-year heading whose slides never link anything (the turtle, the graffiti) is an entry
  of its own, matched to the catalog by first author and year.
- ``jekyll`` — a page with YAML front matter ``biblio: [KEY, ...]`` and inline
  ``{% include cite.html id="KEY" %}``; the note is the paragraph(s) citing the key.
- ``papis`` — ``- **Title**, YEAR [[url](...)] [[code](...)]``, ``>Authors``, then the abstract
  (the note).

A parser keeps what the list says (`ParsedEntry.cited_*`) as written; matching an entry to a catalog
paper is `catalog.lists.resolve`'s job.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from catalog import CatalogError
from catalog.bibtex import arxiv_id_from_url, parse_people

FORMATS = ("review-list", "lecture", "jekyll", "papis")


@dataclass
class ParsedEntry:
    """What a list says about one paper; `cited_*` are the list's own words, kept as written."""

    position: int
    cited_title: str | None = None
    cited_key: str | None = None
    cited_arxiv_id: str | None = None
    cited_url: str | None = None
    note: str | None = None
    source_line: int | None = None
    cited_year: int | None = None
    cited_author: str | None = None  # first author's last name, for author-year matching
    cited_code_url: str | None = None


@dataclass
class ParsedList:
    """A reading list read from its file."""

    slug: str
    title: str
    format: str
    description: str | None
    entries: list[ParsedEntry]
    source_file: str = ""
    provenance: str | None = None


# --------------------------------------------------------------------------- helpers


def slugify(text: str) -> str:
    """'Theories of Deep Learning, lecture 13' -> 'theories-of-deep-learning-lecture-13'."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", folded.lower()).strip("-")


_MD_ANCHOR = re.compile(r"\[\]\(#[^)]*\)")
_MD_EMPHASIS = re.compile(r"(\*\*|__|\*|_)(.+?)\1")


def _strip_markdown(text: str) -> str:
    text = _MD_ANCHOR.sub("", text)
    text = _MD_EMPHASIS.sub(r"\2", text)
    return " ".join(text.split())


def _paragraphs(lines: list[str]) -> str | None:
    """Lines to text: trailing spaces dropped, runs of blank lines folded to one."""
    out: list[str] = []
    for line in lines:
        line = line.rstrip()
        if not line.strip() and (not out or not out[-1]):
            continue
        out.append(line if line.strip() else "")
    while out and not out[-1]:
        out.pop()
    text = "\n".join(out).strip()
    return text or None


def _two_digit_year(text: str) -> int:
    value = int(text)
    if value >= 100:
        return value
    return 2000 + value if value < 70 else 1900 + value


# --------------------------------------------------------------------------- review list (000)

_NUMBERED = re.compile(r"^\s*(\d+)\.\s+(\S.*?)\s*$")
_SECTION = re.compile(r"^####\s+(.*?)\s*$")
_SECTION_TITLE = re.compile(r"^(\d+)\.\s+(.*?)\s*(?:\(([^()]*?)\s*((?:19|20)\d{2})\))?\s*$")
_PAPER_LINK = re.compile(r"\[Paper link\](?:\(\s*([^)\s]+)\s*\))?", re.IGNORECASE)
_H1 = re.compile(r"^#\s+(.*?)\s*$")


def parse_review_list(text: str, source: str) -> ParsedList:
    """Numbered titles, then one `####` section per paper with a link and a review."""
    lines = text.splitlines()
    title = None
    numbered: dict[int, tuple[str, int]] = {}
    sections: dict[int, dict] = {}
    current: dict | None = None
    for i, line in enumerate(lines, start=1):
        if title is None and (m := _H1.match(line)):
            title = _strip_markdown(m.group(1))
            continue
        if m := _SECTION.match(line):
            heading = _strip_markdown(m.group(1))
            sm = _SECTION_TITLE.match(heading)
            if sm is None:
                raise CatalogError(f"{source}:{i}: section heading {heading!r} is not 'N. Title'")
            current = {
                "number": int(sm.group(1)),
                "title": sm.group(2).strip(),
                "venue": sm.group(3),
                "year": int(sm.group(4)) if sm.group(4) else None,
                "line": i,
                "url": None,
                "body": [],
            }
            sections[current["number"]] = current
            continue
        if line.startswith("#"):
            current = None
            continue
        if current is None:
            if sections == {} and (m := _NUMBERED.match(line)):
                numbered.setdefault(int(m.group(1)), (_strip_markdown(m.group(2)), i))
            continue
        if not line.strip() and not current["body"]:
            continue
        if not current["body"] and current["url"] is None and (m := _PAPER_LINK.search(line)):
            current["url"] = m.group(1) or ""
            rest = _PAPER_LINK.sub("", line)
            rest = re.sub(r"[*()\s]|Review", "", rest)
            if rest:
                current["body"].append(line)
            continue
        current["body"].append(line)
    if title is None:
        raise CatalogError(f"{source}: review list without a '# Title' heading")
    entries = []
    for number in sorted(set(numbered) | set(sections)):
        section = sections.get(number, {})
        listed = numbered.get(number)
        url = section.get("url") or None
        entries.append(
            ParsedEntry(
                position=number,
                cited_title=listed[0] if listed else section.get("title"),
                cited_url=url,
                cited_arxiv_id=arxiv_id_from_url(url),
                note=_paragraphs(section.get("body", [])),
                source_line=section.get("line") or (listed[1] if listed else None),
                cited_year=section.get("year"),
            )
        )
    return ParsedList(slugify(title), title, "review-list", None, entries)


# --------------------------------------------------------------------------- lecture (001)

_LINK_LINE = re.compile(r"^\s*<(https?://[^>\s]+)>\s*$")
_AUTHOR_YEAR = re.compile(
    r"^(?P<topic>\S.*?)\s*\(\s*(?P<author>[^\W\d_][\w'’\-]*(?:\s+[^\W\d_][\w'’\-]*)?)"
    r"(?:\s+et\s+al\.?)?,?\s+['’]?(?P<year>\d{4}|\d{2})\s*['’]?\s*\)?\s*$"
)
_CAPTION = re.compile(r"^(?:Fig(?:ure)?\.?|Table|Algorithm)\s*\d", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


def _heading_match(line: str) -> re.Match[str] | None:
    if len(line) > 120 or _CAPTION.match(line):
        return None
    return _AUTHOR_YEAR.match(line)


def _title_case(text: str) -> str:
    small = {"of", "and", "the", "in", "on", "for", "to", "a", "an", "via", "with"}
    words = text.lower().split()
    return " ".join(w if (i and w in small) else w[:1].upper() + w[1:] for i, w in enumerate(words))


def _lecture_title(head: list[tuple[int, str]], source: str) -> tuple[str, str, str | None]:
    """(title, slug, description) from the title page: course line (capitals), lecture number,
    and the topic (the longest other line)."""
    course = lecture = None
    course_at = lecture_at = -1
    for idx, (_, line) in enumerate(head):
        letters = [c for c in line if c.isalpha()]
        if lecture is None and (m := re.search(r"\blecture\b\D*(\d+)", line, re.IGNORECASE)):
            lecture, lecture_at = m.group(1), idx
        elif course is None and len(line.split()) >= 2 and letters and line.isupper():
            course, course_at = _title_case(re.split(r"[:,]", line)[0].strip()), idx
    used = {course_at, lecture_at}
    others = [line for idx, (_, line) in enumerate(head) if idx not in used]
    topic = max(others, key=len) if others else None
    stem = Path(source).stem
    if course and lecture:
        base = f"{course}, lecture {lecture}"
        title = f"{base}: {topic}" if topic else base
        slug = slugify(f"{course} lecture {lecture}")
    else:
        title = topic or stem
        slug = slugify(title)
    after = head[lecture_at + 1 :] if lecture_at >= 0 else []
    byline: list[str] = []
    for prev, (n, line) in zip([None, *after], after, strict=False):
        if prev is not None and n - prev[0] > 1:
            break
        byline.append(line)
    return title, slug, ", ".join(byline) or None


def parse_lecture(text: str, source: str) -> ParsedList:
    """Slides as text: author-year headings and bare arXiv links (see the module docstring)."""
    links: dict[str, dict] = {}  # link id -> {url, line, headings}
    order: list[tuple[str, str]] = []  # ("link", id) | ("heading", text), first appearances
    pattern_headings: dict[str, dict] = {}
    headings_with_links: set[str] = set()
    title_page: list[tuple[int, str]] = []
    heading: str | None = None
    heading_is_pattern = False
    after_links = False
    seen_heading = False
    for i, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if m := _LINK_LINE.match(line):
            url = m.group(1)
            ident = arxiv_id_from_url(url) or url
            if ident not in links:
                links[ident] = {"url": url, "line": i, "headings": []}
                order.append(("link", ident))
            if heading and heading not in links[ident]["headings"]:
                links[ident]["headings"].append(heading)
            if heading and heading_is_pattern:
                headings_with_links.add(heading)
            after_links = True
            continue
        if after_links:  # the previous slide ended with its links: a new slide starts here
            after_links = False
            if not _CAPTION.match(line):
                heading = _SENTENCE_END.split(line, maxsplit=1)[0][:120]
                heading_is_pattern = False
        if m := _heading_match(line):
            seen_heading = True
            heading, heading_is_pattern = line, True
            if line not in pattern_headings:
                pattern_headings[line] = {
                    "line": i,
                    "author": m.group("author").split()[-1],
                    "year": _two_digit_year(m.group("year")),
                }
                order.append(("heading", line))
        elif not seen_heading and not links:
            title_page.append((i, line))
    if not links and not pattern_headings:
        raise CatalogError(f"{source}: lecture notes without any slide heading or link")
    title, slug, description = _lecture_title(title_page, source)
    entries: list[ParsedEntry] = []
    for kind, ident in order:
        if kind == "link":
            item = links[ident]
            entries.append(
                ParsedEntry(
                    position=len(entries) + 1,
                    cited_arxiv_id=arxiv_id_from_url(item["url"]),
                    cited_url=item["url"],
                    note="; ".join(item["headings"]) or None,
                    source_line=item["line"],
                )
            )
        elif ident not in headings_with_links:
            item = pattern_headings[ident]
            entries.append(
                ParsedEntry(
                    position=len(entries) + 1,
                    note=ident,
                    source_line=item["line"],
                    cited_year=item["year"],
                    cited_author=item["author"],
                )
            )
    return ParsedList(slug, title, "lecture", description, entries)


# --------------------------------------------------------------------------- jekyll (002)

_CITE = re.compile(r"\{%-?\s*include\s+cite\.html\s+id\s*=\s*[\"']([^\"']+)[\"']\s*-?%\}")
_MD_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*$")


def front_matter(text: str, source: str) -> tuple[dict, int, list[str]]:
    """(front matter dict, line where the body starts, body lines) of a `---` fenced document
    (a Jekyll page, a review); a document without front matter has an empty one."""
    import yaml

    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        return {}, 1, lines
    for end in range(1, len(lines)):
        if lines[end].strip() in ("---", "..."):
            break
    else:
        raise CatalogError(f"{source}:1: front matter is never closed by '---'")
    try:
        data = yaml.safe_load("\n".join(lines[1:end])) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 2 if mark is not None else 1
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise CatalogError(f"{source}:{line}: bad YAML front matter: {reason}") from exc
    if not isinstance(data, dict):
        raise CatalogError(f"{source}:2: front matter must be a YAML mapping")
    return data, end + 2, lines[end + 1 :]


def parse_jekyll(text: str, source: str) -> ParsedList:
    """Front matter `biblio:` keys and inline `cite.html` includes; notes are citing paragraphs."""
    fm, body_start, body = front_matter(text, source)
    title = str(fm.get("title") or Path(source).stem)
    description = fm.get("description")
    biblio = fm.get("biblio") or []
    if isinstance(biblio, str):
        biblio = [k.strip() for k in biblio.strip("[]").split(",") if k.strip()]
    if not isinstance(biblio, list):
        raise CatalogError(f"{source}: front matter 'biblio' must be a list of keys")
    biblio_line = next(
        (i for i, line in enumerate(text.splitlines(), start=1) if line.startswith("biblio")), 1
    )
    first_line: dict[str, int] = {}
    notes: dict[str, list[str]] = {}
    sections: dict[str, str] = {}
    section = None
    paragraph: list[tuple[int, str]] = []

    def flush() -> None:
        if not paragraph:
            return
        joined = "\n".join(line for _, line in paragraph).strip()
        keys = _CITE.findall(joined)
        for n, line in paragraph:
            for key in _CITE.findall(line):
                first_line.setdefault(key, n)
        plain = _CITE.sub(lambda m: f"[@{m.group(1)}]", joined)
        for key in dict.fromkeys(keys):
            sections.setdefault(key, section or title)
            if _CITE.sub("", joined).strip(" .,;:"):
                notes.setdefault(key, []).append(plain)
        paragraph.clear()

    for n, line in enumerate(body, start=body_start):
        if m := _MD_HEADING.match(line):
            flush()
            section = _strip_markdown(m.group(1))
        elif not line.strip():
            flush()
        else:
            paragraph.append((n, line))
    flush()
    keys = [str(k).strip() for k in biblio] + [k for k in first_line if k not in biblio]
    entries = []
    for key in dict.fromkeys(keys):
        note = "\n\n".join(notes.get(key, [])) or (
            f"Cited under “{sections[key]}”." if key in sections else None
        )
        entries.append(
            ParsedEntry(
                position=len(entries) + 1,
                cited_key=key,
                note=note,
                source_line=first_line.get(key, biblio_line),
            )
        )
    return ParsedList(slugify(title), title, "jekyll", description, entries)


# --------------------------------------------------------------------------- papis (003)

_PAPIS_ITEM = re.compile(r"^-\s+\*\*(?P<title>.+?)\*\*\s*,?\s*(?P<year>\d{4})?(?P<rest>.*)$")
_PAPIS_LINK = re.compile(r"\[\[(\w+)\]\(([^)\s]+)\)\]")


def parse_papis(text: str, source: str) -> ParsedList:
    """papis' markdown export: title/year/links line, `>Authors`, abstract; `---` separators."""
    lines = text.splitlines()
    entries: list[ParsedEntry] = []
    header: list[str] = []
    current: ParsedEntry | None = None
    body: list[str] = []

    def finish() -> None:
        if current is not None:
            current.note = _paragraphs(body)
            entries.append(current)
        body.clear()

    for i, line in enumerate(lines, start=1):
        if m := _PAPIS_ITEM.match(line):
            finish()
            links = dict(_PAPIS_LINK.findall(m.group("rest")))
            url = links.get("url") or links.get("pdf")
            current = ParsedEntry(
                position=len(entries) + 1,
                cited_title=_strip_markdown(m.group("title")),
                cited_url=url,
                cited_arxiv_id=arxiv_id_from_url(url),
                cited_code_url=links.get("code"),
                cited_year=int(m.group("year")) if m.group("year") else None,
                source_line=i,
            )
            continue
        if current is None:
            if line.strip() and not re.fullmatch(r"-{3,}", line.strip()):
                header.append(line.lstrip("> ").strip())
            continue
        if re.fullmatch(r"\s*-{3,}\s*", line):
            finish()
            current = None
            continue
        if not body and line.startswith(">") and current.cited_author is None:
            people = parse_people(line.lstrip("> ").strip())
            current.cited_author = people[0].last if people else None
            continue
        body.append(line)
    finish()
    heading = next((h for h in header if h.startswith("#")), None)
    title = _strip_markdown(heading.lstrip("# ")) if heading else "Papis collection"
    description = "\n".join(h for h in header if not h.startswith("#")) or None
    return ParsedList(slugify(title), title, "papis", description, entries)


# --------------------------------------------------------------------------- dispatch

_PARSERS = {
    "review-list": parse_review_list,
    "lecture": parse_lecture,
    "jekyll": parse_jekyll,
    "papis": parse_papis,
}


def detect_format(text: str) -> str | None:
    """Which of the four formats `text` is in, from its content (None if none fits)."""
    head = text.lstrip("\ufeff")
    if head.startswith("---") and (re.search(r"^biblio\s*:", head, re.M) or _CITE.search(head)):
        return "jekyll"
    if _CITE.search(head):
        return "jekyll"
    if any(_PAPIS_ITEM.match(line) for line in head.splitlines()) and (
        "papis" in head[:500].lower() or re.search(r"\[\[url\]\(", head)
    ):
        return "papis"
    if re.search(r"^####\s", head, re.M) and _PAPER_LINK.search(head):
        return "review-list"
    lines = [line.strip() for line in head.splitlines()]
    if any(_LINK_LINE.match(line) for line in lines) and any(_heading_match(x) for x in lines):
        return "lecture"
    return None


def parse_list_text(text: str, source: str) -> ParsedList:
    """Parse a list's text in whichever format it is in."""
    fmt = detect_format(text)
    if fmt is None:
        raise CatalogError(
            f"{source}: cannot tell which reading-list format this is "
            f"(expected one of: {', '.join(FORMATS)})"
        )
    parsed = _PARSERS[fmt](text, source)
    if not parsed.slug:
        raise CatalogError(f"{source}: the list's title gives an empty slug")
    parsed.source_file = source
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    parsed.provenance = f"{source} as given (sha256 {digest[:16]}), read as {fmt}"
    return parsed
