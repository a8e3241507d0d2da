"""`repro`: run reproductions and look at them (Typer + Rich).

    repro run SLUG [--scale auto] [--device auto] [--seed 0] [--data-dir DIR] [--out runs/] [--strict]
              [--threads N] [--offline]
    repro list [--json]
    repro show SLUG
    repro nightly [--scale auto] [--only SLUG...] [--force] [--executor local|slurm] [--no-site]
    repro new SLUG --key KEY [--dataset NAME]... [--uses SLUG]...

Each command is a thin layer over a library function (`repro.runner.run_reproduction`,
`repro.config.load_config`, `catalog.runs.latest_runs`). Errors are one line on stderr and exit 1.
Exit codes of `repro run`: 0 fine, 1 the run failed (or could not start), 2 `--strict` and a
`full` row deviates or a claim does not hold, 130 interrupted.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from repro import ReproError
from repro.executors import EXECUTORS, make_executor
from repro.scales import SCALES

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


def _num(value: Any) -> float | None:
    """A DataFrame cell as a float, or None where it is missing (NaN / None)."""
    return None if value is None or value != value else float(value)


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
    threads: Annotated[
        int | None,
        typer.Option(help="torch CPU threads of the notebook (default: torch's, all cores)"),
    ] = None,
    offline: Annotated[
        bool,
        typer.Option(
            "--offline", help="never download missing datasets (REPRO_OFFLINE=1 does the same)"
        ),
    ] = False,
) -> None:
    """Execute repro/SLUG/reproduce.py into runs/SLUG/<run-id>/, compare, and record the run.

    Missing public datasets (MNIST, Fashion-MNIST, CIFAR-10) are downloaded first when their host
    answers, unless --offline. Ctrl-C or SIGTERM records the run as interrupted (exit 130).
    """
    import os

    from repro.runner import RunInterrupted, check_seed, run_reproduction

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
        check_seed(seed)  # before anything is planned, stored or created
        if threads is not None and threads < 1:
            raise ReproError(f"--threads {threads}: must be at least 1 (omit it for the default)")
        if data_dir is not None and not data_dir.is_dir():
            what = "is not a folder" if data_dir.exists() else "does not exist"
            raise ReproError(f"--data-dir {data_dir}: {what}")
        try:
            if executor != "local" or reuse:  # the nightly's path: run key, reuse, executors
                from repro.nightly import run_one

                # that path takes no thread/offline options: the environment carries them to
                # the runner (and to a submitit job's process) instead
                if threads is not None:
                    os.environ["OMP_NUM_THREADS"] = str(threads)
                if offline:
                    os.environ["REPRO_OFFLINE"] = "1"
                result = run_one(slug, executor=executor, reuse=reuse, **options)
            else:
                result = run_reproduction(
                    slug, threads=threads, offline=True if offline else None, **options
                )
        except RunInterrupted as stop:
            where = "stored in the catalog" if stop.result.stored else "not stored"
            _console(stderr=True).print(
                f"[red]interrupted[/red] by {stop.signal_name}: run {escape(stop.result.run_id)}"
                f" recorded as interrupted in {escape(str(stop.result.run_dir))} ({where})",
                soft_wrap=True,
            )
            raise typer.Exit(130) from None
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


LIST_COLUMNS = ("slug", "key", "title", "datasets", "uses", "scales", "notebook")
NARROW = 120  # below this a seven-column table folds its headers to a letter a line


def list_layout(tty: bool, columns: int) -> str:
    """How `repro list` prints: "plain" tab-separated rows when stdout is not a terminal (pipes,
    `grep`, `cut`, CI logs), "blocks" of a few lines per reproduction in a narrow terminal, else a
    table."""
    if not tty:
        return "plain"
    return "blocks" if columns < NARROW else "table"


def _list_cells(item: dict[str, Any]) -> list[str]:
    return [
        item["slug"],
        item["key"],
        item["title"],
        ", ".join(item["datasets"]),
        ", ".join(item["uses"]),
        ", ".join(item["scales"]),
        "yes" if item["has_notebook"] else "no",
    ]


def plain_rows(items: list[dict[str, Any]]) -> list[str]:
    """A header and one tab-separated line per reproduction (tabs and newlines in a cell become
    spaces, so every line has the seven fields)."""
    rows = [list(LIST_COLUMNS)] + [_list_cells(item) for item in items]
    return ["\t".join(" ".join(cell.split()) for cell in row) for row in rows]


def _list_blocks(items: list[dict[str, Any]]) -> str:
    lines = []
    for item in items:
        slug, key, title, datasets, uses, scales, notebook = _list_cells(item)
        lines += [
            f"[bold]{escape(slug)}[/bold]  {escape(key)}",
            f"  {escape(title)}",
            f"  datasets: {escape(datasets) or '-'} · uses: {escape(uses) or '-'}",
            f"  scales: {escape(scales) or '-'} · notebook: {notebook}",
        ]
    return "\n".join(lines)


def _list_table(items: list[dict[str, Any]]) -> Table:
    table = Table(title=f"{len(items)} reproductions")
    for column in LIST_COLUMNS:
        # headers never fold below their own width; the title takes what is left
        table.add_column(column, overflow="fold", no_wrap=column != "title", min_width=len(column))
    for item in items:
        table.add_row(*(escape(cell) for cell in _list_cells(item)))
    return table


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
        layout = list_layout(sys.stdout.isatty(), shutil.get_terminal_size().columns)
        if layout == "plain":
            for line in plain_rows(items):
                typer.echo(line)
        elif layout == "blocks":
            _console().print(_list_blocks(items), soft_wrap=True)
        else:
            _console().print(_list_table(items))
    for problem in problems:
        _console(stderr=True).print(f"[red]error:[/red] {escape(problem)}", soft_wrap=True)
    if problems:
        raise typer.Exit(1)


@app.command()
def show(slug: Annotated[str, typer.Argument(help="reproduction folder under repro/")]) -> None:
    """A reproduction's expected table (the paper's numbers) and its latest runs."""
    from catalog.compare import best_per_row, comparison_frame
    from catalog.db import session_scope
    from catalog.runs import latest_runs
    from repro.config import load_reproduction

    with _errors():
        info = _describe(slug)
        expected = load_reproduction(slug).expected
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
    # the paper's numbers next to ours: each row at the best scale that ran (catalog.compare)
    best = best_per_row(comparison_frame(expected, [s for *_, s in runs if s]))
    table = Table(title=f"expected.csv ({len(expected)} rows) next to the latest runs")
    for column in ("id", "source", "metric", "unit", "paper", "tol", "ours", "scale", "delta"):
        table.add_column(column, overflow="fold")
    table.add_column("verdict / reason", overflow="fold")
    for row in best.itertuples(index=False):
        verdict = str(row.verdict)
        note = f"{verdict}: {row.reason}" if isinstance(row.reason, str) and row.reason else verdict
        table.add_row(
            escape(str(row.id)),
            escape(str(row.source)) if isinstance(row.source, str) else "",
            escape(str(row.metric)) if isinstance(row.metric, str) else "",
            str(row.unit) if isinstance(row.unit, str) else "",
            _fmt(_num(row.paper)),
            _fmt(_num(row.tolerance)),
            _fmt(_num(row.value)),
            str(row.scale) if isinstance(row.scale, str) else "",
            _fmt(_num(row.delta)),
            f"[{VERDICT_STYLE.get(verdict, '')}]{escape(note)}[/]" if verdict else "",
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


@app.command()
def new(
    slug: Annotated[
        str,
        typer.Argument(
            metavar="SLUG", help="the new folder's name under repro/ (e.g. kurakin_bim)"
        ),
    ],
    key: Annotated[
        str, typer.Option("--key", help="the paper's catalog key (catalog add it first)")
    ],
    dataset: Annotated[
        list[str] | None,
        typer.Option(
            "--dataset", "-d", metavar="NAME", help="a dataset of repro.toml (repeat for several)"
        ),
    ] = None,
    uses: Annotated[
        list[str] | None,
        typer.Option(
            "--uses", metavar="SLUG", help="a reproduction whose code this one imports (repeatable)"
        ),
    ] = None,
) -> None:
    """Start repro/SLUG/ from the templates: method, expected.csv, claims, notebook, README,
    review stub and smoke test, runnable at smoke at once. Never overwrites."""
    from repro.scaffold import new_reproduction, planned_paths

    with _errors():
        review = planned_paths(slug, key)["review"]
        kept = review.exists()
        folder = new_reproduction(slug, key, datasets=dataset or [], uses=uses or [])
    paths = planned_paths(slug, key, root=folder.parent.parent)
    console = _console()
    console.print(f"created {escape(str(folder))}/", soft_wrap=True)
    for name in sorted(p.name for p in folder.iterdir()):
        console.print(f"  {escape(name)}")
    console.print(f"created {escape(str(paths['test']))}", soft_wrap=True)
    state = "kept (the paper already has a review)" if kept else "created"
    console.print(f"{state}: {escape(str(review))}", soft_wrap=True)
    console.print(
        f"next: the paper's numbers in expected.csv, its claims in claims.py, then "
        f"`repro run {escape(slug)} --scale smoke` (CONTRIBUTING.md walks through it)",
        soft_wrap=True,
    )


# The choices of `repro nightly --scale / --executor`, from the modules that own the names.
ScaleChoice = Literal[(*SCALES, "auto")]  # type: ignore[valid-type]
ExecutorChoice = Literal[EXECUTORS]  # type: ignore[valid-type]


def _executor_options(pairs: list[str]) -> dict[str, Any]:
    """`--executor-option KEY=VALUE` pairs as submitit parameters (VALUE read as JSON if it is)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ReproError(f"--executor-option {pair!r}: expected KEY=VALUE")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


@app.command()
def nightly(
    slugs: Annotated[
        list[str] | None,
        typer.Argument(metavar="SLUG", help="reproductions to run, as with --only"),
    ] = None,
    scale: Annotated[ScaleChoice, typer.Option(help="the runs' scale")] = "auto",
    only: Annotated[
        list[str] | None,
        typer.Option(metavar="SLUG", help="only these: --only a b, --only a,b, --only a --only b"),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="re-run even when an identical run is stored")
    ] = False,
    executor: Annotated[ExecutorChoice, typer.Option(help="where runs execute")] = "local",
    executor_option: Annotated[
        list[str] | None,
        typer.Option(
            metavar="KEY=VALUE", help="submitit parameter of every job (slurm_partition=gpu, ...)"
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    seed: Annotated[int, typer.Option(help="seed of every run")] = 0,
    data_dir: Annotated[str | None, typer.Option(help="folder with datasets")] = None,
    out: Annotated[str | None, typer.Option(help="runs folder (default <project>/runs)")] = None,
    site: Annotated[str | None, typer.Option(help="site folder (default <project>/_site)")] = None,
    no_site: Annotated[bool, typer.Option("--no-site", help="do not rebuild the site")] = False,
    json_out: Annotated[
        Path | None, typer.Option("--json", metavar="FILE", help="write the report as JSON")
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", help="do not echo the notebooks' output")
    ] = False,
) -> None:
    """Run (or reuse) every reproduction, store the runs, report drift, rebuild the site.

    Exit 1 when a claim that held in the previous run fails now, 2 for a usage error (unknown
    slug, bad option) before anything ran, else 0 (`repro.nightly`).
    """
    from catalog import CatalogError
    from catalog.config import project_root
    from repro.nightly import print_report, run_nightly

    wanted = [s for item in [*(only or []), *(slugs or [])] for s in item.split(",") if s]
    wide = None if sys.stdout.isatty() else 160  # CI logs and nox: no wrapping of run ids
    console, err = Console(width=wide), _console(stderr=True)
    try:
        runner = make_executor(executor, **_executor_options(executor_option or []))
        report = run_nightly(
            scale=scale,
            only=wanted or None,
            force=force,
            executor=runner,
            device=device,
            seed=seed,
            data_dir=data_dir,
            out=out,
            site=None if no_site else Path(site or project_root() / "_site"),
            progress=not quiet,
            echo=lambda text: err.print(f"[bold]nightly[/bold] {escape(text)}", soft_wrap=True),
        )
    except (ReproError, CatalogError) as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None
    print_report(report, console)
    if json_out is not None:
        json_out.write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    raise typer.Exit(report.exit_code)


def main() -> None:
    """Console-script entry point (`repro`)."""
    app()


if __name__ == "__main__":
    main()
