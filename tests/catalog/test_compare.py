"""`catalog.compare`: one run's comparison, several runs merged, the best scale per row."""

from __future__ import annotations

from typing import Any

from catalog.compare import best_per_row, compare_run, comparison_frame, records, verdict_counts
from catalog.schema import ExpectedRow


def exp(row_id: str, **kw: Any) -> ExpectedRow:
    base: dict[str, Any] = dict(
        id=row_id, source="Table 1", dataset="mnist", metric="accuracy", paper=0.9, tolerance=0.02
    )
    base.update(kw)
    return ExpectedRow(**base)


EXPECTED = [
    exp("a", setting={"model": "A"}, unit="fraction"),
    exp("b", setting={"model": "B"}, unit="fraction"),
    exp("c", status="not_run: CelebA is not here", paper=None, tolerance=None),
]


def summary(run_id: str, scale: str, started: str, values: dict[str, float]) -> dict[str, Any]:
    results = {"rows": [{"id": k, "value": v, "info": {}} for k, v in values.items()]}
    rows = records(compare_run(EXPECTED, results, scale))
    return {"run_id": run_id, "scale": scale, "started_at": started, "rows": rows}


def test_compare_run_is_json_ready_and_in_expected_order() -> None:
    frame = compare_run(
        EXPECTED, {"rows": [{"id": "zz", "value": 1.0}, {"id": "a", "value": 0.91}]}, "full"
    )
    rows = records(frame)
    assert [r["id"] for r in rows] == ["a", "b", "c", "zz"]
    assert rows[0] == {
        "id": "a", "value": 0.91, "paper": 0.9, "tolerance": 0.02, "delta": 0.01,
        "verdict": "match", "reason": None, "metric": "accuracy", "dataset": "mnist",
        "source": "Table 1",
    }  # fmt: skip
    assert rows[1]["value"] is None and rows[1]["verdict"] == "not_run"
    assert rows[2]["reason"] == "CelebA is not here"
    assert rows[3]["verdict"] == "not_compared" and rows[3]["paper"] is None


def test_best_per_row_prefers_full_then_the_newest_run() -> None:
    runs = [
        summary("s1", "small", "2026-11-01T00:00:00+00:00", {"a": 0.70, "b": 0.5}),
        summary("s2", "small", "2026-11-02T00:00:00+00:00", {"a": 0.75}),
        summary("f1", "full", "2026-10-01T00:00:00+00:00", {"a": 0.95}),
        summary("m1", "smoke", "2026-11-03T00:00:00+00:00", {"a": 0.1, "b": 0.2}),
    ]
    frame = comparison_frame(EXPECTED, runs)
    assert len(frame[frame["id"] == "a"]) == 4  # long form: one line per row x run
    best = best_per_row(frame).set_index("id")
    assert list(best.index) == ["a", "b", "c"]
    assert (best.loc["a", "run_id"], best.loc["a", "value"], best.loc["a", "verdict"]) == (
        "f1",
        0.95,
        "deviates",
    )
    # b: small s2 did not record it (not_run), s1 did: a value beats a newer not_run
    assert (best.loc["b", "run_id"], best.loc["b", "value"]) == ("s1", 0.5)
    assert best.loc["a", "setting"] == {"model": "A"} and best.loc["a", "unit"] == "fraction"
    assert best.loc["c", "verdict"] == "not_run"
    assert verdict_counts(best_per_row(frame)) == {
        "match": 0, "deviates": 1, "not_compared": 1, "not_run": 1,
    }  # fmt: skip


def test_rows_no_run_reports_say_why() -> None:
    best = best_per_row(comparison_frame(EXPECTED, [])).set_index("id")
    assert best.loc["a", "reason"] == "no run yet" and best.loc["a", "verdict"] == "not_run"
    assert best.loc["c", "reason"] == "CelebA is not here"


def test_rows_a_run_recorded_but_the_paper_lacks_are_kept_last() -> None:
    run = summary("s1", "small", "2026-11-01T00:00:00+00:00", {"typo": 1.0, "a": 0.8})
    best = best_per_row(comparison_frame(EXPECTED, [run]))
    assert list(best["id"]) == ["a", "b", "c", "typo"]
    assert best.iloc[-1]["verdict"] == "not_compared"
