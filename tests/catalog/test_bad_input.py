"""Bad input (issue item 6): one clear line naming file, line and key; exit 1; nothing changes.

Each case starts from a synced catalog, breaks one file, runs `catalog sync`, and checks that the
error is a single line with the right place, that the database is exactly as before, and that
`references.bib` was not rewritten.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

FGSM = "2015_Goodfellow_I_p-iclr_ehae"
BIB = "papers/references.bib"
JEKYLL = "papers/lists/002_a0669c1c0e0321e4.txt"
REVIEW_LIST = "papers/lists/000_a0d081c71b00c22e.txt"


def entry_span(text: str, key: str) -> tuple[int, int]:
    start = text.index("@inproceedings{" + key)
    return start, text.index("\n}\n", start) + 3


def line_at(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def unclosed_entry(root: Path) -> str:
    bib = root / BIB
    text = bib.read_text()
    start, end = entry_span(text, FGSM)
    bib.write_text(text[: end - 2] + text[end - 1 :])  # drop the entry's closing brace
    return rf"{BIB}:{line_at(text, start)}: key {FGSM}: entry is not closed \(missing '}}'\)"


def missing_field(name: str) -> Callable[[Path], str]:
    def breaker(root: Path) -> str:
        bib = root / BIB
        text = bib.read_text()
        start, end = entry_span(text, FGSM)
        entry = re.sub(rf"\n  {name} = [^\n]*", "", text[start:end], count=1)
        bib.write_text(text[:start] + entry + text[end:])
        return rf"{BIB}:{line_at(text, start)}: key {FGSM}: missing required field '{name}'"

    return breaker


def duplicate_key(root: Path) -> str:
    bib = root / BIB
    text = bib.read_text()
    start, end = entry_span(text, FGSM)
    bib.write_text(text + "\n" + text[start:end])
    second = line_at(text, len(text)) + 1
    return rf"{BIB}:{second}: key {FGSM}: duplicate key \(first defined at line {line_at(text, start)}\)"


def bad_year(root: Path) -> str:
    bib = root / BIB
    text = bib.read_text()
    start, end = entry_span(text, FGSM)
    entry = text[start:end].replace("year = {2015}", "year = {MMXV}")
    bib.write_text(text[:start] + entry + text[end:])
    year_line = line_at(text, start) + entry[: entry.index("year =")].count("\n")
    return rf"{BIB}:{year_line}: key {FGSM}: bad year 'MMXV'"


def unknown_key_in_list(root: Path) -> str:
    page = root / JEKYLL
    page.write_text(
        page.read_text().replace("2014_Szegedy_C_p-iclr_ipnn", "2014_Szegedy_C_p-iclr_typo")
    )
    return rf"{JEKYLL}:15: key 2014_Szegedy_C_p-iclr_typo: not in papers/references.bib"


def undecodable_list(root: Path) -> str:
    path = root / REVIEW_LIST
    lines = path.read_bytes().split(b"\n")
    lines[4] = b"\xff\xfe not text"
    path.write_bytes(b"\n".join(lines))
    return rf"{REVIEW_LIST}:5: not UTF-8 text \(byte 0xff\)"


def list_that_is_a_folder(root: Path) -> str:
    (root / "papers" / "lists" / "zzz.txt").mkdir()
    return r"papers/lists/zzz.txt: is a directory, not a file"


def list_in_no_known_format(root: Path) -> str:
    (root / "papers" / "lists" / "notes.txt").write_text("Some thoughts, no papers.\n")
    return r"papers/lists/notes.txt: cannot tell which reading-list format this is"


def broken_front_matter(root: Path) -> str:
    review = root / "papers" / "reviews" / "2018_Samangouei_P_p-iclr_dpcaaugm.md"
    review.write_text("---\ntitle: [unclosed\n---\nBody\n")
    return r"papers/reviews/2018_Samangouei_P_p-iclr_dpcaaugm.md:\d+: bad YAML front matter"


def metric_without_unit(root: Path) -> str:
    toml = root / "repro" / "demo" / "repro.toml"
    toml.write_text(toml.read_text().replace('[metrics]\nerror_pct = "percent"\n', ""))
    return (
        r"repro/demo/expected.csv:2: metric 'error_pct' has no unit: declare it in "
        r"repro/demo/repro.toml under \[metrics\]"
    )


CASES = {
    "malformed-bibtex": unclosed_entry,
    "no-title": missing_field("title"),
    "no-year": missing_field("year"),
    "no-author": missing_field("author"),
    "duplicate-key": duplicate_key,
    "bad-year": bad_year,
    "unknown-key-in-list": unknown_key_in_list,
    "undecodable-list": undecodable_list,
    "list-is-a-folder": list_that_is_a_folder,
    "unknown-list-format": list_in_no_known_format,
    "broken-review-front-matter": broken_front_matter,
    "metric-without-unit": metric_without_unit,
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_changes_nothing(case: str, synced, cli, db_dump) -> None:
    root, _ = synced
    expected = CASES[case](root)
    bib_before = (root / BIB).read_bytes()
    bib_mtime = (root / BIB).stat().st_mtime_ns
    db_before = db_dump()
    result = cli("sync")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert re.match(rf"^error: {expected}", result.stderr), result.stderr
    assert db_dump() == db_before
    assert (root / BIB).read_bytes() == bib_before and (root / BIB).stat().st_mtime_ns == bib_mtime


def test_add_with_a_malformed_entry_changes_nothing(synced, cli, tmp_path: Path, db_dump) -> None:
    root, _ = synced
    before = (root / BIB).read_bytes(), db_dump()
    source = tmp_path / "new.bib"
    source.write_text("@misc{2020_New_N_arxiv_x,\n  title = {No author},\n  year = {2020},\n}\n")
    result = cli("add", "--bibtex", str(source))
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: {source}:1: key 2020_New_N_arxiv_x: missing required field 'author'\n"
    )
    assert ((root / BIB).read_bytes(), db_dump()) == before


UNREACHABLE = "postgresql+psycopg://postgres@127.0.0.1:1/none"


@pytest.mark.parametrize(
    "args",
    [
        ("sync",),
        ("list",),
        ("show", FGSM),
        ("search", "gan"),
        ("export", "--format", "json"),
        ("check",),
        ("add", "--bibtex", "NEW"),
    ],
    ids=lambda a: a[0],
)
def test_unreachable_database_is_one_clear_line(
    args: tuple[str, ...], cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from catalog.db import reset_engines

    repo = Path(__file__).resolve().parents[2]
    root = tmp_path / "project"
    shutil.copytree(repo / "papers", root / "papers")
    monkeypatch.setenv("ADVREPRO_ROOT", str(root))
    monkeypatch.setenv("DATABASE_URL", UNREACHABLE)
    reset_engines()
    new = tmp_path / "new.bib"
    new.write_text("@misc{2020_New_N_arxiv_x, title={T}, author={New, Nora}, year={2020}}\n")
    args = tuple(str(new) if a == "NEW" else a for a in args)
    bib_before = (root / BIB).read_bytes()
    result = cli(*args)
    reset_engines()
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(
        "error: cannot open database postgresql+psycopg://postgres@127.0.0.1:1/none:"
    )
    assert (root / BIB).read_bytes() == bib_before
