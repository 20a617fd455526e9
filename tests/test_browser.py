"""The live page (``sgaps_server/page.html``) in a real headless browser, against a canned API.

No SGAPS server runs here: a ``ThreadingHTTPServer`` serves the page at ``/``, scripted answers for
``/api/sessions`` and a real PNG for one session's frame, so what is tested is the page's JavaScript
(polling, cards, formatting, closing, errors) and the ``tests/browser.py`` harness itself. The lead's
server tests can reuse both against the real app.
"""
from __future__ import annotations

import io
import json
import os
import re
import threading
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from browser import INSTALL_HINT, ChromiumError, chromium_path, dump_dom, screenshot

PAGE = Path(__file__).resolve().parents[1] / "sgaps_server" / "page.html"

#: A colour no part of the page's own style uses, painted into the frame so a screenshot can prove it shows it.
FRAME_MARKER_RGB = (255, 0, 255)

SERVER_SUMMARY = {"version": "0.9.1", "policy": "uncertainty", "reconstructor": "tile", "sample_count": 500,
                  "target_fps": 30.0, "sessions": 2, "max_sessions": 8, "uptime_s": 3725.4}
SESSION_WITH_TRUTH = {
    "session_id": "abc", "client_id": "laptop-7", "checkpoint_key": "smb1-1-1", "color": "rgb", "frames": 1234,
    "fps": 29.84, "uplink_bytes_mean": 612.4, "downlink_bytes_mean": 71.0,
    "latency_ms": {"p50": 3.21, "p90": 6.5, "p99": 11.74}, "psnr_db_mean": 38.423, "psnr_db_last": 37.91,
    "started": "2025-01-02T10:11:12+00:00"}
SESSION_WITHOUT_TRUTH = {
    "session_id": "xyz", "client_id": "phone-2", "checkpoint_key": "smb1-4-2", "color": "rgb", "frames": 0,
    "fps": 0.0, "uplink_bytes_mean": 0.0, "downlink_bytes_mean": 0.0, "latency_ms": None,
    "psnr_db_mean": None, "psnr_db_last": None, "psnr_exact_frames": 0, "started": "2025-01-02T10:12:00+00:00"}
#: Every frame reconstructed exactly: infinite PSNR, which the server sends as null and counts apart.
SESSION_ALL_EXACT = {**SESSION_WITHOUT_TRUTH, "session_id": "exact", "frames": 5, "psnr_exact_frames": 5}
TWO_SESSIONS = {"server": SERVER_SUMMARY, "sessions": [SESSION_WITH_TRUTH, SESSION_WITHOUT_TRUTH]}
NO_SESSIONS = {"server": {**SERVER_SUMMARY, "sessions": 0}, "sessions": []}


@pytest.fixture(autouse=True)
def needs_chromium():
    if chromium_path() is None:
        if os.environ.get("SGAPS_REQUIRE_BROWSER"):  # CI: a browser test that skips proves nothing
            pytest.fail(f"headless Chromium is required here (SGAPS_REQUIRE_BROWSER) but missing; {INSTALL_HINT}")
        pytest.skip(f"headless Chromium is not installed; {INSTALL_HINT}")


def frame_png() -> bytes:
    """A 240x256 frame: sky, a brick floor and a marker-coloured block, like a reconstruction would be."""
    frame = np.zeros((240, 256, 3), np.uint8)
    frame[:] = (92, 148, 252)
    frame[208:] = (200, 76, 12)
    frame[120:152, 96:128] = FRAME_MARKER_RGB
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="PNG")
    return buffer.getvalue()


class CannedApi:
    """What the fake server answers: ``/api/sessions`` bodies served in turn (the last one repeats)."""

    def __init__(self):
        self.session_lists: list[dict] = [TWO_SESSIONS]
        self.api_status = 200
        self.hang_api = threading.Event()
        self.release_hung = threading.Event()
        self.requested_paths: list[str] = []
        self.frame = frame_png()
        self._served = 0

    def next_session_list(self) -> dict:
        body = self.session_lists[min(self._served, len(self.session_lists) - 1)]
        self._served += 1
        return body


@pytest.fixture
def api():
    return CannedApi()


@pytest.fixture
def page_url(api):
    """Base URL of a local server giving the page, ``api``'s answers and session abc's frame (404 for others)."""
    page = PAGE.read_bytes()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            api.requested_paths.append(self.path)
            path = self.path.split("?", 1)[0]
            if path == "/":
                self.reply(200, "text/html; charset=utf-8", page)
            elif path == "/api/sessions":
                if api.hang_api.is_set():
                    api.release_hung.wait(30)
                    return
                if api.api_status != 200:
                    self.reply(api.api_status, "application/json", b'{"detail": "canned failure"}')
                else:
                    self.reply(200, "application/json", json.dumps(api.next_session_list()).encode())
            elif path == "/api/sessions/abc/frame.png":
                self.reply(200, "image/png", api.frame)
            else:
                self.reply(404, "application/json", b'{"detail": "not found"}')

        def reply(self, status: int, content_type: str, body: bytes):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # keep pytest's output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    api.release_hung.set()
    server.shutdown()
    server.server_close()
    thread.join(5)


class DomReader(HTMLParser):
    """Texts and attributes of a dumped DOM: by element id, by ``data-field`` inside each session card."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self, html: str):
        super().__init__()
        self.by_id: dict[str, dict] = {}
        self.cards: dict[str, dict[str, str]] = {}
        self.card_images: dict[str, dict[str, str]] = {}
        self.header_fields: dict[str, str] = {}
        self._open: list[dict] = []  # the elements enclosing the parser's position, outermost first
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = {name: value or "" for name, value in attrs}
        card = attrs.get("data-session-id") or next(
            (element["card"] for element in reversed(self._open) if element["card"]), None)
        element = {"tag": tag, "attrs": attrs, "text": [], "card": card,
                   "in_header": tag == "header" or any(e["in_header"] for e in self._open)}
        if attrs.get("data-session-id"):
            self.cards.setdefault(card, {})
        if tag == "img" and card:
            self.card_images[card] = attrs
        if tag in self.VOID:
            if "id" in attrs:
                self.by_id[attrs["id"]] = {"attrs": attrs, "text": ""}
            return
        self._open.append(element)

    def handle_endtag(self, tag):
        while self._open:
            element = self._open.pop()
            text = "".join(element["text"]).strip()
            for parent in self._open[-1:]:
                parent["text"].append(text)
            attrs = element["attrs"]
            if "id" in attrs:
                self.by_id[attrs["id"]] = {"attrs": attrs, "text": text}
            if "data-field" in attrs:
                if element["card"]:
                    self.cards[element["card"]][attrs["data-field"]] = text
                elif element["in_header"]:
                    self.header_fields[attrs["data-field"]] = text
            if element["tag"] == tag:
                return

    def handle_data(self, data):
        if self._open:
            self._open[-1]["text"].append(data)


def test_each_open_session_gets_a_card_with_its_numbers(api, page_url):
    dom = DomReader(dump_dom(page_url, wait_ms=2000))

    assert dom.by_id["connection-status"]["text"] == "live"
    assert dom.by_id["session-count"]["text"] == "2"
    assert dom.header_fields == {"version": "0.9.1", "policy": "uncertainty", "reconstructor": "tile",
                                 "sample_count": "500 px/frame", "target_fps": "30 fps", "max_sessions": "8",
                                 "uptime": "1h 02m 05s"}
    assert set(dom.cards) == {"abc", "xyz"}
    abc = dom.cards["abc"]
    assert abc["session_id"] == "abc"
    assert abc["checkpoint_key"] == "smb1-1-1"
    assert abc["client_id"] == "laptop-7"
    assert abc["frames"] == "1234"
    assert abc["fps"] == "29.8"
    assert abc["uplink"] == "612 B"
    assert abc["downlink"] == "71 B"
    assert abc["latency_p50"] == "3.2 ms"
    assert abc["latency_p99"] == "11.7 ms"
    assert abc["psnr"] == "38.42 dB (last 37.9)"
    assert dom.cards["xyz"]["psnr"] == "no truth sent"
    assert dom.cards["xyz"]["latency_p50"] == "no frames yet"
    assert "hidden" in dom.by_id["empty-state"]["attrs"]
    assert "hidden" in dom.by_id["unreachable-banner"]["attrs"]


def test_exact_frames_are_not_mistaken_for_missing_truth(api, page_url):
    api.session_lists = [{"server": {**SERVER_SUMMARY, "sessions": 1}, "sessions": [SESSION_ALL_EXACT]}]
    dom = DomReader(dump_dom(page_url, wait_ms=1500))

    assert dom.cards["exact"]["psnr"] == "exact (5 frames)"


def test_the_frame_image_is_refreshed_with_a_counter(api, page_url):
    dom = DomReader(dump_dom(page_url, wait_ms=2000))

    assert re.fullmatch(r"/api/sessions/abc/frame\.png\?t=\d+", dom.card_images["abc"]["src"])
    frame_requests = [p for p in api.requested_paths if p.startswith("/api/sessions/abc/frame.png?t=")]
    assert len(set(frame_requests)) >= 3, f"the frame was not refreshed: {frame_requests}"
    # xyz has no reconstruction yet (404): its card keeps asking, less often, and shows the placeholder.
    assert any(p.startswith("/api/sessions/xyz/frame.png?t=") for p in api.requested_paths)


def test_an_empty_session_list_shows_a_count_of_zero(api, page_url):
    api.session_lists = [NO_SESSIONS]
    dom = DomReader(dump_dom(page_url, wait_ms=1500))

    assert dom.by_id["session-count"]["text"] == "0"
    assert dom.cards == {}
    assert "hidden" not in dom.by_id["empty-state"]["attrs"]


def test_closed_sessions_disappear(api, page_url):
    only_abc = {"server": {**SERVER_SUMMARY, "sessions": 1}, "sessions": [SESSION_WITH_TRUTH]}
    api.session_lists = [TWO_SESSIONS, TWO_SESSIONS, only_abc]
    dom = DomReader(dump_dom(page_url, wait_ms=2500))

    assert set(dom.cards) == {"abc"}
    assert dom.by_id["session-count"]["text"] == "1"


def test_an_api_error_shows_server_unreachable(api, page_url):
    api.api_status = 503
    dom = DomReader(dump_dom(page_url, wait_ms=1500))

    assert dom.by_id["connection-status"]["text"] == "server unreachable"
    assert "hidden" not in dom.by_id["unreachable-banner"]["attrs"]


def test_screenshot_is_a_non_blank_png_of_the_window_size_showing_the_frame(api, page_url, tmp_path):
    path = screenshot(page_url, tmp_path / "live.png", width=1280, height=900, wait_ms=2000)

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        assert image.size == (1280, 900)
        pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
    assert pixels.std() > 20, "the screenshot is (nearly) one flat colour"
    marker = np.all(pixels == FRAME_MARKER_RGB, axis=-1)
    # The frame's 32x32 marker block drawn at 2x: 64x64 screen pixels.
    assert marker.sum() == 64 * 64, f"the frame is not shown at 2x ({marker.sum()} marker pixels)"


def test_a_request_that_never_finishes_fails_with_a_clear_timeout(api, page_url):
    api.hang_api.set()
    with pytest.raises(ChromiumError, match="did not finish .* within 2 s"):
        dump_dom(page_url, wait_ms=1000, timeout_s=2)
