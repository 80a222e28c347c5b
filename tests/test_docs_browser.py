"""The documentation site works offline, in a real browser.

The site is built with ``mkdocs build --strict`` into a temporary directory,
served on 127.0.0.1, and loaded in Debian's headless chromium, driven over the
DevTools protocol on a pipe (no browser download, no extra package). Every
request the pages make is intercepted: one to anything but the local server
is refused and recorded, and the test fails if there was any. On the loaded
pages every Mermaid diagram of every page must have rendered as SVG (none as Mermaid's
error picture), and no option name of the options table may wrap inside the name.

Set ``TLSPOLICY_DOCS_SCREENSHOTS`` to a directory to keep a PNG of each page.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import http.server
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tlspolicy.options import OPTION_SPECS

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
BASH = shutil.which("bash") or "/bin/bash"
TIMEOUT = 60.0
"""Seconds any one browser step may take before the test gives up (a hang guard)."""

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                       reason="Debian's chromium is not installed (.ci/install-docs.sh)"),
    pytest.mark.timeout(300),
    # One worker builds the site and starts the browser once for the module (pytest -n).
    pytest.mark.xdist_group("docs-browser"),
]


class DevTools:
    """A minimal Chrome DevTools protocol client over ``--remote-debugging-pipe``.

    Chromium reads NUL-terminated JSON commands on its fd 3 and writes replies
    and events on its fd 4. A reader thread answers every intercepted request
    at once (the page would stall otherwise) and queues the other events.
    """

    def __init__(self, profile: Path, allowed_host: str) -> None:
        self.allowed_host = allowed_host
        self.blocked: list[str] = []
        self.requested: list[str] = []
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        # The child gets the pipe ends as fds 3 and 4, as the flag expects (bash, not sh:
        # dash's redirections take one-digit descriptors only).
        script = f'exec "$0" "$@" 3<&{to_chrome_r} 4>&{from_chrome_w} ' \
                 f'{to_chrome_r}<&- {from_chrome_w}>&-'
        args = [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run",
            "--disable-default-apps", "--disable-extensions", "--mute-audio",
            f"--user-data-dir={profile}", "--remote-debugging-pipe",
            "--window-size=1280,900",
            # A second wall behind the interception: no name but localhost resolves.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
            "about:blank",
        ]
        self.process = subprocess.Popen(
            [BASH, "-c", script, CHROMIUM, *args], pass_fds=(to_chrome_r, from_chrome_w),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._next_id = 0
        self._lock = threading.Lock()
        self._replies: dict[int, queue.Queue[dict[str, Any]]] = {}
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _send(self, method: str, params: dict[str, Any] | None = None,
              session: str | None = None) -> int:
        with self._lock:
            self._next_id += 1
            ident = self._next_id
            self._replies[ident] = queue.Queue(maxsize=1)
            message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
            if session is not None:
                message["sessionId"] = session
            os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        return ident

    def call(self, method: str, params: dict[str, Any] | None = None,
             session: str | None = None) -> dict[str, Any]:
        """Send a command and wait for its reply; a protocol error fails the test."""
        ident = self._send(method, params, session)
        try:
            reply = self._replies[ident].get(timeout=TIMEOUT)
        except queue.Empty:
            pytest.fail(f"chromium did not answer {method} within {TIMEOUT:.0f} s")
        if "error" in reply:
            pytest.fail(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._from_chrome, 65536)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                self._dispatch(json.loads(raw))

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "id" in message:
            box = self._replies.get(message["id"])
            if box is not None:
                box.put(message)
            return
        if message.get("method") == "Fetch.requestPaused":
            params = message["params"]
            url = params["request"]["url"]
            self.requested.append(url)
            session = message.get("sessionId")
            if self._local(url):
                self._send("Fetch.continueRequest", {"requestId": params["requestId"]}, session)
            else:
                self.blocked.append(url)
                self._send("Fetch.failRequest", {"requestId": params["requestId"],
                                                 "errorReason": "BlockedByClient"}, session)
            return
        self.events.put(message)

    def _local(self, url: str) -> bool:
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob", "about"):
            return True
        return parts.scheme == "http" and parts.netloc == self.allowed_host

    def wait_event(self, method: str, session: str) -> dict[str, Any]:
        """The next event ``method`` of ``session`` (earlier other events are dropped)."""
        deadline = time.monotonic() + TIMEOUT
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                break
            if event.get("method") == method and event.get("sessionId") == session:
                return event
        pytest.fail(f"no {method} within {TIMEOUT:.0f} s")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._send("Browser.close")
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        os.close(self._to_chrome)
        # The reader ends at the browser's end of the pipe.  Its descriptor is closed only
        # once the reader has stopped: a number closed under a reader still looping could
        # be reused by another descriptor of this process, which the reader would then
        # drain.  A reader that does not stop keeps its descriptor (a leak, not a theft).
        self._reader.join(timeout=10)
        if not self._reader.is_alive():
            os.close(self._from_chrome)


class Page:
    """One browser tab with every request intercepted."""

    def __init__(self, browser: DevTools) -> None:
        self.browser = browser
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session: str = browser.call(
            "Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.call("Fetch.enable", {"patterns": [{"urlPattern": "*"}]})
        self.call("Page.enable")

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.browser.call(method, params, self.session)

    def load(self, url: str) -> None:
        self.call("Page.navigate", {"url": url})
        self.browser.wait_event("Page.loadEventFired", self.session)

    def evaluate(self, expression: str) -> Any:
        reply = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in reply:
            pytest.fail(f"{expression}: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def wait_for(self, expression: str, what: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if self.evaluate(expression):
                return
            time.sleep(0.1)
        pytest.fail(f"{what} within {TIMEOUT:.0f} s")

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(data))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def site() -> Iterator[Path]:
    pytest.importorskip("mkdocs", reason="the docs extra is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "site"
        env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
        subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
                        "--site-dir", str(out)], cwd=ROOT, env=env, check=True, timeout=240)
        yield out


@pytest.fixture(scope="module")
def server(site: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def browser(server: str) -> Iterator[DevTools]:
    with tempfile.TemporaryDirectory() as profile:
        devtools = DevTools(Path(profile), server)
        try:
            yield devtools
        finally:
            devtools.close()


def _shoot(page: Page, name: str) -> None:
    where = os.environ.get("TLSPOLICY_DOCS_SCREENSHOTS")
    if where:
        time.sleep(0.5)  # let the header's scroll transition finish
        Path(where).mkdir(parents=True, exist_ok=True)
        page.screenshot(Path(where) / f"{name}.png")


def _shadow_svgs(node: dict[str, Any], in_shadow: bool = False) -> Iterator[dict[str, Any]]:
    """SVG elements inside shadow roots (the theme draws each diagram in a closed one,
    which page scripts cannot see but the DevTools DOM tree, pierced, shows)."""
    if in_shadow and node.get("nodeName", "").lower() == "svg":
        yield node
    for root in node.get("shadowRoots", ()):
        yield from _shadow_svgs(root, True)
    for child in node.get("children", ()):
        yield from _shadow_svgs(child, in_shadow)


def _text(node: dict[str, Any]) -> str:
    own = node.get("nodeValue", "") if node.get("nodeType") == 3 else ""
    return own + " ".join(_text(c) for c in node.get("children", ()))


def test_state_diagram_renders_from_the_site_itself(browser: DevTools, server: str) -> None:
    page = Page(browser)
    page.load(f"http://{server}/testing-in-ci/")
    # The theme replaces the diagram's source block with a rendered one.
    page.wait_for("document.querySelector('div.mermaid') !== null"
                  " && document.querySelector('pre.mermaid') === null",
                  "the Mermaid diagram was not rendered")
    tree = page.call("DOM.getDocument", {"depth": -1, "pierce": True})["root"]
    svgs = list(_shadow_svgs(tree))
    assert len(svgs) == 1
    labels = _text(svgs[0])
    # The diagram's states are drawn, not left as the diagram's source text.
    assert "ATTEMPT" in labels and "stateDiagram" not in labels
    height = page.evaluate("document.querySelector('div.mermaid').getBoundingClientRect()"
                           ".height")
    assert height > 100
    page.evaluate("document.querySelector('div.mermaid').scrollIntoView()")
    _shoot(page, "testing-in-ci")
    assert browser.blocked == []
    assert any(url.endswith("mermaid.min.js") for url in browser.requested)


def test_option_names_never_wrap(browser: DevTools, server: str) -> None:
    page = Page(browser)
    page.load(f"http://{server}/configuration/")
    page.wait_for("document.querySelector('table') !== null", "no table on the page")
    # Every one-word piece of code in the options table (the first after the top-level
    # settings) stays on one line: names and values never break mid-word.
    wrapped = page.evaluate("""
        Array.from(document.querySelectorAll('table')[1].querySelectorAll('td code'))
             .filter(c => !/\\s/.test(c.textContent) && c.getClientRects().length > 1)
             .map(c => c.textContent)""")
    names = page.evaluate("Array.from(document.querySelectorAll('table')[1]"
                          ".querySelectorAll('td:first-child code')).map(c => c.textContent)")
    assert names == list(OPTION_SPECS)
    assert wrapped == []
    page.evaluate("document.querySelectorAll('table')[1].scrollIntoView()")
    _shoot(page, "configuration-options")
    assert browser.blocked == []


@pytest.mark.parametrize("path", ["", "cli/", "decisions/", "standards/mta-sts/"])
def test_pages_fetch_nothing_from_outside(path: str, browser: DevTools, server: str) -> None:
    page = Page(browser)
    page.load(f"http://{server}/{path}")
    page.wait_for("document.querySelector('.md-content') !== null", "no page content")
    fonts = page.evaluate("Array.from(document.fonts).map(f => f.family)")
    assert all("Roboto" not in family for family in fonts)
    if path == "cli/":
        assert page.evaluate("document.getElementById('tlspolicy-resolve') !== null")
        page.evaluate("document.getElementById('tlspolicy-resolve').scrollIntoView()")
        _shoot(page, "cli")
    assert browser.blocked == [], browser.blocked
    assert all(urlsplit(u).netloc == server or urlsplit(u).scheme in ("data", "blob")
               for u in browser.requested)


def _diagram_pages() -> list[tuple[str, int]]:
    """Every page with Mermaid diagrams, as (site path, number of diagrams), from the
    sources: ``x.md`` is served at ``x/``, ``index.md`` at its directory."""
    docs = ROOT / "docs"
    pages = []
    for page in sorted(docs.rglob("*.md")):
        count = page.read_text("utf-8").count("```mermaid\n")
        if count:
            rel = page.relative_to(docs).with_suffix("")
            path = "" if rel.name == "index" else f"{rel.as_posix()}/"
            if rel.name == "index" and rel.parent != Path("."):
                path = f"{rel.parent.as_posix()}/"
            pages.append((path, count))
    return pages


DIAGRAM_PAGES = _diagram_pages()


def test_the_diagrams_a_reader_needs_are_there() -> None:
    # The decision flow, scope precedence, the daemon's path from key to answer,
    # discovery's host classes and rules a-e, a fleet on Redis, the layers.
    pages = dict(DIAGRAM_PAGES)
    for path in ("decisions/", "precedence/", "one-engine/", "postfix-answers/",
                 "howto/fleet-on-redis/", "testing-in-ci/"):
        assert path in pages, path
    assert pages["one-engine/"] >= 2 and pages["postfix-answers/"] >= 2


@pytest.mark.parametrize(("path", "count"), DIAGRAM_PAGES, ids=[p or "home" for p, _ in
                                                                 DIAGRAM_PAGES])
def test_every_diagram_renders_as_svg(path: str, count: int, browser: DevTools,
                                      server: str) -> None:
    page = Page(browser)
    page.load(f"http://{server}/{path}")
    page.wait_for(f"document.querySelectorAll('div.mermaid').length === {count}"
                  " && document.querySelector('pre.mermaid') === null",
                  f"{path}: not every Mermaid diagram was rendered")
    tree = page.call("DOM.getDocument", {"depth": -1, "pierce": True})["root"]
    svgs = [svg for svg in _shadow_svgs(tree)
            # Mermaid's own icons inside a diagram are SVGs too: count the outer ones.
            if svg.get("attributes") and "aria-roledescription" in svg["attributes"]]
    assert len(svgs) == count, f"{path}: {len(svgs)} SVG diagrams, {count} in the source"
    for svg in svgs:
        labels = _text(svg)
        assert "Syntax error" not in labels, f"{path}: a diagram failed to parse"
        assert labels.strip(), f"{path}: a diagram drew no text"
    heights = page.evaluate("Array.from(document.querySelectorAll('div.mermaid'))"
                            ".map(d => d.getBoundingClientRect().height)")
    assert all(h > 50 for h in heights), heights
    for index in range(count):
        page.evaluate(f"document.querySelectorAll('div.mermaid')[{index}].scrollIntoView()")
        _shoot(page, f"diagram-{path.strip('/').replace('/', '-') or 'home'}-{index + 1}")
    assert browser.blocked == [], browser.blocked
