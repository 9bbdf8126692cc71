"""``refavs app``: a local web demo of a trained EEMC checkpoint (Gradio).

Upload a video with sound, type an expression, press Run: the page shows the overlay video,
the ten predicted masks (one per second) and a summary (whether the referred object is
present, its area in each frame). With **Whole video** ticked, every frame of the video (up to
:attr:`AppConfig.max_video_seconds` from the start, stated on the page) is segmented: the page
shows the overlay at the video's frame rate with its sound, a mask per second and a summary per
window, with a progress bar while it runs.

- Gradio is an optional extra (``pip install -e ".[app]"``): importing this module does not
  import it; :func:`build_app` and ``refavs app`` do.
- The pipeline (:class:`refavs.inference.RefAVSPipeline`) is loaded once, at start-up; a path
  that is not a refavs checkpoint stops ``refavs app`` before the server starts.
- Uploads are checked before any decoding (:func:`check_upload`): larger than
  :attr:`AppConfig.max_upload_mb` or not a video container with a video stream is refused
  with a message on the page. Gradio's own ``max_file_size`` enforces the same limit in the
  browser and on the server, before the file is stored.
- The expression (:func:`check_expression`) must hold a word and at most
  :data:`~refavs.inference.limits.MAX_EXPRESSION_CHARS` characters, as on every other path; the
  page states the limit under the textbox and refuses a longer text with the pipeline's message,
  before the model runs.
- The server listens on 127.0.0.1 unless ``--host`` says otherwise, never makes a share link,
  sends no analytics and serves everything the page needs itself (no fonts or scripts from
  a CDN).
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from refavs.features.config import TextFeatureConfig
from refavs.inference import InferenceError
from refavs.inference.limits import MAX_EXPRESSION_CHARS, expression_length_error

INSTALL_HINT = 'pip install -e ".[app]"'
"""How to install the optional web-demo dependency (Gradio), from the repository root."""

MB = 1024 * 1024
RESULT_MAX_AGE_S = 3600
"""Result folders older than this are removed when the next request comes in (Gradio's own
cache of uploads and outputs is cleaned on the same schedule)."""


MARKDOWN_SPECIAL = frozenset("\\`*_[]<>|~$")
"""Characters that change inline Markdown (the text never starts a line, so `#`, `-` and digits are safe)."""


class UploadError(ValueError):
    """An upload the app refuses; the message is shown on the page as it is."""


@dataclass(frozen=True)
class AppConfig:
    """Settings of the web demo (``refavs app`` options)."""

    checkpoint: Path | None = None
    host: str = "127.0.0.1"
    port: int = 7860
    max_upload_mb: float = 50.0
    device: str = "cpu"
    max_video_seconds: float = 120.0
    """The longest span a whole-video run takes (from the start); the 10-second mode takes any video."""

    def __post_init__(self):
        if not self.max_upload_mb > 0:
            raise ValueError(f"max_upload_mb must be positive, got {self.max_upload_mb}")
        if not self.max_video_seconds > 0:
            raise ValueError(f"max_video_seconds must be positive, got {self.max_video_seconds}")
        if not 1 <= int(self.port) <= 65535:
            raise ValueError(f"port must be in 1..65535, got {self.port}")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MB)


def format_size(n_bytes: int | float) -> str:
    """``12.3 MB``, ``512 KB``, ``17 B``."""
    if n_bytes >= MB:
        return f"{n_bytes / MB:.1f} MB"
    if n_bytes >= 1024:
        return f"{n_bytes / 1024:.0f} KB"
    return f"{int(n_bytes)} B"


def check_upload(path: str | os.PathLike | None, max_bytes: int) -> Path:
    """The uploaded file as a Path, or :class:`UploadError` with a message for the page.

    Checks, in order and without decoding any frame: a file was given and exists, it is not
    empty, it is at most ``max_bytes``, and PyAV opens it as a container (not a still image)
    holding a video stream. (Whether it has an audio track and is long enough is the pipeline's check.)
    """
    if path is None or str(path) == "":
        raise UploadError("Please upload a video first.")
    p = Path(path)
    if not p.is_file():
        raise UploadError("The uploaded file is missing on the server; please upload it again.")
    size = p.stat().st_size
    if size == 0:
        raise UploadError(f"The uploaded file {p.name!r} is empty.")
    if size > max_bytes:
        raise UploadError(f"The uploaded file is too large ({format_size(size)}); "
                          f"the limit is {format_size(max_bytes)}.")
    import av  # pulls in av

    try:
        with av.open(str(p), mode="r") as container:
            has_video = any(s.type == "video" for s in container.streams)
            demuxer = container.format.name
    except (av.error.FFmpegError, OSError, ValueError, UnicodeDecodeError):
        raise UploadError(f"{p.name!r} is not a video file (it could not be opened as a video container).") \
            from None
    if demuxer == "image2" or demuxer.endswith("_pipe"):  # FFmpeg reads a still image as a 1-frame video
        raise UploadError(f"{p.name!r} is an image, not a video; please upload a video with sound.")
    if not has_video:
        raise UploadError(f"{p.name!r} has no video stream; please upload a video with sound.")
    return p


def check_expression(expression: str | None, max_tokens: int | None = None) -> str:
    """The stripped expression, or :class:`UploadError` when there is none or it is longer than
    :data:`~refavs.inference.limits.MAX_EXPRESSION_CHARS` characters (the message names
    ``max_tokens``, the tokens the model reads: default, the text feature config's)."""
    text = (expression or "").strip()
    if not text:
        raise UploadError("Please type an expression, e.g. \"the object making the loudest sound\".")
    too_long = expression_length_error(text, max_tokens or TextFeatureConfig().max_tokens)
    if too_long:
        raise UploadError(too_long)
    return text


def text_tokens(pipeline: Any) -> int:
    """Tokens of an expression the pipeline's model reads (its text feature config's ``max_tokens``;
    the default config's for a stand-in without one)."""
    features = getattr(pipeline, "features", None)
    text = getattr(features, "text", None)
    return int(getattr(text, "max_tokens", TextFeatureConfig().max_tokens))


def expression_hint(max_tokens: int) -> str:
    """What the page says under the expression's textbox."""
    return f"At most {MAX_EXPRESSION_CHARS} characters; the model reads only the first {max_tokens} tokens."


def format_summary(present: bool, frame_areas: Sequence[float], expression: str = "",
                   seconds: float | None = None) -> str:
    """The Markdown summary under the results: present or not, then the area of every frame."""
    areas = [float(a) for a in frame_areas]
    head = f"**{escape_markdown(expression)}**: " if expression else ""
    verdict = "the referred object is **present**" if present else "the referred object is **not present**"
    lines = [f"{head}{verdict}."]
    if areas:
        lines += ["", "| second | " + " | ".join(str(i) for i in range(len(areas))) + " |",
                  "|---|" + "---:|" * len(areas),
                  "| area % | " + " | ".join(f"{100 * a:.1f}" for a in areas) + " |"]
    if seconds is not None:
        lines += ["", f"Ran in {seconds:.1f} s."]
    return "\n".join(lines)


def format_video_summary(summary: dict[str, Any], expression: str = "", seconds: float | None = None) -> str:
    """The Markdown summary of a whole video: present or not, in how many frames, then each window."""
    head = f"**{escape_markdown(expression)}**: " if expression else ""
    shown, count = sum(summary["frame_present"]), summary["frame_count"]
    verdict = (f"the referred object is **present** in {shown} of {count} frames" if summary["present"]
               else f"the referred object is **not present** in any of {count} frames")
    lines = [f"{head}{verdict} ({summary['fps']:g} frames a second).", "",
             "| window | seconds | present | largest area % |", "|---:|---|---|---:|"]
    for w in summary["windows"]:
        span = f"{w['seconds'][0]}-{w['seconds'][-1]}" if w["seconds"] else "-"
        lines.append(f"| {w['index']} | {span} | {'yes' if w['present'] else 'no'} | "
                     f"{100 * max(w['frame_areas']):.1f} |")
    if seconds is not None:
        lines += ["", f"Ran in {seconds:.1f} s."]
    return "\n".join(lines)


MAX_GALLERY = 60
"""Masks shown for a whole video: one per second, at most this many."""


def _second_masks(summary: dict[str, Any], folder: Path, out: Path) -> list[tuple[str, str]]:
    """A whole video's masks, the first frame of each second (at most :data:`MAX_GALLERY`), for the gallery."""
    from refavs.inference.whole_video import MASK_PATTERN  # pulls in torch (through the metrics' config)

    out.mkdir(parents=True, exist_ok=True)
    items, second = [], 0
    start, threshold = summary["start"], summary["threshold"]
    for index, when in enumerate(summary["frame_times"]):
        if len(items) >= MAX_GALLERY:
            break
        if when + 1e-6 < start + second:
            continue
        second = int(math.floor(when - start + 1e-6)) + 1
        with Image.open(folder / MASK_PATTERN.format(index)) as img:
            mask = np.asarray(img).astype(np.float32) / 255.0 > threshold
        path = out / f"mask_{index:06d}.png"
        Image.fromarray((mask * 255).astype("uint8"), mode="L").save(path)
        items.append((str(path), f"{when:.0f} s: {100 * float(mask.mean()):.1f}%"))
    return items


def escape_markdown(text: str) -> str:
    """``text`` shown literally in Markdown (typed expressions and file names)."""
    return "".join("\\" + c if c in MARKDOWN_SPECIAL else c for c in text)


def error_markdown(message: str) -> str:
    return f"**Error:** {escape_markdown(message)}"


def _mask_images(masks, folder: Path) -> list[tuple[str, str]]:
    """The masks as PNGs (white object on black) with gallery captions."""
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for i, mask in enumerate(np.asarray(masks)):
        path = folder / f"mask_{i:02d}.png"
        Image.fromarray((mask.astype(bool) * 255).astype("uint8"), mode="L").save(path)
        items.append((str(path), f"{i}: {100 * float(mask.mean()):.1f}%"))
    return items


def _remove_old(folder: Path, max_age_s: float = RESULT_MAX_AGE_S) -> None:
    now = time.time()
    for child in folder.iterdir() if folder.is_dir() else ():
        try:
            if now - child.stat().st_mtime > max_age_s:
                shutil.rmtree(child, ignore_errors=True)
        except OSError:
            pass


def predict(pipeline: Callable[..., Any], video: str | None, expression: str | None, start: float | None,
            config: AppConfig, workdir: Path, whole: bool = False, progress: bool = False) -> dict[str, Any]:
    """Check the inputs, run the pipeline, save its outputs under ``workdir``.

    ``whole``: every frame of the video from ``start`` (``pipeline.predict_video``), refused when
    that is longer than ``config.max_video_seconds``; ``progress`` shows its tqdm bar (which the
    page follows).

    Returns ``{"overlay": Path | None, "masks": [(png, caption)], "status": markdown,
    "error": bool}``; never raises for bad input (the message goes into ``status``).
    """
    empty = {"overlay": None, "masks": [], "error": True}
    path = None
    try:
        path = check_upload(video, config.max_upload_bytes)
        text = check_expression(expression, text_tokens(pipeline))
        begin = float(start or 0.0)
        if not begin >= 0:
            raise UploadError("The start must be 0 seconds or later.")
        if whole:
            return _predict_whole(pipeline, path, text, begin, config, workdir, progress)
        t0 = time.perf_counter()
        result = pipeline(path, text, start=begin)
        seconds = time.perf_counter() - t0
        workdir.mkdir(parents=True, exist_ok=True)
        _remove_old(workdir)
        out = Path(tempfile.mkdtemp(prefix="result-", dir=workdir))
        written = result.save(out)
        masks = _mask_images(result.masks, out / "gallery")
    except (UploadError, InferenceError) as e:
        return {**empty, "status": error_markdown(_hide_path(str(e), path))}
    except Exception as e:  # noqa: BLE001 - the page gets one line, the server log the traceback
        traceback.print_exc()
        return {**empty, "status": error_markdown(
            f"the model failed on this input ({type(e).__name__}: {_hide_path(_first_line(e), path)}).")}
    return {"overlay": Path(written["overlay"]), "masks": masks,
            "status": format_summary(bool(result.present), result.frame_areas, text, seconds), "error": False}


def _predict_whole(pipeline, path: Path, text: str, begin: float, config: AppConfig, workdir: Path,
                   progress: bool) -> dict[str, Any]:
    from refavs.inference.whole_video import save_video_prediction  # pulls in torch (through the metrics' config)

    t0 = time.perf_counter()
    run = pipeline.predict_video(path, text, start=begin)
    span = run.end - run.start
    if span > config.max_video_seconds + 1e-6:
        raise UploadError(f"The video runs {span:.1f} s from the start; whole videos are limited to "
                          f"{config.max_video_seconds:g} s here. Trim it, set a later start, or untick "
                          f"Whole video (10 seconds, any length).")
    workdir.mkdir(parents=True, exist_ok=True)
    _remove_old(workdir)
    out = Path(tempfile.mkdtemp(prefix="result-", dir=workdir))
    written = save_video_prediction(run, out, masks="png", progress=progress)
    seconds = time.perf_counter() - t0
    summary = json.loads(written["summary"].read_text(encoding="utf-8"))
    masks = _second_masks(summary, written["masks"], out / "gallery")
    return {"overlay": written["overlay"], "masks": masks, "error": False,
            "status": format_video_summary(summary, text, seconds)}


def _hide_path(message: str, path: Path | None) -> str:
    """The message with the server-side upload path shortened to the file name."""
    return message.replace(str(path), repr(path.name)) if path is not None else message


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def build_app(pipeline: Callable[..., Any], config: AppConfig, workdir: Path | None = None):
    """The Gradio Blocks of the demo around a loaded pipeline (imports gradio)."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # also stops Gradio's version check (a web request)
    import gradio as gr  # optional: gradio may not be installed

    workdir = Path(workdir or tempfile.mkdtemp(prefix="refavs-app-"))
    limit = format_size(config.max_upload_bytes)

    def run(video, expression, start, whole, progress=gr.Progress(track_tqdm=True)):
        r = predict(pipeline, video, expression, start, config, workdir, whole=bool(whole), progress=bool(whole))
        overlay = r["overlay"]
        is_gif = overlay is not None and overlay.suffix.lower() == ".gif"
        return (gr.update(value=None if (overlay is None or is_gif) else str(overlay), visible=not is_gif),
                gr.update(value=str(overlay) if is_gif else None, visible=is_gif),
                r["masks"], r["status"])

    with gr.Blocks(title="refavs: Referring Audio-Visual Segmentation", analytics_enabled=False,
                   delete_cache=(RESULT_MAX_AGE_S, RESULT_MAX_AGE_S)) as demo:
        gr.Markdown("# Referring Audio-Visual Segmentation\n"
                    "Upload a video with sound (10 seconds are used, one frame per second; tick **Whole "
                    "video** for every frame with its sound), type an "
                    "expression that refers to an object in it, and press **Run**. "
                    f"Videos up to {limit}; whole videos up to {config.max_video_seconds:g} seconds from the "
                    f"start; expressions up to {MAX_EXPRESSION_CHARS} characters.")
        with gr.Row():
            with gr.Column():
                video = gr.Video(label="Video (with sound)", sources=["upload"], elem_id="video-in")
                # no max_length: the browser would cut a pasted text silently; a longer one is refused
                # with a message instead
                expression = gr.Textbox(label="Expression", placeholder="the object making the loudest sound",
                                        info=expression_hint(text_tokens(pipeline)), lines=1, max_lines=3,
                                        elem_id="expression")
                start = gr.Number(label="Start (seconds)", value=0, minimum=0, precision=1, elem_id="start")
                whole = gr.Checkbox(label=f"Whole video: every frame, with its sound (up to "
                                          f"{config.max_video_seconds:g} s)", value=False, elem_id="whole")
                button = gr.Button("Run", variant="primary", elem_id="run")
            with gr.Column():
                # no label: Gradio draws it over the top-left corner, where the overlay's caption is
                overlay_video = gr.Video(label="Overlay", show_label=False, interactive=False,
                                         elem_id="overlay-video")
                overlay_image = gr.Image(label="Overlay", show_label=False, interactive=False, visible=False,
                                         type="filepath", elem_id="overlay-image")
        status = gr.Markdown("", elem_id="status")
        gallery = gr.Gallery(label="Masks (one per second)", columns=10, height=170, object_fit="contain",
                             elem_id="masks", interactive=False)
        inputs = [video, expression, start, whole]
        outputs = [overlay_video, overlay_image, gallery, status]
        # one event for both triggers: one model run at a time, the others wait in the queue
        gr.on([button.click, expression.submit], run, inputs, outputs, concurrency_limit=1)
    demo.refavs_workdir = workdir  # the folder launch() must allow (results are served from it)
    return demo


def launch(demo, config: AppConfig, block: bool = True, **kwargs):
    """Start the server on ``config.host:config.port`` with the demo's safe settings."""
    local = [h for h in ("127.0.0.1", "localhost", config.host) if h not in ("0.0.0.0", "::")]
    for name in ("NO_PROXY", "no_proxy"):  # Gradio calls its own URL once at start-up; never via a proxy
        os.environ[name] = ",".join(dict.fromkeys([*filter(None, os.environ.get(name, "").split(",")), *local]))

    demo.queue(default_concurrency_limit=1, max_size=16)
    settings = dict(server_name=config.host, server_port=config.port, share=False, inbrowser=False,
                    max_file_size=config.max_upload_bytes, allowed_paths=[str(demo.refavs_workdir)],
                    show_error=False, prevent_thread_lock=not block, quiet=not block,
                    # off: server-side rendering (a Node server), installable app, MCP server, monitoring,
                    # the run history page (it offers to upload runs to a Hugging Face bucket)
                    ssr_mode=False, pwa=False, mcp_server=False, enable_monitoring=False, run_history=False)
    known = inspect.signature(demo.launch).parameters  # the last five came in during Gradio 5 and 6
    settings = {k: v for k, v in settings.items() if k in known}
    return demo.launch(**settings, **kwargs)


def load_pipeline(checkpoint: str | Path, device: str = "cpu"):
    """The inference pipeline of ``checkpoint`` (raises :class:`refavs.inference.InferenceError`)."""
    from refavs.inference import RefAVSPipeline  # pulls in torch

    return RefAVSPipeline.from_pretrained(checkpoint, device=device)


def gradio_available() -> bool:
    """Whether Gradio can be imported here (without importing it)."""
    try:
        return importlib.util.find_spec("gradio") is not None
    except (ImportError, ValueError):
        return False


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "app", help="web demo: upload a video, type an expression, see the masks",
        description="Serve a web page (Gradio) around a trained EEMC checkpoint: upload a video with sound, "
                    "type an expression, see the overlay video, the ten masks and whether the object is "
                    "present. Listens on 127.0.0.1 unless --host says otherwise; no share link, no "
                    f"analytics. Needs the optional dependency: {INSTALL_HINT}. "
                    "Exit status: 0 stopped, 1 the checkpoint cannot be loaded, 2 bad arguments or "
                    "Gradio missing.")
    p.add_argument("--checkpoint", type=Path, required=True,
                   help="a checkpoint folder (config.json + model.safetensors) or a training run folder")
    p.add_argument("--host", default=AppConfig.host,
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 exposes it)")
    p.add_argument("--port", type=int, default=AppConfig.port, help="port (default 7860)")
    p.add_argument("--max-upload-mb", type=float, default=AppConfig.max_upload_mb,
                   help="largest accepted upload in MB (default 50)")
    p.add_argument("--device", default=AppConfig.device, help="torch device for the model (default cpu)")
    p.add_argument("--max-video-seconds", type=float, default=AppConfig.max_video_seconds,
                   help="longest span a whole-video run takes, from the start (default 120)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        config = AppConfig(checkpoint=args.checkpoint, host=args.host, port=args.port,
                           max_upload_mb=args.max_upload_mb, device=args.device,
                           max_video_seconds=args.max_video_seconds)
    except ValueError as e:
        print(f"refavs app: error: {e}", file=sys.stderr)
        return 2
    if not gradio_available():
        print(f"refavs app: error: the web demo needs Gradio, an optional dependency; install it with\n"
              f"    {INSTALL_HINT}\n(from the repository root, in this environment)", file=sys.stderr)
        return 2

    print(f"loading {config.checkpoint} ...", flush=True)
    try:
        pipeline = load_pipeline(config.checkpoint, config.device)
    except InferenceError as e:  # names the path and says what is wrong
        print(f"refavs app: error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - e.g. a device torch does not have
        print(f"refavs app: error: cannot load {config.checkpoint} on {config.device}: {_first_line(e)}",
              file=sys.stderr)
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="refavs-app-"))
    previous = signal.signal(signal.SIGTERM, _stop_like_ctrl_c)  # `kill` stops it as Ctrl+C does: results removed
    try:
        demo = build_app(pipeline, config, workdir)
        print(f"serving on http://{config.host}:{config.port} (Ctrl+C stops)", flush=True)
        launch(demo, config, block=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def _stop_like_ctrl_c(signum, frame) -> None:
    """SIGTERM handler: Gradio's server loop closes on KeyboardInterrupt, then the work dir is removed."""
    raise KeyboardInterrupt
