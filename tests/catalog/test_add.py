"""`catalog add`: references.bib and the database in one step, lists, arXiv online/offline."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from sqlalchemy import text

import catalog.add
from catalog import bibtex as bt
from catalog.db import session_scope

CW_KEY = "2018_Brendel_W_p-iclr_dbaa"  # a paper the catalog does not hold
CW = """@InProceedings{2018_Brendel_W_p-iclr_dbaa,
    author={Brendel, Wieland and Rauber, Jonas and Bethge, Matthias},
    title={Decision-Based Adversarial Attacks},
    booktitle={International Conference on Learning Representations (ICLR)},
    year=2018,
    eprint={1712.04248}, archiveprefix={arXiv}
}
"""
TWO = """@misc{2016_Kurakin_A_arxiv_aepw, title={Adversarial examples in the physical world},
  author={Kurakin, Alexey and Goodfellow, Ian and Bengio, Samy}, year={2016}, eprint={1607.02533}}
@misc{2017_Papernot_N_arxiv_x, title={Practical Black-Box Attacks against Machine Learning},
  author={Papernot, Nicolas and others}, year={2017}}
"""


def keys_in_db() -> set[str]:
    with session_scope() as session:
        return {row[0] for row in session.execute(text("SELECT key FROM paper"))}


def test_add_from_a_file_appends_in_house_style_and_syncs(synced, cli, tmp_path: Path) -> None:
    root, _ = synced
    bib = root / "papers" / "references.bib"
    before = bib.read_text()
    source = tmp_path / "cw.bib"
    source.write_text(CW)
    result = cli("add", "--bibtex", str(source))
    assert result.exit_code == 0, result.output
    assert f"added {CW_KEY}" in result.stdout
    after = bib.read_text()
    assert after.startswith(before.rstrip("\n"))  # the rest of the file is untouched
    assert after.endswith(
        "\n\n@inproceedings{2018_Brendel_W_p-iclr_dbaa,\n"
        "  author = {Brendel, Wieland and Rauber, Jonas and Bethge, Matthias},\n"
        "  title = {Decision-Based Adversarial Attacks},\n"
        "  booktitle = {International Conference on Learning Representations (ICLR)},\n"
        "  year = 2018,\n"
        "  eprint = {1712.04248},\n"
        "  archiveprefix = {arXiv},\n"
        "}\n"
    )
    assert CW_KEY in keys_in_db()
    # the database now holds exactly what a sync of the new file would: sync has nothing to do
    assert "nothing to do" in cli("sync").stdout


def test_add_many_from_stdin(synced, cli) -> None:
    result = cli("add", "--bibtex", "-", input=TWO)
    assert result.exit_code == 0, result.output
    assert {"2016_Kurakin_A_arxiv_aepw", "2017_Papernot_N_arxiv_x"} <= keys_in_db()


def test_add_to_a_reading_list(synced, cli, tmp_path: Path) -> None:
    root, _ = synced
    source = tmp_path / "cw.bib"
    source.write_text(CW)
    result = cli(
        "add", "--bibtex", str(source), "--list", "defense-mechanisms", "--note", "CW-L2 attack"
    )
    assert result.exit_code == 0, result.output
    extra = (root / "papers" / "lists" / "extra.toml").read_text()
    assert 'list = "defense-mechanisms"' in extra and f'key = "{CW_KEY}"' in extra
    with session_scope() as session:
        row = session.execute(
            text("SELECT list_slug, position, note FROM listentry WHERE paper_key = :k"),
            {"k": CW_KEY},
        ).all()
    assert row == [("defense-mechanisms", 6, "CW-L2 attack")]
    # the list files as given are untouched
    assert "Brendel" not in (root / "papers" / "lists" / "002_a0669c1c0e0321e4.txt").read_text()
    assert "nothing to do" in cli("sync").stdout
    shown = cli("show", CW_KEY)
    assert "Defense Mechanisms [defense-mechanisms] #6" in shown.stdout


def test_duplicate_key_is_refused_and_nothing_changes(synced, cli, tmp_path: Path, db_dump) -> None:
    root, _ = synced
    bib = root / "papers" / "references.bib"
    before_file, before_db = bib.read_bytes(), db_dump()
    source = tmp_path / "dup.bib"
    source.write_text(
        "@misc{2015_Goodfellow_I_p-iclr_ehae, title={X}, author={Y, Z}, year={2015}}\n"
    )
    result = cli("add", "--bibtex", str(source))
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"error: {source}:1: key 2015_Goodfellow_I_p-iclr_ehae: already in papers/references.bib"
    )
    assert result.stderr.count("\n") == 1
    assert bib.read_bytes() == before_file and db_dump() == before_db


def test_replace_rewrites_the_entry_in_place(synced, cli, tmp_path: Path) -> None:
    root, _ = synced
    bib = root / "papers" / "references.bib"
    before = bib.read_text()
    source = tmp_path / "fgsm.bib"
    source.write_text(
        "@inproceedings{2015_Goodfellow_I_p-iclr_ehae, title={Explaining and Harnessing"
        " Adversarial Examples}, author={Goodfellow, Ian J. and Shlens, Jonathon and Szegedy,"
        " Christian}, booktitle={ICLR}, year={2015}, eprint={1412.6572}}\n"
    )
    result = cli("add", "--replace", "--bibtex", str(source))
    assert result.exit_code == 0, result.output
    after = bib.read_text()
    assert len(bt.parse(after).entries) == len(bt.parse(before).entries)
    assert after.index("@inproceedings{2015_Goodfellow_I_p-iclr_ehae") == before.index(
        "@inproceedings{2015_Goodfellow_I_p-iclr_ehae"
    )
    with session_scope() as session:
        venue = session.execute(
            text("SELECT venue FROM paper WHERE key = '2015_Goodfellow_I_p-iclr_ehae'")
        ).scalar()
    assert venue == "ICLR"


def test_database_failure_restores_references_bib(
    synced, cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_dump
) -> None:
    root, _ = synced
    bib = root / "papers" / "references.bib"
    before_file, before_db = bib.read_bytes(), db_dump()
    source = tmp_path / "cw.bib"
    source.write_text(CW)

    def broken(*args, **kwargs):
        raise catalog.CatalogError("database went away")

    monkeypatch.setattr(catalog.add, "sync_papers", broken)
    result = cli("add", "--bibtex", str(source), "--list", "defense-mechanisms")
    assert result.exit_code == 1
    assert result.stderr == "error: database went away\n"
    assert bib.read_bytes() == before_file
    assert not (root / "papers" / "lists" / "extra.toml").exists()
    assert db_dump() == before_db


def test_unknown_list_is_refused(synced, cli, tmp_path: Path) -> None:
    source = tmp_path / "cw.bib"
    source.write_text(CW)
    result = cli("add", "--bibtex", str(source), "--list", "no-such-list")
    assert result.exit_code == 1
    assert "unknown reading list 'no-such-list'" in result.stderr


def test_arxiv_offline_fails_at_once_suggesting_bibtex(
    synced, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADVREPRO_ARXIV_API", "http://127.0.0.1:9/api?id_list={id}")
    start = time.monotonic()
    result = cli("add", "arxiv:1608.04644")
    assert time.monotonic() - start < 5
    assert result.exit_code == 1
    assert "cannot reach arXiv" in result.stderr and "--bibtex FILE" in result.stderr
    assert result.stderr.count("\n") == 1


def test_arxiv_that_never_answers_times_out(synced, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)  # accepts the connection, never answers
    try:
        port = server.getsockname()[1]
        monkeypatch.setenv("ADVREPRO_ARXIV_API", f"http://127.0.0.1:{port}/?id_list={{id}}")
        monkeypatch.setenv("ADVREPRO_NET_TIMEOUT", "0.5")
        start = time.monotonic()
        result = cli("add", "arxiv:1608.04644")
        assert time.monotonic() - start < 3
    finally:
        server.close()
    assert result.exit_code == 1 and "--bibtex" in result.stderr


ATOM = """<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xmlns:arxiv="http://arxiv.org/schemas/atom">
  <entry>
    <id>http://arxiv.org/abs/1608.04644v2</id>
    <published>2016-08-16T19:24:51Z</published>
    <title>Towards Evaluating the Robustness
      of Neural Networks</title>
    <summary>Neural networks provide state-of-the-art results.</summary>
    <author><name>Nicholas Carlini</name></author>
    <author><name>David Wagner</name></author>
  </entry>
</feed>
"""


@pytest.fixture
def fake_arxiv(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            body = ATOM.encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/atom+xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    monkeypatch.setenv("ADVREPRO_ARXIV_API", f"http://127.0.0.1:{port}/api/query?id_list={{id}}")
    yield requests
    server.shutdown()


def test_arxiv_online_builds_a_house_style_entry(synced, cli, fake_arxiv) -> None:
    root, _ = synced
    result = cli("add", "arxiv:1608.04644")
    assert result.exit_code == 0, result.output
    assert fake_arxiv == ["/api/query?id_list=1608.04644"]
    key = "2016_Carlini_N_arxiv_ternn"
    assert f"added {key}" in result.stdout
    (entry,) = [e for e in bt.read(root / "papers" / "references.bib").entries if e.key == key]
    assert entry.get("title") == "Towards Evaluating the Robustness of Neural Networks"
    assert entry.get("author") == "Carlini, Nicholas and Wagner, David"
    assert bt.arxiv_id_of(entry) == "1608.04644"
    assert key in keys_in_db()


def test_concurrent_adds_lose_nothing(synced, tmp_path: Path) -> None:
    """Several `catalog add` processes at once: every entry ends up in the file and the catalog."""
    import os
    import subprocess
    import sys

    root, _ = synced
    exe = Path(sys.executable).with_name("catalog")
    procs = []
    keys = [f"2020_Writer_W_arxiv_c{i}" for i in range(3)]
    for i, key in enumerate(keys):
        source = tmp_path / f"{i}.bib"
        source.write_text(
            f"@misc{{{key}, title={{Concurrent {i}}}, author={{Writer, Wu}}, year=2020}}\n"
        )
        procs.append(
            subprocess.Popen(
                [str(exe), "add", "--bibtex", str(source)],
                env={**os.environ},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for proc in procs:
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    entries = {e.key for e in bt.read(root / "papers" / "references.bib").entries}
    assert set(keys) <= entries
    assert set(keys) <= keys_in_db()


def test_adding_a_paper_a_list_names_resolves_its_entry(lit: Path, cli, tmp_path: Path) -> None:
    bib = lit / "papers" / "references.bib"
    text_ = bib.read_text()
    start = text_.index("@inproceedings{2018_Dhillon_G_p-iclr_saprad")
    end = text_.index("\n}\n", start) + 3
    bib.write_text(text_[:start] + text_[end:])
    # our review of SAP would name a paper the catalog no longer has
    (lit / "papers" / "reviews" / "2018_Dhillon_G_p-iclr_saprad.md").unlink(missing_ok=True)
    (tmp_path / "sap.bib").write_text(text_[start:end])
    assert "1 list entry matches no paper (adversarial-robustness#2)" in cli("sync").stdout
    result = cli("add", "--bibtex", str(tmp_path / "sap.bib"))
    assert result.exit_code == 0, result.output
    with session_scope() as session:
        key = session.execute(
            text(
                "SELECT paper_key FROM listentry"
                " WHERE list_slug = 'adversarial-robustness' AND position = 2"
            )
        ).scalar()
    assert key == "2018_Dhillon_G_p-iclr_saprad"
    assert "nothing to do" in cli("sync").stdout


def test_add_on_a_never_synced_database_stores_the_lists_too(lit, db_url, cli, tmp_path) -> None:
    """`add` before any `sync`: the lists synced with the new paper name papers the database does
    not hold yet; they must be stored with it (a foreign-key failure here once lost the add)."""
    source = tmp_path / "new.bib"
    source.write_text(CW)
    result = cli("add", "--bibtex", str(source))
    assert result.exit_code == 0, result.output
    assert CW_KEY in keys_in_db()
    with session_scope() as session:
        entries = session.execute(text("SELECT count(*) FROM listentry")).scalar()
    assert entries == 31


ICLR_MACRO = '@string{iclr = "International Conference on Learning Representations (ICLR)"}\n\n'
CW_WITH_MACRO = ICLR_MACRO + CW.replace(
    "booktitle={International Conference on Learning Representations (ICLR)}", "booktitle = iclr"
)


def test_add_writes_the_string_definitions_the_entry_uses(synced, cli, tmp_path: Path) -> None:
    root, _ = synced
    bib = root / "papers" / "references.bib"
    before = bib.read_text()
    source = tmp_path / "cw.bib"
    source.write_text(CW_WITH_MACRO)
    result = cli("add", "--bibtex", str(source))
    assert result.exit_code == 0, result.output
    after = bib.read_text()
    assert after.startswith(before.rstrip("\n"))
    assert after[len(before.rstrip("\n")) :].startswith("\n\n" + ICLR_MACRO + "@inproceedings{")
    assert "  booktitle = iclr,\n" in after
    with session_scope() as session:
        venue = session.execute(
            text("SELECT venue FROM paper WHERE key = :k"), {"k": CW_KEY}
        ).scalar()
    assert venue == "International Conference on Learning Representations (ICLR)"
    assert "nothing to do" in cli("sync").stdout
    # another entry using the same macro: the file has the definition, it is not repeated
    source.write_text(ICLR_MACRO + TWO.replace("year={2016}", "booktitle = iclr, year={2016}"))
    assert cli("add", "--bibtex", str(source)).exit_code == 0
    assert bib.read_text().count("@string{iclr") == 1


def test_add_with_a_conflicting_string_definition_changes_nothing(
    synced, cli, tmp_path: Path, db_dump
) -> None:
    root, _ = synced
    bib = root / "papers" / "references.bib"
    source = tmp_path / "cw.bib"
    source.write_text(CW_WITH_MACRO)
    assert cli("add", "--bibtex", str(source)).exit_code == 0
    line = bib.read_text().split("\n").index(ICLR_MACRO.strip()) + 1
    before_file, before_db = bib.read_bytes(), db_dump()
    source.write_text(
        '@string{iclr = "ICLR"}\n' + TWO.replace("year={2016}", "booktitle=iclr, year={2016}")
    )
    result = cli("add", "--bibtex", str(source))
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: {source}:1: key 2016_Kurakin_A_arxiv_aepw: @string iclr = 'ICLR' conflicts with"
        f" papers/references.bib:{line} (iclr = 'International Conference on Learning"
        " Representations (ICLR)')\n"
    )
    assert bib.read_bytes() == before_file and db_dump() == before_db
