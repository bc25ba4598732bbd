"""A minimal W3C WebDriver client over the standard library (urllib + json).

Why not Selenium or fantoccini: the console tests need a dozen commands (new session,
navigate, find, click, type, text, screenshot, cookies); this file is that, with no
package to install on the CI machine and nothing that looks for a driver on the network
(Selenium Manager does when no driver path is given). chromedriver speaks the W3C
protocol; every command here is one HTTP request to it on loopback, with a timeout.
"""

import base64
import json
import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"

# Chromium as root on a machine with a closed network (see
# /work/.library/env/machines/rust.md): no sandbox, no GPU, no background connections.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--lang=en-US",
]


class WebDriverError(Exception):
    def __init__(self, status, error, message):
        super().__init__(f"{status} {error}: {message}")
        self.error = error


class NoSuchElement(WebDriverError):
    pass


def _request(method, url, body=None, timeout=30):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json; charset=utf-8")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read() or b"{}").get("value")
    except urllib.error.HTTPError as e:
        payload = json.loads(e.read() or b"{}").get("value", {})
        kind = payload.get("error", "unknown error")
        cls = NoSuchElement if kind == "no such element" else WebDriverError
        raise cls(e.code, kind, payload.get("message", "")[:300]) from None


class Element:
    def __init__(self, session, element_id):
        self.session = session
        self.id = element_id

    def _cmd(self, method, path, body=None):
        return self.session._cmd(method, f"/element/{self.id}{path}", body)

    def click(self):
        self._cmd("POST", "/click", {})

    def send_keys(self, text):
        self._cmd("POST", "/value", {"text": text})

    def clear(self):
        self._cmd("POST", "/clear", {})

    @property
    def text(self):
        return self._cmd("GET", "/text")

    def attribute(self, name):
        return self._cmd("GET", f"/attribute/{name}")

    def find(self, css):
        value = self._cmd("POST", "/element", {"using": "css selector", "value": css})
        return Element(self.session, value[ELEMENT])

    def find_all(self, css):
        values = self._cmd("POST", "/elements", {"using": "css selector", "value": css})
        return [Element(self.session, v[ELEMENT]) for v in values]


class Session:
    """One browser session; `with Session(driver_url) as s:` ends it afterwards."""

    def __init__(self, driver_url, width=1280, height=900):
        self.driver_url = driver_url.rstrip("/")
        self.profile = tempfile.TemporaryDirectory(prefix="spamgate-chromium-")
        # Where the browser saves downloads (the case export), inside the profile.
        self.downloads = os.path.join(self.profile.name, "downloads")
        os.makedirs(self.downloads)
        caps = {
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": "/usr/bin/chromium",
                        "prefs": {
                            "download.default_directory": self.downloads,
                            "download.prompt_for_download": False,
                        },
                        "args": CHROMIUM_ARGS
                        + [
                            f"--user-data-dir={self.profile.name}",
                            f"--window-size={width},{height}",
                        ],
                    },
                    "timeouts": {"implicit": 0, "pageLoad": 20000, "script": 10000},
                }
            }
        }
        value = _request("POST", f"{self.driver_url}/session", caps, timeout=60)
        self.id = value["sessionId"]
        self.cdp("Browser.setDownloadBehavior",
                 behavior="allow", downloadPath=self.downloads)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.quit()

    def quit(self):
        try:
            _request("DELETE", f"{self.driver_url}/session/{self.id}")
        except (WebDriverError, OSError):
            pass
        self.profile.cleanup()

    def _cmd(self, method, path, body=None):
        return _request(method, f"{self.driver_url}/session/{self.id}{path}", body)

    def get(self, url):
        self._cmd("POST", "/url", {"url": url})

    @property
    def url(self):
        return self._cmd("GET", "/url")

    @property
    def title(self):
        return self._cmd("GET", "/title")

    @property
    def source(self):
        return self._cmd("GET", "/source")

    def find(self, css):
        value = self._cmd("POST", "/element", {"using": "css selector", "value": css})
        return Element(self, value[ELEMENT])

    def find_all(self, css):
        values = self._cmd("POST", "/elements", {"using": "css selector", "value": css})
        return [Element(self, v[ELEMENT]) for v in values]

    def wait_for(self, css, timeout=10):
        """The first element matching css, polled until it appears (no fixed sleeps)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.find(css)
            except NoSuchElement:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def click_and_load(self, element, css, timeout=10):
        """Clicks element (a form's button) and returns the first css match of the page
        that replaced this one: it waits until the old page is gone, so an element of
        the old page (a flash message already there) is never mistaken for the new."""
        old = self.find("html")
        element.click()
        deadline = time.monotonic() + timeout
        while True:
            try:
                old.text  # noqa: B018 (raises once the old document is gone)
            except WebDriverError as e:
                if "stale" not in str(e):
                    raise
                return self.wait_for(css, timeout)
            if time.monotonic() > deadline:
                raise TimeoutError(f"the page did not change after the click ({css})")
            time.sleep(0.05)

    def execute(self, script, *args):
        return self._cmd("POST", "/execute/sync", {"script": script, "args": list(args)})

    def cookies(self):
        return self._cmd("GET", "/cookie")

    def delete_cookies(self):
        self._cmd("DELETE", "/cookie")

    def cdp(self, cmd, **params):
        """A Chrome DevTools Protocol command through chromedriver."""
        return self._cmd("POST", "/goog/cdp/execute", {"cmd": cmd, "params": params})

    def screenshot(self, path, max_height=4000):
        """The whole page, not only the viewport: CDP's captureScreenshot beyond the
        viewport, clipped to the window's width and the document's height (at most
        max_height pixels, so the committed PNGs stay small)."""
        metrics = self.cdp("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        width = self.execute("return document.documentElement.clientWidth;")
        height = min(int(size["height"]), max_height)
        shot = self.cdp("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                        clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1})
        png = base64.b64decode(shot["data"])
        with open(path, "wb") as f:
            f.write(png)
        return len(png)

    def wait_for_download(self, suffix, timeout=15):
        """The path of the first finished download ending in suffix."""
        deadline = time.monotonic() + timeout
        while True:
            done = [n for n in os.listdir(self.downloads)
                    if n.endswith(suffix) and not n.endswith(".crdownload")]
            if done:
                return os.path.join(self.downloads, done[0])
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {suffix} download in {self.downloads}: "
                                   f"{os.listdir(self.downloads)}")
            time.sleep(0.1)


class Driver:
    """chromedriver on a loopback port, started and stopped by the test run."""

    def __init__(self, port, binary="/usr/bin/chromedriver", log=None):
        self.url = f"http://127.0.0.1:{port}"
        out = open(log, "wb") if log else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [binary, f"--port={port}", "--allowed-ips=127.0.0.1"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                if _request("GET", f"{self.url}/status", timeout=2).get("ready"):
                    return
            except (OSError, WebDriverError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("chromedriver did not become ready")
            time.sleep(0.1)

    def session(self, **kw):
        return Session(self.url, **kw)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
