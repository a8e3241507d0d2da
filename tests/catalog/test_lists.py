"""The four reading-list formats, parsed from the real lists, and matching entries to papers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from catalog import CatalogError
from catalog import bibtex as bt
from catalog.lists import (
    ParsedEntry,
    detect_format,
    normalise_title,
    parse_list_text,
    read_lists,
    resolve,
)
from catalog.snapshot import paper_index, paper_records

REPO = Path(__file__).resolve().parents[2]
LISTS = REPO / "papers" / "lists"
REVIEW, LECTURE, JEKYLL, PAPIS = (
    "000_a0d081c71b00c22e.txt",
    "001_900e14a43f1f4880.txt",
    "002_a0669c1c0e0321e4.txt",
    "003_d3d7dbd6e3af61d6.txt",
)


def parsed(name: str):
    source = f"papers/lists/{name}"
    return parse_list_text((LISTS / name).read_text(encoding="utf-8"), source)


@pytest.fixture(scope="module")
def index():
    bib = bt.read(REPO / "papers" / "references.bib", "papers/references.bib")
    return paper_index(paper_records(bib))


def test_format_is_detected_from_content_not_name(tmp_path: Path) -> None:
    (tmp_path / "papers" / "lists").mkdir(parents=True)
    for new, old in zip(
        ("d.txt", "c.txt", "b.txt", "a.txt"), (REVIEW, LECTURE, JEKYLL, PAPIS), strict=True
    ):
        shutil.copy(LISTS / old, tmp_path / "papers" / "lists" / new)
    formats = {p.source_file: p.format for p in read_lists(tmp_path)}
    assert formats == {
        "papers/lists/a.txt": "papis",
        "papers/lists/b.txt": "jekyll",
        "papers/lists/c.txt": "lecture",
        "papers/lists/d.txt": "review-list",
    }
    assert detect_format("just some notes\n") is None


def test_review_list() -> None:
    plist = parsed(REVIEW)
    assert (plist.slug, plist.title, plist.format) == (
        "adversarial-robustness",
        "Adversarial Robustness",
        "review-list",
    )
    assert [e.position for e in plist.entries] == [1, 2, 3]
    gan, sap, atmc = plist.entries
    assert gan.cited_title.startswith("Defense-GAN: Protecting Classifiers")
    assert gan.cited_url == "https://arxiv.org/abs/1801.02613"
    assert gan.cited_arxiv_id == "1801.02613"
    assert gan.cited_year == 2018
    assert gan.note.startswith("The authors proposes to leverage the representative power")
    assert "two benchmark image datasets." in gan.note
    assert sap.cited_url is None and sap.note.startswith("SAP prunes a random subset")
    assert atmc.cited_title.startswith("Model Compression with Adversarial Robustness")
    assert "ADMM" in atmc.note
    assert gan.source_line == 12


def test_lecture_slides() -> None:
    plist = parsed(LECTURE)
    assert plist.format == "lecture"
    assert plist.slug == "theories-of-deep-learning-lecture-13"
    assert plist.title == (
        "Theories of Deep Learning, lecture 13: Generative Adversarial Networks (GANs)"
    )
    ids = [e.cited_arxiv_id for e in plist.entries]
    # one entry per distinct link, in order of first appearance; the two slides without a link
    # (turtle, graffiti) are entries too
    assert ids == [
        "1511.06434",
        "1406.2661",
        "1704.00028",
        "1701.07875",
        "1710.10196",
        "2009.05041",
        "1412.6572",
        "1511.04599",
        "1712.02779",
        "1610.08401",
        "1611.02770",
        None,
        None,
        "1711.00851",
        "1810.10625",
    ]
    by_id = {e.cited_arxiv_id: e for e in plist.entries}
    assert by_id["1511.04599"].note == "DeepFool algorithm (Moosavi-Dezfooli et al. 15')"
    assert by_id["1511.06434"].note == (
        "Generative deep nets (Goodfellow et al. 14'); Generative deep nets (Radford et al. 16')"
    )
    assert by_id["1711.00851"].note.count("Provable defense: convex polytope") == 3
    assert by_id["1511.04599"].source_line == 281
    turtle, graffiti = plist.entries[11], plist.entries[12]
    assert (turtle.cited_author, turtle.cited_year, turtle.source_line) == ("Athalye", 2017, 366)
    assert turtle.note == "Adversarial physical object: Turtle (Athalye et al. 17')"
    assert (graffiti.cited_author, graffiti.cited_year) == ("Eykholt", 2017)


def test_jekyll_page() -> None:
    plist = parsed(JEKYLL)
    assert (plist.slug, plist.title, plist.format) == (
        "defense-mechanisms",
        "Defense Mechanisms",
        "jekyll",
    )
    assert plist.description.startswith("Presentation of some defense mechanism")
    keys = [e.cited_key for e in plist.entries]
    assert keys == [
        "2014_Szegedy_C_p-iclr_ipnn",
        "2015_Goodfellow_I_p-iclr_ehae",
        "2018_Madry_A_p-iclr_tdlmaa",
        "2016_Huang_R_arxiv_lsa",
        "2018_Shaham_U_j-nc_uatilssmro",
    ]
    notes = {e.cited_key: e.note for e in plist.entries}
    assert notes["2014_Szegedy_C_p-iclr_ipnn"].startswith(
        "[@2014_Szegedy_C_p-iclr_ipnn] showed that by training a neural network"
    )
    assert "min-max formulation" in notes["2018_Madry_A_p-iclr_tdlmaa"]
    # cited alone on its line: the note says where
    assert notes["2016_Huang_R_arxiv_lsa"] == "Cited under “2. Adversarially Robust Training”."
    lines = {e.cited_key: e.source_line for e in plist.entries}
    assert lines["2014_Szegedy_C_p-iclr_ipnn"] == 15


def test_papis_collection() -> None:
    plist = parsed(PAPIS)
    assert (plist.slug, plist.format) == ("papis-collection", "papis")
    assert len(plist.entries) == 8
    first = plist.entries[0]
    assert (
        first.cited_title
        == "Adversarial Learning with Margin-based Triplet Embedding Regularization"
    )
    assert (first.cited_year, first.cited_arxiv_id, first.cited_author) == (
        2019,
        "1909.09481",
        "Zhong",
    )
    assert first.cited_url == "http://arxiv.org/abs/1909.09481v1"
    assert first.cited_code_url == "https://github.com/zhongyy/Adversarial_MTER"
    assert first.note.startswith("The Deep neural networks (DNNs) have achieved great success")
    assert plist.entries[3].cited_code_url is None  # no [[code]] link for the inversion paper


def test_every_entry_of_the_real_lists_resolves(index) -> None:
    unresolved = []
    total = 0
    for plist in read_lists(REPO):
        for entry in plist.entries:
            total += 1
            if resolve(entry, index).key is None:
                unresolved.append((plist.slug, entry.position))
    assert total == 31
    assert unresolved == []


def test_defense_gan_resolves_by_title_despite_the_wrong_link(index) -> None:
    gan = parsed(REVIEW).entries[0]
    result = resolve(gan, index)
    assert (result.key, result.how) == ("2018_Samangouei_P_p-iclr_dpcaaugm", "title")
    # the link alone would have named another paper (Ma et al., LID)
    link_only = ParsedEntry(position=1, cited_arxiv_id=gan.cited_arxiv_id)
    assert resolve(link_only, index).key == "2018_Ma_X_p-iclr_casulid"


def test_slides_without_a_link_resolve_by_first_author_and_year(index) -> None:
    plist = parsed(LECTURE)
    turtle, graffiti = plist.entries[11], plist.entries[12]
    assert resolve(turtle, index).key == "2018_Athalye_A_p-icml_srae"
    assert resolve(graffiti, index).how == "author-year"
    assert resolve(graffiti, index).key == "2018_Eykholt_K_p-cvpr_rpadlvc"


def test_matching_rules(index) -> None:
    assert resolve(ParsedEntry(1, cited_key="nope"), index).key is None
    by_title = ParsedEntry(1, cited_title="explaining and harnessing ADVERSARIAL examples!")
    assert resolve(by_title, index).key == "2015_Goodfellow_I_p-iclr_ehae"
    nothing = resolve(ParsedEntry(1, cited_title="A paper nobody wrote"), index)
    assert nothing.key is None and "no catalog paper matches" in nothing.detail
    far = ParsedEntry(1, cited_author="Athalye", cited_year=2012)
    assert resolve(far, index).key is None
    assert normalise_title("Défense-GAN:  Protecting") == "defense gan protecting"


def test_unknown_format_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "papers" / "lists").mkdir(parents=True)
    (tmp_path / "papers" / "lists" / "notes.txt").write_text("Nothing list-like here.\n")
    with pytest.raises(CatalogError, match=r"^papers/lists/notes.txt: cannot tell which"):
        read_lists(tmp_path)


def test_author_year_prefers_the_preprint_year_over_a_neighbouring_venue_year() -> None:
    """Two ICML 2018 papers by Athalye: the slide's "17'" is the EOT preprint (arXiv 1707), not
    the obfuscated-gradients one (arXiv 1802); both are within a year of 2017 by venue."""
    from catalog.lists import IndexedPaper, PaperIndex

    index = PaperIndex.build(
        [
            IndexedPaper(
                "2018_Athalye_A_p-icml_srae",
                "Synthesizing Robust Adversarial Examples",
                2018,
                "1707.07397",
                "Athalye",
            ),
            IndexedPaper(
                "2018_Athalye_A_p-icml_oggfsscdae",
                "Obfuscated Gradients Give a False Sense of Security",
                2018,
                "1802.00420",
                "Athalye",
            ),
        ]
    )
    slide = ParsedEntry(12, cited_author="Athalye", cited_year=2017)
    assert resolve(slide, index).key == "2018_Athalye_A_p-icml_srae"
    ambiguous = ParsedEntry(12, cited_author="Athalye", cited_year=2019)
    assert resolve(ambiguous, index).key is None
    assert "ambiguous" in resolve(ambiguous, index).detail
