"""The web demo under concurrent load: ``refavs app`` with the shipped checkpoint on 127.0.0.1,
many ``gradio_client`` clients at once, each request with its own Ref-AVS Synth clip and sentence.

Checked: every request either answers with the masks and summary of its own clip and sentence or
is refused with Gradio's "queue is full" error (the app queues at most 16); no other error; the
server's memory after the second round of load is within :data:`MEMORY_RATIO` of that after the
first; a result folder is kept per answer and removed once older than ``RESULT_MAX_AGE_S`` (on
the next request), and the work dir is removed when the server is stopped. The figures are
printed as the last JSON line. Run with ``bash scripts/load-test`` (installs the ``app`` extra);
every loop is bounded in count and time, and nothing but 127.0.0.1 is contacted.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from refavs.app import RESULT_MAX_AGE_S, escape_markdown

pytestmark = pytest.mark.load

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINT = ROOT / "checkpoints" / "lite-synth-medium"
HOST = "127.0.0.1"

SYNTH_CLIPS = 8
"""test_s clips generated to choose the requests' clips from."""
CASES = 4
"""Distinct (clip, sentence) requests: two sentences about two different objects on each of two clips."""
CLIENTS = 24
"""Clients sending at once: more than the queue's 16 places plus the one running, so some are refused."""
REQUESTS_PER_CLIENT = 3
"""Requests each client sends in turn, in each of the two rounds."""
ROUNDS = 2
WARMUP_REQUESTS = CASES
"""Sequential requests (each case once) before the load."""

STARTUP_TIMEOUT_S = 120
REQUEST_TIMEOUT_S = 120
"""The most one request (queueing included) may take before the test fails."""
ROUND_TIMEOUT_S = 150
"""The most one round may take (its clients are joined with what is left of it)."""
STOP_TIMEOUT_S = 30
POLL_S = 0.5
PAGE_TIMEOUT_S = 5
"""The most one look at the page may take while waiting for the server."""
QUANTILES = 20
"""Latency cut in 5 % steps: the last cut is p95."""

SAME_MASKS_IOU = 0.98
"""Least IoU of an answer's masks with the reference masks of its own request (the same model
and input; the margin is for float differences between thread counts)."""
DISTINCT_MASKS_IOU = 0.5
"""Most IoU between the reference masks of two cases, so that a mixed-up answer is caught."""
MEMORY_RATIO = 1.3
"""Most growth of the server's resident memory from after the first round to after the last."""
QUEUE_FULL = "queue is full"
"""Gradio's refusal when its queue has no place left (gradio_client's QueueError)."""
AGE_MARGIN_S = 60
"""How much older than ``RESULT_MAX_AGE_S`` the result folders are made to look."""


# ---------------------------------------------------------------------------------- inputs


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("load")


@pytest.fixture(scope="module")
def cases(work: Path) -> list[dict]:
    """``CASES`` requests: a Synth test_s clip as MP4, one of its sentences, the masks the shipped
    checkpoint gives in-process (the expected answer) and the IoU of those with the ground truth."""
    # here, not at the top: collecting the default suite must not load torch or the Synth generator
    from refavs.data.layout import DatasetLayout
    from refavs.data.masks import load_clip_masks
    from refavs.data.records import Expression
    from refavs.inference import RefAVSPipeline  # pulls in torch
    from refavs.synth.generate import generate
    from refavs.synth.layout import read_scenes
    from refavs.synth.presets import get_preset
    from refavs.synth.stats import twin_ambiguous
    from refavs.synth.video import clip_video

    root = work / "synth"
    generate(root, seed=0, preset=get_preset("medium").with_counts(train=0, val=0, test_s=SYNTH_CLIPS, test_u=0,
                                                                    test_n=0), workers=1, force=True)
    layout = DatasetLayout(root)
    pipe = RefAVSPipeline.from_pretrained(CHECKPOINT)
    chosen: list[dict] = []
    for rec in read_scenes(root):  # bounded: SYNTH_CLIPS scenes
        in_view = {o["fid"] for o in rec["objects"] if all(a > 0 for a in o["visual"]["area"])}
        rows = [e for e in rec["expressions"] if e["target"] in in_view and not twin_ambiguous(rec, e)]
        pair = next(((a, b) for i, a in enumerate(rows) for b in rows[i + 1:] if a["target"] != b["target"]), None)
        if pair is None:
            continue
        video = clip_video(root, rec["folder"], work / f"{rec['folder']}.mp4")
        for e in pair:
            truth = load_clip_masks(layout, Expression(rec["vid"], e["uid"], "test_s", int(e["target"]),
                                                       e["exp"])).astype(bool)
            masks = pipe(video, e["exp"]).masks
            if all(iou(masks, c["masks"]) <= DISTINCT_MASKS_IOU for c in chosen):
                chosen.append({"video": video, "sentence": e["exp"], "masks": masks, "truth_iou": iou(masks, truth)})
        if len(chosen) >= CASES:
            break
    assert len(chosen) >= CASES, f"only {len(chosen)} distinct requests in {SYNTH_CLIPS} test_s clips"
    return chosen[:CASES]


# ---------------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def wait_until_serving(url: str, proc: subprocess.Popen, log: Path) -> bool:
    """Whether the page answered within ``STARTUP_TIMEOUT_S`` (raises when the server exited)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    for _ in range(int(STARTUP_TIMEOUT_S / POLL_S)):
        if proc.poll() is not None:
            raise RuntimeError(f"refavs app exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(url, timeout=PAGE_TIMEOUT_S) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_S)
    return False


@pytest.fixture(scope="module")
def server(work: Path):
    """``refavs app`` with the shipped checkpoint on 127.0.0.1 and a free port; its temporary
    folders (``TMPDIR``, ``GRADIO_TEMP_DIR``) are under the test's folder."""
    pytest.importorskip("gradio_client", reason='Gradio is not installed (pip install -e ".[app]", or run '
                                                 "scripts/load-test)")
    port = free_port()
    url = f"http://{HOST}:{port}/"
    tmp, gradio_tmp, log = work / "server-tmp", work / "gradio-tmp", work / "app.log"
    tmp.mkdir()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "NO_PROXY": HOST, "no_proxy": HOST,
           "PYTHONUNBUFFERED": "1", "TMPDIR": str(tmp), "GRADIO_TEMP_DIR": str(gradio_tmp)}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "refavs", "app", "--checkpoint", str(CHECKPOINT),
                                 "--host", HOST, "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    state = {"proc": proc, "url": url, "tmp": tmp, "gradio_tmp": gradio_tmp, "log": log}
    try:
        if not wait_until_serving(url, proc, log):
            raise RuntimeError(f"refavs app did not answer within {STARTUP_TIMEOUT_S} s")
        yield state
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)
        if not state.get("passed"):  # on success the figures stay the last line
            print(f"\n--- refavs app log ({log}) ---\n{log.read_text(errors='replace')[-3000:]}")


# -------------------------------------------------------------------------------- requests


def new_client(url: str, downloads: Path):
    from gradio_client import Client  # optional: the app extra

    return Client(url, verbose=False, analytics_enabled=False, download_files=str(downloads))


def ask(client, case: dict) -> dict:
    """One request; ``{"outcome": "answered" | "refused", "seconds": float}``, or an AssertionError
    when the answer is not this request's own or the error is not the queue's refusal."""
    from gradio_client import handle_file  # optional: the app extra

    t0 = time.perf_counter()
    try:
        job = client.submit(handle_file(str(case["video"])), case["sentence"], 0.0, api_name="/run")
        overlay_video, overlay_image, gallery, status = job.result(timeout=REQUEST_TIMEOUT_S)
    except Exception as e:  # noqa: BLE001 - sorted below: the queue's refusal or a failure
        if QUEUE_FULL in str(e).lower():
            return {"outcome": "refused", "seconds": time.perf_counter() - t0}
        raise AssertionError(f"{case['sentence']!r}: {type(e).__name__}: {e}") from e
    seconds = time.perf_counter() - t0
    assert not status.startswith("**Error:**"), (case["sentence"], status)
    assert status.startswith(f"**{escape_markdown(case['sentence'])}**: "), (case["sentence"], status)
    assert overlay_video or overlay_image, "no overlay"
    masks = np.stack([np.asarray(Image.open(item["image"])) > 0 for item in gallery])
    assert masks.shape == case["masks"].shape, masks.shape
    same = iou(masks, case["masks"])
    assert same >= SAME_MASKS_IOU, f"{case['sentence']!r}: IoU {same:.3f} with its own expected masks"
    return {"outcome": "answered", "seconds": seconds}


def load_round(url: str, cases: list[dict], downloads: Path) -> tuple[list[dict], list[str], float]:
    """``CLIENTS`` threads, each with its own client, sending ``REQUESTS_PER_CLIENT`` requests in
    turn (client ``i`` starts at case ``i``): (results, failures, seconds)."""
    results: list[dict] = []
    failures: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(CLIENTS, timeout=STARTUP_TIMEOUT_S)

    def one_client(index: int) -> None:
        try:
            client = new_client(url, downloads / f"client-{index}")
            start.wait()
            for k in range(REQUESTS_PER_CLIENT):
                r = ask(client, cases[(index + k) % len(cases)])
                with lock:
                    results.append(r)
        except Exception as e:  # noqa: BLE001 - collected and failed on in the main thread
            with lock:
                failures.append(f"client {index}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=one_client, args=(i,), daemon=True) for i in range(CLIENTS)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    deadline = time.monotonic() + ROUND_TIMEOUT_S
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.monotonic()))
    stuck = sum(t.is_alive() for t in threads)
    if stuck:
        failures.append(f"{stuck} clients still waiting after {ROUND_TIMEOUT_S} s")
    return results, failures, time.perf_counter() - t0


def result_folders(state: dict) -> list[Path]:
    workdirs = sorted(state["tmp"].glob("refavs-app-*"))
    assert len(workdirs) == 1, workdirs
    state["workdir"] = workdirs[0]
    return sorted(workdirs[0].glob("result-*"))


# ----------------------------------------------------------------------------------- the test


def test_concurrent_clients_get_their_own_answers_or_a_queue_full_refusal(server, cases, work):

    pid, url, downloads = server["proc"].pid, server["url"], work / "downloads"
    figures: dict = {"clients": CLIENTS, "requests_per_client": REQUESTS_PER_CLIENT, "rounds": ROUNDS,
                     "cases": len(cases), "truth_iou": [round(c["truth_iou"], 3) for c in cases],
                     "rss_mb_start": round(rss_mb(pid), 1)}

    client = new_client(url, downloads / "warmup")
    for k in range(WARMUP_REQUESTS):
        assert ask(client, cases[k % len(cases)])["outcome"] == "answered"
    figures["rss_mb_warm"] = round(rss_mb(pid), 1)
    answered_before = WARMUP_REQUESTS

    results: list[dict] = []
    seconds = 0.0
    for r in range(ROUNDS):
        got, failures, took = load_round(url, cases, downloads / f"round-{r}")
        assert failures == [], failures
        results += got
        seconds += took
        figures[f"rss_mb_after_round_{r + 1}"] = round(rss_mb(pid), 1)
    answered = [r["seconds"] for r in results if r["outcome"] == "answered"]
    refused = sum(r["outcome"] == "refused" for r in results)
    assert len(results) == ROUNDS * CLIENTS * REQUESTS_PER_CLIENT
    assert answered, "every request was refused"
    quantiles = statistics.quantiles(answered, n=QUANTILES)
    figures.update(answered=len(answered), refused=refused, seconds=round(seconds, 1),
                   requests_per_s=round(len(answered) / seconds, 2),
                   p50_s=round(statistics.median(answered), 2), p95_s=round(quantiles[-1], 2))

    first, last = figures["rss_mb_after_round_1"], figures[f"rss_mb_after_round_{ROUNDS}"]
    assert last <= MEMORY_RATIO * first, figures

    # one result folder per answer, none old enough to be removed yet
    folders = result_folders(server)
    assert len(folders) == answered_before + len(answered), (len(folders), figures)
    figures["result_folders"] = len(folders)
    # once older than RESULT_MAX_AGE_S, the next request removes them
    old = time.time() - RESULT_MAX_AGE_S - AGE_MARGIN_S
    for folder in folders:
        os.utime(folder, (old, old))
    assert ask(client, cases[0])["outcome"] == "answered"
    assert len(result_folders(server)) == 1

    # stopping the server (SIGTERM, as `kill` and service managers do) removes the work dir
    proc = server["proc"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=STOP_TIMEOUT_S) == 0
    assert not server["workdir"].exists(), "the work dir was left behind"
    figures["gradio_cache_files_after_stop"] = sum(1 for p in server["gradio_tmp"].rglob("*") if p.is_file())
    server["passed"] = True
    print("\n" + json.dumps(figures))
