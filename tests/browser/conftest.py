"""Fixtures of the web-demo browser test: a tiny random-weight checkpoint, a clip with sound
made here, the app (``refavs app``) in a subprocess on 127.0.0.1, and headless Chromium driven
by Playwright (Debian's ``chromium``; Playwright's own browser download is never used).

Run with ``bash scripts/browser-test`` (installs what is missing) or, once installed,
``.venv/bin/python -m pytest tests/browser -m browser``. Every fixture stops what it started.
Set ``REFAVS_CHROMIUM`` to use another Chromium binary and ``REFAVS_APP_SCREENSHOT=PATH`` to
keep a screenshot of the page after a successful run. ``REFAVS_APP_CHECKPOINT``,
``REFAVS_APP_CLIP`` and ``REFAVS_APP_EXPRESSION`` replace the random checkpoint, the clip and the
sentence of the upload test (how ``docs/app.png`` is made: the shipped checkpoint on a Synth clip,
see docs/inference.md).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

HOST = "127.0.0.1"
MAX_UPLOAD_MB = 1.0
"""The app under test refuses uploads above 1 MB; the clip made here is far smaller."""
STARTUP_TIMEOUT_S = 180


def chromium_executable() -> str | None:
    for candidate in (os.environ.get("REFAVS_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def make_clip(path: Path, seconds: float = 12.0, fps: int = 8, size: tuple[int, int] = (64, 48),
              tone_hz: float = 440.0, rate: int = 16_000) -> Path:
    """An MP4 (H.264 + AAC): a white square moving left to right on grey, a sine tone."""
    from refavs.data.video_writer import write_video

    width, height = size
    n_frames = int(seconds * fps)
    frames = []
    for i in range(n_frames):
        img = np.full((height, width, 3), 96, np.uint8)
        x = int((width - 16) * i / max(n_frames - 1, 1))
        img[16:32, x:x + 16] = 255
        frames.append(img)
    t = np.arange(int(seconds * rate)) / rate
    tone = (0.3 * np.sin(2 * np.pi * tone_hz * t)).astype(np.float32)
    return write_video(path, frames, fps, tone, rate)


@pytest.fixture(scope="session")
def max_upload_mb() -> float:
    """The upload limit of the app under test."""
    return MAX_UPLOAD_MB


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = chromium_executable()
    if path is None:
        pytest.skip("Chromium is not installed (apt-get install -y chromium, or run scripts/browser-test)")
    return path


@pytest.fixture(scope="session")
def playwright_api():
    pytest.importorskip("gradio", reason='Gradio is not installed (pip install -e ".[app]", or run '
                                          "scripts/browser-test)")
    sync_api = pytest.importorskip("playwright.sync_api", reason='Playwright is not installed (pip install -e '
                                                                 '".[browser]", or run scripts/browser-test)')
    return sync_api


@pytest.fixture(scope="session")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("browser")


@pytest.fixture(scope="session")
def tiny_checkpoint(work: Path) -> Path:
    """A random-weight EEMC tiny, or the checkpoint named by ``REFAVS_APP_CHECKPOINT``."""
    if os.environ.get("REFAVS_APP_CHECKPOINT"):
        return Path(os.environ["REFAVS_APP_CHECKPOINT"])
    import torch

    from refavs.models.checkpoint import save_pretrained
    from refavs.models.eemc import EEMC
    from refavs.models.registry import get_model_config

    torch.manual_seed(0)
    return save_pretrained(EEMC(get_model_config("tiny")), work / "ckpt")


@pytest.fixture(scope="session")
def clip(work: Path) -> Path:
    """A moving square with a tone, or the video named by ``REFAVS_APP_CLIP``."""
    if os.environ.get("REFAVS_APP_CLIP"):
        return Path(os.environ["REFAVS_APP_CLIP"])
    return make_clip(work / "square.mp4")


def _wait_until_serving(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"refavs app exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"refavs app did not answer within {STARTUP_TIMEOUT_S} s:\n{log.read_text(errors='replace')}")


@pytest.fixture(scope="session")
def app_url(playwright_api, tiny_checkpoint: Path, work: Path):
    """``refavs app`` on 127.0.0.1 and a free port, in a subprocess stopped at the end."""
    port = free_port()
    url = f"http://{HOST}:{port}/"
    log = work / "app.log"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "NO_PROXY": HOST, "no_proxy": HOST,
           "PYTHONUNBUFFERED": "1", "GRADIO_TEMP_DIR": str(work / "gradio-tmp")}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "refavs", "app", "--checkpoint", str(tiny_checkpoint),
                                 "--host", HOST, "--port", str(port), "--max-upload-mb", str(MAX_UPLOAD_MB)],
                                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        _wait_until_serving(url, proc, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)
        print(f"\n--- refavs app log ({log}) ---\n{log.read_text(errors='replace')[-4000:]}")


@pytest.fixture(scope="session")
def browser(playwright_api, chromium_path: str):
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path, headless=True,
                              args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            yield b
        finally:
            b.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture()
def page(request, browser, work: Path):
    """A fresh page; requests to anything but 127.0.0.1 are blocked and listed in
    ``page.external_requests``; a screenshot is saved in the test's tmp folder on failure."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    external: list[str] = []

    def route(r):
        if urlsplit(r.request.url).hostname in (HOST, None) or r.request.url.startswith(("data:", "blob:")):
            r.continue_()
        else:
            external.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    pg.external_requests = external
    pg.set_default_timeout(30_000)
    try:
        yield pg
    finally:
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            shot = work / f"failure-{request.node.name}.png"
            try:
                pg.screenshot(path=str(shot), full_page=True)
                print(f"\nscreenshot of the failed page: {shot}")
            except Exception as e:  # noqa: BLE001 - the test's own failure is what matters
                print(f"\nno screenshot: {e}")
        context.close()
