"""Load an HTML page in a real headless Chromium and report what the browser saw.

No selenium / playwright: a copy of the page, beside the original (so that relative links
resolve the same), gets a small script that runs on the ``load`` event and writes what the
browser saw (every image: complete and its decoded size; every link's ``href``; every
element id; the tables' classes; script errors) as JSON into ``<pre id="rcvlab-check">``.
Chromium prints the DOM after the page settled (``--dump-dom`` with a virtual time budget)
and :func:`check_page` parses that JSON back. Whether each relative link exists on disk is
decided here in Python (:func:`broken_links`), from the hrefs the browser read.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

CHROMIUM = "/usr/bin/chromium"
CHECK_ID = "rcvlab-check"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=5000",
)

CHECK_SCRIPT = f"""
<script>
window.rcvlabErrors = [];
window.addEventListener("error", (ev) => window.rcvlabErrors.push(String(ev.message)));
window.addEventListener("load", () => {{
  const out = {{
    loaded: true,
    images: [...document.images].map((i) => ({{
      src: i.getAttribute("src").slice(0, 40),
      complete: i.complete,
      width: i.naturalWidth,
      height: i.naturalHeight,
    }})),
    links: [...document.querySelectorAll("a[href]")].map((a) => a.getAttribute("href")),
    ids: [...document.querySelectorAll("[id]")].map((e) => e.id),
    tables: [...document.querySelectorAll("table")].map((t) => t.className),
    errors: window.rcvlabErrors,
  }};
  const pre = document.createElement("pre");
  pre.id = "{CHECK_ID}";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
}});
</script>
"""


def find_chromium() -> str | None:
    """The Chromium binary (the Debian package's /usr/bin/chromium), or None."""
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class PageCheck:
    """What Chromium saw of a page (fields as written by :data:`CHECK_SCRIPT`)."""

    loaded: bool
    images: list[dict[str, Any]] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class _PreText(HTMLParser):
    def __init__(self, wanted_id: str) -> None:
        super().__init__()
        self.wanted_id = wanted_id
        self.inside = False
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "pre" and dict(attrs).get("id") == self.wanted_id:
            self.inside = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "pre":
            self.inside = False

    def handle_data(self, data: str) -> None:
        if self.inside:
            self.text.append(data)


def check_page(page: Path, profile_dir: Path, *, chromium: str, timeout: float = 60) -> PageCheck:
    """Load ``page`` in headless Chromium and return what its check script saw.

    Parameters
    ----------
    page : Path
        The HTML file; a copy with the check script is written beside it and removed after.
    profile_dir : Path
        A new, empty folder for Chromium's ``--user-data-dir``.
    chromium : str
        The browser binary.
    timeout : float
        Seconds before the browser is given up on.

    Returns
    -------
    PageCheck
        ``loaded`` is False when the load event never ran (the page did not load).
    """
    html = page.read_text(encoding="utf-8")
    if "</body>" not in html:
        raise ValueError(f"{page} has no </body>")
    copy = page.with_name(".browser-check-" + page.name)
    head, tail = html.rsplit("</body>", 1)
    copy.write_text(head + CHECK_SCRIPT + "</body>" + tail, encoding="utf-8")
    try:
        proc = subprocess.run(
            [
                chromium,
                *FLAGS,
                f"--user-data-dir={profile_dir}",
                "--dump-dom",
                copy.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    finally:
        copy.unlink()
    parser = _PreText(CHECK_ID)
    parser.feed(proc.stdout)
    text = "".join(parser.text).strip()
    if not text:
        return PageCheck(loaded=False, errors=[proc.stderr[-2000:]])
    return PageCheck(**json.loads(text))


def broken_links(page: Path, links: list[str], ids: list[str]) -> list[str]:
    """The links of ``page`` that lead nowhere.

    A link is broken when it points off the machine (any scheme: http, https, file, ...),
    at a fragment no element has, or at a relative path that is not on disk.
    """
    bad = []
    for href in links:
        parts = urlsplit(href)
        if parts.scheme or parts.netloc:
            bad.append(href)
        elif not parts.path:
            if unquote(parts.fragment) not in ids:
                bad.append(href)
        elif not (page.parent / unquote(parts.path)).exists():
            bad.append(href)
    return bad
