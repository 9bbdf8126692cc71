"""The web demo in headless Chromium: upload a clip made here, type an expression, press Run,
see the overlay and the masks; a text file named .mp4 and a file over the size limit are
refused with a message on the page. Nothing but 127.0.0.1 is contacted (the page must render
with every other request blocked)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

RUN_TIMEOUT_MS = 240_000
"""The tiny model on CPU answers in seconds; the bound leaves room for a loaded machine."""


def open_app(page, url: str) -> None:
    page.goto(url, wait_until="domcontentloaded")
    page.locator("#run").wait_for(state="visible", timeout=60_000)


def upload(page, path: Path) -> None:
    page.locator("#video-in input[type=file]").set_input_files(str(path))


def run(page, expression: str) -> None:
    page.locator("#expression textarea").fill(expression)
    page.locator("#run").click()


def test_upload_run_shows_overlay_masks_and_summary(page, app_url, clip):
    open_app(page, app_url)
    upload(page, clip)
    page.locator("#video-in video").wait_for(state="attached")  # the upload's preview
    run(page, os.environ.get("REFAVS_APP_EXPRESSION", "the white square making the sound"))
    overlay = page.locator("#overlay-video video[src], #overlay-image img[src]").first
    overlay.wait_for(state="visible", timeout=RUN_TIMEOUT_MS)
    src = overlay.get_attribute("src")
    assert src and "/file=" in src, src
    response = page.request.get(src)
    assert response.ok, (src, response.status)
    assert response.headers["content-type"].split("/")[0] in ("video", "image")
    body = response.body()
    assert body[:6] in (b"GIF87a", b"GIF89a") or body[4:8] == b"ftyp", body[:16]  # a GIF or an MP4
    status = page.locator("#status")
    assert re.search(r"(not )?present", status.inner_text())
    assert status.locator("table").count() == 1  # the per-frame areas
    assert page.locator("#masks img").count() >= 10
    assert page.external_requests == [], page.external_requests
    if os.environ.get("REFAVS_APP_SCREENSHOT"):
        page.wait_for_timeout(1000)
        page.screenshot(path=os.environ["REFAVS_APP_SCREENSHOT"], full_page=True)


def test_text_file_named_mp4_is_refused_with_a_message(page, app_url, work):
    fake = work / "notes.mp4"
    fake.write_text("this is not a video\n" * 50)
    open_app(page, app_url)
    upload(page, fake)
    run(page, "the dog")
    message = page.get_by_text("is not a video file")
    message.wait_for(state="visible", timeout=60_000)
    assert "notes.mp4" in page.locator("#status").inner_text()
    assert page.locator("#overlay-video video[src]").count() == 0


def test_file_over_the_size_limit_is_refused_with_a_message(page, app_url, work, max_upload_mb):
    big = work / "big.mp4"
    big.write_bytes(os.urandom(int(2 * max_upload_mb * 1024 * 1024)))
    open_app(page, app_url)
    upload(page, big)
    message = page.get_by_text(re.compile(r"exceeds? the maximum allowed size|too large", re.I)).first
    message.wait_for(state="visible", timeout=60_000)
    assert page.external_requests == [], page.external_requests
