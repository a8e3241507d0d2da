"""`catalog export --format bibtex|json|csv [--out]`."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from catalog import bibtex as bt


def test_bibtex_export_round_trips(synced, cli) -> None:
    root, _ = synced
    result = cli("export", "--format", "bibtex")
    assert result.exit_code == 0
    exported = bt.parse(result.stdout, "export")
    source = bt.read(root / "papers" / "references.bib")
    assert sorted(e.key for e in exported.entries) == sorted(e.key for e in source.entries)
    by_key = source.by_key()
    assert all(e.text == by_key[e.key].text for e in exported.entries)  # verbatim


def test_json_and_csv(synced, cli) -> None:
    papers = json.loads(cli("export", "--format", "json", "--list", "papis-collection").stdout)
    assert len(papers) == 8
    assert {p["code_url"] for p in papers if p["key"] == "2019_Zhong_Y_p-iccv_almter"} == {
        "https://github.com/zhongyy/Adversarial_MTER"
    }
    rows = list(csv.DictReader(io.StringIO(cli("export", "-f", "csv").stdout)))
    fgsm = next(r for r in rows if r["key"] == "2015_Goodfellow_I_p-iclr_ehae")
    assert fgsm["authors"] == "Ian J. Goodfellow; Jonathon Shlens; Christian Szegedy"
    assert fgsm["lists"] == "defense-mechanisms; theories-of-deep-learning-lecture-13"
    assert fgsm["year"] == "2015"


def test_out_file_and_bad_format(synced, cli, tmp_path: Path) -> None:
    out = tmp_path / "catalog.json"
    result = cli("export", "--format", "json", "--out", str(out))
    assert result.exit_code == 0 and result.stdout == ""
    assert len(json.loads(out.read_text())) >= 32
    bad = cli("export", "--format", "yaml")
    assert bad.exit_code == 1
    assert bad.stderr == "error: export: unknown format 'yaml' (one of bibtex, json, csv)\n"
