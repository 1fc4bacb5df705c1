"""Headless Chromium driven through the Chrome DevTools Protocol, standard library only: enough to
load a page, run a script in it (tick a checkbox) and take a screenshot.

The protocol is JSON messages over a websocket (https://chromedevtools.github.io/devtools-protocol/);
the websocket framing (RFC 6455) is the few lines of ``_send`` and ``_receive``.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--hide-scrollbars",
]


class Browser:
    """A headless Chromium in a fresh profile with one page, closed on exit.

    Args:
        port: the DevTools port to open on 127.0.0.1.
        chromium: the browser's executable; ``None``: ``chromium`` on the PATH.
    """

    def __init__(self, port: int, chromium: str | None = None) -> None:
        self.port = port
        self.chromium = chromium or shutil.which("chromium") or shutil.which("chromium-browser")
        if self.chromium is None:
            raise SystemExit("chromium not found (Debian: apt-get install -y chromium)")

    def __enter__(self) -> Browser:
        self._profile = tempfile.TemporaryDirectory()
        self._process = subprocess.Popen(
            [self.chromium, *CHROMIUM_FLAGS, f"--remote-debugging-port={self.port}", f"--user-data-dir={self._profile.name}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=5) as response:
                    targets = json.load(response)
                break
            except OSError:
                if time.monotonic() > deadline or self._process.poll() is not None:
                    raise
                time.sleep(0.5)
        page = next(t for t in targets if t["type"] == "page")
        self._connect(page["webSocketDebuggerUrl"])
        return self

    def __exit__(self, *exc: object) -> None:
        self._sock.close()
        self._process.terminate()
        self._process.wait(timeout=30)
        self._profile.cleanup()

    # -- the protocol ------------------------------------------------------------------------

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and return its result (events in between are skipped)."""
        self._id += 1
        self._send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            reply = json.loads(self._receive())
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url: str, width: int, height: int) -> None:
        """Load ``url`` in a ``width`` x ``height`` viewport."""
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        self.call("Page.navigate", url=url)

    def screenshot(self, out: Path) -> None:
        """The viewport as a PNG file."""
        out.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))

    # -- websocket framing (RFC 6455): text frames, masked from the client ----------------------

    def _connect(self, ws_url: str) -> None:
        url = urlparse(ws_url)
        self._sock = socket.create_connection((url.hostname, url.port), timeout=300)
        key = base64.b64encode(os.urandom(16)).decode()
        self._sock.sendall(
            f"GET {url.path} HTTP/1.1\r\nHost: {url.hostname}:{url.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += self._read(1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"DevTools refused the websocket: {head.decode(errors='replace')}")
        self._id = 0

    def _read(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self._sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("DevTools closed the connection")
            data += chunk
        return data

    def _send(self, text: str) -> None:
        payload = text.encode()
        n = len(payload)
        if n < 126:
            length = bytes([0x80 | n])
        elif n < 1 << 16:
            length = bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            length = bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self._sock.sendall(b"\x81" + length + mask + masked)

    def _receive(self) -> str:
        message = b""
        while True:
            first, second = self._read(2)
            n = second & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            payload = self._read(n)
            if first & 0x0F in (0x0, 0x1):  # continuation or text
                message += payload
                if first & 0x80:  # the last fragment
                    return message.decode()
