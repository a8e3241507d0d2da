"""`catalog search`: ranked over titles, authors, abstracts and list notes."""

from __future__ import annotations

import json

import pytest

from catalog import CatalogError
from catalog.queries import _Doc, rank


def hits(cli, *words: str) -> list[dict]:
    result = cli("search", *words, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_title_author_abstract_and_note_hits(synced, cli) -> None:
    assert hits(cli, "defense-gan")[0]["key"] == "2018_Samangouei_P_p-iclr_dpcaaugm"
    by_author = {h["key"] for h in hits(cli, "moosavi")}
    assert by_author == {
        "2016_MoosaviDezfooli_S_p-cvpr_dsamfdnn",
        "2017_MoosaviDezfooli_S_p-cvpr_uap",
    }
    # "turtle" is only in the lecture's slide heading, the note of Athalye et al.'s entry
    turtle = hits(cli, "turtle")
    assert [h["key"] for h in turtle] == ["2018_Athalye_A_p-icml_srae"]
    assert turtle[0]["matched"] == ["notes"]
    # an abstract-only word (papis abstracts are list notes; bib abstracts too)
    assert "2021_Zi_B_p-iccv_rardrslmsb" in {h["key"] for h in hits(cli, "distillation")}


def test_every_word_must_match_and_title_ranks_first(synced, cli) -> None:
    assert hits(cli, "wasserstein", "zzzunknownword") == []
    ranked = [h["key"] for h in hits(cli, "wasserstein")]
    assert set(ranked[:2]) == {"2017_Arjovsky_M_p-icml_wgan", "2017_Gulrajani_I_p-nips_itwg"}


def test_table_output(synced, cli) -> None:
    result = cli("search", "deepfool")
    assert "2016_MoosaviDezfooli_S_p-cvpr_dsamfdnn" in result.stdout


def test_ranking_weights() -> None:
    def doc(key: str, **fields: str) -> _Doc:
        base = dict.fromkeys(("title", "authors", "key", "venue", "abstract", "notes"), "")
        return _Doc(key, fields.get("title", ""), 2000, {**base, **fields})

    docs = [
        doc("abstract_only", abstract="we study robust training"),
        doc("title_hit", title="robust training of networks"),
        doc("partial", title="robustness"),
        doc("neither", title="unrelated"),
    ]
    ranked = [h.key for h in rank(docs, "Robust training")]
    assert ranked == ["title_hit", "abstract_only"]
    assert [h.key for h in rank(docs, "robust")] == ["title_hit", "partial", "abstract_only"]
    with pytest.raises(CatalogError, match="at least one word"):
        rank(docs, "  --- ")
