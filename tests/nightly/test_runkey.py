"""Run keys: what goes into them changes them, what does not leaves them alone; reuse of runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from catalog.db import session_scope
from catalog.runs import store_run
from repro import ReproError
from repro.runkey import (
    code_files,
    compute_run_key,
    data_checksums,
    dependents,
    find_reusable,
    key_inputs,
    reuse_run,
    uses_closure,
)

from .conftest import make_tiny_project, summary, write_reproduction

PARAMS = {"scale": "smoke", "device": "cpu", "seed": 0, "data_dir": None}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_tiny_project(tmp_path / "project")


def key(root: Path, slug: str, **params: object) -> str:
    merged = {**PARAMS, **params}
    scale = str(merged["scale"])
    return compute_run_key(slug, scale=scale, parameters=merged, data={}, root=root)


def all_keys(root: Path) -> dict[str, str]:
    return {slug: key(root, slug) for slug in ("tinyfake", "tinyfake_user", "tinyfake_other")}


def test_key_is_stable_and_a_sha256(root: Path) -> None:
    first, second = key(root, "tinyfake"), key(root, "tinyfake")
    assert first == second
    assert first.startswith("sha256:") and len(first) == len("sha256:") + 64
    assert len(set(all_keys(root).values())) == 3


def test_editing_a_folder_rekeys_it_and_its_users_only(root: Path) -> None:
    before = all_keys(root)
    with (root / "repro" / "tinyfake" / "attack.py").open("a") as handle:
        handle.write("def attack(x):\n    return x\n")
    after = all_keys(root)
    assert after["tinyfake"] != before["tinyfake"]
    assert after["tinyfake_user"] != before["tinyfake_user"]  # uses = ["tinyfake"]
    assert after["tinyfake_other"] == before["tinyfake_other"]
    assert dependents("tinyfake", sorted(before), root) == ["tinyfake", "tinyfake_user"]


def test_caches_and_bytecode_do_not_change_the_key(root: Path) -> None:
    before = key(root, "tinyfake")
    cache = root / "repro" / "tinyfake" / "__pycache__"
    cache.mkdir()
    (cache / "claims.cpython-311.pyc").write_bytes(b"\x00bytecode")
    (root / "repro" / "tinyfake" / "stray.pyc").write_bytes(b"\x00")
    (root / "repro" / "tinyfake" / ".ipynb_checkpoints").mkdir()
    (root / "repro" / "tinyfake" / ".ipynb_checkpoints" / "x.py").write_text("x")
    assert key(root, "tinyfake") == before


def test_renaming_a_file_changes_the_key(root: Path) -> None:
    before = key(root, "tinyfake")
    (root / "repro" / "tinyfake" / "__init__.py").rename(root / "repro" / "tinyfake" / "init2.py")
    assert key(root, "tinyfake") != before


def test_toolkit_change_rekeys_every_reproduction(root: Path) -> None:
    before = all_keys(root)
    (root / "repro" / "train.py").write_text("EPOCHS = 3\n")
    after = all_keys(root)
    assert all(after[slug] != before[slug] for slug in before)
    assert "repro/train.py" in code_files("tinyfake_other", root)


def test_uses_are_followed_transitively_and_cycles_end(root: Path) -> None:
    write_reproduction(root, "tinyfake_deep", uses=["tinyfake_user"])
    assert uses_closure("tinyfake_deep", root) == ["tinyfake_deep", "tinyfake", "tinyfake_user"]
    before = key(root, "tinyfake_deep")
    (root / "repro" / "tinyfake" / "__init__.py").write_text('"""changed"""\n')
    assert key(root, "tinyfake_deep") != before
    write_reproduction(root, "tinyfake", uses=["tinyfake_deep"])  # a cycle
    assert set(uses_closure("tinyfake", root)) == {"tinyfake", "tinyfake_user", "tinyfake_deep"}


def test_unknown_use_is_a_clear_error(root: Path) -> None:
    write_reproduction(root, "tinyfake_other", uses=["no_such_folder"])
    with pytest.raises(ReproError, match=r"repro/no_such_folder/: no such reproduction folder"):
        key(root, "tinyfake_other")


def test_parameters_and_scale_are_in_the_key_paths_are_not(root: Path) -> None:
    base = key(root, "tinyfake")
    assert key(root, "tinyfake", seed=1) != base
    assert key(root, "tinyfake", device="cuda") != base
    assert key(root, "tinyfake", scale="small") != base
    assert key(root, "tinyfake", out_dir="/elsewhere", data_dir="/data") == base
    with pytest.raises(ReproError, match="resolve the scale"):
        key(root, "tinyfake", scale="auto")


def test_data_checksums_follow_availability(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    missing = data_checksums(["cifar10", "nonsense"])
    assert missing == {
        "cifar10": {"train": "unavailable", "test": "unavailable"},
        "nonsense": "unknown dataset",
    }
    batches = tmp_path / "data" / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (batches / name).write_bytes(b"")  # availability looks for the files, not their bytes
    present = data_checksums(["cifar10"])["cifar10"]
    assert present["test"] == ["test_batch:40351d587109b95175f43aff81a1287e"]
    assert len(present["train"]) == 5


def test_key_includes_the_datasets_of_repro_toml(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    toml = root / "repro" / "tinyfake_other" / "repro.toml"
    toml.write_text(toml.read_text().replace("datasets = []", 'datasets = ["cifar10"]'))
    inputs = key_inputs("tinyfake_other", scale="smoke", parameters=PARAMS, root=root)
    assert inputs["data"] == {"cifar10": {"train": "unavailable", "test": "unavailable"}}
    before = compute_run_key("tinyfake_other", scale="smoke", parameters=PARAMS, root=root)
    batches = tmp_path / "data" / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    (batches / "test_batch").write_bytes(b"")
    after = compute_run_key("tinyfake_other", scale="smoke", parameters=PARAMS, root=root)
    assert after != before  # CIFAR-10 became available: the rows that were not run can run now


def test_find_reusable_takes_only_successful_runs_with_the_key(db_url: str) -> None:
    with session_scope() as session:
        store_run(session, summary("r-failed", status="failed", run_key="sha256:k"))
        store_run(session, summary("r-other-scale", scale="small", run_key="sha256:k"))
        store_run(session, summary("r-other-key", run_key="sha256:x"))
    with session_scope() as session:
        assert find_reusable(session, "tinyfake", "smoke", "sha256:k") is None
        store_run(session, summary("r-good", run_key="sha256:k"))
    with session_scope() as session:
        found = find_reusable(session, "tinyfake", "smoke", "sha256:k")
        assert found is not None and found.id == "r-good"


def test_reuse_run_copies_the_record_and_the_files(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADVREPRO_ROOT", str(tmp_path))
    origin = tmp_path / "runs" / "tinyfake" / "r-orig"
    (origin / "figures").mkdir(parents=True)
    (origin / "figures" / "f.png").write_bytes(b"png")
    (origin / "reproduce.ipynb").write_text("{}")
    record = summary(
        "r-orig",
        run_key="sha256:k",
        notebook="reproduce.ipynb",
        figures=[{"path": "figures/f.png", "caption": "c"}],
    )
    (origin / "summary.json").write_text(json.dumps(record))
    with session_scope() as session:
        original = store_run(session, record, run_dir="runs/tinyfake/r-orig")
    new, run_dir = reuse_run(original, tmp_path / "runs", run_key="sha256:k")
    assert new["reused_from"] == "r-orig" and new["run_id"] != "r-orig"
    assert new["rows"] == record["rows"] and new["claims"] == record["claims"]
    assert new["wall_seconds"] == 0.0 and new["figures"] == record["figures"]
    assert run_dir == tmp_path / "runs" / "tinyfake" / new["run_id"]
    assert (run_dir / "figures" / "f.png").read_bytes() == b"png"
    assert json.loads((run_dir / "summary.json").read_text()) == new
    with session_scope() as session:
        second = store_run(session, new, run_dir=str(run_dir))
        again, _ = reuse_run(second, tmp_path / "runs")
    assert again["reused_from"] == "r-orig"  # a chain of reuses names the measuring run


def test_reuse_without_the_original_directory_lists_its_files_without_them(
    db_url: str, tmp_path: Path
) -> None:
    """What a GPU runner does: it has the catalog, not the earlier run directories."""
    record = summary("r-gone", notebook="reproduce.ipynb", figures=[{"path": "figures/f.png"}])
    with session_scope() as session:
        original = store_run(session, record, run_dir=str(tmp_path / "nowhere"))
    new, run_dir = reuse_run(original, tmp_path / "runs")
    assert new["figures"] == record["figures"] and new["notebook"] == "reproduce.ipynb"
    assert new["reused_from"] == "r-gone"
    assert sorted(p.name for p in run_dir.iterdir()) == ["summary.json"]
