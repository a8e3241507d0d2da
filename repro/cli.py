"""`repro`: run reproductions and look at them (Typer + Rich).

    repro run SLUG [--scale auto] [--device auto] [--seed 0] [--data-dir DIR] [--out runs/] [--strict]
    repro list [--json]
    repro show SLUG

Each command is a thin layer over a library function (`repro.runner.run_reproduction`,
`repro.config.load_config`, `catalog.runs.latest_runs`). Errors are one line on stderr and exit 1.
Exit codes of `repro run`: 0 fine, 1 the run failed (or could not start), 2 `--strict` and a
`full` row deviates or a claim does not hold, 130 interrupted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from repro import ReproError

app = typer.Typer(
    help="Run the reproductions of advrepro and inspect them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _console(stderr: bool = False) -> Console:
    """A fresh console per call, so that the terminal width (COLUMNS) is read when printing."""
    return Console(stderr=stderr)


VERDICT_STYLE = {
    "match": "green",
    "deviates": "red",
    "not_compared": "yellow",
    "not_run": "dim",
}


@contextmanager
def _errors() -> Iterator[None]:
    """Turn user-facing errors into one line on stderr and exit code 1 (a database that cannot be
    reached included: its first line says why)."""
    from sqlalchemy.exc import SQLAlchemyError

    from catalog import CatalogError

    try:
        yield
    except (ReproError, CatalogError, SQLAlchemyError) as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        _console(stderr=True).print(f"[red]error:[/red] {escape(text)}", soft_wrap=True)
        raise typer.Exit(1) from None


def _fmt(value: float | None, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}g}"


def print_run(summary: dict[str, Any], run_dir: Path, out: Console | None = None) -> None:
    """The verdict table (row, paper, ours, delta, verdict) and the claims of a run."""
    out = out or _console()
    table = Table(title=f"{summary['slug']} · {summary['scale']} · {summary['run_id']}")
    table.add_column("row", overflow="fold")
    table.add_column("metric", style="dim", overflow="fold")
    table.add_column("paper", justify="right")
    table.add_column("ours", justify="right")
    table.add_column("delta", justify="right")
    table.add_column("verdict", no_wrap=True)
    table.add_column("note", style="dim", overflow="fold", ratio=1)
    for row in summary.get("rows", []):
        verdict = row["verdict"]
        delta = "" if row.get("delta") is None else f"{row['delta']:+.4g}"
        table.add_row(
            escape(row["id"]),
            escape(row.get("metric") or ""),
            _fmt(row.get("paper")),
            _fmt(row.get("value")),
            delta,
            f"[{VERDICT_STYLE[verdict]}]{verdict}[/]",
            escape(row.get("reason") or ""),
        )
    if summary.get("rows"):
        out.print(table)
    for metric in summary.get("metrics", []):
        out.print(f"  metric {escape(metric['name'])} = {_fmt(metric['value'], 6)}")
    if summary.get("claims"):
        out.print("[bold]Claims[/bold]")
    for claim in summary.get("claims", []):
        mark = {True: "[green]holds[/]", False: "[red]fails[/]", None: "[yellow]n/a[/]"}
        out.print(
            f"  {mark[claim['holds']]}  {escape(claim['id'])}: {escape(claim['text'])}"
            f"\n         {escape(claim.get('detail') or '')}"
        )
    counts: dict[str, int] = {}
    for row in summary.get("rows", []):
        counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
    tally = ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
    status = "[green]succeeded[/]" if summary["status"] == "succeeded" else "[red]failed[/]"
    out.print(
        f"run {escape(summary['run_id'])} {status} in {summary.get('wall_seconds') or 0:.1f} s"
        f" on {escape(str((summary.get('provenance') or {}).get('device')))}"
        f"{' · ' + tally if tally else ''}\n  {escape(str(run_dir))}"
    )
    if summary.get("error"):
        lines = summary["error"].strip().splitlines()
        out.print("[red]error:[/red] " + escape("\n".join(lines[:1] + lines[-15:][1:])))


@app.command()
def run(
    slug: Annotated[str, typer.Argument(help="reproduction folder under repro/ (e.g. fgsm)")],
    scale: Annotated[
        str, typer.Option(help="smoke | small | full | auto (full on CUDA, else small)")
    ] = "auto",
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    seed: Annotated[int, typer.Option(help="seed of every RNG of the run")] = 0,
    data_dir: Annotated[
        Path | None, typer.Option(help="folder with datasets, searched before the others")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="where run directories go (default: <project>/runs)")
    ] = None,
    strict: Annotated[
        bool, typer.Option(help="exit 2 when a full-scale row deviates or a claim fails")
    ] = False,
    store: Annotated[bool, typer.Option(help="store the run in the catalog database")] = True,
    progress: Annotated[bool, typer.Option(help="echo the notebook's output live")] = True,
    executor: Annotated[
        str, typer.Option(help="local | slurm (a SLURM job via submitit, see repro.executors)")
    ] = "local",
    reuse: Annotated[
        bool, typer.Option(help="reuse a stored successful run with the same run key")
    ] = False,
) -> None:
    """Execute repro/SLUG/reproduce.py into runs/SLUG/<run-id>/, compare, and record the run."""
    from repro.runner import run_reproduction

    options: dict[str, Any] = {
        "scale": scale,
        "device": device,
        "seed": seed,
        "data_dir": data_dir,
        "out": out,
        "store": store,
        "progress": progress,
    }
    with _errors():
        try:
            if executor != "local" or reuse:  # the nightly's path: run key, reuse, executors
                from repro.nightly import run_one

                result = run_one(slug, executor=executor, reuse=reuse, **options)
            else:
                result = run_reproduction(slug, **options)
        except KeyboardInterrupt:
            _console(stderr=True).print(
                "[red]interrupted[/red] (the run directory keeps what was recorded)"
            )
            raise typer.Exit(130) from None
    for warning in result.warnings:
        _console(stderr=True).print(f"[yellow]warning:[/yellow] {escape(warning)}", soft_wrap=True)
    print_run(result.summary, result.run_dir)
    if result.summary.get("reused_from"):
        reused = result.summary["reused_from"]
        _console().print(f"  reused {reused} (same run key; --no-reuse runs it)")
    if result.stored:
        _console().print("  stored in the catalog")
    code = result.exit_code(strict=strict)
    if code == 2:
        for problem in result.strict_failures():
            _console(stderr=True).print(f"[red]strict:[/red] {escape(problem)}", soft_wrap=True)
    raise typer.Exit(code)


def _describe(slug: str) -> dict[str, Any]:
    from repro.config import load_config, repro_path

    config = load_config(slug)
    return {
        "slug": slug,
        "key": config["key"],
        "title": config["title"],
        "datasets": config["datasets"],
        "uses": config["uses"],
        "scales": [s for s in ("smoke", "small", "full") if s in config["scales"]],
        "has_notebook": bool(config["notebook"]) and (repro_path(slug) / "reproduce.py").is_file(),
    }


@app.command("list")
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """List the reproductions (slug, paper key, title, datasets, uses, scales, notebook)."""
    from repro.config import list_slugs

    items, problems = [], []
    with _errors():
        for slug in list_slugs():
            try:
                items.append(_describe(slug))
            except ReproError as exc:
                problems.append(str(exc))
    if as_json:
        typer.echo(json.dumps(items, indent=2))
    else:
        table = Table(title=f"{len(items)} reproductions")
        for column in ("slug", "key", "title", "datasets", "uses", "scales", "notebook"):
            table.add_column(column, overflow="fold", no_wrap=column in ("slug", "key"))
        for item in items:
            table.add_row(
                item["slug"],
                item["key"],
                escape(item["title"]),
                ", ".join(item["datasets"]),
                ", ".join(item["uses"]),
                ", ".join(item["scales"]),
                "yes" if item["has_notebook"] else "no",
            )
        _console().print(table)
    for problem in problems:
        _console(stderr=True).print(f"[red]error:[/red] {escape(problem)}", soft_wrap=True)
    if problems:
        raise typer.Exit(1)


@app.command()
def show(slug: Annotated[str, typer.Argument(help="reproduction folder under repro/")]) -> None:
    """A reproduction's expected table (the paper's numbers) and its latest runs."""
    from catalog.db import session_scope
    from catalog.runs import latest_runs
    from repro.config import repro_path
    from repro.expected import read_expected

    with _errors():
        info = _describe(slug)
        expected = read_expected(repro_path(slug) / "expected.csv")
        with session_scope() as session:
            runs = [
                (r.id, r.scale, r.status, r.started_at, r.wall_seconds, r.device, r.summary)
                for r in latest_runs(session, slug, limit=10)
            ]
    console = _console()
    console.print(f"[bold]{escape(info['slug'])}[/bold] · {escape(info['key'])}")
    console.print(f"  {escape(info['title'])}")
    console.print(
        f"  datasets: {', '.join(info['datasets']) or '-'} · uses: {', '.join(info['uses']) or '-'}"
        f" · scales: {', '.join(info['scales']) or '-'}"
        f" · notebook: {'yes' if info['has_notebook'] else 'no'}"
    )
    table = Table(title=f"expected.csv ({len(expected)} rows)")
    for column in ("id", "source", "dataset", "metric", "paper", "tol", "status"):
        table.add_column(column, overflow="fold")
    for row in expected:
        table.add_row(
            escape(row.id),
            escape(row.source),
            escape(row.dataset),
            escape(row.metric),
            _fmt(row.paper),
            _fmt(row.tolerance),
            escape(row.status or ("unverified" if row.unverified else "")),
        )
    console.print(table)
    runs_table = Table(title="latest runs" if runs else "no runs recorded yet")
    for column in ("run", "scale", "status", "started", "wall s", "device", "rows", "claims"):
        runs_table.add_column(column, overflow="fold")
    for run_id, scale, status, started, wall, device, summary in runs:
        verdicts: dict[str, int] = {}
        for row in (summary or {}).get("rows", []):
            verdicts[row["verdict"]] = verdicts.get(row["verdict"], 0) + 1
        claims = (summary or {}).get("claims", [])
        held = sum(1 for c in claims if c.get("holds") is True)
        runs_table.add_row(
            run_id,
            scale,
            status,
            started.isoformat(timespec="seconds") if started else "",
            _fmt(wall, 5),
            device or "",
            ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items())),
            f"{held}/{len(claims)} hold" if claims else "",
        )
    console.print(runs_table)


def main() -> None:
    """Console-script entry point (`repro`)."""
    app()


if __name__ == "__main__":
    main()
