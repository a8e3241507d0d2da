"""The `repro` command line: `run` (exit codes, --strict, a failing notebook), `list`, `show`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from repro.cli import app

runner = CliRunner()
SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def only_run_dir(out: Path) -> Path:
    (run_dir,) = (out / "tinyfake").iterdir()
    return run_dir


@SQLITE
def test_list_json_and_table(tinyfake: Path) -> None:
    result = runner.invoke(app, ["list", "--json"])
    assert result.exit_code == 0, result.output
    items = {item["slug"]: item for item in json.loads(result.stdout)}
    assert items["tinyfake"] == {
        "slug": "tinyfake",
        "key": "2015_Goodfellow_I_p-iclr_ehae",
        "title": "Tiny fake reproduction (runner tests)",
        "datasets": ["mnist"],
        "uses": [],
        "scales": ["smoke", "small", "full"],
        "has_notebook": True,
    }
    # CliRunner's stdout is not a terminal: a header and tab-separated rows, one per line
    plain = runner.invoke(app, ["list"])
    assert plain.exit_code == 0, plain.output
    lines = plain.stdout.splitlines()
    assert lines[0].split("\t") == [
        "slug",
        "key",
        "title",
        "datasets",
        "uses",
        "scales",
        "notebook",
    ]
    row = next(line.split("\t") for line in lines if line.startswith("tinyfake\t"))
    assert row == [
        "tinyfake",
        "2015_Goodfellow_I_p-iclr_ehae",
        "Tiny fake reproduction (runner tests)",
        "mnist",
        "",
        "smoke, small, full",
        "yes",
    ]
    assert all(len(line.split("\t")) == 7 for line in lines)


@pytest.mark.parametrize(
    ("tty", "columns", "layout"),
    [(False, 300, "plain"), (False, 40, "plain"), (True, 60, "blocks"), (True, 200, "table")],
)
def test_list_layout_follows_the_terminal(tty: bool, columns: int, layout: str) -> None:
    from repro.cli import list_layout

    assert list_layout(tty, columns) == layout


def test_narrow_layouts_keep_headers_whole() -> None:
    """A 60-column terminal: blocks carry every field; the table never folds a header."""
    from rich.console import Console

    from repro.cli import _list_blocks, _list_table

    item = {
        "slug": "defense_gan",
        "key": "2018_Samangouei_P_p-iclr_dpcaaugm",
        "title": "Defense-GAN: Protecting Classifiers Against Adversarial Attacks [x]",
        "datasets": ["mnist", "fashion_mnist"],
        "uses": ["fgsm"],
        "scales": ["smoke", "small"],
        "has_notebook": True,
    }
    console = Console(width=60, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(_list_blocks([item]), soft_wrap=True)
    text = console.export_text()
    assert "defense_gan  2018_Samangouei_P_p-iclr_dpcaaugm" in text
    assert "Attacks [x]" in text and "datasets: mnist, fashion_mnist · uses: fgsm" in text
    wide = Console(width=120, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    wide.print(_list_table([item]))
    table = wide.export_text()  # exporting clears the record: read it once
    assert "datasets" in table and "notebook" in table and "defense_gan" in table


@SQLITE
def test_list_reports_a_broken_folder_and_lists_the_rest(tinyfake: Path, project: Path) -> None:
    broken = project / "repro" / "zbroken"
    broken.mkdir()
    (broken / "repro.toml").write_text('title = "no key"\n')
    result = runner.invoke(app, ["list", "--json"])
    assert result.exit_code == 1
    assert "tinyfake" in {item["slug"] for item in json.loads(result.stdout)}
    assert "zbroken/repro.toml: 'key'" in result.stderr


@SQLITE
def test_show_lists_expected_rows_and_stored_runs(tinyfake: Path) -> None:
    from repro.runner import store_summary

    empty = runner.invoke(app, ["show", "tinyfake"], env={"COLUMNS": "200"})
    assert empty.exit_code == 0, empty.output
    assert "no runs recorded yet" in empty.stdout and "g_csv_not_run" in empty.stdout
    store_summary(
        {
            "schema_version": 1,
            "run_id": "20261121T000000Z-tinyfake-smoke-abcdef",
            "slug": "tinyfake",
            "scale": "smoke",
            "status": "succeeded",
            "started_at": "2026-11-21T00:00:00+00:00",
            "wall_seconds": 4.5,
            "rows": [{"id": "a_match", "value": 10.2, "verdict": "not_compared"}],
            "claims": [{"id": "a_small", "text": "a", "holds": True}],
        }
    )
    shown = runner.invoke(app, ["show", "tinyfake"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "20261121T000000Z-tinyfake-smoke-abcdef" in shown.stdout
    assert "1 not_compared" in shown.stdout and "1/1 hold" in shown.stdout


@SQLITE
def test_run_errors_are_one_line_and_exit_1(tinyfake: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", "nope", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: no reproduction 'nope'")
    assert len(result.stderr.strip().splitlines()) == 1
    bad_scale = runner.invoke(app, ["run", "tinyfake", "--scale", "huge", "--device", "cpu"])
    assert bad_scale.exit_code == 1 and "unknown scale" in bad_scale.stderr


@SQLITE
def test_run_on_missing_cuda_fails_fast(tinyfake: Path, tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = runner.invoke(app, ["run", "tinyfake", "--device", "cuda", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "CUDA is not available" in result.stderr
    assert not (tmp_path / "tinyfake").exists()


@pytest.mark.slow
@SQLITE
def test_full_scale_on_cpu_with_strict(tinyfake: Path, tmp_path: Path) -> None:
    """`full` on a CPU runs when asked explicitly (with a warning); a deviating row fails --strict."""
    from catalog.runs import load_summary
    from repro.runner import RunResult

    out = tmp_path / "runs"
    result = runner.invoke(
        app,
        ["run", "tinyfake", "--scale", "full", "--device", "cpu", "--out", str(out), "--strict"],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 2, result.output
    assert "strict: row b_far deviates (delta +5)" in result.stderr
    assert "meant for a GPU" in result.stderr
    assert "── cell 4/6: Record the first row" in result.stderr  # progress from the notebook
    assert "[record] row a_match = 10.2" in result.stderr
    summary = load_summary(only_run_dir(out))
    verdicts = {r["id"]: r["verdict"] for r in summary["rows"]}
    assert verdicts == {
        "a_match": "match",
        "b_far": "deviates",
        "c_other_dataset": "not_compared",
        "d_unverified": "not_compared",
        "e_skipped": "not_run",
        "f_never": "not_run",
        "g_csv_not_run": "not_run",
    }
    assert "deviates" in result.stdout and "stored in the catalog" in result.stdout
    assert RunResult(only_run_dir(out), summary).exit_code(strict=False) == 0


@pytest.mark.slow
@SQLITE
def test_failing_notebook_is_a_failed_run_with_traceback(tinyfake: Path, tmp_path: Path) -> None:
    from catalog.db import session_scope
    from catalog.runs import latest_runs, load_summary

    toml = tinyfake / "repro.toml"
    toml.write_text(toml.read_text().replace("fail = false", "fail = true", 1))
    out = tmp_path / "runs"
    result = runner.invoke(app, ["run", "tinyfake", "--scale", "smoke", "--device", "cpu",
                                 "--out", str(out), "--no-progress"])  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "failed" in result.stdout and "ValueError: boom" in result.stdout
    summary = load_summary(only_run_dir(out))
    assert summary["status"] == "failed"
    assert summary["error"].startswith("ValueError: boom: the fake notebook failed on purpose")
    assert "Traceback" in summary["error"] or "raise ValueError" in summary["error"]
    rows = {r["id"]: r for r in summary["rows"]}
    assert rows["a_match"]["value"] == 10.2  # recorded before the crash, kept
    assert rows["b_far"]["verdict"] == "not_run"
    assert "the run failed" in rows["b_far"]["reason"]
    assert (only_run_dir(out) / "reproduce.ipynb").is_file()
    with session_scope() as session:
        (run,) = latest_runs(session, "tinyfake")
        assert run.status == "failed" and "ValueError: boom" in run.error
