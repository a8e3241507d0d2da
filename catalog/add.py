"""`catalog add`: new BibTeX entries into `papers/references.bib` and the catalog in one step.

The entries are checked first (syntax, duplicate keys, the whole resulting file, the reading list),
then references.bib is rewritten atomically in the file's own style and the database rows are
written through the same upsert `catalog sync` uses (`catalog.sync`), so a sync right after an add
has nothing to do. The command holds `bib_lock` and writes files through a `FileGuard`
(`catalog.locks`): concurrent adds lose nothing, and a failed database part puts the files back.

`fetch_arxiv` turns `arxiv:ID` into a house-style BibTeX entry from arXiv's API, failing at once
(with a hint to use `--bibtex`) when the network is unreachable.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlmodel import Session

from catalog import CatalogError
from catalog import bibtex as bt
from catalog import bibwrite as bw
from catalog.config import project_root
from catalog.lists import Addition, additions_text, extra_path
from catalog.locks import FileGuard
from catalog.snapshot import BIB, list_records, load_bib, paper_index, paper_records
from catalog.sync import SyncReport, sync_lists, sync_papers

__all__ = ["AddResult", "add_entries", "fetch_arxiv"]


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
    through `guard` so the caller can restore them if the database part fails. The caller holds
    `bib_lock` from before this call until its transaction commits.
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
    style = bw.detect_style(current)
    texts = {e.key: bw.restyle(e, style) for e in incoming.entries}
    new_text = bw.merge_entries(current, texts, incoming)  # with the @string definitions used
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
    # `partial`: the papers of the file are all here, but nothing is reported vanished or pruned.
    sync_papers(conn, records, report, partial=True)
    sync_lists(conn, lists, report)
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

    # urlopen's timeout does not cover name resolution: a daemon thread bounds the whole call
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
        ("author", bw.braced(" and ".join(f"{p.last}, {p.first}".strip(", ") for p in people))),
        ("title", bw.braced(title)),
        ("year", str(year)),
        ("eprint", bw.braced(arxiv_id)),
        ("archiveprefix", "{arXiv}"),
        ("url", bw.braced(f"https://arxiv.org/abs/{arxiv_id}")),
    ]
    if doi:
        fields.append(("doi", bw.braced(doi)))
    if abstract:
        fields.append(("abstract", bw.braced(abstract)))
    return bw.render_entry("misc", key, fields, bw.Style())
