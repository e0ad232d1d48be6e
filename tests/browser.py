"""Headless Chromium driven over the Chrome DevTools protocol on a pipe (no port, no extra package).

`open_page(path)` loads a local HTML file in Debian's `chromium` and returns what a JavaScript probe
found: every <img> and <audio> with whether it loaded, and what sticks out of the page width.
Imported by name (`from browser import open_page`) from the tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time

# The flags this kind of machine needs (/work/.library/env/machines/python.md): no sandbox as root, no GPU,
# and nothing that reaches for the network at start.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-pipe", "--autoplay-policy=no-user-gesture-required")

PROBE = """
(async () => {
  const audios = [...document.querySelectorAll('audio')];
  const settled = a => (a.readyState >= 1 || a.error) ? null : new Promise(done => {
    a.addEventListener('loadedmetadata', done, {once: true});
    a.addEventListener('error', done, {once: true});
    a.load();
  });
  await Promise.race([Promise.all(audios.map(settled)), new Promise(done => setTimeout(done, 20000))]);
  const width = document.documentElement.clientWidth;
  const clipped = e => { for (let p = e.parentElement; p; p = p.parentElement) {
      const o = getComputedStyle(p).overflowX; if (o === 'auto' || o === 'scroll' || o === 'hidden') return true; }
    return false; };
  const sticking = [...document.body.querySelectorAll('*')]
    .filter(e => (e.getBoundingClientRect().right > width + 1 || e.scrollWidth > e.clientWidth + 1) && !clipped(e)
                 && getComputedStyle(e).overflowX === 'visible')
    .map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + (e.className ? '.' + e.className : ''));
  return {
    images: [...document.images].map(i => ({src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0,
                                            width: i.naturalWidth, alt: i.alt})),
    audios: audios.map(a => ({src: a.currentSrc, ok: a.readyState >= 1 && !a.error, duration: a.duration,
                              error: a.error ? a.error.code : null})),
    links: [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href')),
    client_width: width, scroll_width: document.documentElement.scrollWidth, sticking_out: sticking,
    title: document.title,
  };
})()
"""


def chromium_binary() -> str:
    found = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise RuntimeError("chromium not found: run `scripts/setup_env.sh --test` as root (apt-get install chromium) "
                           "or set CHROMIUM=/path/to/chrome")
    return found


class DevTools:
    """One Chromium process; `call(method, params, session)` sends a CDP command and waits for its reply."""

    def __init__(self, width: int = 1024, height: int = 800):
        self.profile = tempfile.mkdtemp(prefix="chromium-profile-")
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def fds() -> None:  # the protocol's pipes are the child's fds 3 (commands in) and 4 (replies out)
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        self.proc = subprocess.Popen(
            [chromium_binary(), *FLAGS, f"--user-data-dir={self.profile}", f"--window-size={width},{height}",
             "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=fds, pass_fds=(3, 4),
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            if time.time() > deadline:
                raise TimeoutError("no answer from chromium")
            chunk = os.read(self._from_chrome, 1 << 16)
            if not chunk:
                raise RuntimeError(f"chromium closed the pipe: {self.proc.stderr.read().decode()[-2000:]}")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.time() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, session: str, timeout: float = 60) -> dict:
        deadline = time.time() + timeout
        while True:
            for i, event in enumerate(self.events):
                if event.get("method") == method and event.get("sessionId") == session:
                    return self.events.pop(i)
            self.events.append(self._read_message(deadline))

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except Exception:  # noqa: BLE001 - it may already be gone
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)
        shutil.rmtree(self.profile, ignore_errors=True)


def open_page(path: str, width: int = 1024, height: int = 800) -> dict:
    """Load `path` (a local HTML file) and return the probe's findings (see PROBE)."""
    browser = DevTools(width, height)
    try:
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        browser.call("Page.enable", session=session)
        browser.call("Emulation.setDeviceMetricsOverride",
                     {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=session)
        browser.call("Page.navigate", {"url": "file://" + os.path.abspath(path)}, session=session)
        browser.wait_event("Page.loadEventFired", session)
        result = browser.call("Runtime.evaluate", {"expression": PROBE, "awaitPromise": True, "returnByValue": True},
                              session=session, timeout=60)
        if "exceptionDetails" in result:
            raise RuntimeError(f"probe failed: {result['exceptionDetails']}")
        return result["result"]["value"]
    finally:
        browser.close()
