"""The `catalog` command (Typer + Rich).

Each command is a thin function over a library function (`catalog.sync`, `catalog.queries`,
`catalog.checks`, ...) and runs in ONE database transaction (`catalog.db.session_scope`): it all
happens or nothing does. Bad input is a `CatalogError`, printed as one red line on stderr with exit
status 1 (`@handles_errors`).

Start-up time matters (`catalog list` must start in well under half a second), so this module
imports only Typer at the top; Rich, SQLAlchemy, the models and the library modules are imported
inside the commands that need them, and nothing here ever imports torch.

Adding a command (the site's `publish`, the nightly `runs`/`ingest-runs`): write the work as a
typed library function taking a session, then add here

    @app.command()
    @handles_errors
    def publish(out: Path = typer.Option(...)) -> None:
        from catalog.db import session_scope
        from sitebuilder import publish as build
        with session_scope() as session:
            build(session, out)
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer

from catalog import CatalogError

if TYPE_CHECKING:
    from rich.console import Console

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="catalog",
    help="advrepro's literature catalog: papers, reading lists, reviews, reproductions, runs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


# --------------------------------------------------------------------------- output helpers


def console(stderr: bool = False) -> Console:
    """A Rich console; wide when the output is not a terminal, so piped tables don't wrap keys."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None
    if not stream.isatty():
        width = int(os.environ.get("COLUMNS", "0") or 0) or 200
    return Console(file=stream, width=width, highlight=False, soft_wrap=stderr)


def fail(message: str) -> NoReturn:
    """Print `message` as one red line on stderr and exit 1."""
    from rich.text import Text

    line = " ".join(str(message).split())
    console(stderr=True).print(Text("error: ", style="bold red") + Text(line, style="red"))
    raise typer.Exit(1)


def handles_errors(fn: F) -> F:
    """Turn `CatalogError` (and database errors) into one red line on stderr and exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CatalogError as exc:
            fail(str(exc))
        except Exception as exc:
            from sqlalchemy.exc import SQLAlchemyError

            if isinstance(exc, SQLAlchemyError):
                reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
                fail(f"database error: {reason}")
            raise

    return wrapper  # type: ignore[return-value]


@contextmanager
def read_scope() -> Iterator[Any]:
    """One read-only transaction on a Core connection, for the query commands.

    Same guarantees as `catalog.db.session_scope` (one transaction, rolled back on error) without
    importing sqlmodel/the ORM, which is most of `catalog list`'s start-up time.
    """
    from catalog.db import get_engine

    with get_engine().connect() as connection, connection.begin() as transaction:
        yield connection
        transaction.rollback()  # read-only: nothing to keep


def _print_json(value: Any) -> None:
    import json

    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n")


def _authors_short(authors: list[str]) -> str:
    if not authors:
        return ""
    return authors[0] + (
        " et al." if len(authors) > 2 else f" & {authors[1]}" if len(authors) == 2 else ""
    )


# --------------------------------------------------------------------------- sync


@app.command()
@handles_errors
def sync(
    prune: bool = typer.Option(
        False, "--prune", help="Delete rows whose source vanished (default: only report them)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Import papers/ and repro/ into the catalog (idempotent; runs are never touched)."""
    from catalog.sync import sync_project

    report = sync_project(prune=prune)  # holds the papers/ lock `catalog add` takes
    if as_json:
        _print_json(report.to_dict())
        return
    from rich.table import Table

    table = Table(title="catalog sync", title_justify="left")
    for column in ("kind", "added", "updated", "unchanged", "vanished"):
        table.add_column(column, justify="left" if column == "kind" else "right")
    for kind, r in report.kinds.items():
        vanished = str(len(r.vanished)) + (" (deleted)" if r.pruned and r.vanished else "")
        table.add_row(kind, str(len(r.added)), str(len(r.updated)), str(r.unchanged), vanished)
    out = console()
    out.print(table)
    for kind, r in report.kinds.items():
        for label, names in (("added", r.added), ("updated", r.updated)):
            if names and kind in ("papers", "lists", "reviews", "reproductions"):
                shown = ", ".join(names[:10]) + (
                    f", ... ({len(names)} in all)" if len(names) > 10 else ""
                )
                out.print(f"{kind} {label}: {shown}", markup=False)
        if r.vanished and not r.pruned:
            shown = ", ".join(r.vanished[:10]) + (" ..." if len(r.vanished) > 10 else "")
            out.print(
                f"{kind} vanished from the files (kept; `catalog sync --prune` deletes): {shown}",
                markup=False,
                style="yellow",
            )
    if report.unresolved:
        out.print(
            f"{len(report.unresolved)} list entr{'y matches' if len(report.unresolved) == 1 else 'ies match'}"
            f" no paper ({', '.join(report.unresolved[:5])}): see `catalog check`",
            markup=False,
            style="yellow",
        )
    if not report.changed:
        out.print("nothing to do: the catalog matches the files", markup=False)


# --------------------------------------------------------------------------- add


@app.command()
@handles_errors
def add(
    source: str | None = typer.Argument(
        None, metavar="[arxiv:ID]", help="An arXiv id to fetch the metadata of (needs network)."
    ),
    bibtex: str | None = typer.Option(
        None, "--bibtex", metavar="FILE", help="BibTeX file with one or more entries ('-': stdin)."
    ),
    list_slug: str | None = typer.Option(
        None, "--list", metavar="SLUG", help="Also add the paper(s) to this reading list."
    ),
    note: str | None = typer.Option(None, "--note", help="The list's note on the paper(s)."),
    replace: bool = typer.Option(
        False, "--replace", help="Replace entries whose key is already in references.bib."
    ),
) -> None:
    """Add papers to papers/references.bib and the catalog in one step."""
    from catalog import bibtex as bt
    from catalog.add import add_entries, fetch_arxiv
    from catalog.db import session_scope
    from catalog.locks import FileGuard, Terminated, bib_lock, signals_unwind

    if (source is None) == (bibtex is None):
        raise CatalogError("add: give either arxiv:ID or --bibtex FILE (not both, not neither)")
    if source is not None:
        if not source.lower().startswith("arxiv:"):
            raise CatalogError(f"add: {source!r} is not arxiv:ID (for a file use --bibtex FILE)")
        text, origin = fetch_arxiv(source), source
    elif bibtex == "-":
        text, origin = sys.stdin.read(), "<stdin>"
    else:
        assert bibtex is not None
        text, origin = bt.read_text(Path(bibtex), bibtex), bibtex
    try:
        # Ctrl-C or SIGTERM: the guard puts the files back and the transaction is rolled back
        with signals_unwind(), bib_lock(), FileGuard() as guard, session_scope() as session:
            result = add_entries(
                session,
                text,
                source=origin,
                list_slug=list_slug,
                note=note,
                replace=replace,
                guard=guard,
            )
    except (KeyboardInterrupt, Terminated) as exc:
        name = "SIGTERM" if isinstance(exc, Terminated) else "SIGINT"
        console(stderr=True).print(
            f"interrupted ({name}): nothing added; references.bib and the catalog are as they were",
            markup=False,
        )
        raise typer.Exit(143 if isinstance(exc, Terminated) else 130) from None
    out = console()
    for key in result.added:
        out.print(f"added {key}", markup=False)
    for key in result.replaced:
        out.print(f"replaced {key}", markup=False)
    for key in result.listed:
        out.print(f"listed {key} in {list_slug} (papers/lists/extra.toml)", markup=False)
    if list_slug is not None:
        for key in sorted(set(result.added + result.replaced) - set(result.listed)):
            out.print(f"{key} was already in {list_slug}", markup=False)


# --------------------------------------------------------------------------- list / show / search


@app.command("list")
@handles_errors
def list_(
    list_slug: str | None = typer.Option(None, "--list", metavar="SLUG", help="Only this list."),
    year: int | None = typer.Option(None, "--year", help="Only papers of this year."),
    venue: str | None = typer.Option(None, "--venue", help="Venue contains this text."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List papers (newest first; in list order with --list)."""
    from catalog.queries import as_dict, list_papers

    with read_scope() as db:
        papers = list_papers(db, list_slug=list_slug, year=year, venue=venue)
    if as_json:
        _print_json([as_dict(p) for p in papers])
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(
        title=f"{len(papers)} paper{'s' if len(papers) != 1 else ''}", title_justify="left"
    )
    # keys are what a user copies into `catalog show`: never truncated, whatever the width
    table.add_column("key", no_wrap=True, min_width=max((len(p.key) for p in papers), default=3))
    table.add_column("year", justify="right")
    table.add_column("title")
    table.add_column("authors")
    table.add_column("venue")
    table.add_column("lists", overflow="fold")
    for p in papers:
        table.add_row(
            Text(p.key),
            str(p.year),
            Text(p.title),
            Text(_authors_short(p.authors)),
            Text(p.venue or ""),
            Text(", ".join(p.lists)),
        )
    console().print(table)


@app.command()
@handles_errors
def show(
    key: str = typer.Argument(..., help="The paper's catalog key."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """A paper's facts, authors, reading lists (with their notes), review and BibTeX."""
    from catalog.queries import as_dict, show_paper

    with read_scope() as db:
        paper = show_paper(db, key)
    if as_json:
        _print_json(as_dict(paper))
        return
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    out = console()
    out.print(Panel(Text(paper.title, style="bold"), subtitle=Text(paper.key), expand=False))
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    venue = paper.venue or ""
    if paper.venue_kind:
        venue = f"{venue} ({paper.venue_kind})" if venue else paper.venue_kind
    rows = [
        ("authors", ", ".join(paper.authors)),
        ("year", str(paper.year)),
        ("venue", venue),
        ("type", paper.entry_type),
        ("arXiv", paper.arxiv_id or ""),
        ("DOI", paper.doi or ""),
        ("URL", paper.url or ""),
        ("code", paper.code_url or ""),
        ("reproductions", ", ".join(paper.reproductions)),
    ]
    for label, value in rows:
        if value:
            facts.add_row(label, Text(value))
    out.print(facts)
    if paper.abstract:
        out.print(Text("\nAbstract", style="bold"))
        out.print(Text(paper.abstract))
    out.print(Text(f"\nReading lists ({len(paper.memberships)})", style="bold"))
    if not paper.memberships:
        out.print(Text("  (none)"))
    for m in paper.memberships:
        head = Text(f"  {m.list_title} [{m.list_slug}] #{m.position}", style="cyan")
        if m.cited_arxiv_id or m.cited_url:
            head.append(f"  (list links {m.cited_arxiv_id or m.cited_url})", style="dim")
        out.print(head)
        if m.note:
            for line in m.note.splitlines():
                out.print(Text(f"    {line}"))
    if paper.review:
        out.print(Text(f"\nReview ({paper.review['source_file']})", style="bold"))
        out.print(Text(paper.review["body"].rstrip()))
    out.print(Text("\nBibTeX", style="bold"))
    out.print(Text(paper.bibtex))


@app.command()
@handles_errors
def search(
    words: list[str] = typer.Argument(..., metavar="TEXT", help="Words to look for."),
    limit: int = typer.Option(20, "--limit", help="At most this many results."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Ranked search over titles, authors, abstracts and reading-list notes."""
    from catalog.queries import as_dict
    from catalog.queries import search as run_search

    with read_scope() as db:
        hits = run_search(db, " ".join(words), limit=limit)
    if as_json:
        _print_json([as_dict(h) for h in hits])
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"{len(hits)} result{'s' if len(hits) != 1 else ''}", title_justify="left")
    table.add_column("score", justify="right")
    table.add_column("key", no_wrap=True, min_width=max((len(h.key) for h in hits), default=3))
    table.add_column("year", justify="right")
    table.add_column("title")
    table.add_column("matched in")
    for h in hits:
        table.add_row(f"{h.score:g}", Text(h.key), str(h.year), Text(h.title), ", ".join(h.matched))
    console().print(table)


# --------------------------------------------------------------------------- export / check


@app.command()
@handles_errors
def export(
    fmt: str = typer.Option("bibtex", "--format", "-f", help="bibtex | json | csv"),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write here (default: stdout)."),
    list_slug: str | None = typer.Option(None, "--list", metavar="SLUG", help="Only this list."),
) -> None:
    """Export the catalog as BibTeX, JSON or CSV."""
    from catalog.queries import export as run_export

    with read_scope() as db:
        text = run_export(db, fmt, list_slug=list_slug)
    if out is None:
        sys.stdout.write(text)
        return
    from catalog.bibwrite import atomic_write

    if not out.parent.exists():
        raise CatalogError(f"{out}: folder {out.parent} does not exist")
    if out.is_dir():
        raise CatalogError(f"--out {out}: is a folder; name the file to write")
    try:
        atomic_write(out, text)  # a temp file then os.replace: a failure leaves `out` as it was
    except OSError as exc:  # read-only folder, a file where a folder should be, disk full
        raise CatalogError(f"--out {out}: cannot write: {exc.strerror or exc}") from exc
    console(stderr=True).print(f"wrote {out}", markup=False)


@app.command()
@handles_errors
def check(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Lint the catalog: exit 1 on errors (warnings are reported only)."""
    from catalog.checks import check as run_check
    from catalog.db import session_scope

    with session_scope() as session:
        problems = run_check(session)
    errors = sum(p.severity == "error" for p in problems)
    warnings = sum(p.severity == "warning" for p in problems)
    acknowledged = len(problems) - errors - warnings
    if as_json:
        _print_json([p.to_dict() for p in problems])
    else:
        from rich.text import Text

        out = console()
        styles = {"error": "red", "warning": "yellow", "acknowledged": "cyan"}
        for p in problems:
            label = Text(f"{p.severity:<7} ", style=styles.get(p.severity, ""))
            out.print(label + Text(str(p)), soft_wrap=True)
        summary = (
            f"{errors} error{'s' if errors != 1 else ''}, "
            f"{warnings} warning{'s' if warnings != 1 else ''}, {acknowledged} acknowledged"
        )
        out.print(Text(summary, style="bold red" if errors else "bold green"))
    if errors:
        raise typer.Exit(1)


# --------------------------------------------------------------------------- runs (nightly engineer)


@app.command()
@handles_errors
def runs(
    slug: str | None = typer.Option(None, "--slug", help="Runs of this reproduction only."),
    changed: bool = typer.Option(
        False, "--changed", help="The latest run of each reproduction/scale that changed something."
    ),
    limit: int = typer.Option(30, "--limit", help="How many runs (without --changed)."),
    fail_on_regression: bool = typer.Option(
        False, "--fail-on-regression", help="Exit 1 when a claim that held now fails."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Recorded runs, newest first, with what changed since the previous run (catalog.drift)."""
    from catalog.db import session_scope
    from catalog.drift import print_listing, run_listing

    with session_scope() as session:
        listing = run_listing(session, slug=slug, changed=changed, limit=limit)
    if as_json:
        _print_json(listing)
    else:
        print_listing(listing, console(), changed=changed)
    if fail_on_regression and any(item["drift"]["regressions"] for item in listing):
        raise typer.Exit(1)


@app.command("ingest-runs")
@handles_errors
def ingest_runs(
    directory: Path = typer.Argument(..., help="Folder holding run directories (summary.json)."),
    runs_dir: Path | None = typer.Option(
        None, "--runs-dir", help="Where run directories are copied (default <project>/runs)."
    ),
    copy: bool = typer.Option(True, "--copy/--no-copy", help="Copy run directories there."),
) -> None:
    """Validate and store run directories made elsewhere (nightly GPU artifacts); idempotent."""
    from catalog.db import session_scope
    from catalog.ingest_runs import ingest_runs as run_ingest
    from catalog.ingest_runs import print_report

    with session_scope() as session:
        report = run_ingest(session, directory, runs_dir=runs_dir, copy=copy)
    print_report(report, console(), console(stderr=True))
    if report.rejected:
        raise typer.Exit(1)


@app.command()
@handles_errors
def publish(
    out: Path = typer.Option(..., "--out", help="Folder to build the site into (replaced)."),
    runs_dir: Path | None = typer.Option(
        None, "--runs-dir", help="Where run directories are (default <project>/runs)."
    ),
    screenshots: Path | None = typer.Option(
        None,
        "--screenshots",
        help="After building, save full-page PNGs of the index, the Defense-GAN page and the "
        "scoreboard here (Chromium through Playwright).",
    ),
) -> None:
    """Build the static site (package `sitebuilder`): pages, search index, figures, notebooks."""
    from catalog.db import session_scope
    from sitebuilder import publish as build

    with session_scope() as session:
        report = build(session, out, runs_dir=runs_dir.resolve() if runs_dir else None)
    for warning in report.warnings:
        console(stderr=True).print(f"warning: {warning}", style="yellow", markup=False)
    console().print(
        f"{report.pages} pages ({report.papers} papers, {report.lists} lists, {report.runs} runs,"
        f" {report.notebooks} notebooks, {report.figures} figures) in {report.seconds:.1f} s"
        f" -> {report.out_dir}/index.html",
        markup=False,
    )
    if screenshots is not None:
        from sitebuilder.screenshots import take_screenshots

        for png, height in take_screenshots(report.out_dir, screenshots.resolve()):
            console().print(f"screenshot {png} ({height} px tall at 1280 px)", markup=False)


def main() -> None:
    """Console-script entry point (`catalog = catalog.cli:main`)."""
    try:
        app()
    except CatalogError as exc:  # raised outside a command (e.g. in a callback)
        try:
            fail(str(exc))
        except typer.Exit as done:
            sys.exit(done.exit_code)


if __name__ == "__main__":
    main()
