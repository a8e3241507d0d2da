"""Our BibTeX reader/writer: fields, line numbers, raw text, errors with file:line:key, the writer."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from catalog import CatalogError
from catalog import bibtex as bt
from catalog import bibwrite as bw

REPO = Path(__file__).resolve().parents[2]

SAMPLE = r"""% A comment line that mentions @misc (arXiv only) must not start an entry.
@string{iclr = "International Conference on Learning Representations"}

@InProceedings{2018_Madry_A_p-iclr_tdlmaa,
  author    = {M{\k{a}}dry, Aleksander and Makelov, Aleksandar and {Google Brain} and Ludwig van Beethoven and others},
  title     = {Towards Deep Learning Models Resistant to {Adversarial} Attacks \& {GAN}s},
  booktitle = iclr # " (ICLR)",
  year      = 2018,
  eprint = {1706.06083}, archivePrefix = {arXiv},
  code = {https://github.com/MadryLab/mnist_challenge},
}

@article{2000_Scholkopf_B_j-nc_x,
  title = "A {\"q}uoted title {with {nested}} braces",
  author = {Sch\"{o}lkopf, Bernhard and Erd\H{o}s, P\'al},
  journal = {Neurocomputing}, year = {2000},
  doi = {https://doi.org/10.1016/j.neucom.2018.04.027}
}
"""


def test_parse_fields_lines_and_raw_text() -> None:
    bib = bt.parse(SAMPLE, "x.bib")
    assert [e.key for e in bib.entries] == ["2018_Madry_A_p-iclr_tdlmaa", "2000_Scholkopf_B_j-nc_x"]
    madry, scholkopf = bib.entries
    assert madry.line == 4 and scholkopf.line == 13
    assert madry.fields["year"].line == 8
    assert madry.text.startswith("@InProceedings{2018_Madry") and madry.text.endswith("},\n}")
    assert SAMPLE[madry.start : madry.end] == madry.text
    assert madry.get("booktitle") == "International Conference on Learning Representations (ICLR)"
    assert madry.get("YEAR") == "2018"
    assert bt.clean_text(madry.get("title")) == (
        "Towards Deep Learning Models Resistant to Adversarial Attacks & GANs"
    )
    assert bt.clean_text(scholkopf.get("title")) == "A q̈uoted title with nested braces"


def test_people_ids_and_venues() -> None:
    madry, scholkopf = bt.parse(SAMPLE).entries
    people = bt.parse_people(madry.get("author"))
    assert [p.name for p in people] == [
        "Aleksander Mądry",
        "Aleksandar Makelov",
        "Google Brain",
        "Ludwig van Beethoven",
    ]
    assert [p.last for p in people] == ["Mądry", "Makelov", "Google Brain", "van Beethoven"]
    assert [p.name for p in bt.parse_people(scholkopf.get("author"))] == [
        "Bernhard Schölkopf",
        "Pál Erdős",
    ]
    assert bt.arxiv_id_of(madry) == "1706.06083"
    assert bt.code_url_of(madry) == "https://github.com/MadryLab/mnist_challenge"
    assert bt.venue_of(madry)[1] == "conference"
    assert bt.venue_of(scholkopf) == ("Neurocomputing", "journal")
    assert bt.doi_of(scholkopf) == "10.1016/j.neucom.2018.04.027"
    assert bt.arxiv_id_from_url("http://arxiv.org/abs/1909.09481v1") == "1909.09481"
    assert bt.arxiv_id_from_url("https://arxiv.org/pdf/1511.06434.pdf") == "1511.06434"


def test_arxiv_preprint_entry() -> None:
    (entry,) = bt.parse(
        "@misc{k, title={T}, author={A, B}, year={2016}, journal={arXiv preprint arXiv:1511.03034}}"
    ).entries
    assert bt.arxiv_id_of(entry) == "1511.03034"
    assert bt.venue_of(entry) == ("arXiv", "preprint")


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("@article{k1, title={T}, year={2000}}", 1, "key k1: missing required field 'author'"),
        ("\n@article{k1, author={A}, year={2000}}", 2, "key k1: missing required field 'title'"),
        ("@article{k1, title={T}, author={A}}", 1, "key k1: missing required field 'year'"),
        ("@article{k1,\n title={T},\n year={20x0}, author={A}}", 3, "key k1: bad year '20x0'"),
        (
            "@article{k1, title={T}, year=2000, author={A}}\n\n"
            "@article{k1, title={U}, year=2001, author={B}}",
            3,
            "key k1: duplicate key (first defined at line 1)",
        ),
        (
            "@article{k1, title={T, year={2000}, author={A}}\n\n"
            "@article{k2, title={U}, year={2000}, author={A}}",
            1,
            "key k1: entry is not closed (missing '}') before the next entry at line 3",
        ),
        (
            "@article{k1,\n  title={T}\n  year={2000}, author={A}}",
            3,
            "key k1: expected ',' or '}' after field 'title'",
        ),
        ("@article{k1, title={T}, year=2000, author={A}", 1, "key k1: entry is never closed"),
        ("@article{, title={T}}", 1, "@article entry without a key"),
        ('@article{k1, title="T, year=2000, author={A}}', 1, "key k1: unterminated quoted value"),
    ],
)
def test_errors_name_file_line_and_key(text: str, line: int, message: str) -> None:
    with pytest.raises(CatalogError) as info:
        bt.parse(text, "papers/references.bib")
    assert str(info.value).startswith(f"papers/references.bib:{line}: {message}")
    assert "\n" not in str(info.value)


def test_scan_collects_every_problem_and_resumes_after_a_broken_entry() -> None:
    text = (
        "@article{a, title={T}, year=2000}\n"
        "@article{b, title={T, year=2000, author={A}}\n"
        "@article{c, title={U}, year=2001, author={C}}\n"
        "@article{c, title={V}, year=2002, author={C}}\n"
    )
    result = bt.scan(text, "f.bib")
    assert [str(p) for p in result.problems] == [
        "f.bib:1: key a: missing required field 'author'",
        "f.bib:2: key b: entry is not closed (missing '}') before the next entry at line 3",
        "f.bib:4: key c: duplicate key (first defined at line 3)",
    ]
    assert [e.key for e in result.entries] == ["a", "c", "c"]


def test_the_real_references_bib_is_clean() -> None:
    bib = bt.read(REPO / "papers" / "references.bib", "papers/references.bib")
    assert len(bib.entries) >= 31
    for entry in bib.entries:
        assert bt.parse_people(entry.get("author")), entry.key
        assert bt.parse_year(entry.get("year")), entry.key


def test_merge_appends_in_file_style_and_keeps_the_rest_byte_for_byte() -> None:
    original = (
        "% header\n\n@article{a,\n    title     = {A},\n    author    = {X, Y},\n"
        "    year      = {2000},\n}\n\n@article{b,\n    title     = {B},\n"
        "    author    = {X, Y},\n    year      = {2001},\n}\n"
    )
    bib = bt.parse(original)
    style = bw.detect_style(bib)
    assert (style.indent, style.align, style.trailing_comma, style.blank_lines) == (
        "    ",
        True,
        True,
        1,
    )
    (new,) = bt.parse("@ARTICLE{c, author={Z, W}, title={C}, year=2002}").entries
    merged = bw.merge_entries(bib, {"c": bw.restyle(new, style)})
    assert merged.startswith(original)
    assert merged[len(original) :] == (
        "\n@article{c,\n    author = {Z, W},\n    title  = {C},\n    year   = 2002,\n}\n"
    )
    assert [e.key for e in bt.parse(merged).entries] == ["a", "b", "c"]


def test_merge_replaces_an_entry_in_place() -> None:
    original = (
        "@misc{a, title={A}, author={X}, year=2000}\n\n@misc{b, title={B}, author={X}, year=2001}\n"
    )
    bib = bt.parse(original)
    replaced = bw.merge_entries(bib, {"a": "@misc{a, title={A2}, author={X}, year=2000}"})
    assert replaced == original.replace("{A}", "{A2}")


def test_atomic_write_replaces_whole_file_and_keeps_mode(tmp_path: Path) -> None:
    path = tmp_path / "references.bib"
    path.write_text("old\n")
    os.chmod(path, 0o640)
    bw.atomic_write(path, "new\n")
    assert path.read_text() == "new\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["references.bib"]


def test_read_text_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\nalso fine\n\xff\xfe broken\n")
    with pytest.raises(
        CatalogError, match=r"^papers/lists/bad.txt:3: not UTF-8 text \(byte 0xff\)$"
    ):
        bt.read_text(bad, "papers/lists/bad.txt")
    with pytest.raises(CatalogError, match="file not found"):
        bt.read_text(tmp_path / "missing.bib", "missing.bib")
    with pytest.raises(CatalogError, match="is a directory"):
        bt.read_text(tmp_path, "dir.txt")


def test_house_key() -> None:
    (person,) = bt.parse_people("Moosavi-Dezfooli, Seyed-Mohsen")
    key = bt.house_key(
        2016,
        person,
        "p-cvpr",
        "DeepFool: a simple and accurate method to fool deep neural networks",
    )
    assert key == "2016_MoosaviDezfooli_S_p-cvpr_dsamfdnn"
    assert bt.HOUSE_KEY.match(key)
    assert not bt.HOUSE_KEY.match("madry2018towards")


def test_paren_entries_and_comment_blocks() -> None:
    text = (
        '@comment{ @misc{x, not an entry} }\n@preamble{ "\\newcommand{\\x}{y}" }\n'
        "@misc(k1, title = {A (B)}, author = {X}, year = 2001)\n"
    )
    (entry,) = bt.parse(text).entries
    assert (entry.key, entry.get("title"), entry.line) == ("k1", "A (B)", 3)
    with pytest.raises(
        CatalogError, match=r"^f.bib:1: key k1: entry is never closed \(missing '\)'"
    ):
        bt.parse("@misc(k1, title = {A}, author = {X}, year = 2001\n", "f.bib")


# --------------------------------------------------------------------------- @string, crossref,
# NUL bytes and CRLF (issue 9): each of these tests fails on the hand-written parser.

ICLR_ADDED = """@string{iclr = "International Conference on Learning Representations"}
@string{iclr18 = iclr # " (ICLR 2018)"}

@inproceedings{2018_Madry_A_p-iclr_tdlmaa,
  title = {Towards Deep Learning Models Resistant to Adversarial Attacks},
  author = {Madry, Aleksander},
  booktitle = iclr18,
  year = 2018,
}
"""
FILE = "@misc{a, title={A}, author={X, Y}, year=2000}\n"


def test_merge_writes_the_string_definitions_the_new_entries_use() -> None:
    bib, incoming = bt.parse(FILE), bt.parse(ICLR_ADDED, "new.bib")
    texts = {e.key: bw.restyle(e, bw.detect_style(bib)) for e in incoming.entries}
    merged = bw.merge_entries(bib, texts, incoming)
    assert merged.startswith(FILE)
    # both definitions (iclr18 is written in terms of iclr), in their order, before the entry
    assert merged.index("@string{iclr =") < merged.index("@string{iclr18") < merged.index("@inpro")
    (_, madry) = bt.parse(merged).entries
    assert (
        madry.get("booktitle") == "International Conference on Learning Representations (ICLR 2018)"
    )
    # merged again into a file that has the same definitions: they are not repeated
    again = bw.merge_entries(bt.parse(merged), texts, incoming)
    assert again.count("@string{iclr =") == 1 and again.count("@string{iclr18") == 1


def test_a_conflicting_string_definition_is_refused_naming_both_lines() -> None:
    bib = bt.parse(FILE + '\n@string{iclr = "ICLR"}\n')
    incoming = bt.parse(ICLR_ADDED, "new.bib")
    texts = {e.key: bw.restyle(e, bw.Style()) for e in incoming.entries}
    with pytest.raises(CatalogError) as info:
        bw.merge_entries(bib, texts, incoming)
    message = str(info.value)
    assert message.startswith("new.bib:1: key 2018_Madry_A_p-iclr_tdlmaa: @string iclr = ")
    assert "conflicts with papers/references.bib:3 (iclr = 'ICLR')" in message
    assert "\n" not in message


def test_an_undefined_macro_is_an_error_not_a_venue_named_after_it() -> None:
    text = "@inproceedings{k,\n  title = {T}, author = {A, B},\n  booktitle = iclr, year = 2018}"
    with pytest.raises(CatalogError, match=r"^x.bib:3: key k: undefined @string macro 'iclr'$"):
        bt.parse(text, "x.bib")
    # a definition after the use is too late, as in BibTeX
    with pytest.raises(CatalogError, match="undefined @string macro 'iclr'"):
        bt.parse(text + '\n@string{iclr = "ICLR"}', "x.bib")
    assert bt.parse(text.replace("iclr,", "nov,"), "x.bib").entries[0].get("booktitle") == "Nov"


CROSSREF = """@inproceedings{2018_Madry_A_p-iclr_tdlmaa,
  title = {Towards Deep Learning Models Resistant to Adversarial Attacks},
  author = {Madry, Aleksander},
  crossref = {iclr2018},
}

@proceedings{iclr2018,
  title = {Proceedings of ICLR 2018},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year = 2018,
  author = {Editors, The},
}
"""


def test_crossref_inherits_the_missing_fields_from_the_same_file() -> None:
    madry, _ = bt.parse(CROSSREF).entries
    assert madry.get("year") == "2018"
    assert bt.venue_of(madry) == (
        "International Conference on Learning Representations (ICLR)",
        "conference",
    )
    assert madry.get("title").startswith("Towards")  # its own fields win
    assert madry.inherited["year"].line == 10
    # rewritten for another file, the entry keeps only what it says itself
    assert "year" not in bw.restyle(madry, bw.Style())


def test_a_crossref_to_another_file_is_refused_naming_crossref() -> None:
    alone = CROSSREF[: CROSSREF.index("@proceedings")]
    with pytest.raises(CatalogError) as info:
        bt.parse(alone, "papers/references.bib")
    assert str(info.value) == (
        "papers/references.bib:4: key 2018_Madry_A_p-iclr_tdlmaa: crossref 'iclr2018' names no"
        " entry in this file (add that entry to it)"
    )


def test_a_nul_byte_is_refused_with_file_line_and_key() -> None:
    text = FILE + "\n@misc{b,\n  title={B\0}, author={X}, year=2001}\n"
    with pytest.raises(CatalogError) as info:
        bt.parse(text, "papers/references.bib")
    assert str(info.value) == "papers/references.bib:4: key b: NUL byte (\\0) in the text"


def test_crlf_input_leaves_no_carriage_return_in_what_merge_writes() -> None:
    crlf = FILE + "\n@misc{b,\n  title = {B\n  continued},\n  author = {X},\n  year = 2001,\n}\n"
    crlf = crlf.replace("\n", "\r\n")
    bib = bt.parse(crlf)
    assert [e.line for e in bib.entries] == [1, 3]
    incoming = bt.parse(ICLR_ADDED.replace("\n", "\r\n"), "new.bib")
    texts = {e.key: bw.restyle(e, bw.detect_style(bib)) for e in incoming.entries}
    merged = bw.merge_entries(bib, texts, incoming)
    assert "\r" not in merged
    assert [e.key for e in bt.parse(merged).entries] == ["a", "b", "2018_Madry_A_p-iclr_tdlmaa"]
    assert bt.parse(merged).entries[1].get("title") == "B\n  continued"
