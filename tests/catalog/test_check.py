"""`catalog check`: every problem at once; the Defense-GAN link mismatch; exit status."""

from __future__ import annotations

import json
from pathlib import Path

from catalog.checks import check
from catalog.db import session_scope


def problems(root: Path) -> list:
    with session_scope() as session:
        return check(session, root)


def test_check_reports_the_defense_gan_link_mismatch(synced, cli) -> None:
    result = cli("check")
    assert result.exit_code == 1
    line = next(x for x in result.stdout.splitlines() if "1801.02613" in x)
    assert line.startswith(
        "error   papers/lists/000_a0d081c71b00c22e.txt:12: key 2018_Samangouei_P"
    )
    assert "links arXiv 1801.02613, but the catalog paper is arXiv 1805.06605" in line
    assert "arXiv 1801.02613 is 2018_Ma_X_p-iclr_casulid" in line
    found = json.loads(cli("check", "--json").stdout)
    errors = [p for p in found if p["severity"] == "error"]
    assert [p["code"] for p in errors] == ["arxiv-mismatch"]  # the real catalog's only error


def test_without_the_mismatch_the_catalog_is_clean(synced, cli) -> None:
    root, _ = synced
    (root / "papers" / "lists" / "000_a0d081c71b00c22e.txt").unlink()
    assert cli("sync", "--prune").exit_code == 0
    result = cli("check")
    assert result.exit_code == 0, result.stdout
    assert "0 errors" in result.stdout


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
    assert found[0].severity == "error" and found[-1].severity == "warning"


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
