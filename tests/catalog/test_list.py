"""`catalog list`: every paper the lists name, filters, JSON, a clear error for an unknown list."""

from __future__ import annotations

import json


def test_list_shows_every_paper_the_four_lists_name(synced, cli) -> None:
    from sqlalchemy import text

    from catalog.db import session_scope

    result = cli("list", "--json")
    assert result.exit_code == 0, result.output
    papers = json.loads(result.stdout)
    keys = {p["key"] for p in papers}
    with session_scope() as session:
        named = {r[0] for r in session.execute(text("SELECT DISTINCT paper_key FROM listentry"))}
    assert len(named) == 30  # 31 entries; FGSM is named by two lists
    assert named <= keys
    fgsm = next(p for p in papers if p["key"] == "2015_Goodfellow_I_p-iclr_ehae")
    assert fgsm["lists"] == ["defense-mechanisms", "theories-of-deep-learning-lecture-13"]
    assert fgsm["authors"][0] == "Ian J. Goodfellow"
    years = [p["year"] for p in papers]
    assert years == sorted(years, reverse=True)


def test_list_table_output(synced, cli, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "220")
    result = cli("list")
    assert result.exit_code == 0
    assert "2016_MoosaviDezfooli_S_p-cvpr_dsamfdnn" in result.stdout
    assert "Explaining and Harnessing" in result.stdout


def test_list_never_truncates_keys_on_a_narrow_terminal(synced, cli, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    result = cli("list")
    assert result.exit_code == 0
    assert "2016_MoosaviDezfooli_S_p-cvpr_dsamfdnn" in result.stdout


def test_filters(synced, cli) -> None:
    lecture = json.loads(
        cli("list", "--list", "theories-of-deep-learning-lecture-13", "--json").stdout
    )
    assert len(lecture) == 15
    assert lecture[0]["key"] == "2016_Radford_A_p-iclr_urldcgan"  # list order, not year order
    assert lecture[-1]["key"] == "2018_Gopalakrishnan_S_arxiv_ralsfe"
    iclr18 = json.loads(cli("list", "--year", "2018", "--venue", "learning repr", "--json").stdout)
    assert iclr18 and all(
        p["year"] == 2018 and "Learning Representations" in p["venue"] for p in iclr18
    )
    assert "2018_Samangouei_P_p-iclr_dpcaaugm" in {p["key"] for p in iclr18}
    assert json.loads(cli("list", "--year", "1900", "--json").stdout) == []


def test_unknown_list_is_an_error(synced, cli) -> None:
    result = cli("list", "--list", "nope")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "error: unknown reading list 'nope' (lists: adversarial-robustness"
    )
    assert result.stdout == ""
