"""The nightly: re-run every reproduction, catch drift, rebuild the site.

    repro nightly [--scale smoke|small|full|auto] [--only SLUG...] [--force]
                  [--executor local|slurm] [--site DIR | --no-site]
    nox -s nightly -- ...            (`catalog sync`, then `repro nightly ...`)
    python -m repro.nightly ...      (the same command, for scripts that call it this way)

The command (`repro.cli.nightly`) is a thin layer over `run_nightly` and `print_report`.

Pipeline (`run_nightly`):

1. The reproductions with a notebook (`repro list`), or `--only` ones.
2. For each, its run key (`repro.runkey`): code, `uses`, toolkit, parameters, scale, data. When a
   stored *successful* run has the same key, it is reused (a new run recording the same results,
   `reused_from` naming the measuring run) instead of being executed again; `--force` re-runs all.
3. The others run on the executor (`repro.executors`: here one after the other, or as SLURM jobs);
   every run is stored, failed ones included. One reproduction failing never stops the others.
4. Drift against the previous run of the same reproduction and scale (`catalog.drift`); the site's
   change markers are refreshed on the stored runs.
5. The site is rebuilt (`catalog publish`), unless `--no-site`.
6. The summary: each reproduction's run status (succeeded, failed, reused, error), the paper's
   status, claims and rows, and what changed since the previous run.

Exit code: 1 when a claim that held in the previous run fails now (a regression), 0 otherwise —
a crash, a deviation or a failed run is reported loudly but is not, by itself, a regression
(the previous night's claims are not known to fail). 2 for a usage error (unknown slug, bad
option) before anything ran.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from repro import ReproError
from repro.executors import Executor, Job, Outcome, make_executor, store_outcome

if TYPE_CHECKING:
    from repro.runner import RunResult

__all__ = [
    "Entry",
    "NightlyReport",
    "main",
    "nightly_slugs",
    "plan_job",
    "print_report",
    "run_jobs",
    "run_nightly",
    "run_one",
]


@dataclass
class Entry:
    """One reproduction's line in the nightly summary."""

    slug: str
    scale: str
    status: str  # succeeded | failed | reused | error
    run_id: str | None = None
    run_dir: str | None = None
    reused_from: str | None = None
    paper_status: str = ""
    claims: dict[str, int] = field(default_factory=dict)  # holds / fails / not_evaluated
    verdicts: dict[str, int] = field(default_factory=dict)
    changes: list[dict[str, Any]] = field(default_factory=list)
    base_run_id: str | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[dict[str, Any]]:
        """Changes that are claim regressions (held before, fail now)."""
        return [c for c in self.changes if c.get("regression")]


@dataclass
class NightlyReport:
    """Every reproduction's entry, and where the site was built."""

    scale: str
    executor: str
    entries: list[Entry] = field(default_factory=list)
    site: str | None = None
    site_error: str | None = None

    @property
    def regressions(self) -> list[tuple[str, dict[str, Any]]]:
        """(slug, change) for every claim regression."""
        return [(e.slug, c) for e in self.entries for c in e.regressions]

    @property
    def exit_code(self) -> int:
        """1 when a claim regressed, else 0."""
        return 1 if self.regressions else 0

    def counts(self) -> dict[str, int]:
        """How many entries per status."""
        out: dict[str, int] = {}
        for entry in self.entries:
            out[entry.status] = out.get(entry.status, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (`--json FILE`)."""
        return {
            "scale": self.scale,
            "executor": self.executor,
            "site": self.site,
            "site_error": self.site_error,
            "exit_code": self.exit_code,
            "counts": self.counts(),
            "entries": [
                {**entry.__dict__, "regressions": len(entry.regressions)} for entry in self.entries
            ],
        }


# --------------------------------------------------------------------------- planning


def nightly_slugs(only: list[str] | None = None) -> list[str]:
    """The reproductions the nightly runs: every folder with a notebook, or `only` (checked)."""
    from repro.config import list_slugs, load_config, repro_path

    runnable = []
    for slug in list_slugs():
        try:
            notebook = load_config(slug)["notebook"]
        except ReproError:  # a broken folder is still planned: its error becomes its entry
            notebook = True
        if notebook and (repro_path(slug) / "reproduce.py").is_file():
            runnable.append(slug)
    if not only:
        return runnable
    wanted = []
    for slug in only:
        repro_path(slug)  # a clear error for an unknown slug
        if slug not in runnable:
            raise ReproError(f"--only {slug}: method-only folder, no reproduce.py to run")
        if slug not in wanted:
            wanted.append(slug)
    return wanted


def plan_job(
    slug: str,
    executor: Executor,
    *,
    scale: str,
    device: str = "auto",
    seed: int = 0,
    data_dir: str | None = None,
    out: Path,
    store: bool = True,
    reuse: bool = True,
    progress: bool = True,
) -> Job | Outcome:
    """The job to run for `slug`, or the `reused` outcome when a stored successful run has the
    same run key (written to `out`, and stored when `store`)."""
    from catalog.db import session_scope
    from repro.runkey import compute_run_key, find_reusable, reuse_run

    concrete = executor.resolve_scale(scale, device)
    kind = executor.device_kind(slug, concrete, device)
    parameters = {"scale": concrete, "device": kind, "seed": int(seed), "data_dir": data_dir}
    key = compute_run_key(slug, scale=concrete, parameters=parameters)
    if reuse:
        with session_scope() as session:
            original = find_reusable(session, slug, concrete, key)
        if original is not None:
            summary, run_dir = reuse_run(original, out, run_key=key)
            outcome = Outcome(slug, concrete, "reused", summary=summary, run_dir=str(run_dir))
            if store:
                store_outcome(outcome)
            return outcome
    return Job(
        slug=slug,
        scale=concrete,
        device=device,
        seed=int(seed),
        data_dir=data_dir,
        out=str(out),
        run_key=key,
        store=store,
        executor=executor.name,
        progress=progress,
    )


def run_jobs(
    slugs: list[str],
    *,
    scale: str = "auto",
    device: str = "auto",
    seed: int = 0,
    data_dir: str | None = None,
    out: Path | str | None = None,
    executor: str | Executor = "local",
    reuse: bool = True,
    store: bool = True,
    progress: bool = True,
    echo: Any = None,
) -> list[Outcome]:
    """Plan (reuse or job) and execute `slugs`; an outcome per slug, in `slugs`' order.

    Shared by the nightly and by `repro run --executor/--reuse`. `echo(text)` reports progress.
    """
    from catalog.db import get_engine
    from repro.runner import default_out_dir

    say = echo or (lambda _text: None)
    runner = make_executor(executor) if isinstance(executor, str) else executor
    out_dir = Path(out).resolve() if out is not None else default_out_dir()
    if store or reuse:
        get_engine()  # migrate once here, before jobs on other processes open the catalog
    outcomes: dict[str, Outcome] = {}
    jobs: list[Job] = []
    for slug in slugs:
        try:
            planned = plan_job(
                slug,
                runner,
                scale=scale,
                device=device,
                seed=seed,
                data_dir=data_dir,
                out=out_dir,
                store=store,
                reuse=reuse,
                progress=progress,
            )
        except ReproError as exc:
            outcomes[slug] = Outcome(slug, scale, "error", error=str(exc))
            say(f"{slug}: error: {exc}")
            continue
        except Exception as exc:  # a broken folder must not stop the others
            outcomes[slug] = Outcome(slug, scale, "error", error=f"{type(exc).__name__}: {exc}")
            say(f"{slug}: error: {type(exc).__name__}: {exc}")
            continue
        if isinstance(planned, Outcome):
            outcomes[slug] = planned
            say(f"{slug}: reused {planned.summary['reused_from']} (same run key)")
        else:
            jobs.append(planned)
    for job in jobs:
        say(f"{job.slug}: running at {job.scale} on {runner.name}")
    for outcome in runner.run(jobs):
        outcomes[outcome.slug] = outcome
        say(
            f"{outcome.slug}: {outcome.status}" + (f" ({outcome.run_id})" if outcome.run_id else "")
        )
    return [outcomes[slug] for slug in slugs if slug in outcomes]


def run_one(
    slug: str,
    *,
    scale: str = "auto",
    device: str = "auto",
    seed: int = 0,
    data_dir: str | None = None,
    out: Path | str | None = None,
    executor: str = "local",
    reuse: bool = False,
    store: bool = True,
    progress: bool = True,
) -> RunResult:
    """`repro run SLUG --executor slurm` / `--reuse`: one reproduction through an executor, with
    optional reuse; a `repro.runner.RunResult` like `run_reproduction`'s. `ReproError` when no run
    came out of it (broken folder, the job died)."""
    from repro.runner import RunResult

    (outcome,) = run_jobs(
        [slug],
        scale=scale,
        device=device,
        seed=seed,
        data_dir=str(data_dir) if data_dir is not None else None,
        out=out,
        executor=executor,
        reuse=reuse,
        store=store,
        progress=progress,
    )
    if outcome.summary is None or outcome.run_dir is None:
        raise ReproError(f"{slug}: {outcome.error or 'no run was produced'}")
    return RunResult(
        run_dir=Path(outcome.run_dir),
        summary=outcome.summary,
        stored=outcome.stored,
        warnings=outcome.warnings,
    )


# --------------------------------------------------------------------------- the nightly


def _entries(outcomes: list[Outcome]) -> list[Entry]:
    """Entries with drift and paper status, read back from the catalog."""
    from catalog.compare import paper_status
    from catalog.db import session_scope
    from catalog.drift import drift_for_run
    from catalog.models import Run
    from catalog.runs import latest_runs

    entries = []
    with session_scope() as session:
        for outcome in outcomes:
            entry = Entry(
                outcome.slug,
                outcome.scale,
                outcome.status,
                error=outcome.error,
                warnings=outcome.warnings,
            )
            entries.append(entry)
            summary = outcome.summary
            if summary is None:
                continue
            entry.run_id, entry.run_dir = summary["run_id"], outcome.run_dir
            entry.scale = summary["scale"]
            entry.reused_from = summary.get("reused_from")
            if summary.get("status") == "failed":
                entry.error = _last_line(summary.get("error") or "")
            holds = [c.get("holds") for c in summary.get("claims", [])]
            entry.claims = {
                "holds": holds.count(True),
                "fails": holds.count(False),
                "not_evaluated": holds.count(None),
            }
            for row in summary.get("rows", []):
                entry.verdicts[row["verdict"]] = entry.verdicts.get(row["verdict"], 0) + 1
            run = session.get(Run, summary["run_id"])
            if run is None:
                entry.warnings.append("the run is not in the catalog (not stored)")
                continue
            drift = drift_for_run(session, run)
            entry.base_run_id = drift.base_run_id
            entry.changes = drift.to_dict()["changes"]
            history = [r.summary for r in latest_runs(session, outcome.slug, limit=1000)]
            entry.paper_status = paper_status(history, reproductions=[outcome.slug]).label
    return entries


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def run_nightly(
    *,
    scale: str = "auto",
    only: list[str] | None = None,
    force: bool = False,
    executor: str | Executor = "local",
    device: str = "auto",
    seed: int = 0,
    data_dir: str | None = None,
    out: Path | str | None = None,
    site: Path | str | None = None,
    progress: bool = True,
    echo: Any = None,
) -> NightlyReport:
    """Run (or reuse) every reproduction, store every run, measure drift, rebuild the site."""
    from repro.runner import default_out_dir

    runner = make_executor(executor) if isinstance(executor, str) else executor
    slugs = nightly_slugs(only)
    out = Path(out).resolve() if out is not None else default_out_dir()
    outcomes = run_jobs(
        slugs,
        scale=scale,
        device=device,
        seed=seed,
        data_dir=data_dir,
        out=out,
        executor=runner,
        reuse=not force,
        store=True,
        progress=progress,
        echo=echo,
    )
    report = NightlyReport(scale=scale, executor=runner.name, entries=_entries(outcomes))
    if site is not None:
        # Through the `catalog publish` command: only the CLI reaches the site builder (repro ->
        # catalog), and a site bug, whatever it is, cannot hide the night's summary.
        import subprocess

        command = [sys.executable, "-m", "catalog.cli", "publish", "--out", str(site)]
        built = subprocess.run(
            [*command, "--runs-dir", str(out)], capture_output=True, text=True, check=False
        )
        if built.returncode == 0:
            report.site = str(Path(site).resolve())
        else:
            lines = [line.strip() for line in built.stderr.splitlines() if line.strip()]
            report.site_error = (
                lines[-1].removeprefix("error: ") if lines else f"exit status {built.returncode}"
            )
    return report


# --------------------------------------------------------------------------- output


def print_report(report: NightlyReport, console: Any = None) -> None:
    """The end-of-night summary: a table per reproduction, then the changes, then the verdict."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console()
    style = {"succeeded": "green", "reused": "cyan", "failed": "red", "error": "red"}
    table = Table(title=f"nightly · scale {report.scale} · executor {report.executor}")
    for column in ("reproduction", "scale", "run", "status", "paper", "claims", "rows", "changes"):
        table.add_column(column, overflow="fold")
    for e in report.entries:
        claims = (
            f"{e.claims['holds']} hold, {e.claims['fails']} fail, {e.claims['not_evaluated']} n/a"
            if e.claims
            else ""
        )
        rows = ", ".join(f"{n} {v}" for v, n in sorted(e.verdicts.items()))
        changes = (
            "first run"
            if e.run_id and e.base_run_id is None and not e.changes
            else f"{len(e.changes)}"
            + (f" ({len(e.regressions)} REGRESSION)" if e.regressions else "")
        )
        status = f"[{style.get(e.status, 'white')}]{e.status}[/]"
        if e.reused_from:
            status += f"\nfrom {escape(e.reused_from)}"
        table.add_row(
            escape(e.slug),
            e.scale,
            escape(e.run_id or "-"),
            status,
            escape(e.paper_status),
            claims,
            rows,
            changes if e.run_id else "",
        )
    console.print(table)
    for e in report.entries:
        if e.error:
            console.print(f"[red]{escape(e.slug)}[/red]: {escape(e.error)}", soft_wrap=True)
        for warning in e.warnings:
            console.print(f"[yellow]{escape(e.slug)}[/yellow]: {escape(warning)}", soft_wrap=True)
    changed = [e for e in report.entries if e.changes]
    if changed:
        console.print("[bold]Changes since the previous run[/bold]")
    for e in changed:
        console.print(f"  {escape(e.slug)} ({e.scale}, against {escape(e.base_run_id or '-')}):")
        for change in e.changes:
            mark = "[red]REGRESSION[/red] " if change.get("regression") else ""
            console.print(
                f"    {mark}{change['kind']} {escape(change['id'])}: "
                f"{escape(change['detail'].removeprefix('REGRESSION: '))}",
                soft_wrap=True,
            )
    if report.site:
        console.print(f"site: {escape(report.site)}/index.html")
    if report.site_error:
        console.print(f"[red]site not built:[/red] {escape(report.site_error)}")
    counts = ", ".join(f"{n} {s}" for s, n in sorted(report.counts().items()))
    if report.regressions:
        console.print(
            f"[red]{len(report.regressions)} claim regression(s)[/red] ({counts}): exit 1"
        )
    else:
        console.print(f"no claim regression ({counts})")


def main(argv: list[str] | None = None) -> int:
    """`python -m repro.nightly ARGS`: runs `repro nightly ARGS`, returns its exit code."""
    from typer.main import get_command

    from repro.cli import app

    command = get_command(app).commands["nightly"]  # type: ignore[attr-defined]
    try:
        command.main(args=argv, prog_name="python -m repro.nightly", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
