"""Claims (`repro.claims`): reading results, holds / fails / not evaluated, and loading a
`claims.py` by file path with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from repro import ReproError
from repro.claims import Claim, Missing, Results, evaluate, load_claims

RESULTS = Results({"clean": 99.0, "fgsm": 10.0}, {"seconds": 5.0}, {"cifar": "no CIFAR-10"})


def test_results_access() -> None:
    assert RESULTS["clean"] == 99.0 and RESULTS.metric("seconds") == 5.0
    assert "clean" in RESULTS and "cifar" not in RESULTS
    assert RESULTS.get("absent") is None and RESULTS.get("absent", 1.0) == 1.0
    with pytest.raises(Missing, match="row cifar was not run \\(no CIFAR-10\\)"):
        RESULTS["cifar"]
    with pytest.raises(Missing, match="row absent was not recorded"):
        RESULTS["absent"]
    with pytest.raises(Missing, match="metric absent"):
        RESULTS.metric("absent")


def test_from_results_json_shape() -> None:
    r = Results.from_results(
        {
            "rows": [{"id": "a", "value": 1.0, "info": {}}],
            "metrics": [{"name": "m", "value": 2.0}],
            "not_run": [{"id": "b", "reason": "why"}],
        }
    )
    assert (r["a"], r.metric("m"), r.not_run) == (1.0, 2.0, {"b": "why"})
    assert r.per_image("a") is None
    # A row's or a metric's per-image vector (info["correct"], repro.stats.pack_bits) is kept.
    r = Results.from_results(
        {
            "rows": [{"id": "a", "value": 0.5, "info": {"correct": "2:80", "n": 2}}],
            "metrics": [{"name": "m", "value": 1.0, "info": {"correct": "1:80"}}],
        }
    )
    assert (r.per_image("a"), r.per_image("m"), r.per_image("absent")) == ("2:80", "1:80", None)


def test_evaluate_holds_fails_and_not_evaluated() -> None:
    claims = [
        Claim("drops", "FGSM drops accuracy", lambda r: (r["fgsm"] < r["clean"] / 2, "10 < 49.5")),
        Claim("robust", "accuracy stays high", lambda r: (r["fgsm"] > 90, "10 <= 90")),
        Claim("cifar", "holds on CIFAR-10", lambda r: (r["cifar"] > 0, "")),
        Claim("buggy", "a buggy check", lambda r: (1 / 0, "")),
        Claim("bare", "a bare bool", lambda r: r["clean"] > 50),
    ]
    out = {c["id"]: (c["holds"], c["detail"]) for c in evaluate(claims, RESULTS)}
    assert out["drops"] == (True, "10 < 49.5")
    assert out["robust"] == (False, "10 <= 90")
    assert out["cifar"] == (None, "not evaluated: row cifar was not run (no CIFAR-10)")
    assert out["buggy"][0] is None and "ZeroDivisionError" in out["buggy"][1]
    assert out["bare"] == (True, "")


def write(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "claims.py").write_text(text)
    return folder


def test_load_claims_by_path(tmp_path: Path) -> None:
    folder = write(
        tmp_path / "paper",
        "from repro.claims import Claim\n"
        "CLAIMS = [Claim('a', 'clean is high', lambda r: (r['clean'] > 90, 'ok'))]\n",
    )
    (claim,) = load_claims(folder)
    assert claim.id == "a" and claim.check(RESULTS) == (True, "ok")
    assert load_claims(folder / "claims.py")[0].id == "a"
    assert load_claims(tmp_path / "nothing") == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("CLAIMS = [\n", r"claims\.py:1: import failed: SyntaxError"),
        ("import no_such_module_here\n", "ModuleNotFoundError"),
        ("X = 1\n", "CLAIMS must be a list of repro.claims.Claim"),
        ("CLAIMS = ['a']\n", "CLAIMS must be a list"),
        (
            "from repro.claims import Claim\n"
            "CLAIMS = [Claim('a', 't', lambda r: (True, '')), Claim('a', 't', lambda r: (True, ''))]\n",
            "duplicate claim id 'a'",
        ),
    ],
)
def test_load_claims_errors(tmp_path: Path, text: str, message: str) -> None:
    folder = write(tmp_path / "paper", text)
    with pytest.raises(ReproError, match=message):
        load_claims(folder)
