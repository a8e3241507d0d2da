"""The built site in a real browser: Playwright driving Debian's Chromium, pages opened from file://.

Checks what only a browser can: the scripts run without console errors under the page's CSP,
search and filters change what is shown, the copy button appears, hostile text stays inert, and
nothing is requested from outside the site folder. Screenshots of the index and the Defense-GAN
page go to `$ADVREPRO_ARTIFACTS` (default `artifacts/screenshots/`, git-ignored).
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
from catalog.publish import publish, safe_name

from .conftest import DG, PROBE, STATUS_OF, make_catalog

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
        context.close()
    for name in ("index-desktop", "defense-gan-desktop", "index-phone", "defense-gan-phone"):
        assert (out / f"{name}.png").stat().st_size > 10_000, name
