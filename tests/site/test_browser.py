"""The built site in a real browser: Playwright driving Debian's Chromium, pages opened from file://.

Checks what only a browser can: the scripts run without console errors under the page's CSP,
search and filters change what is shown, the copy button appears, hostile text stays inert, and
nothing is requested from outside the site folder; the paper pages read like the paper (the real
Defense-GAN page, built from the repository's folder and its run of record, fits in 15,000 px at
1280 px wide with every table of its expected.csv), every paper with a run has its scatter plot,
the index shows the headline numbers, and the results can be reached with the keyboard.
Screenshots of the index, the Defense-GAN page and the scoreboard go to `$ADVREPRO_ARTIFACTS`
(default `artifacts/screenshots/`, git-ignored).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from catalog.db import reset_engines, session_scope
from sitebuilder import publish
from sitebuilder.text import safe_name

from .conftest import DG, FGSM, MADRY, PROBE, STATUS_OF, make_catalog

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("ADVREPRO_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
REPO = Path(__file__).resolve().parents[2]


def artifacts_dir() -> Path:
    path = Path(os.environ.get("ADVREPRO_ARTIFACTS") or REPO / "artifacts" / "screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def built_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The conftest catalog on SQLite, published once for the module."""
    tmp = tmp_path_factory.mktemp("browser")
    url = f"sqlite:///{tmp / 'catalog.db'}"
    reset_engines()
    make_catalog(url, tmp / "runs")
    with session_scope(url) as session:
        publish(session, tmp / "site", runs_dir=tmp / "runs", root=tmp)
    reset_engines()
    yield tmp / "site"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI=true but no Chromium at {CHROMIUM}")
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


class Watched:
    """A page plus what it logged: console errors, uncaught exceptions, requests."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: list[str] = []
        self.requests: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("request", lambda r: self.requests.append(r.url))

    def open(self, path: Path) -> Any:
        self.page.goto(path.as_uri())
        self.page.wait_for_load_state("load")
        return self.page

    def assert_clean(self, site: Path) -> None:
        assert self.errors == [], self.errors
        outside = [
            u for u in self.requests if not (u.startswith(site.as_uri()) or u.startswith("data:"))
        ]
        assert outside == [], outside


@pytest.fixture
def watched(browser: Any) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield Watched(context.new_page())
    context.close()


def wait_until(page: Any, expression: str, timeout: float = 5.0) -> None:
    """Poll `expression` until truthy. Not `page.wait_for_function`: its polling evaluates strings
    with eval(), which the site's CSP (rightly) refuses."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        time.sleep(0.05)


def visible_keys(page: Any) -> list[str]:
    return page.eval_on_selector_all(
        "#papers tbody tr", "rows => rows.filter(r => !r.hidden).map(r => r.dataset.key)"
    )


def test_index_loads_clean_and_searches(built_site: Path, watched: Watched) -> None:
    page = watched.open(built_site / "index.html")
    assert page.is_visible("#search-form")  # revealed by search.js
    assert sorted(visible_keys(page)) == sorted(STATUS_OF)
    assert page.inner_text("#result-count") == "7 papers"

    page.fill("#q", "samangouei")
    assert visible_keys(page) == [DG]
    assert page.inner_text("#result-count") == "1 of 7 papers"
    page.fill("#q", "zebrafish")  # only in the probe paper's abstract
    assert visible_keys(page) == [PROBE]
    page.fill("#q", "eva probe")  # accents folded: the author is Éva Probé
    assert visible_keys(page) == [PROBE]
    page.fill("#q", "range of G")  # a reading list's note on Defense-GAN
    assert visible_keys(page) == [DG]
    page.fill("#q", "no such words anywhere")
    assert visible_keys(page) == []
    assert page.is_visible("#no-results")
    page.fill("#q", "")
    assert len(visible_keys(page)) == 7
    watched.assert_clean(built_site)


def test_filters_narrow_the_list(built_site: Path, watched: Watched) -> None:
    page = watched.open(built_site / "index.html")
    page.select_option("#f-status", "pending")
    pending = sorted(k for k, s in STATUS_OF.items() if s == "pending")
    assert sorted(visible_keys(page)) == pending
    page.select_option("#f-status", "")
    page.select_option("#f-list", "lecture-13")
    assert len(visible_keys(page)) == 4
    page.select_option("#f-year", "2018")
    assert len(visible_keys(page)) == 2  # Madry and Defense-GAN are both 2018 and in the lecture
    page.select_option("#f-venue", "ICLR")
    page.fill("#q", "madry")
    assert len(visible_keys(page)) == 1
    page.click("button[type=reset]")
    wait_until(page, "document.querySelectorAll('#papers tbody tr:not([hidden])').length == 7")
    assert page.input_value("#q") == "" and page.input_value("#f-venue") == ""
    # a search can be shared as a link
    page.goto((built_site / "index.html").as_uri() + "?q=gan&status=reproduced+at+reduced+scale")
    assert visible_keys(page) == [DG]
    watched.assert_clean(built_site)


def test_paper_page_shows_table_and_bibtex(built_site: Path, watched: Watched) -> None:
    page = watched.open(built_site / "papers" / f"{safe_name(DG)}.html")
    assert page.inner_text("h1").startswith("Defense-GAN")
    pivot = page.locator("table.pivot").first
    assert pivot.is_visible()
    assert "0.988" in pivot.inner_text() and "0.93" in pivot.inner_text()
    # the run's rows as a list, one click away
    page.click("details[open] details.rows-list > summary")
    table = page.locator("details[open] table.results")
    assert table.is_visible()
    assert "t4_mnist_fgsm_a_rec" in table.inner_text()
    assert page.locator("#bibtex").inner_text().startswith(f"@inproceedings{{{DG},")
    button = page.locator("button[data-copy=bibtex]")
    assert button.is_visible()  # unhidden by site.js
    button.click()
    wait_until(page, "document.querySelector('.copy-status').textContent.length > 0")
    figure = page.locator("details[open] figure img").first
    figure.scroll_into_view_if_needed()  # figures load lazily
    figure.evaluate("img => img.decode()")
    assert figure.evaluate("img => img.complete && img.naturalWidth") == 6
    watched.assert_clean(built_site)


def test_xss_probes_stay_inert(built_site: Path, watched: Watched) -> None:
    pages = [
        built_site / "index.html",
        built_site / "papers" / f"{safe_name(PROBE)}.html",
        built_site / "papers" / f"{safe_name(DG)}.html",
        built_site / "lists" / "adversarial-robustness.html",
        built_site / "lists" / "lecture-13.html",
        built_site / "runs.html",
        built_site / "scoreboard.html",
        built_site / "comparison.html",
        built_site / "runs/defense_gan/20261121T020000Z-defense_gan-small-bbbbbb/notebook.html",
    ]
    for path in pages:
        page = watched.open(path)
        assert page.evaluate("typeof window.__xss") == "undefined", path
    page = watched.open(built_site / "papers" / f"{safe_name(PROBE)}.html")
    assert page.inner_text("h1") == '<img src=x onerror="window.__xss=1">'
    # errors would include CSP reports of blocked inline code, i.e. injected markup
    watched.assert_clean(built_site)


def test_screenshots(built_site: Path, browser: Any) -> None:
    out = artifacts_dir()
    for name, width, height in (("desktop", 1280, 900), ("phone", 390, 844)):
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        page.goto((built_site / "index.html").as_uri())
        page.screenshot(path=str(out / f"index-{name}.png"), full_page=True)
        page.goto((built_site / "papers" / f"{safe_name(DG)}.html").as_uri())
        page.screenshot(path=str(out / f"defense-gan-{name}.png"), full_page=True)
        if name == "desktop":
            page.goto((built_site / "comparison.html").as_uri())
            page.screenshot(path=str(out / "comparison-desktop.png"), full_page=True)
        page.goto((built_site / "scoreboard.html").as_uri())
        page.screenshot(path=str(out / f"scoreboard-{name}.png"), full_page=True)
        context.close()
    for name in ("index-desktop", "defense-gan-desktop", "index-phone", "defense-gan-phone",
                 "scoreboard-desktop"):  # fmt: skip
        assert (out / f"{name}.png").stat().st_size > 10_000, name


# ----------------------------------------------------------------------------- results


def test_every_paper_with_a_run_has_its_scatter(built_site: Path, watched: Watched) -> None:
    for key in (DG, FGSM, MADRY):  # the papers of the catalog with a successful run
        page = watched.open(built_site / "papers" / f"{safe_name(key)}.html")
        svg = page.locator("figure.scatter > svg[role=img]").first
        assert svg.is_visible(), key
        box = svg.bounding_box()
        assert box and box["width"] > 200 and box["height"] > 200, key
        assert svg.get_attribute("aria-label").startswith("Paper vs ours"), key
        assert page.locator("figure.scatter .pt").count() >= 2, key
    page = watched.open(built_site / "papers" / f"{safe_name(PROBE)}.html")
    assert page.locator("figure.scatter").count() == 0  # no reproduction, no plot
    watched.assert_clean(built_site)


def test_index_shows_the_headline_numbers(built_site: Path, watched: Watched) -> None:
    page = watched.open(built_site / "index.html")
    leaders = page.locator("table.leaders")
    assert leaders.is_visible()
    text = " ".join(leaders.inner_text().split())
    assert "paper 0.988 · ours 0.93" in text  # Defense-GAN's declared headline row
    assert "paper 89.4 · ours 90.1" in text and "paper 89.3 · ours 89.9" in text
    row = page.locator(f'#papers tr[data-key="{DG}"]')
    assert "paper 0.988 · ours 0.93" in " ".join(row.inner_text().split())
    page.fill("#q", "madry")  # the search still filters the table the numbers sit in
    assert visible_keys(page) == [MADRY]
    watched.assert_clean(built_site)


def test_results_are_reachable_with_the_keyboard(built_site: Path, watched: Watched) -> None:
    """Tab reaches the skip link first, then the site navigation (the scoreboard among it); a
    folded not-run line opens with Enter; a gallery figure is a link to the full-size file."""
    page = watched.open(built_site / "papers" / f"{safe_name(DG)}.html")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    names = []
    for _ in range(6):
        page.keyboard.press("Tab")
        names.append(page.evaluate("document.activeElement.textContent.trim()"))
    assert names == ["advrepro", "Papers", "Scoreboard", "Robustness", "Comparison", "Runs"]
    summary = page.locator("details.notrun > summary").first
    summary.focus()
    assert page.evaluate("document.activeElement.tagName") == "SUMMARY"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.parentElement.open") is True
    link = page.locator("details.gallery[open] a.fig-link").first
    link.focus()
    assert page.evaluate("document.activeElement.getAttribute('href')").endswith(".png")
    watched.assert_clean(built_site)


#: every printed table of a section as {caption, heads, rows: [[row headers], [cell texts]]},
#: header notes (L 200 · R 10, ε 0.3) left out
PIVOT_JS = """section => Array.from(section.querySelectorAll('table.pivot'), t => {
  const own = c => { const n = c.querySelector('.col-note, .row-note');
    const text = c.textContent; return (n ? text.slice(0, text.length - n.textContent.length)
    : text).trim(); };
  return { caption: t.caption.textContent,
    heads: Array.from(t.tHead.rows[0].cells, own),
    rows: Array.from(t.tBodies[0].rows, r => [Array.from(r.querySelectorAll('th'), own),
      Array.from(r.querySelectorAll('td'), c => c.textContent)]) };
})"""


@pytest.fixture(scope="module")
def real_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Defense-GAN as the repository has it: its references.bib entry, our review, its folder
    (expected.csv, repro.toml with the [site] layouts) and its run of record in records/,
    read by the same functions `catalog sync` uses and published on their own."""
    from catalog import snapshot
    from catalog.models import (
        Author,
        ExpectedResult,
        Paper,
        PaperAuthor,
        Reproduction,
        Review,
    )
    from catalog.runs import load_summary, store_run

    tmp = tmp_path_factory.mktemp("real")
    url = f"sqlite:///{tmp / 'catalog.db'}"
    reset_engines()
    paper = snapshot.paper_records(snapshot.load_bib(REPO))[DG]
    review = snapshot.review_record(REPO / "papers" / "reviews" / f"{DG}.md", REPO, {DG})
    repro = snapshot.repro_record(REPO / "repro" / "defense_gan" / "repro.toml", REPO, {DG})
    records = sorted((REPO / "records" / "defense_gan").iterdir())
    with session_scope(url) as s:
        s.add(Paper(key=DG, **paper.values))
        s.flush()
        for position, person in enumerate(paper.authors):
            author = Author(name=person.name, last_name=person.last)
            s.add(author)
            s.flush()
            s.add(PaperAuthor(paper_key=DG, author_id=author.id, position=position))
        s.add(Review(paper_key=DG, source_file=review.source_file,
                     front_matter=review.front_matter, body=review.body))  # fmt: skip
        s.add(Reproduction(slug=repro.slug, **repro.values))
        s.flush()
        for row_id, row in repro.rows.items():
            s.add(ExpectedResult(slug=repro.slug, row_id=row_id, **row))
        s.flush()
        for record in records:
            store_run(s, load_summary(record), str(record))
    with session_scope(url) as session:
        publish(session, tmp / "site", runs_dir=tmp / "runs", root=REPO)
    reset_engines()
    yield tmp / "site"


def test_real_defense_gan_page_reads_like_the_paper(real_site: Path, watched: Watched) -> None:
    import csv

    page = watched.open(real_site / "papers" / f"{safe_name(DG)}.html")
    height = page.evaluate("document.documentElement.scrollHeight")
    assert height <= 15_000, f"the Defense-GAN page is {height} px tall at 1280 px"
    with (REPO / "repro" / "defense_gan" / "expected.csv").open(encoding="utf-8") as handle:
        expected = list(csv.DictReader(handle))
    sources = list(dict.fromkeys(row["source"] for row in expected))
    headings = page.eval_on_selector_all(
        "section.source-table > h4", "hs => hs.map(h => h.firstChild.textContent.trim())"
    )
    assert headings == sources  # every table of expected.csv, in its order
    for index, source in enumerate(sources):
        section = page.locator("section.source-table").nth(index)
        assert section.locator("table.pivot").count() >= 1, source  # folded ones too
        n = sum(1 for row in expected if row["source"] == source)
        assert f"{n} row" in section.locator("h4").inner_text(), source
    # Table 4: one column per defense, one row per classifier x attack, both numbers in a cell
    t4 = page.locator("section.source-table").nth(sources.index("Table 4"))
    defenses = list(dict.fromkeys(r["defense"] for r in expected if r["source"] == "Table 4"))
    grid = {(r["dataset"], r["attack"], r["model"]) for r in expected if r["source"] == "Table 4"}
    # read from the DOM, not the rendering: folded tables sit in closed <details>
    tables = t4.evaluate(PIVOT_JS)
    seen = set()
    for table in tables:
        dataset = "fashion_mnist" if "Fashion-MNIST" in table["caption"] else "mnist"
        assert table["heads"] == ["attack", "model", *defenses], table["caption"]
        for headers, cells in table["rows"]:
            seen.add((dataset, *headers))
            assert len(cells) == len(defenses), headers
    assert seen == grid  # shown or folded, every classifier x attack of both datasets
    measured = t4.locator("td.pc-not-compared, td.pc-match, td.pc-deviates")
    assert measured.count() >= 20
    for cell in measured.all():
        text = cell.inner_text().lower()
        assert "paper" in text and "ours" in text, text
    shown = t4.locator("table.pivot:visible")
    assert shown.count() == 1 and "Fashion-MNIST" in shown.locator("caption").inner_text()
    # the scatter, the headline and our adaptive attack beside the row it challenges
    assert page.locator("figure.scatter > svg[role=img]").first.is_visible()
    assert "paper 0.879 · ours 0.2" in " ".join(page.locator(".headline-big").inner_text().split())
    assert t4.locator(".pe-adaptive").count() >= 1
    watched.assert_clean(real_site)


def test_publish_screenshots_option(tmp_path: Path) -> None:
    """`catalog publish --screenshots DIR` (what `nox -s site -- --screenshots DIR` runs) writes
    full-page PNGs of the index, the Defense-GAN page and the scoreboard. In a subprocess: the
    command starts its own Playwright, which cannot share this thread with the module's."""
    import subprocess
    import sys

    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    reset_engines()
    make_catalog(url, tmp_path / "runs")
    reset_engines()
    shots = tmp_path / "shots"
    result = subprocess.run(
        [sys.executable, "-m", "catalog.cli", "publish", "--out", str(tmp_path / "site"),
         "--runs-dir", str(tmp_path / "runs"), "--screenshots", str(shots)],
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in shots.iterdir()) == [
        "defense-gan.png",
        "index.png",
        "scoreboard.png",
    ]
    for png in shots.iterdir():
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
        assert png.stat().st_size > 10_000, png
    assert result.stdout.count("px tall at 1280 px") == 3
