"""The runner (`repro.runner`): verdict rules, summaries, progress echo, kernel choice, expected.csv
and repro.toml reading, and one end-to-end run of the `tinyfake` reproduction stored in the catalog
(on SQLite and on PostgreSQL)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from catalog.compare import verdict_of
from repro import ReproError
from repro.claims import Claim
from repro.config import list_slugs, load_config, scale_params
from repro.expected import ExpectedRow, read_expected
from repro.notebook import _cell_titles, _kernel_manager_class, _NotebookEcho
from repro.runner import (
    RunResult,
    git_state,
    new_run_id,
    run_reproduction,
    summarize,
)


def exp(**kw: Any) -> ExpectedRow:
    base = dict(
        id="r", source="Table 1", dataset="mnist", metric="error_pct", paper=10.0, tolerance=1.0
    )
    base.update(kw)
    return ExpectedRow(**base)


# --------------------------------------------------------------------------- verdicts


@pytest.mark.parametrize(
    ("row", "value", "info", "scale", "verdict", "delta", "reason"),
    [
        (exp(), 10.9, {}, "full", "match", 0.9, None),
        (exp(), 9.0, {}, "full", "match", -1.0, None),  # the tolerance is inclusive
        (exp(), 11.2, {}, "full", "deviates", 1.2, None),
        (exp(), 8.5, {"dataset": "mnist"}, "full", "deviates", -1.5, None),
        (exp(), 10.1, {}, "small", "not_compared", 0.1, "small scale"),
        (exp(), 10.1, {}, "smoke", "not_compared", 0.1, "smoke scale"),
        (exp(), 10.1, {"dataset": "mnist-test-split"}, "full", "not_compared", None, "measured on"),
        (exp(provenance="unverified: unclear"), 10.0, {}, "full", "not_compared", 0.0, "unverif"),
        (exp(paper=None), 10.0, {}, "full", "not_compared", None, "no paper number"),
        (exp(tolerance=None), 10.0, {}, "full", "not_compared", 0.0, "no tolerance"),
    ],
)
def test_compare_row_verdicts(row, value, info, scale, verdict, delta, reason) -> None:
    out_delta, out_verdict, out_reason = verdict_of(row, value, info.get("dataset"), scale)
    assert out_verdict == verdict
    assert out_delta == (pytest.approx(delta) if delta is not None else None)
    if reason is None:
        assert out_reason is None
    else:
        assert reason in out_reason
    # the run's comparison (summary.json's rows) carries the same verdict and the value
    [row_out] = summarize([row], {"rows": [{"id": "r", "value": value, "info": info}]}, scale, [])[
        "rows"
    ]
    assert (row_out["verdict"], row_out["value"], row_out["reason"]) == (
        verdict,
        value,
        out_reason,
    )


def test_summarize_orders_rows_and_reports_every_kind_of_missing() -> None:
    expected = [
        exp(id="a"),
        exp(id="b"),
        exp(id="c"),
        exp(id="d", status="not_run: CelebA is not available"),
    ]
    results = {
        "rows": [{"id": "typo_row", "value": 1.0, "info": {}}, {"id": "a", "value": 10.0}],
        "not_run": [{"id": "b", "reason": "no CIFAR-10 here"}],
        "metrics": [{"name": "seconds", "value": 3.0}],
        "figures": [{"path": "figures/x.png", "caption": "x"}],
    }
    claims = [Claim("uses_a", "a is ten", lambda r: (r["a"] == 10.0, "a checked"))]
    body = summarize(expected, results, "full", claims)
    rows = {r["id"]: r for r in body["rows"]}
    assert [r["id"] for r in body["rows"]] == ["a", "b", "c", "d", "typo_row"]
    assert rows["a"]["verdict"] == "match"
    assert (rows["b"]["verdict"], rows["b"]["reason"]) == ("not_run", "no CIFAR-10 here")
    assert (rows["c"]["verdict"], rows["c"]["reason"]) == (
        "not_run",
        "not recorded by the notebook",
    )
    assert (rows["d"]["verdict"], rows["d"]["reason"]) == ("not_run", "CelebA is not available")
    assert (rows["typo_row"]["verdict"], rows["typo_row"]["reason"]) == (
        "not_compared",
        "not in expected.csv",
    )
    assert body["metrics"] == [{"name": "seconds", "value": 3.0}]
    assert body["figures"] == [{"path": "figures/x.png", "caption": "x"}]
    assert body["claims"] == [
        {"id": "uses_a", "text": "a is ten", "holds": True, "detail": "a checked"}
    ]
    failed = summarize(expected, results, "full", claims, failed=True)
    assert "the run failed" in {r["id"]: r for r in failed["rows"]}["c"]["reason"]


def summary_with(rows: list[dict[str, Any]], claims: list[dict[str, Any]], status="succeeded"):
    return {"run_id": "x", "status": status, "rows": rows, "claims": claims}


@pytest.mark.parametrize(
    ("status", "verdicts", "holds", "plain", "strict"),
    [
        ("succeeded", ["match", "not_compared", "not_run"], [True, None], 0, 0),
        ("succeeded", ["match", "deviates"], [True], 0, 2),
        ("succeeded", ["not_compared"], [False], 0, 2),
        ("failed", ["match"], [True], 1, 1),
    ],
)
def test_exit_codes(status, verdicts, holds, plain, strict) -> None:
    rows = [{"id": f"r{i}", "verdict": v, "delta": 1.0} for i, v in enumerate(verdicts)]
    claims = [{"id": f"c{i}", "holds": h} for i, h in enumerate(holds)]
    result = RunResult(run_dir=Path("."), summary=summary_with(rows, claims, status))
    assert result.exit_code() == plain
    assert result.exit_code(strict=True) == strict


# --------------------------------------------------------------------------- helpers


def test_run_id_is_sortable_and_unique() -> None:
    ids = {new_run_id("fgsm", "small") for _ in range(20)}
    assert len(ids) == 20
    assert all(i[:8].isdigit() and i[8] == "T" and "-fgsm-small-" in i for i in ids)


def test_git_state_outside_and_inside_a_repository(tmp_path: Path) -> None:
    assert git_state(tmp_path) == (None, None)
    if shutil.which("git") is None:
        pytest.skip("no git")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    assert git_state(tmp_path) == (None, False)  # no commit yet, nothing changed
    (tmp_path / "new.py").write_text("x = 1\n")
    assert git_state(tmp_path) == (None, True)  # untracked files count as dirty


def test_kernel_is_forced_to_this_interpreter() -> None:
    """Even a `python3` kernelspec naming another Python runs the notebook with ours."""
    from jupyter_client.kernelspec import KernelSpec

    manager_class = _kernel_manager_class()
    manager = manager_class(kernel_name="python3")
    foreign = KernelSpec(
        argv=["/usr/bin/python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        language="python",
        display_name="other",
    )
    manager._kernel_spec = foreign
    assert manager.kernel_spec.argv[0] == sys.executable
    assert manager.kernel_spec.argv[1:3] == ["-m", "ipykernel_launcher"]


def test_cell_titles_count_the_injected_parameters_cell() -> None:
    import jupytext

    source = (
        '# %% [markdown]\n# # Title\n\n# %% tags=["parameters"]\nscale = "smoke"\n\n'
        "# %%\n# Record the first row\nimport sys\n\n# %%\nx = 1\n"
    )
    nb = jupytext.reads(source, fmt="py:percent")
    titles = _cell_titles(nb)
    assert titles[0] == "5"  # markdown, parameters, injected parameters, two code cells
    assert titles[2] == 'scale = "smoke"'
    assert titles[3] == "(injected parameters)"
    assert titles[4] == "Record the first row"
    assert titles[5] == "x = 1"
    assert 1 not in titles  # markdown cells are not announced


class FakeStream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def _record(message: str, func: str = "log_output_message", level: int = 20):
    import logging

    record = logging.LogRecord("papermill", level, __file__, 1, message, None, None)
    record.funcName = func
    return record


def test_echo_shows_cells_and_throttles_redraws_when_not_a_terminal() -> None:
    stream = FakeStream(tty=False)
    echo = _NotebookEcho(stream, {0: "3", 2: "train the model"}, throttle_s=3600)
    echo.emit(_record("Executing Cell 2---------", func="cell_start"))
    echo.emit(_record("\rtrain:  10%|#"))
    echo.emit(_record("\rtrain:  20%|##"))  # within the throttle: dropped
    echo.emit(_record("\rtrain: 100%|#####\n"))  # a finished line always shows
    echo.emit(_record("[record] row a = 1\n"))
    echo.emit(_record("Executing Cell 1---------", func="cell_start"))  # markdown: silent
    lines = stream.getvalue().splitlines()
    assert lines == [
        "── cell 2/3: train the model",
        "train:  10%|#",
        "train: 100%|#####",
        "[record] row a = 1",
    ]


def test_echo_passes_redraws_through_to_a_terminal() -> None:
    stream = FakeStream(tty=True)
    echo = _NotebookEcho(stream, {0: "1"})
    echo.emit(_record("\rtrain:  10%|#"))
    echo.emit(_record("\rtrain:  20%|##"))
    assert stream.getvalue() == "\rtrain:  10%|#\rtrain:  20%|##"


# --------------------------------------------------------------------------- expected.csv


def test_read_expected(tmp_path: Path) -> None:
    path = tmp_path / "expected.csv"
    path.write_text(
        "id,source,dataset,metric,paper,tolerance,higher_is_better,provenance,status,eps\n"
        "a,Table 1,mnist,error_pct,1.5,0.5,false,arXiv p.1,,0.3\n"
        "b,Table 2,celeba,accuracy_pct,,,true,unverified: blurry,not_run: no CelebA,\n"
    )
    a, b = read_expected(path)
    assert (a.id, a.paper, a.tolerance, a.higher_is_better, a.setting) == (
        "a",
        1.5,
        0.5,
        False,
        {"eps": 0.3},  # numbers are numbers (catalog.schema.parse_setting_value)
    )
    assert a.not_run_reason is None and not a.unverified and a.line == 2
    assert (b.paper, b.tolerance, b.not_run_reason, b.unverified) == (None, None, "no CelebA", True)
    assert read_expected(tmp_path / "absent.csv") == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id,source,dataset,metric,paper\n", "missing required column(s) tolerance"),
        (
            "id,source,dataset,metric,paper,tolerance\na,T,m,e,x,1\n",
            ":2: row a: column 'paper': 'x'",
        ),
        ("id,source,dataset,metric,paper,tolerance\na,T,m,e,1,1\na,T,m,e,1,1\n", "duplicate id"),
        ("id,source,dataset,metric,paper,tolerance\na b,T,m,e,1,1\n", "snake_case"),
        ("id,source,dataset,metric,paper,tolerance\na,T,m,e,1,-1\n", "negative"),
        ("id,source,dataset,metric,paper,tolerance,status\na,T,m,e,1,1,skip\n", "status"),
        ("id,source,dataset,metric,paper,tolerance\na,,m,e,1,1\n", "'source' is empty"),
    ],
)
def test_read_expected_rejects_bad_input(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "expected.csv"
    path.write_text(text)
    with pytest.raises(ReproError, match=r"expected\.csv") as info:
        read_expected(path)
    assert message in str(info.value)


def test_every_expected_csv_of_the_project_reads() -> None:
    """The real folders' tables parse (a typo there would only show up at run time)."""
    root = Path(__file__).resolve().parents[2] / "repro"
    for path in sorted(root.glob("*/expected.csv")):
        assert read_expected(path), path


# --------------------------------------------------------------------------- repro.toml


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_config(tinyfake: Path) -> None:
    assert "tinyfake" in list_slugs()
    config = load_config("tinyfake")
    assert (config["key"], config["datasets"], config["notebook"]) == (
        "2015_Goodfellow_I_p-iclr_ehae",
        ["mnist"],
        True,
    )
    assert scale_params("tinyfake", "smoke") == {"b": 25.0, "fail": False}
    with pytest.raises(ReproError, match="no reproduction 'nope'"):
        load_config("nope")
    with pytest.raises(ReproError, match="not a reproduction slug"):
        load_config("../etc")
    with pytest.raises(ReproError, match="unknown"):
        scale_params("tinyfake", "huge")
    toml = tinyfake / "repro.toml"
    toml.write_text(toml.read_text().replace('slug = "tinyfake"', 'slug = "other"'))
    with pytest.raises(ReproError, match="differs from its folder name"):
        load_config("tinyfake")
    toml.write_text("key = [\n")
    with pytest.raises(ReproError, match="invalid TOML"):
        load_config("tinyfake")


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_smoke_run_end_to_end_is_stored(tinyfake: Path, tmp_path: Path) -> None:
    """One real papermill run: summary.json valid, verdicts at smoke, claims, figure, notebook,
    the kernel on this interpreter, and the run in the catalog (SQLite and PostgreSQL)."""
    from catalog.db import session_scope
    from catalog.runs import latest_runs, load_summary

    result = run_reproduction("tinyfake", scale="smoke", device="cpu", out=tmp_path / "runs")
    assert result.ok and result.stored and result.exit_code(strict=True) == 0
    run_dir = result.run_dir
    assert run_dir.parent == (tmp_path / "runs" / "tinyfake").resolve()
    summary = load_summary(run_dir)
    assert summary == result.summary
    assert (summary["slug"], summary["scale"], summary["status"], summary["seed"]) == (
        "tinyfake",
        "smoke",
        "succeeded",
        0,
    )
    assert summary["parameters"] == {
        "scale": "smoke",
        "device": "cpu",
        "seed": 0,
        "data_dir": None,
        "out_dir": str(run_dir),
    }
    assert summary["provenance"]["device"] == "cpu"
    assert summary["provenance"]["executor"] == "local"
    assert summary["provenance"]["python"] and summary["provenance"]["torch"]
    verdicts = {r["id"]: (r["verdict"], r["reason"]) for r in summary["rows"]}
    assert verdicts["a_match"][0] == verdicts["b_far"][0] == "not_compared"
    assert verdicts["c_other_dataset"][1].startswith("measured on mnist-test-split")
    assert verdicts["e_skipped"] == ("not_run", "CIFAR-10 is not available offline")
    assert verdicts["f_never"] == ("not_run", "not recorded by the notebook")
    assert verdicts["g_csv_not_run"] == ("not_run", "CelebA is not available")
    assert [c["holds"] for c in summary["claims"]] == [True, True, None]
    assert summary["metrics"] == [{"name": "seed_used", "value": 0.0}]
    assert summary["figures"] == [{"path": "figures/line.png", "caption": "a line"}]
    assert (run_dir / "figures" / "line.png").stat().st_size > 0
    notebook = json.loads((run_dir / "reproduce.ipynb").read_text())
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"
    results = json.loads((run_dir / "results.json").read_text())
    assert results["rows"][0]["info"]["python"] == sys.executable
    with session_scope() as session:
        (run,) = latest_runs(session, "tinyfake")
        assert (run.id, run.status, run.scale, run.device) == (
            summary["run_id"],
            "succeeded",
            "smoke",
            "cpu",
        )
        assert run.run_dir == str(run_dir)
        assert {m.row_id for m in run.measurements if m.row_id} == set(verdicts)
        assert {c.claim_id: c.holds for c in run.claims}["needs_f"] is None
        assert {a.kind for a in run.artifacts} == {"figure", "notebook"}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_errors_before_the_run_leave_nothing_behind(tinyfake: Path, tmp_path: Path) -> None:
    (tinyfake / "claims.py").write_text("CLAIMS = [1, 2\n")
    out = tmp_path / "runs"
    with pytest.raises(ReproError, match=r"claims.py:1: import failed: SyntaxError"):
        run_reproduction("tinyfake", scale="smoke", device="cpu", out=out)
    with pytest.raises(ReproError, match="no reproduction"):
        run_reproduction("nope", scale="smoke", device="cpu", out=out)
    (tinyfake / "repro.toml").write_text(
        'key = "k"\n[metrics]\nerror_pct = "percent"\naccuracy_pct = "percent"\n'
        "[scales.smoke]\nb = 1\n"
    )
    with pytest.raises(ReproError, match=r"no \[scales.small\]"):
        run_reproduction("tinyfake", scale="small", device="cpu", out=out)
    assert not out.exists()
