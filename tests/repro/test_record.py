"""The notebooks' recorder (`repro.record`): results.json after every call, replacement rules,
number checks, figures, and reading the file back."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from repro import ReproError
from repro.record import Recorder, read_results


def on_disk(folder: Path) -> dict:
    return json.loads((folder / "results.json").read_text())


def test_every_call_rewrites_results_json(tmp_path: Path, capsys) -> None:
    rec = Recorder(tmp_path / "run")
    assert on_disk(tmp_path / "run")["rows"] == []  # written at once: an early crash leaves a file
    rec.row("a", 12.5, dataset="mnist", eps=np.float32(0.25))
    assert on_disk(tmp_path / "run")["rows"] == [
        {"id": "a", "value": 12.5, "info": {"dataset": "mnist", "eps": 0.25}}
    ]
    rec.metric("seconds", torch.tensor(3.0))
    rec.not_run("b", "CIFAR-10 is not available offline")
    data = on_disk(tmp_path / "run")
    assert data["metrics"] == [{"name": "seconds", "value": 3.0}]
    assert data["not_run"] == [{"id": "b", "reason": "CIFAR-10 is not available offline"}]
    assert data["schema_version"] == 1
    assert "[record] row a = 12.5" in capsys.readouterr().out


def test_recording_again_replaces(tmp_path: Path) -> None:
    rec = Recorder(tmp_path, echo=False)
    rec.row("a", 1)
    rec.row("b", 2)
    rec.row("a", 3)  # replaced in place
    assert [(r["id"], r["value"]) for r in on_disk(tmp_path)["rows"]] == [("a", 3.0), ("b", 2.0)]
    rec.not_run("a", "gave up")  # a not_run replaces the row ...
    rec.row("b", 4)
    data = on_disk(tmp_path)
    assert [r["id"] for r in data["rows"]] == ["b"] and data["not_run"][0]["id"] == "a"
    rec.row("a", 5)  # ... and a row replaces the not_run
    assert on_disk(tmp_path)["not_run"] == []


@pytest.mark.parametrize("value", [math.nan, math.inf, "12", True, None, torch.ones(2)])
def test_values_must_be_finite_numbers(tmp_path: Path, value) -> None:
    rec = Recorder(tmp_path, echo=False)
    with pytest.raises(ReproError, match="row a"):
        rec.row("a", value)
    assert on_disk(tmp_path)["rows"] == []


def test_ids_and_reasons_are_checked(tmp_path: Path) -> None:
    rec = Recorder(tmp_path, echo=False)
    with pytest.raises(ReproError, match="row id"):
        rec.row("has space", 1.0)
    with pytest.raises(ReproError, match="give a reason"):
        rec.not_run("a", "  ")
    with pytest.raises(ReproError, match="figure name"):
        rec.figure(object(), "../escape", "x")


def test_figure_is_saved_and_recorded(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rec = Recorder(tmp_path, echo=False)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = rec.figure(fig, "curve", "a falling line")
    plt.close(fig)
    assert path == tmp_path / "figures" / "curve.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert on_disk(tmp_path)["figures"] == [
        {"path": "figures/curve.png", "caption": "a falling line"}
    ]


def test_read_results(tmp_path: Path) -> None:
    assert read_results(tmp_path)["rows"] == []  # the notebook never got to write one
    rec = Recorder(tmp_path, echo=False)
    rec.row("a", 1.5)
    rec.metric("m", 2)
    back = read_results(tmp_path)
    assert back["rows"] == [{"id": "a", "value": 1.5, "info": {}}]
    assert back["metrics"] == [{"name": "m", "value": 2.0}]
    (tmp_path / "results.json").write_text("{\n  oops")
    with pytest.raises(ReproError, match=r"results\.json:2: malformed JSON"):
        read_results(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps({"schema_version": 1, "rows": [{"x": 1}]}))
    with pytest.raises(ReproError, match=r"rows\[0\] needs a string 'id'"):
        read_results(tmp_path)
