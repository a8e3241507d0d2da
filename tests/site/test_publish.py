"""`sitebuilder.publish`: the static site built from the catalog (on SQLite and PostgreSQL).

The catalog is the hand-made one of `conftest.py`. The tests read the built files the way a browser
would (HTML parsed, links followed on disk), without a browser; `test_browser.py` drives Chromium.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from sqlmodel import select

from catalog import CatalogError
from catalog.db import session_scope
from sitebuilder import PublishReport, publish
from sitebuilder.markdown import render_markdown, sanitize_notebook_html
from sitebuilder.status import STATUSES, paper_status, status_css
from sitebuilder.text import fmt_delta, safe_name

from .conftest import (
    CW,
    DG,
    FGSM,
    MADRY,
    PROBE,
    SAP,
    STATUS_OF,
    XSS_TITLE,
    make_catalog,
    run_summary,
)

# ----------------------------------------------------------------------------- helpers


class Page(HTMLParser):
    """The parts of an HTML page the checks need: tags with attributes, ids, headings, text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.ids: set[str] = set()
        self.headings: list[int] = []
        self.text: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if attributes.get("id"):
            self.ids.add(attributes["id"] or "")
        if re.fullmatch(r"h[1-6]", tag):
            self.headings.append(int(tag[1]))
        if tag in ("script", "style"):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.text.append(data)

    @property
    def plain(self) -> str:
        return re.sub(r"\s+", " ", "".join(self.text))


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def build(url: str, runs_dir: Path, out: Path) -> PublishReport:
    with session_scope(url) as session:
        return publish(session, out, runs_dir=runs_dir, root=runs_dir.parent)


@pytest.fixture
def site(catalog_db: tuple[str, Path], tmp_path: Path) -> tuple[Path, PublishReport]:
    url, runs_dir = catalog_db
    out = tmp_path / "site"
    return out, build(url, runs_dir, out)


def html_files(out: Path) -> list[Path]:
    return sorted(out.rglob("*.html"))


def paper_page(out: Path, key: str) -> Path:
    return out / "papers" / f"{safe_name(key)}.html"


# ----------------------------------------------------------------------------- the build


def test_build_writes_every_page(site: tuple[Path, PublishReport]) -> None:
    out, report = site
    for key in STATUS_OF:
        assert paper_page(out, key).is_file(), key
    for name in (
        "index.html",
        "runs.html",
        "comparison.html",
        "lists/adversarial-robustness.html",
        "lists/lecture-13.html",
        "search-index.json",
        "search-index.js",
        "static/style.css",
        "static/search.js",
        "static/site.js",
        "static/notebook.css",
    ):
        assert (out / name).is_file(), name
    assert report.papers == 7
    assert report.lists == 2
    assert report.runs == 6
    # shown in full: latest successful run per (slug, scale) and the newer failure of defense_gan
    assert report.notebooks == 5
    assert report.figures == 3  # recon.png twice, loss.png; missing.png is reported instead
    assert report.pages == len(html_files(out))
    assert any("missing.png missing" in w for w in report.warnings)
    assert any("papernot_blackbox" in w and "run directory not found" in w for w in report.warnings)
    index = json.loads((out / "search-index.json").read_text())
    assert {p["key"] for p in index["papers"]} == set(STATUS_OF)
    js = (out / "search-index.js").read_text()
    assert js.startswith("window.ADVREPRO_INDEX = {")
    assert json.loads(js[len("window.ADVREPRO_INDEX = ") :].rstrip().rstrip(";")) == index


def test_same_catalog_same_bytes(catalog_db: tuple[str, Path], tmp_path: Path) -> None:
    url, runs_dir = catalog_db
    first, second = tmp_path / "a" / "site", tmp_path / "b" / "site"
    build(url, runs_dir, first)
    build(url, runs_dir, second)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for rel in files:
        assert (first / rel).read_bytes() == (second / rel).read_bytes(), rel
    # rebuilding in place replaces the folder and gives the same bytes again
    before = {rel: (first / rel).read_bytes() for rel in files}
    build(url, runs_dir, first)
    assert {rel: (first / rel).read_bytes() for rel in files} == before
    assert not [p for p in first.parent.iterdir() if p.name.startswith(".site-")]


def test_refuses_to_replace_a_foreign_folder(catalog_db: tuple[str, Path], tmp_path: Path) -> None:
    url, runs_dir = catalog_db
    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(CatalogError, match="not built by `catalog publish`"):
        build(url, runs_dir, foreign)
    assert (foreign / "thesis.tex").read_text() == "precious"


def test_failed_build_keeps_the_previous_site(
    catalog_db: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sitebuilder.write as publish_module

    url, runs_dir = catalog_db
    out = tmp_path / "site"
    build(url, runs_dir, out)
    before = (out / "index.html").read_bytes()

    def broken(_catalog: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(publish_module, "_search_index", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        build(url, runs_dir, out)
    assert (out / "index.html").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".site-")]  # no leftovers


def test_an_out_that_cannot_be_written_is_one_line_and_changes_nothing(
    catalog_db: tuple[str, Path], tmp_path: Path
) -> None:
    """`--out` below a file, or where no folder can be made: one line, exit 1, no traceback, the
    file untouched and no temporary folder left (issue 10)."""
    from typer.testing import CliRunner

    from catalog.cli import app

    _url, runs_dir = catalog_db
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    for out in (a_file, a_file / "site", Path("/proc/advrepro-site")):
        result = CliRunner().invoke(
            app, ["publish", "--out", str(out), "--runs-dir", str(runs_dir)]
        )
        assert result.exit_code == 1, (out, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit)
        (line,) = result.output.strip().splitlines()
        assert line.startswith("error: ") and str(out) in line, line
    assert a_file.read_text() == "keep me"
    assert not [p for p in tmp_path.iterdir() if "-build-" in p.name]


def test_a_failed_swap_puts_the_previous_site_back(
    catalog_db: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, runs_dir = catalog_db
    out = tmp_path / "site"
    build(url, runs_dir, out)
    before = (out / "index.html").read_bytes()
    real_rename = Path.rename

    def rename(self: Path, target: Path) -> Path:
        if self.name.startswith(".site-build-"):
            raise OSError(30, "Read-only file system")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(CatalogError, match="cannot replace it: Read-only file system"):
        build(url, runs_dir, out)
    assert (out / "index.html").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".site-")]


def test_a_symlinked_run_file_is_left_out(catalog_db: tuple[str, Path], tmp_path: Path) -> None:
    """A figure or notebook in a run folder that is a link (to /etc/passwd, say) is never copied
    into the site: a warning says so."""
    url, runs_dir = catalog_db
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG not for the site: root:x:0:0")
    figure = next(runs_dir.rglob("recon.png"))
    figure.unlink()
    figure.symlink_to(secret)
    notebook = next(runs_dir.rglob("reproduce.ipynb"))
    notebook.rename(tmp_path / "elsewhere.ipynb")
    notebook.symlink_to(tmp_path / "elsewhere.ipynb")
    out = tmp_path / "site"
    report = build(url, runs_dir, out)
    linked = [w for w in report.warnings if "is a symbolic link" in w]
    assert any("figure figures/recon.png" in w for w in linked), report.warnings
    assert any("notebook reproduce.ipynb" in w for w in linked), report.warnings
    for path in out.rglob("*"):
        if path.is_file():
            assert b"not for the site" not in path.read_bytes(), path


def test_removed_paper_disappears_on_rebuild(catalog_db: tuple[str, Path], tmp_path: Path) -> None:
    from catalog.models import ListEntry, Paper, PaperAuthor

    url, runs_dir = catalog_db
    out = tmp_path / "site"
    build(url, runs_dir, out)
    assert paper_page(out, PROBE).exists()
    with session_scope(url) as session:
        for model in (ListEntry, PaperAuthor):
            for row in session.exec(select(model).where(model.paper_key == PROBE)):
                session.delete(row)
        session.delete(session.get(Paper, PROBE))
    build(url, runs_dir, out)
    assert not paper_page(out, PROBE).exists()


# ----------------------------------------------------------------------------- safety


def test_hostile_text_is_escaped_everywhere(site: tuple[Path, PublishReport]) -> None:
    out, _ = site
    for path in html_files(out):
        html = path.read_text(encoding="utf-8")
        assert "<script>window" not in html, path
        assert "<img src=x" not in html and '<img src="x"' not in html, path
        for tag, attrs in parse(path).tags:
            handlers = [a for a in attrs if a.startswith("on")]
            assert not handlers, f"{path}: <{tag}> has {handlers}"
            if tag == "script":
                assert attrs.get("src"), f"{path}: inline <script>"
            assert "style" not in attrs, f"{path}: inline style on <{tag}> (blocked by the CSP)"
    probe = paper_page(out, PROBE)
    page = parse(probe)
    assert XSS_TITLE in page.plain  # shown as text, title and h1
    assert "&lt;img src=x onerror=&#34;window.__xss=1&#34;&gt;" in probe.read_text()
    index = (out / "index.html").read_text()
    assert "&lt;img src=x onerror=" in index
    sap_list = parse(out / "lists" / "adversarial-robustness.html").plain
    assert "<script>window.__xss=1</script> SAP prunes" in sap_list
    review = parse(paper_page(out, DG)).plain
    assert "<script>window.__xss=1</script>" in review
    assert "<img src=x onerror=alert(1)>" in review


def test_markdown_is_sanitized() -> None:
    html = render_markdown(
        "# T\n\n<script>alert(1)</script> [a](javascript:alert(1)) [b](../x.md) "
        "[c](https://arxiv.org/abs/1) ![i](https://evil.example/i.png) <b onclick=x>b</b>"
    )
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert 'href="javascript' not in html
    assert 'href="../x.md"' not in html
    assert 'href="https://arxiv.org/abs/1"' in html
    assert "evil.example" not in html
    assert "<b onclick" not in html
    assert html.startswith("<h3>T</h3>")
    # heading levels are made consecutive: # then ### become h3 then h4
    assert "<h4>" in render_markdown("# a\n\n### b") and "<h5>" not in render_markdown(
        "# a\n\n### b"
    )


def test_notebook_html_is_sanitized() -> None:
    html = sanitize_notebook_html(
        '<div class="cell"><img src="data:image/png;base64,AAAA" alt="fig">'
        '<img src="https://evil.example/x.png"><script>alert(1)</script>'
        '<a href="javascript:alert(1)">x</a><p style="color:red" onclick="x()">t</p>'
        '<link rel="stylesheet" href="https://cdn.example/x.css"></div>'
    )
    assert 'src="data:image/png;base64,AAAA"' in html
    assert "evil.example" not in html and "cdn.example" not in html
    assert "<script" not in html and "alert(1)" not in html
    assert "javascript:" not in html and "onclick" not in html and "style=" not in html
    assert "[image: not shown]" in html  # the remote image is named, not a broken icon


@pytest.mark.parametrize("alt", ["a><script>alert(1)</script>", 'q"><b onclick=x>', "plain"])
def test_dropped_image_alt_text_stays_text(alt: str) -> None:
    escaped = alt.replace('"', "&quot;")
    for html in (
        sanitize_notebook_html(f'<img alt="{escaped}" src="https://evil.example/x.png">'),
        render_markdown(f"![{alt}](https://evil.example/x.png)"),
    ):
        assert "<script" not in html and "<b " not in html and "evil.example" not in html
        assert "not shown]" in html


def test_links_are_relative_and_resolve(site: tuple[Path, PublishReport]) -> None:
    """Walk every page: each internal href/src names an existing file (and anchor); nothing is
    loaded from another host; outbound links are plain <a href>."""
    out, _ = site
    ids: dict[Path, set[str]] = {}
    outbound = set()
    checked = 0
    for path in html_files(out):
        page = parse(path)
        ids.setdefault(path.resolve(), page.ids)
        for tag, attrs in page.tags:
            for attr in ("href", "src", "srcset", "action", "data", "poster"):
                value = attrs.get(attr)
                if value is None:
                    continue
                parts = urlsplit(value)
                if parts.scheme in ("http", "https"):
                    assert tag == "a" and attr == "href", f"{path}: <{tag} {attr}={value}> loads"
                    outbound.add(parts.netloc)
                    continue
                if parts.scheme == "data":
                    assert (tag, attr) in (("img", "src"), ("link", "href")), (
                        f"{path}: {value[:40]}"
                    )
                    continue
                assert not parts.scheme and not parts.netloc, f"{path}: {value}"
                assert not value.startswith("/"), f"{path}: absolute link {value}"
                target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
                assert target.is_file(), f"{path}: {attr}={value} does not resolve"
                assert out.resolve() in target.parents, f"{path}: {value} leaves the site"
                if parts.fragment and target.suffix == ".html":
                    if target.resolve() not in ids:
                        ids[target.resolve()] = parse(target).ids
                    assert unquote(parts.fragment) in ids[target.resolve()], f"{path}: {value}"
                checked += 1
    assert checked > 100
    assert {"arxiv.org", "github.com", "doi.org"} <= outbound


def test_pages_are_accessible(site: tuple[Path, PublishReport]) -> None:
    out, _ = site
    for path in html_files(out):
        page = parse(path)
        assert page.headings.count(1) == 1, f"{path}: {page.headings.count(1)} h1"
        assert page.headings[0] == 1, path
        for before, after in zip(page.headings, page.headings[1:], strict=False):
            assert after <= before + 1, f"{path}: h{before} followed by h{after}"
        for tag, attrs in page.tags:
            if tag == "img":
                assert attrs.get("alt"), f"{path}: img without alt text"
            if tag == "html":
                assert attrs.get("lang") == "en"
        labels = {attrs.get("for") for tag, attrs in page.tags if tag == "label"}
        for tag, attrs in page.tags:
            if tag in ("input", "select", "textarea"):
                assert attrs.get("id") in labels, f"{path}: <{tag}> without a label"
        assert any(t == "meta" and a.get("name") == "viewport" for t, a in page.tags), (
            f"{path}: no viewport"
        )


# ----------------------------------------------------------------------------- status


def _summary(scale: str, status: str = "succeeded", *, rows=(), claims=()) -> dict:
    return run_summary(
        f"r-{scale}-{len(rows)}-{len(claims)}",
        "x",
        scale,
        "2026-11-21T00:00:00+00:00",
        status=status,
        rows=[{"id": f"r{i}", "verdict": v} for i, v in enumerate(rows)],
        claims=[{"id": f"c{i}", "holds": h} for i, h in enumerate(claims)],
    )


@pytest.mark.parametrize(
    ("summaries", "expected"),
    [
        ([], "pending"),
        ([_summary("smoke", claims=[True])], "pending"),
        ([_summary("small", status="failed")], "not reproduced"),
        ([_summary("small", claims=[True, True, None])], "reproduced at reduced scale"),
        ([_summary("small", claims=[True, False])], "partial"),
        ([_summary("small", claims=[False])], "not reproduced"),
        ([_summary("small", claims=[None])], "pending"),
        ([_summary("full", rows=["match", "not_run"], claims=[True])], "reproduced"),
        ([_summary("full", rows=["match", "deviates"])], "partial"),
        ([_summary("full", rows=["deviates"], claims=[False])], "not reproduced"),
        # nothing comparable at full: the small run's claims decide
        (
            [_summary("full", rows=["not_compared"]), _summary("small", claims=[True])],
            "reproduced at reduced scale",
        ),
    ],
)
def test_paper_status_vocabulary(summaries: list[dict], expected: str) -> None:
    status = paper_status(summaries, reproductions=["x"])
    assert status.label == expected
    assert status.label in STATUSES and status.reason


def test_paper_status_uses_the_latest_run_of_a_scale() -> None:
    old = _summary("small", claims=[False])
    new = dict(_summary("small", claims=[True]), run_id="r-new", started_at="2026-11-22T00:00:00Z")
    assert paper_status([new, old]).label == "reproduced at reduced scale"
    assert paper_status([], reproductions=[]).label == "pending"


def test_status_is_consistent_across_pages(site: tuple[Path, PublishReport]) -> None:
    out, _ = site
    index = json.loads((out / "search-index.json").read_text())
    assert index["statuses"] == list(STATUSES)
    by_key = {p["key"]: p["status"] for p in index["papers"]}
    assert by_key == STATUS_OF
    assert set(STATUS_OF.values()) == set(STATUSES)  # the fixture exercises every status
    index_html = (out / "index.html").read_text()
    for path in html_files(out):
        for css, label in re.findall(
            r'<span class="badge (status-[a-z-]+)"[^>]*>([^<]+)</span>', path.read_text()
        ):
            assert css in {status_css(s) for s in STATUSES}, f"{path}: {css}"
            assert status_css(label) == css, f"{path}: '{label}' shown with {css}"
    for key, status in STATUS_OF.items():
        row = re.search(rf'<tr data-key="{re.escape(key)}">.*?</tr>', index_html, re.S)
        assert row and f">{status}</span>" in row.group(0), key
        assert (
            f'class="badge {status_css(status)}">{status}</span>'
            in paper_page(out, key).read_text()
        ), key


def test_pending_paper_says_so(site: tuple[Path, PublishReport]) -> None:
    out, _ = site
    text = parse(paper_page(out, SAP)).plain
    assert "pending" in text and "No reproduction of this paper yet" in text
    cw = parse(paper_page(out, CW)).plain
    assert "method only" in cw and "Used by: Defense-GAN" not in cw  # the link text is the title
    assert "defense_gan" in cw  # used by


# ----------------------------------------------------------------------------- content


def test_paper_page_shows_the_reproduction(site: tuple[Path, PublishReport]) -> None:
    out, _ = site
    path = paper_page(out, DG)
    html = path.read_text().replace("<wbr>", "")  # break hints in long ids
    text = parse(path).plain
    # facts, links, BibTeX
    assert "Pouya Samangouei, Maya Kabkab, Rama Chellappa" in text
    assert 'href="https://arxiv.org/abs/1805.06605"' in html
    assert 'href="https://github.com/kabkabm/defensegan"' in html
    assert re.search(r'<pre id="bibtex"[^>]*><code>@inproceedings\{' + DG, html)
    assert 'data-copy="bibtex"' in html
    # each list's note, attributed
    assert "Note from Adversarial Robustness" in text and "Projects inputs onto the range" in text
    assert "Note from Theories of Deep Learning, lecture 13" in text
    # a citation in a note links to the cited paper's page; an unknown key stays as written
    assert f'<a href="../papers/{FGSM}.html" rel="noopener noreferrer">Goodfellow 2015</a>' in html
    assert "[@1999_Nobody_X_none]" in text
    # review rendered (front matter shown, markdown table rendered)
    assert "reviewer" in text and "<table>" in html and "What held" in text
    # expected vs measured, with delta, verdict, reason and provenance
    row = re.search(
        r'<tr class="row-not-compared"><th scope="row" class="rowid">t4_mnist_fgsm_a_rec.*?</tr>',
        html,
    )
    assert row, "t4_mnist_fgsm_a_rec row"
    cells = re.sub(r"<[^>]+>", "|", row.group(0))
    for piece in (
        "0.988",
        "0.93",
        "−0.058",
        "not compared",
        "reduced scale",
        "arXiv 1805.06605v2 p.10 [P]",
    ):
        assert piece in cells, piece
    assert "no MagNet implementation here" in text
    assert 'class="prov unverified">unverified: read off a blurry scan' in html
    assert "0.896 ± 0.0017" in text  # the printed std beside the paper's number
    assert '<span class="k">paper_std</span>' not in html  # not shown as a setting
    assert '<span class="k">status</span>' not in html
    # drift markers (catalog.drift) on a row and a claim, with what changed as the tooltip
    assert 'title="changed since the previous run: value 0.31 → 0.25 (tolerance 0.03)"' in html
    assert 'title="changed since the previous run: holds: not evaluated → true"' in html
    # claims: holds and not evaluated, with the reason
    assert "holds Defense-GAN-Rec beats no defense by 50 points" in text
    assert "not evaluated Reconstruction costs under a second per image" in text
    # figures with alt text, the missing one said so
    assert 'alt="Clean, adversarial and reconstructed digits"' in html
    assert "image file missing" in text
    # the newer failed full run, its error escaped
    assert "The latest full run failed" in text and "CUDA out of memory" in text
    # provenance
    for piece in ("0123456789ab", "torch", "2.9.0", "1 min 24 s", "runner-1", "cpu"):
        assert piece in text, piece
    # run history with a chart per row measured twice, and the notebook link
    assert text.count("2026-11-2") >= 3
    assert html.count("<svg") >= 2 and 'role="img"' in html
    assert "t4_mnist_fgsm_a_rec (accuracy) across 2 runs" in html
    assert "runs/defense_gan/20261121T020000Z-defense_gan-small-bbbbbb/notebook.html" in html
    # uses and used by
    assert "Uses:" in text and "carlini_wagner" in text and "fgsm" in text
    fgsm = parse(paper_page(out, FGSM)).plain
    assert "Used by:" in fgsm and "defense_gan" in fgsm and "madry_pgd" in fgsm


def test_notebook_page_is_rendered_and_inert(site: tuple[Path, PublishReport]) -> None:
    out, _ = site
    path = out / "runs/defense_gan/20261121T020000Z-defense_gan-small-bbbbbb/notebook.html"
    html = path.read_text()
    assert "accuracy 0.91" in html  # a stream output
    assert 'src="data:image/png;base64,' in html  # an embedded figure
    assert "evil.example" not in html and "<script>window" not in html
    assert "Reproduce defense_gan" in parse(path).plain


def test_reading_list_page_keeps_order_and_notes(site: tuple[Path, PublishReport]) -> None:
    out, _ = site
    path = out / "lists/lecture-13.html"
    text = parse(path).plain
    titles = ["Explaining and Harnessing", "Towards Deep Learning Models", "Defense-GAN", XSS_TITLE]
    positions = [text.index(t) for t in titles]
    assert positions == sorted(positions)
    assert "Slide: FGSM (Goodfellow et al. 15')" in text
    robust = parse(out / "lists/adversarial-robustness.html").plain
    assert (
        "Model Compression with Adversarial Robustness" in robust and "not in the catalog" in robust
    )


def test_runs_page_lists_runs_and_failures(site: tuple[Path, PublishReport]) -> None:
    out, _ = site
    text = parse(out / "runs.html").plain
    assert "6 runs recorded, 2 failed" in text
    assert text.index("2026-11-21 04:00 UTC") < text.index("2026-11-18 07:00 UTC")  # newest first
    failures = text[text.index("Failures") :]
    assert "CUDA out of memory" in failures
    assert "mnist training split not found" in failures


def test_comparison_page(site: tuple[Path, PublishReport]) -> None:
    out, _ = site
    html = (out / "comparison.html").read_text()
    text = parse(out / "comparison.html").plain
    section = html[html.index('<h2 id="cmp-mnist-attack-fgsm-eps-0-3') :]
    section = section[: section.index("</section>")]
    heads = re.findall(r'<th scope="col">([^<]+)</th>', section)
    assert heads == ["Paper · model", "no defense", "defense_gan_rec", "madry_pgd"]
    plain = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", section))
    # Defense-GAN at small scale (accuracy fraction -> %), Madry at full
    assert "25.0 paper 21.7 not compared" in plain
    assert "93.0 paper 98.8 not compared L 200 · R 10" in plain
    assert "95.1 paper 95.6 match" in plain
    # FGSM's error rates become accuracies: 100 - 90.1 and 100 - 25.0
    assert "9.9 paper 10.6 match" in text and "75.0 paper 82.1 deviates" in text
    assert "fgsm adversarial (alpha 0.5)" in text  # FGSM's `training` column is its defense
    # the seconds-per-image row (no attack, not an accuracy) stays out; MagNet was not run
    assert "seconds" not in text and "magnet" not in section
    assert "No successful run yet" in text and "papernot_blackbox" in text


def test_defense_of_a_row() -> None:
    from sitebuilder.tables import UNSTATED, _defense_of

    assert _defense_of({"defense": "defense_gan_rec", "training": "natural"}) == "defense_gan_rec"
    assert _defense_of({"training": "natural"}) == "none"
    assert _defense_of({"training": "fgsm adversarial"}) == "fgsm adversarial"
    assert _defense_of({"defense": "None"}) == "none"
    assert _defense_of({"attack": "fgsm"}) == UNSTATED


def test_accuracy_in_percent_follows_the_declared_unit() -> None:
    """Fraction or percent is the row's declared unit, never a guess from the value; the name
    only says accuracy or error rate."""
    from sitebuilder.tables import accuracy_pct

    assert accuracy_pct("accuracy", 0.5, "fraction") == 50.0
    assert accuracy_pct("accuracy", 0.5, "percent") == 0.5  # 0.5 % (the old guess said 50 %)
    assert accuracy_pct("accuracy_pct", 98.8, "percent") == 98.8
    assert accuracy_pct("error_pct", 10.6, "percent") == 100.0 - 10.6
    assert accuracy_pct("error_rate", 0.005, "fraction") == 100.0 - 0.5
    assert accuracy_pct("error_rate", 0.5, "percent") == 99.5  # the old guess said 50.0
    assert accuracy_pct("accuracy", 0.5, None) is None  # no unit: left out, not guessed
    assert accuracy_pct("auc", 0.9, "fraction") is None  # a proportion, but not an accuracy
    assert accuracy_pct("seconds_per_image", 0.7, "seconds") is None


def test_rows_of_a_run_come_from_the_comparison_frame() -> None:
    from catalog.schema import ExpectedRow
    from sitebuilder.tables import expected_view, rows_of_run, run_comparison

    def exp(row_id: str, paper: float | None, **more: object) -> ExpectedRow:
        tolerance = 0.03 if paper is not None else None
        fields = {"source": "Table 1", "dataset": "mnist", "metric": "accuracy", **more}
        return ExpectedRow(id=row_id, paper=paper, tolerance=tolerance, unit="fraction", **fields)

    expected = [
        exp("a", 0.9, paper_std=0.01, setting={"attack": "fgsm", "eps": 0.3}),
        exp("b", None, status="not_run: needs CelebA"),
        exp("c", 0.5, provenance="unverified: from memory"),
    ]
    recorded = [
        {"id": "a", "value": 0.85, "paper": 0.9, "delta": -0.05, "verdict": "not_compared",
         "reason": "small scale", "changed": True, "change": "value 0.8 → 0.85"},
        {"id": "zz_gone", "value": 0.4, "paper": 0.7, "delta": -0.3, "verdict": "not_compared"},
        {"id": "aa_gone", "value": 0.1, "verdict": "not_compared", "reason": "not in expected.csv"},
    ]  # fmt: skip
    summary = run_summary("r1", "x", "small", "2026-11-21T00:00:00+00:00", rows=recorded)
    rows = rows_of_run(run_comparison(expected, summary))
    assert [r.id for r in rows] == ["a", "b", "c", "aa_gone", "zz_gone"]
    a, b, c, _, gone = rows
    assert (a.paper, a.ours, a.delta, a.verdict_label, a.reason) == (
        "0.9 ± 0.01", "0.85", "−0.05", "not compared", "small scale"
    )  # fmt: skip
    assert a.setting == [("attack", "fgsm"), ("eps", "0.3")]
    assert a.changed and a.change == "value 0.8 → 0.85" and not c.changed
    assert (b.verdict, b.reason, b.paper, b.ours) == (
        "not_run",
        "not recorded by this run",
        "–",
        "–",
    )
    assert c.unverified and c.paper == "0.5"
    # recorded but no longer in expected.csv: the paper's number as the run recorded it
    assert (gone.source, gone.paper, gone.ours, gone.delta) == ("(not in expected.csv)", "0.7",
                                                                "0.4", "−0.3")  # fmt: skip
    # before any run, a row's status is its reason (not a setting)
    assert expected_view(expected[1]).reason == "not_run: needs CelebA"
    assert expected_view(expected[1]).setting == []


def test_comparison_with_a_single_defense(db_url: str, tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    make_catalog(db_url, runs_dir, only={"madry_pgd"})
    out = tmp_path / "site"
    report = build(db_url, runs_dir, out)
    text = parse(out / "comparison.html").plain
    assert "1 defense" in text and "89.9 paper 89.3" in text
    assert report.runs == 1


def test_empty_catalog_builds(db_url: str, tmp_path: Path) -> None:
    out = tmp_path / "site"
    report = build(db_url, tmp_path / "runs", out)
    assert report.papers == 0 and (out / "index.html").is_file()
    assert "No run yet" in parse(out / "runs.html").plain
    assert "No defense has been run yet" in parse(out / "comparison.html").plain


def test_number_formatting() -> None:
    assert fmt_delta(-0.058) == "−0.058" and fmt_delta(0.5) == "+0.5" and fmt_delta(None) == "–"
    assert safe_name(DG) == DG and safe_name(MADRY) == MADRY
    assert safe_name("../etc/passwd") != "../etc/passwd" and "/" not in safe_name("a/b")


def _contrast(fg: str, bg: str) -> float:
    def luminance(colour: str) -> float:
        channels = [int(colour.lstrip("#")[i : i + 2], 16) / 255 for i in (0, 2, 4)]
        lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    high, low = sorted((luminance(fg), luminance(bg)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_every_status_has_an_aa_colour() -> None:
    """Each status label has one CSS rule, and its white text passes WCAG AA (4.5:1)."""
    css = (Path(__file__).resolve().parents[2] / "site" / "static" / "style.css").read_text()
    variables = dict(re.findall(r"--([a-z-]+):\s*(#[0-9a-fA-F]{6})", css))
    colours = {}
    for label in STATUSES:
        rules = re.findall(rf"\.{status_css(label)}\s*\{{\s*background:\s*([^;]+);", css)
        assert len(rules) == 1, f"{label}: {rules}"
        value = rules[0].strip()
        colour = variables[value[6:-1]] if value.startswith("var(--") else value
        assert _contrast("#ffffff", colour) >= 4.5, f"{label}: {colour}"
        colours[label] = colour.lower()
    assert len(set(colours.values())) == len(STATUSES)  # five statuses, five colours


def test_cli_publish(catalog_db: tuple[str, Path], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from catalog.cli import app

    _, runs_dir = catalog_db
    out = tmp_path / "cli-site"
    result = CliRunner().invoke(app, ["publish", "--out", str(out), "--runs-dir", str(runs_dir)])
    assert result.exit_code == 0, result.output
    assert "19 pages (7 papers, 2 lists, 6 runs, 5 notebooks, 3 figures)" in result.output
    assert (out / "index.html").is_file()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    result = CliRunner().invoke(app, ["publish", "--out", str(foreign)])
    assert result.exit_code == 1
    assert "not built by `catalog publish`" in result.output
