"""Markdown to safe HTML (list notes, reviews) and sanitised notebook HTML.

Markdown goes through markdown-it-py with raw HTML disabled (so `<script>` shows as text), then
nh3 with an allowlist; notebook HTML (nbconvert's) goes through nh3 with a wider allowlist. Pages
also carry a Content-Security-Policy that forbids inline scripts and remote loads: a second wall
behind this one. Relative links of a review point into papers/, which the site does not have, so
only outbound links, in-page anchors and the `[@KEY]` citation links survive.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import nh3
from markdown_it import MarkdownIt

__all__ = [
    "link_citations",
    "normalize_headings",
    "render_markdown",
    "sanitize_notebook_html",
]

_MD = MarkdownIt("commonmark", {"html": False, "typographer": False}).enable(
    ["table", "strikethrough"]
)
_MD_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5",
    "h6", "hr", "i", "img", "li", "ol", "p", "pre", "s", "strong", "sub", "sup", "table",
    "tbody", "td", "th", "thead", "tr", "ul",
}  # fmt: skip
_MD_ATTRS = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},
    "th": {"align"},
    "td": {"align"},
}


def _md_attribute_filter(tag: str, attr: str, value: str) -> str | None:
    """Keep outbound links and in-page anchors; drop anything that would load a resource or point
    to a file the site does not have (relative links of a review are relative to papers/)."""
    if tag == "a" and attr == "href":
        return value if re.match(r"(?i)(https?:|mailto:|#)", value) else None
    if tag == "img" and attr == "src":
        return None  # a review image would be a remote load or a missing file
    return value


_HEADING = re.compile(r"<(/?)h([1-6])(?=[\s>])")


def normalize_headings(html: str, top: int) -> str:
    """Renumber headings so the highest becomes `top` and levels are consecutive.

    A page has one h1 and headings in order; a review's `#` sits under the page's `h2`, and a
    note that jumps from `#` to `###` must not skip a level on the page.
    """
    levels = sorted({int(m.group(2)) for m in _HEADING.finditer(html)})
    if not levels:
        return html
    mapping = {level: min(6, top + rank) for rank, level in enumerate(levels)}
    return _HEADING.sub(lambda m: f"<{m.group(1)}h{mapping[int(m.group(2))]}", html)


# nh3's output double-quotes every attribute value and escapes `"` inside, so `"[^"]*"` spans a
# whole value even when it contains `>`.
_IMG_TAG = re.compile(r'<img\b((?:\s+[\w:-]+(?:="[^"]*")?)*)\s*/?>')


def _drop_unloadable_images(html: str) -> str:
    """An image whose source the sanitizer removed (remote, or not a file of the site) becomes
    a short text naming it, instead of a broken-image icon."""

    def replace(match: re.Match[str]) -> str:
        attributes = match.group(1)
        if re.search(r'\ssrc="', attributes):
            return match.group(0)
        alt = re.search(r'\salt="([^"]*)"', attributes)
        label = alt.group(1) if alt and alt.group(1) else "image"
        return f'<span class="img-dropped">[{label}: not shown]</span>'

    return _IMG_TAG.sub(replace, html)


_CITATION = re.compile(r"\[@([A-Za-z0-9][\w.:-]*)\]")


def link_citations(text: str, citations: Mapping[str, tuple[str, str]]) -> str:
    """`[@KEY]` (the lists' and reviews' citation syntax) -> a markdown link to the cited paper's
    page, labelled "Lastname Year"; unknown keys stay as written."""

    def replace(match: re.Match[str]) -> str:
        found = citations.get(match.group(1))
        if found is None:
            return match.group(0)
        label, href = found
        label = label.replace("[", "").replace("]", "")
        return f"[{label}]({href})"

    return _CITATION.sub(replace, text)


def render_markdown(
    text: str | None,
    *,
    top_heading: int = 3,
    citations: Mapping[str, tuple[str, str]] | None = None,
) -> str:
    """Markdown to safe HTML: raw HTML shows as text; the result is sanitized by nh3.

    Headings are renumbered from `top_heading` (see `normalize_headings`). `citations` maps paper
    keys to (label, relative href) for `[@KEY]`; those hrefs are the only relative links kept.
    """
    if not text or not text.strip():
        return ""
    allowed: set[str] = set()
    if citations:
        text = link_citations(text, citations)
        allowed = {href for _, href in citations.values()}

    def attribute_filter(tag: str, attr: str, value: str) -> str | None:
        if tag == "a" and attr == "href" and value in allowed:
            return value
        return _md_attribute_filter(tag, attr, value)

    html = normalize_headings(_MD.render(text), top_heading)
    html = nh3.clean(
        html,
        tags=_MD_TAGS,
        attributes=_MD_ATTRS,
        url_schemes={"http", "https", "mailto"},
        attribute_filter=attribute_filter,
        link_rel="noopener noreferrer",
    )
    # the second pass keeps the guarantee whatever the rewrite did
    return nh3.clean(
        _drop_unloadable_images(html),
        tags=_MD_TAGS | {"span"},
        attributes={**_MD_ATTRS, "span": {"class"}},
        url_schemes={"http", "https", "mailto"},
        attribute_filter=attribute_filter,
        link_rel="noopener noreferrer",
    )


_NB_TAGS = _MD_TAGS | {
    "div", "span", "table", "caption", "colgroup", "col", "tfoot", "dl", "dt", "dd", "details",
    "summary", "figure", "figcaption", "kbd", "samp", "var", "small", "mark", "u", "q", "cite",
}  # fmt: skip


def _nb_attribute_filter(tag: str, attr: str, value: str) -> str | None:
    if attr == "src":
        return value if value.startswith("data:image/") else None  # embedded outputs only
    if tag == "a" and attr == "href":
        return value if re.match(r"(?i)(https?:|mailto:|#)", value) else None
    return value


def _clean_notebook(html: str) -> str:
    return nh3.clean(
        html,
        tags=_NB_TAGS,
        attributes={
            "*": {"class", "id", "title", "lang"},
            "a": {"href"},
            "img": {"src", "alt", "width", "height"},
            "td": {"colspan", "rowspan", "align"},
            "th": {"colspan", "rowspan", "align", "scope"},
        },
        url_schemes={"http", "https", "mailto", "data"},
        attribute_filter=_nb_attribute_filter,
        link_rel="noopener noreferrer",
        strip_comments=True,
    )


def sanitize_notebook_html(html: str) -> str:
    """nbconvert's HTML of an executed notebook, with scripts, handlers, styles and remote loads
    removed: images survive only as embedded `data:` outputs, links only as outbound anchors.
    Cleaned twice: images that lost their source become text in between (see
    `_drop_unloadable_images`), and the second pass keeps the guarantee whatever that did."""
    return _clean_notebook(_drop_unloadable_images(_clean_notebook(html)))
