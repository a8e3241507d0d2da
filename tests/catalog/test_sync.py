"""`catalog sync` on SQLite and PostgreSQL: the real lists, idempotence, vanished rows, prune."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from catalog import CatalogError
from catalog.db import session_scope
from catalog.runs import store_run
from catalog.sync import sync

FGSM = "2015_Goodfellow_I_p-iclr_ehae"
DEFENSE_GAN = "2018_Samangouei_P_p-iclr_dpcaaugm"


def scalar(sql: str, **params):
    with session_scope() as session:
        return session.execute(text(sql), params).scalar()


def rows(sql: str, **params):
    with session_scope() as session:
        return session.execute(text(sql), params).all()


def test_sync_imports_papers_lists_reviews_and_reproductions(synced) -> None:
    root, report = synced
    kinds = report.kinds
    n_bib = (root / "papers" / "references.bib").read_text().count("\n@")
    assert len(kinds["papers"].added) == scalar("SELECT COUNT(*) FROM paper") >= 32
    assert n_bib >= len(kinds["papers"].added)
    assert sorted(kinds["lists"].added) == [
        "adversarial-robustness",
        "defense-mechanisms",
        "papis-collection",
        "theories-of-deep-learning-lecture-13",
    ]
    assert len(kinds["list entries"].added) == 31
    assert report.unresolved == []
    reviews = sorted(p.stem for p in (root / "papers" / "reviews").glob("*.md"))
    assert sorted(kinds["reviews"].added) == reviews and DEFENSE_GAN in reviews
    assert kinds["reproductions"].added == ["demo"]
    assert sorted(kinds["expected rows"].added) == ["demo/cifar_row", "demo/maxout_fgsm_error"]
    # every list entry points at a paper; lists keep their own words
    assert scalar("SELECT COUNT(*) FROM listentry WHERE paper_key IS NULL") == 0
    assert rows(
        "SELECT paper_key, cited_arxiv_id, cited_url FROM listentry"
        " WHERE list_slug = 'adversarial-robustness' AND position = 1"
    ) == [(DEFENSE_GAN, "1801.02613", "https://arxiv.org/abs/1801.02613")]
    assert scalar("SELECT arxiv_id FROM paper WHERE key = :k", k=DEFENSE_GAN) == "1805.06605"
    # authors in order
    assert [
        r[0]
        for r in rows(
            "SELECT a.name FROM paperauthor pa JOIN author a ON a.id = pa.author_id"
            " WHERE pa.paper_key = :k ORDER BY pa.position",
            k=FGSM,
        )
    ] == ["Ian J. Goodfellow", "Jonathon Shlens", "Christian Szegedy"]


def test_expected_rows_and_reproduction_fields(synced) -> None:
    row = rows(
        "SELECT paper_value, tolerance, higher_is_better, provenance, setting, position, status,"
        " unit, paper_std FROM expectedresult WHERE row_id = 'cifar_row'"
    )[0]
    assert row[0] == 87.15 and row[1] == 2.0 and not row[2]
    assert row[3] == "unverified: memory"
    setting = row[4] if isinstance(row[4], dict) else json.loads(row[4])
    assert setting == {"model": "maxout", "eps": 0.1}  # status is a column, not a setting
    assert row[5] == 1
    assert row[6] == "not_run: CIFAR-10 is not available offline"
    assert row[7] == "percent"  # from repro.toml's [metrics]
    assert row[8] is None
    assert rows(
        "SELECT status, unit, position FROM expectedresult WHERE row_id = 'maxout_fgsm_error'"
    ) == [(None, "percent", 0)]
    repro = rows("SELECT paper_key, needs_gpu, has_notebook, path, title FROM reproduction")
    assert repro == [(FGSM, True, False, "repro/demo", "FGSM demo")]
    config = scalar("SELECT config FROM reproduction WHERE slug = 'demo'")
    config = config if isinstance(config, dict) else json.loads(config)
    assert config["metrics"] == {"error_pct": "percent"}
    assert config["scales"]["smoke"] == {"epochs": 1} and config["needs_gpu"] is True


def test_a_changed_status_is_one_update_then_nothing(synced) -> None:
    root, _ = synced
    csv_path = root / "repro" / "demo" / "expected.csv"
    csv_path.write_text(
        csv_path.read_text().replace(
            ",not_run: CIFAR-10 is not available offline,", ",not_run: still no CIFAR-10,"
        )
    )
    with session_scope() as session:
        report = sync(session, root)
    assert report.kinds["expected rows"].updated == ["demo/cifar_row"]
    assert [k for k, r in report.kinds.items() if r.added or r.updated] == ["expected rows"]
    assert scalar("SELECT status FROM expectedresult WHERE row_id = 'cifar_row'") == (
        "not_run: still no CIFAR-10"
    )
    with session_scope() as session:
        assert not sync(session, root).changed


def test_second_sync_changes_nothing(synced, db_dump) -> None:
    root, _ = synced
    before = db_dump()
    with session_scope() as session:
        again = sync(session, root)
    assert not again.changed
    for name, kind in again.kinds.items():
        assert (kind.added, kind.updated, kind.vanished) == ([], [], []), name
    assert again.kinds["papers"].unchanged == len(before["paper"])
    assert db_dump() == before


def test_edits_are_updates(synced) -> None:
    root, _ = synced
    bib = root / "papers" / "references.bib"
    bib.write_text(
        bib.read_text().replace(
            "title = {Explaining and Harnessing Adversarial Examples}",
            "title = {Explaining and Harnessing Adversarial Examples (revised)}",
        )
    )
    with session_scope() as session:
        report = sync(session, root)
    assert report.kinds["papers"].updated == [FGSM]
    assert report.kinds["papers"].added == []
    assert scalar("SELECT title FROM paper WHERE key = :k", k=FGSM).endswith("(revised)")


def test_vanished_rows_are_reported_and_deleted_only_with_prune(synced) -> None:
    root, _ = synced
    bib = root / "papers" / "references.bib"
    text_ = bib.read_text()
    start = text_.index("@inproceedings{2018_Ma_X_p-iclr_casulid")
    end = text_.index("\n}\n", start) + 3
    bib.write_text(text_[:start] + text_[end:])
    (root / "papers" / "lists" / "003_d3d7dbd6e3af61d6.txt").unlink()
    shutil.rmtree(root / "repro" / "demo")
    store_run_summary()
    with session_scope() as session:
        report = sync(session, root)
    assert report.kinds["papers"].vanished == ["2018_Ma_X_p-iclr_casulid"]
    assert report.kinds["lists"].vanished == ["papis-collection"]
    assert len(report.kinds["list entries"].vanished) == 8
    assert report.kinds["reproductions"].vanished == ["demo"]
    assert scalar("SELECT COUNT(*) FROM paper WHERE key = '2018_Ma_X_p-iclr_casulid'") == 1
    assert scalar("SELECT COUNT(*) FROM readinglist") == 4
    with session_scope() as session:
        pruned = sync(session, root, prune=True)
    assert pruned.kinds["papers"].pruned and pruned.kinds["papers"].vanished
    assert scalar("SELECT COUNT(*) FROM paper WHERE key = '2018_Ma_X_p-iclr_casulid'") == 0
    assert scalar("SELECT COUNT(*) FROM readinglist") == 3
    assert scalar("SELECT COUNT(*) FROM listentry WHERE list_slug = 'papis-collection'") == 0
    assert scalar("SELECT COUNT(*) FROM reproduction") == 0
    assert scalar("SELECT COUNT(*) FROM expectedresult") == 0
    # authors left without papers go too; runs are never touched by sync
    assert "Michael E. Houle" in pruned.kinds["authors"].vanished
    assert scalar("SELECT COUNT(*) FROM author WHERE name = 'Michael E. Houle'") == 0
    assert scalar("SELECT COUNT(*) FROM author WHERE name = 'Xingjun Ma'") == 1  # RSLAD's
    assert scalar("SELECT COUNT(*) FROM run") == 1
    with session_scope() as session:
        assert not sync(session, root, prune=True).changed


def store_run_summary() -> None:
    summary = {
        "schema_version": 1,
        "run_id": "20261121T000000Z-demo-smoke-000000",
        "slug": "demo",
        "scale": "smoke",
        "status": "succeeded",
        "rows": [{"id": "maxout_fgsm_error", "value": 90.0, "verdict": "not_compared"}],
    }
    with session_scope() as session:
        store_run(session, summary)


def test_html_and_script_in_a_title_are_stored_as_text(lit: Path) -> None:
    bib = lit / "papers" / "references.bib"
    title = "<script>alert('x')</script> <b>Bold</b> & [red]markup[/red]"
    bib.write_text(
        bib.read_text()
        + "\n@misc{2020_Evil_E_arxiv_s,\n  title = {"
        + title
        + "},\n  author = {Evil, Eve},\n  year = {2020},\n}\n"
    )
    with session_scope() as session:
        sync(session, lit)
    assert scalar("SELECT title FROM paper WHERE key = '2020_Evil_E_arxiv_s'") == title


def test_review_of_an_unknown_key_is_an_error(lit: Path, db_dump) -> None:
    review = lit / "papers" / "reviews" / "2099_Nobody_N_arxiv_x.md"
    review.write_text("---\ntitle: x\n---\nText\n")
    before = db_dump()
    expected = r"^papers/reviews/2099_Nobody_N_arxiv_x.md: key 2099"
    with pytest.raises(CatalogError, match=expected), session_scope() as session:
        sync(session, lit)
    assert db_dump() == before


@pytest.mark.parametrize(
    ("csv_text", "message"),
    [
        (
            "id,source,dataset,metric,paper\nx,T1,mnist,acc,1\n",
            r"expected.csv:1: missing required column\(s\) tolerance",
        ),
        (
            "id,source,dataset,metric,paper,tolerance\na,T1,mnist,acc,1,0.1\na,T1,mnist,acc,2,0.1\n",
            r"expected.csv:3: row a: duplicate id \(first at line 2\)",
        ),
        (
            "id,source,dataset,metric,paper,tolerance\na,T1,mnist,acc,high,0.1\n",
            r"expected.csv:2: row a: column 'paper': 'high' is not a number",
        ),
        (
            "id,source,dataset,metric,paper,tolerance\na,T1,mnist,acc,1,\n",
            r"expected.csv:2: row a: column 'tolerance' is empty \(a number is required unless",
        ),
    ],
)
def test_broken_expected_csv_is_one_clear_error(lit: Path, csv_text: str, message: str) -> None:
    (lit / "repro" / "demo" / "expected.csv").write_text(csv_text)
    with pytest.raises(CatalogError, match=message) as info, session_scope() as session:
        sync(session, lit)
    assert str(info.value).startswith("repro/demo/expected.csv:")


def test_a_metric_without_a_declared_unit_names_its_line(lit: Path, db_dump) -> None:
    (lit / "repro" / "demo" / "expected.csv").write_text(
        "id,source,dataset,metric,paper,tolerance\n"
        "a,T1,mnist,error_pct,1.5,0.5\n"
        "b,T1,mnist,accuracy,0.98,0.01\n"
        "c,T1,mnist,accuracy,0.97,0.01\n"
    )
    before = db_dump()
    expected = (
        r"^repro/demo/expected.csv:3: metric 'accuracy' has no unit: declare it in "
        r"repro/demo/repro.toml under \[metrics\]"
    )
    with pytest.raises(CatalogError, match=expected) as info, session_scope() as session:
        sync(session, lit)
    assert "\n" not in str(info.value)
    assert db_dump() == before


def test_repro_with_unknown_paper_key_names_file_and_line(lit: Path) -> None:
    toml = lit / "repro" / "demo" / "repro.toml"
    toml.write_text(toml.read_text().replace('key = "2015_', 'key = "1999_'))
    expected = r"^repro/demo/repro.toml:2: key 1999_Goodfellow"
    with pytest.raises(CatalogError, match=expected), session_scope() as session:
        sync(session, lit)


def test_sync_command_prints_the_report(lit: Path, cli) -> None:
    first = cli("sync")
    assert first.exit_code == 0, first.output
    assert "papers added:" in first.stdout and "list entries" in first.stdout
    second = cli("sync", "--json")
    assert second.exit_code == 0
    report = json.loads(second.stdout)
    assert report["kinds"]["papers"]["added"] == []
    assert report["kinds"]["list entries"]["unchanged"] == 31
    assert "nothing to do" in cli("sync").stdout


def test_sync_of_the_real_tree(project: Path, cli) -> None:
    """The checkout's own papers/ and repro/ folders sync cleanly (every repro key is in the bib)."""
    result = cli("sync")
    assert result.exit_code == 0, result.stderr


def test_sync_waits_for_the_papers_lock_that_add_holds(synced) -> None:
    """Issue 10: `catalog sync --prune` during `catalog add`. The add holds the papers/ lock from
    reading references.bib until its commit; a sync must not read the files before the add is
    done (it would see them half-changed, or prune the paper the add is storing)."""
    from catalog.add import add_entries
    from catalog.locks import FileGuard, bib_lock
    from catalog.sync import sync_project

    root, _ = synced
    bib = root / "papers" / "references.bib"
    good = bib.read_text()
    new_key = "2020_Writer_W_arxiv_l"
    outcome: dict[str, object] = {}

    def run_sync() -> None:
        try:
            outcome["report"] = sync_project(root, prune=True)
        except Exception as exc:  # reported below, in the test's thread
            outcome["error"] = exc

    with bib_lock(root):
        worker = threading.Thread(target=run_sync)
        worker.start()
        # while the lock is held the files may be in any state: a sync reading them now fails
        bib.write_text(good + "\n@misc{2020_Broken_B_arxiv_b,\n  title = {Half written\n")
        time.sleep(1.0)
        assert worker.is_alive(), outcome
        bib.write_text(good)
        with FileGuard() as guard, session_scope() as session:
            add_entries(
                session,
                f"@misc{{{new_key}, title={{Locked}}, author={{Writer, Wu}}, year=2020}}\n",
                root=root,
                guard=guard,
            )
    worker.join(60)
    assert not worker.is_alive() and "error" not in outcome, outcome
    report = outcome["report"]
    assert new_key not in report.kinds["papers"].vanished  # type: ignore[attr-defined]
    assert not report.changed  # type: ignore[attr-defined]
    assert scalar("SELECT COUNT(*) FROM paper WHERE key = :k", k=new_key) == 1
