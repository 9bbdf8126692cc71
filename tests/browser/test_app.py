"""The web demo in headless Chromium: upload a clip made here, type an expression, press Run,
see the overlay and the masks; with Whole video ticked, the overlay plays with its sound and the
summary counts every frame; a text file named .mp4 and a file over the size limit are
refused with a message on the page. Nothing but 127.0.0.1 is contacted (the page must render
with every other request blocked)."""

from __future__ import annotations

import base64
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


PLAY_JS = """async (v) => {
    // play the element for a moment from the start (muted when the autoplay policy wants it),
    // then report what Chromium decoded
    const wait = (ms) => new Promise((r) => setTimeout(r, ms));
    for (let i = 0; i < 200 && v.readyState < 2 && !v.error; i++) await wait(100);
    v.currentTime = 0;
    let blocked = null;
    try { await v.play(); } catch (e) { blocked = String(e); v.muted = true; await v.play(); }
    for (let i = 0; i < 30 && v.currentTime < 1.5; i++) await wait(100);
    v.pause();
    return {src: v.currentSrc, readyState: v.readyState, duration: v.duration, currentTime: v.currentTime,
            error: v.error ? v.error.code : null, blocked: blocked,
            audioBytes: v.webkitAudioDecodedByteCount, videoBytes: v.webkitVideoDecodedByteCount};
}"""
"""Chromium's ``webkitAudioDecodedByteCount`` is above 0 once an element with an audio track has
played a moment, and stays 0 for one without (checked below on a copy of the result without audio)."""

PLAY_SILENT_COPY_JS = """async ([b64, play]) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const v = document.createElement("video");
    v.id = "silent-copy";
    v.src = URL.createObjectURL(new Blob([bytes], {type: "video/mp4"}));
    document.body.appendChild(v);
    return await (eval(play))(v);
}"""


def media_info(path: Path) -> dict:
    """Frames, their seconds, duration and whether there is an audio stream (PyAV)."""
    import av

    with av.open(str(path)) as c:
        has_audio = any(s.type == "audio" for s in c.streams)
        duration = c.duration / 1e6 if c.duration else None
        times = [float(f.time) for f in c.decode(video=0)]
    return {"frames": len(times), "seconds": {int(t + 1e-6) for t in times}, "duration": duration,
            "audio": has_audio}


def without_audio(src: Path, dst: Path) -> Path:
    """``src``'s video stream alone, remuxed (no re-encoding) into ``dst``."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mp4") as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is None:
                continue
            packet.stream = stream
            out.mux(packet)
    return dst


def test_whole_video_plays_the_overlay_with_sound_and_lists_the_windows(page, app_url, clip, work):
    source = media_info(clip)
    assert source["audio"] and 12 <= source["duration"] <= 20, source  # a short clip with sound
    open_app(page, app_url)
    upload(page, clip)
    page.locator("#video-in video").wait_for(state="attached")
    page.locator("#whole input[type=checkbox]").check()
    run(page, "the white square making the sound")
    video = page.locator("#overlay-video video[src]")
    video.wait_for(state="visible", timeout=RUN_TIMEOUT_MS)
    src = video.get_attribute("src")
    assert src and "/file=" in src, src

    # the served file: an MP4 with every frame of the clip and its sound
    response = page.request.get(src)
    assert response.ok, (src, response.status)
    result = work / "whole-overlay.mp4"
    result.write_bytes(response.body())
    overlay = media_info(result)
    assert overlay["audio"], overlay
    assert overlay["frames"] == source["frames"], (overlay, source)
    assert abs(overlay["duration"] - source["duration"]) < 0.5, (overlay, source)

    # the page's player: loaded, as long as the clip, plays, decodes sound
    played = video.evaluate(PLAY_JS)
    assert played["error"] is None and played["readyState"] >= 2, played
    assert abs(played["duration"] - source["duration"]) < 0.5, (played, source)
    assert played["currentTime"] > 0.5, played
    assert played["videoBytes"] > 0 and played["audioBytes"] > 0, played
    # the same video without its audio track decodes no sound: the check above tells them apart
    silent = without_audio(result, work / "whole-overlay-silent.mp4")
    assert not media_info(silent)["audio"]
    control = page.evaluate(PLAY_SILENT_COPY_JS, [base64.b64encode(silent.read_bytes()).decode(), PLAY_JS])
    assert control["error"] is None and control["readyState"] >= 2 and control["videoBytes"] > 0, control
    assert control["audioBytes"] == 0, control

    # the summary: every frame counted, one row per window, a mask per second
    status = page.locator("#status")
    text = status.inner_text()
    match = re.search(r"(?:present in \d+ of|not present in any of) (\d+) frames", text)
    assert match and int(match.group(1)) == source["frames"], text
    table = status.locator("table")
    assert table.count() == 1 and "window" in table.locator("th").first.inner_text().lower(), text
    n_windows = table.locator("tbody tr").count()
    assert n_windows == -(-len(source["seconds"]) // 10), text  # 10-second windows cover the clip
    assert page.locator("#masks img").count() == min(len(source["seconds"]), 60)
    assert page.external_requests == [], page.external_requests
