"""`catalog show`: facts, authors, every list membership with its note, review, BibTeX."""

from __future__ import annotations

import json
from pathlib import Path


def test_show_a_paper_named_by_two_lists(synced, cli) -> None:
    result = cli("show", "2015_Goodfellow_I_p-iclr_ehae")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Explaining and Harnessing Adversarial Examples" in out
    assert "Ian J. Goodfellow, Jonathon Shlens, Christian Szegedy" in out
    assert "Reading lists (2)" in out
    assert "Defense Mechanisms [defense-mechanisms] #2" in out
    assert "This idea was later popularized by" in out  # the jekyll page's paragraph
    assert "[theories-of-deep-learning-lecture-13] #7" in out
    assert "Adversarial misclassification for deep nets (Goodfellow et al. 15'" in out  # slide
    assert "@inproceedings{2015_Goodfellow_I_p-iclr_ehae," in out


def test_show_json_has_memberships_review_and_reproductions(synced, cli) -> None:
    gan = json.loads(cli("show", "2018_Samangouei_P_p-iclr_dpcaaugm", "--json").stdout)
    (membership,) = gan["memberships"]
    assert membership["list_slug"] == "adversarial-robustness"
    assert membership["cited_arxiv_id"] == "1801.02613"  # the list's own (wrong) link, kept
    assert membership["note"].startswith("The authors proposes")
    assert gan["arxiv_id"] == "1805.06605"
    assert gan["review"]["source_file"] == "papers/reviews/2018_Samangouei_P_p-iclr_dpcaaugm.md"
    assert gan["review"]["front_matter"]["key"] == gan["key"]
    fgsm = json.loads(cli("show", "2015_Goodfellow_I_p-iclr_ehae", "--json").stdout)
    assert fgsm["reproductions"] == ["demo"]
    assert [m["list_slug"] for m in fgsm["memberships"]] == [
        "defense-mechanisms",
        "theories-of-deep-learning-lecture-13",
    ]


def test_unknown_key_suggests_close_ones(synced, cli) -> None:
    result = cli("show", "2015_Goodfellow_I_p-iclr_eha")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: key 2015_Goodfellow_I_p-iclr_eha: no such paper in the catalog "
        "(did you mean 2015_Goodfellow_I_p-iclr_ehae?)\n"
    )


def test_markup_in_a_title_is_printed_as_text(lit: Path, cli) -> None:
    bib = lit / "papers" / "references.bib"
    bib.write_text(
        bib.read_text()
        + "\n@misc{2020_Evil_E_arxiv_s,\n  title = {[bold red]Shout[/bold red] <script>x</script>},\n"
        "  author = {Evil, Eve},\n  year = {2020},\n}\n"
    )
    assert cli("sync").exit_code == 0
    out = cli("show", "2020_Evil_E_arxiv_s").stdout
    assert "[bold red]Shout[/bold red] <script>x</script>" in out
