"""`catalog check`: every problem at once; the Defense-GAN link mismatch; exit status."""

from __future__ import annotations

import json
from pathlib import Path

from catalog.checks import check
from catalog.db import session_scope


def problems(root: Path) -> list:
    with session_scope() as session:
        return check(session, root)


ACK = Path("papers") / "lists" / "acknowledged.toml"


def test_the_defense_gan_link_mismatch_is_acknowledged(synced, cli) -> None:
    """The clean checkout passes: list 000's documented contradiction is reported as acknowledged,
    with the note kept beside the list."""
    result = cli("check")
    assert result.exit_code == 0, result.stdout
    line = next(x for x in result.stdout.splitlines() if "1801.02613" in x)
    assert line.startswith(
        "acknowledged papers/lists/000_a0d081c71b00c22e.txt:12: key 2018_Samangouei_P"
    )
    assert "links arXiv 1801.02613, but the catalog paper is arXiv 1805.06605" in line
    assert "arXiv 1801.02613 is 2018_Ma_X_p-iclr_casulid" in line
    assert '(acknowledged: The "Adversarial Robustness" list links Defense-GAN' in line
    assert "0 errors" in result.stdout and "1 acknowledged" in result.stdout
    found = json.loads(cli("check", "--json").stdout)
    assert [p for p in found if p["severity"] == "error"] == []
    (ack,) = [p for p in found if p["severity"] == "acknowledged"]
    assert (ack["code"], ack["cited"]) == ("arxiv-mismatch", "1801.02613")


def test_a_new_contradiction_still_fails(synced, cli) -> None:
    """An acknowledgement covers one finding exactly: the same list citing another wrong paper is
    an error again, and the entry that no longer matches is reported as stale."""
    root, _ = synced
    page = root / "papers" / "lists" / "000_a0d081c71b00c22e.txt"
    assert "arxiv.org/abs/1801.02613" in page.read_text()
    page.write_text(page.read_text().replace("1801.02613", "1706.06083"))  # Madry et al.'s id
    result = cli("check")
    assert result.exit_code == 1
    found = json.loads(cli("check", "--json").stdout)
    errors = [(p["code"], p["key"], p["cited"]) for p in found if p["severity"] == "error"]
    assert errors == [("arxiv-mismatch", "2018_Samangouei_P_p-iclr_dpcaaugm", "1706.06083")]
    stale = [p for p in found if p["code"] == "stale-acknowledgement"]
    assert [p["where"] for p in stale] == [f"{ACK.as_posix()}:8"]


def test_without_acknowledgements_the_mismatch_is_an_error(synced, cli) -> None:
    root, _ = synced
    (root / ACK).unlink()
    result = cli("check")
    assert result.exit_code == 1
    assert "error   papers/lists/000_a0d081c71b00c22e.txt:12" in result.stdout


def test_a_malformed_acknowledgement_is_an_error_naming_its_line(synced, cli) -> None:
    root, _ = synced
    path = root / ACK
    path.write_text(path.read_text().replace('cited = "1801.02613"\n', ""))
    found = json.loads(cli("check", "--json").stdout)
    bad = [p for p in found if p["code"] == "acknowledged"]
    assert [(p["severity"], p["where"]) for p in bad] == [("error", f"{ACK.as_posix()}:8")]
    assert "needs cited" in bad[0]["message"]


def test_without_the_mismatch_the_catalog_is_clean(synced, cli) -> None:
    root, _ = synced
    (root / "papers" / "lists" / "000_a0d081c71b00c22e.txt").unlink()
    assert cli("sync", "--prune").exit_code == 0
    result = cli("check")
    assert result.exit_code == 0, result.stdout
    assert "0 errors" in result.stdout
    # the acknowledgement now matches nothing: a warning, never an error
    found = json.loads(cli("check", "--json").stdout)
    assert [p["severity"] for p in found if p["code"] == "stale-acknowledgement"] == ["warning"]


def test_many_problems_in_one_run(lit: Path) -> None:
    bib = lit / "papers" / "references.bib"
    bib.write_text(
        bib.read_text()
        + "\n@misc{madry2018again, title={Towards Deep Learning Models Resistant to Adversarial"
        " Attacks}, author={Madry, Aleksander}, year={2018}}\n"
        "\n@misc{2019_Nobody_N_arxiv_x, title={Untitled}, year={2019}}\n"
        "\n@misc{2018_Wrong_W_arxiv_w, title={A Wrong Name}, author={Right, Rita}, year={2018}}\n"
    )
    (lit / "papers" / "reviews" / "2099_Nobody_N_arxiv_x.md").write_text("Hello\n")
    toml = lit / "repro" / "demo" / "repro.toml"
    toml.write_text(toml.read_text().replace("uses = []", 'uses = ["madry_pgd"]'))
    found = problems(lit)
    text = "\n".join(f"{p.severity} {p.code} {p}" for p in found)
    assert "error duplicate-title" in text and "madry2018again" in text
    assert "key 2019_Nobody_N_arxiv_x: missing required field 'author'" in text
    assert "error review papers/reviews/2099_Nobody_N_arxiv_x.md: key 2099_Nobody_N_arxiv_x" in text
    assert "error unknown-slug repro/demo/repro.toml" in text
    assert "warning house-style" in text and "key madry2018again: key does not follow" in text
    assert "key names Wrong but the first author is Rita Right" in text
    assert "warning stale-database" in text  # nothing synced yet
    order = [p.severity for p in found]  # errors first, then warnings, then acknowledged
    assert order == sorted(order, key=["error", "warning", "acknowledged"].index)
    assert order[0] == "error" and order[-1] == "acknowledged" and "warning" in order


def test_unresolved_and_unknown_key_entries(lit: Path) -> None:
    page = lit / "papers" / "lists" / "002_a0669c1c0e0321e4.txt"
    page.write_text(page.read_text().replace("2016_Huang_R_arxiv_lsa", "2016_Huang_R_arxiv_typo"))
    papis = lit / "papers" / "lists" / "003_d3d7dbd6e3af61d6.txt"
    papis.write_text(
        papis.read_text().replace(
            "- **Exploiting Explanations for Model Inversion Attacks**, 2021 [[url](http://arxiv.org/abs/2104.12669v3)]",
            "- **A Paper Nobody Wrote**, 2021 [[url](http://arxiv.org/abs/2199.00001v1)]",
        )
    )
    found = problems(lit)
    codes = {(p.code, p.where) for p in found if p.severity == "error"}
    assert ("unknown-key", "papers/lists/002_a0669c1c0e0321e4.txt:40") in codes
    assert ("unresolved", "papers/lists/003_d3d7dbd6e3af61d6.txt:24") in codes
