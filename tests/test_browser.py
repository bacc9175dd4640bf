"""Open every page of the built book in headless Chromium, as a reader would, offline.

Serves _build/html on 127.0.0.1, routes every request the pages make (anything for another
host is refused and recorded), and checks on each page: no request left 127.0.0.1, no HTTP
error, no console error, every image loaded, math typeset by MathJax with no raw TeX left.
It also searches the book offline and saves screenshots at desktop and phone widths into
test-artifacts/.

Needs Debian's chromium (`apt-get install -y chromium`, which .ci/run does) and the Playwright
package; Playwright's own browser download is not used. Skipped, saying why, only when the
browser is not installed.
"""

import functools
import http.server
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from offline_browser import CHROMIUM, LAUNCH_FLAGS, keep_offline

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
ARTIFACTS = ROOT / "test-artifacts"
SCREENSHOTS = {"index.html", "chapters/01_entropy.html", "chapters/06_numerical_stability.html",
               "chapters/08_training_a_classifier.html", "api.html"}

pytestmark = pytest.mark.browser
playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not Path(CHROMIUM).is_file():
    pytest.skip("Chromium is not installed (apt-get install -y chromium)", allow_module_level=True)


def reader_pages():
    if not (HTML / "index.html").is_file():
        pytest.fail("_build/html is missing: `make test` builds it first (or run `make book`)")
    skip = ("_static", "mathjax", "_sources", "_images")
    return sorted(str(p.relative_to(HTML)) for p in HTML.rglob("*.html")
                  if p.relative_to(HTML).parts[0] not in skip)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    handler = functools.partial(QuietHandler, directory=str(HTML))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_FLAGS,
                                              headless=True)
        yield instance
        instance.close()


class PageVisit:
    """A page opened with every request routed: local ones served, others refused."""

    def __init__(self, browser, base, width=1280, height=900):
        self.context = browser.new_context(viewport={"width": width, "height": height})
        self.page = self.context.new_page()
        self.external, self.http_errors, self.console_errors = [], [], []
        keep_offline(self.page, urlsplit(base).netloc, self.external)
        self.page.on("response", lambda r: r.status >= 400 and self.http_errors.append(
            f"{r.status} {r.url}"))
        self.page.on("console", lambda m: m.type == "error" and self.console_errors.append(
            m.text))
        self.page.on("pageerror", lambda e: self.console_errors.append(str(e)))

    def open(self, url):
        self.page.goto(url, wait_until="load")
        self.page.wait_for_load_state("networkidle")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.context.close()


def wait_for_mathjax(page):
    """Wait until MathJax has typeset the page (if it has math at all)."""
    page.wait_for_function(
        "() => !window.MathJax || (MathJax.startup && MathJax.startup.promise"
        " && (MathJax.startup.promise.then(() => window.__typeset = true), window.__typeset))",
        timeout=30_000)


@pytest.mark.parametrize("path", reader_pages() if HTML.is_dir() else [])
def test_page_renders_offline(browser, server, path):
    with PageVisit(browser, server) as visit:
        visit.open(f"{server}/{path}")
        page = visit.page
        wait_for_mathjax(page)
        broken_images = page.evaluate(
            "() => [...document.images].filter(i => !(i.complete && i.naturalWidth > 0))"
            ".map(i => i.src)")
        math_elements = page.evaluate("() => document.querySelectorAll('.math').length")
        typeset = page.evaluate("() => document.querySelectorAll('mjx-container').length")
        raw_tex = page.evaluate(
            "() => [...document.querySelectorAll('.math')]"
            ".filter(e => !e.querySelector('mjx-container') && /\\\\[a-zA-Z]+|\\$\\$/.test("
            "e.textContent)).map(e => e.textContent.slice(0, 60))")
        mathjax_errors = page.evaluate("() => document.querySelectorAll('mjx-merror').length")
        if path.replace("\\", "/").split("/")[-1] in {p.split("/")[-1] for p in SCREENSHOTS}:
            ARTIFACTS.mkdir(exist_ok=True)
            name = path.replace("/", "_").replace(".html", "")
            page.screenshot(path=str(ARTIFACTS / f"{name}-desktop.png"), full_page=False)
        assert not visit.external, f"requests left 127.0.0.1: {visit.external}"
        assert not visit.http_errors, f"HTTP errors: {visit.http_errors}"
        assert not visit.console_errors, f"console errors: {visit.console_errors}"
        assert not broken_images, f"images that did not load: {broken_images}"
        assert not raw_tex, f"math left as raw TeX: {raw_tex}"
        assert mathjax_errors == 0, "MathJax reported errors in some formulas"
        if math_elements:
            assert typeset >= math_elements, f"{math_elements} formulas, {typeset} typeset"


def test_every_chapter_has_typeset_math_and_figures(browser, server):
    with PageVisit(browser, server) as visit:
        for chapter in ("01_entropy", "03_kl_divergence", "08_training_a_classifier"):
            visit.open(f"{server}/chapters/{chapter}.html")
            wait_for_mathjax(visit.page)
            assert visit.page.evaluate("() => document.querySelectorAll('mjx-container').length") > 10
            assert visit.page.evaluate("() => document.querySelectorAll('figure img').length") >= 1
        assert not visit.external


def test_search_finds_a_term_offline(browser, server):
    with PageVisit(browser, server) as visit:
        visit.open(f"{server}/search.html?q=surprisal")
        visit.page.wait_for_selector("#search-results li", timeout=30_000)
        results = visit.page.evaluate(
            "() => [...document.querySelectorAll('#search-results li a')].map(a => a.href)")
        assert any("01_entropy" in url for url in results), results
        assert not visit.external and not visit.console_errors


def test_solutions_are_folded_and_unfold_on_click(browser, server):
    with PageVisit(browser, server) as visit:
        visit.open(f"{server}/chapters/01_entropy.html")
        solution = visit.page.locator("div.solution.dropdown").first
        body = solution.locator(".cell").first
        assert not body.is_visible(), "solutions should be folded by default"
        solution.locator(".admonition-title").first.click()
        body.wait_for(state="visible", timeout=5_000)


def test_download_button_gives_the_notebook_and_launch_buttons_only_with_a_repository(
        browser, server):
    import sys

    sys.path.insert(0, str(ROOT / "tools"))
    from course_repository import build_repository, committed_repository

    url, _ = build_repository(*committed_repository())
    with PageVisit(browser, server) as visit:
        visit.open(f"{server}/chapters/02_cross_entropy.html")
        links = visit.page.evaluate("() => [...document.querySelectorAll('a')].map(a => a.href)")
        launch = [u for u in links if "colab.research.google.com" in u or "mybinder.org" in u]
        if url:   # tests/test_book.py checks each link of a book built for a repository
            assert any(u.endswith("chapters/02_cross_entropy.ipynb") for u in launch), links
        else:
            assert not launch, f"launch buttons with no repository to launch from: {launch}"
        download = [u for u in links if u.endswith("_sources/chapters/02_cross_entropy.ipynb")]
        assert download, "no .ipynb download link"
        response = visit.page.request.get(download[0])
        assert response.ok and '"cells"' in response.text()
        assert not visit.external                 # following no button was needed to check


@pytest.mark.parametrize("width, height, label", [(1280, 900, "desktop"), (390, 844, "phone")])
def test_screenshots_at_desktop_and_phone_widths(browser, server, width, height, label):
    ARTIFACTS.mkdir(exist_ok=True)
    with PageVisit(browser, server, width, height) as visit:
        for path in sorted(SCREENSHOTS):
            visit.open(f"{server}/{path}")
            wait_for_mathjax(visit.page)
            name = path.replace("/", "_").replace(".html", "")
            visit.page.screenshot(path=str(ARTIFACTS / f"{name}-{label}-full.png"), full_page=True)
            overflow = visit.page.evaluate(
                "() => document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, f"{path} scrolls sideways by {overflow}px at {width}px wide"
        assert not visit.external


def test_next_links_walk_through_the_book_in_order(browser, server):
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    expected = [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]
    with PageVisit(browser, server) as visit:
        visit.open(f"{server}/index.html")
        visited = []
        for _ in range(len(expected) + 1):
            visited.append(urlsplit(visit.page.url).path.strip("/").removesuffix(".html"))
            following = visit.page.locator("a.right-next")
            if following.count() == 0:
                break
            following.first.click()
            visit.page.wait_for_load_state("load")
        assert visited == expected, f"next links visit {visited}"
        visit.page.locator("a.left-prev").first.click()
        visit.page.wait_for_load_state("load")
        assert visit.page.url.endswith(f"{expected[-2]}.html")
