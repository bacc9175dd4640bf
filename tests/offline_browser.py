"""What the browser tests share: the Chromium they drive and the rule that keeps a page offline.

tests/test_browser.py (the built book) and tests/test_lab.py (JupyterLab) both open pages in
Debian's chromium and fail if a page asked any host but the local server for anything.
"""

import shutil
from urllib.parse import urlsplit

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LAUNCH_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def keep_offline(page, host, refused):
    """Serve requests for `host` (and data:/blob: URLs); abort any other and append it to `refused`."""

    def route(route):
        url = route.request.url
        if urlsplit(url).netloc == host or url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            refused.append(url)
            route.abort()

    page.route("**/*", route)
