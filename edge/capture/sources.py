"""Frame sources by URI (jetson-inference style) and the grab thread that feeds the daemon.

URIs::

    v4l2:///dev/video0      V4L2 camera (OpenCV CAP_V4L2); v4l2://0 for an index
    csi://0                 MIPI CSI camera through GStreamer nvarguscamerasrc (Jetson)
    rtsp://host/stream      network stream (OpenCV's FFmpeg backend)
    gst://<pipeline>        any GStreamer pipeline ending in appsink
    file://line.mp4         a video file          file://frames/   image files in name order
    line.mp4, frames/, x.png   plain paths, the same as file://

Live sources (cameras, streams, pipelines) get latest-frame semantics: a grab thread reads as
fast as the camera delivers, the queue holds at most ``queue_size`` frames, and when it is full
the oldest frame is dropped and counted. File sources are read completely, the grab thread
blocking when the queue is full, unless ``realtime`` paces them at their frame rate with the
live semantics.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import numpy as np

from edge.errors import EdgeError

log = logging.getLogger(__name__)

VIDEO_EXTS = {".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mjpeg", ".mjpg", ".ts", ".h264", ".h265"}
IMAGE_EXTS = {".bmp", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".pgm", ".ppm", ".webp"}


class EndOfStream(Exception):
    """The source has no more frames (a file's end, or a live stream that ended)."""


class SourceLost(Exception):
    """A live source stopped delivering frames (camera unplugged, network drop)."""


@dataclass(frozen=True)
class SourceSpec:
    """What a URI resolves to: how to open it and whether it is live."""

    uri: str
    kind: str       # v4l2 | csi | rtsp | gst | video | images
    target: str     # device/path/URL/pipeline given to OpenCV, or the folder/file of images
    live: bool
    api: str = "any"  # OpenCV capture API name: any | v4l2 | gstreamer | ffmpeg | images


def csi_pipeline(sensor: int = 0, width: int = 1920, height: int = 1080, fps: int = 30) -> str:
    """The nvarguscamerasrc → nvvidconv → GRAY8 appsink pipeline of a Jetson CSI camera."""
    return (f"nvarguscamerasrc sensor-id={sensor} ! video/x-raw(memory:NVMM), width={width}, height={height}, "
            f"framerate={fps}/1, format=NV12 ! nvvidconv ! video/x-raw, format=GRAY8 ! "
            f"appsink drop=true max-buffers=1 sync=false")


def parse_source(uri: str, width: int = 1920, height: int = 1080, fps: int = 30) -> SourceSpec:
    """Resolve a source URI or plain path.

    Raises:
        EdgeError: unknown scheme, or a file/folder that does not exist or holds no images.
    """
    uri = str(uri)
    m = re.match(r"^([a-z0-9]+)://(.*)$", uri, re.I)
    scheme, rest = (m.group(1).lower(), m.group(2)) if m else ("file", uri)
    if scheme == "v4l2":
        target = rest if rest.startswith("/") else (rest or "0")
        return SourceSpec(uri, "v4l2", target, True, "v4l2")
    if scheme == "csi":
        try:
            sensor = int(rest or 0)
        except ValueError:
            raise EdgeError(f"csi:// takes a sensor index, e.g. csi://0, got {uri!r}") from None
        return SourceSpec(uri, "csi", csi_pipeline(sensor, width, height, fps), True, "gstreamer")
    if scheme in ("rtsp", "rtsps", "rtmp", "http", "https"):
        return SourceSpec(uri, "rtsp", uri, True, "ffmpeg")
    if scheme == "gst":
        if not rest.strip():
            raise EdgeError("gst:// needs a pipeline, e.g. gst://videotestsrc ! videoconvert ! appsink")
        return SourceSpec(uri, "gst", rest, True, "gstreamer")
    if scheme != "file":
        raise EdgeError(f"unknown source scheme {scheme!r} in {uri!r} (v4l2, csi, rtsp, gst, file or a path)")
    path = Path(rest)
    if path.is_dir():
        if not image_files(path):
            raise EdgeError(f"source folder {path} has no image files ({', '.join(sorted(IMAGE_EXTS))})")
        return SourceSpec(uri, "images", str(path), False, "images")
    if not path.exists():
        raise EdgeError(f"source {path} does not exist")
    if path.suffix.lower() in IMAGE_EXTS:
        return SourceSpec(uri, "images", str(path), False, "images")
    return SourceSpec(uri, "video", str(path), False, "ffmpeg")


def _natural(p: Path):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


def image_files(folder: Path) -> List[Path]:
    """Image files of a folder in natural name order (frame_2 before frame_10)."""
    return sorted((p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file()), key=_natural)


class Source:
    """A frame source: ``open()``, ``read()`` → frame or None (corrupt/empty), ``close()``.

    ``read`` raises :class:`EndOfStream` at the end and :class:`SourceLost` when a live source
    fails; ``open`` raises :class:`SourceLost` when it cannot connect.
    """

    live = False
    name = "source"
    fps: Optional[float] = None

    def open(self) -> None: ...

    def read(self) -> Optional[np.ndarray]:
        raise NotImplementedError

    def close(self) -> None: ...


class ImageFolderSource(Source):
    """Image files in name order (or one image file); unreadable files are corrupt frames."""

    def __init__(self, target: str, fps: Optional[float] = None):
        p = Path(target)
        self.files = image_files(p) if p.is_dir() else [p]
        self.name = str(p)
        self.fps = fps
        self._i = 0

    def open(self) -> None:
        self._i = 0

    def read(self) -> Optional[np.ndarray]:
        import cv2

        if self._i >= len(self.files):
            raise EndOfStream()
        f = self.files[self._i]
        self._i += 1
        self.frame_name = f.name
        try:
            img = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
        except cv2.error:
            img = None
        if img is None or img.size == 0:
            log.warning("skipping unreadable frame %s", f.name)
            return None
        return img


#: Codec pixel formats (FourCC) of single-channel 8-bit video.
GRAY_PIXEL_FORMATS = {"Y800", "GREY", "GRAY", "Y8  "}


def _fourcc(v: float) -> str:
    v = int(v)
    return "".join(chr((v >> (8 * i)) & 0xFF) for i in range(4)) if v > 0 else ""


_APIS = {"any": "CAP_ANY", "v4l2": "CAP_V4L2", "gstreamer": "CAP_GSTREAMER", "ffmpeg": "CAP_FFMPEG"}


class CaptureSource(Source):
    """An OpenCV ``VideoCapture`` (video file, V4L2, RTSP, GStreamer)."""

    def __init__(self, spec: SourceSpec, open_timeout: Optional[float] = None, read_timeout: Optional[float] = None):
        self.spec = spec
        self.live = spec.live
        self.name = spec.uri
        self.cap = None
        self.open_timeout, self.read_timeout = open_timeout, read_timeout

    def open(self) -> None:
        import cv2

        target = int(self.spec.target) if self.spec.target.isdigit() else self.spec.target
        api = getattr(cv2, _APIS.get(self.spec.api, "CAP_ANY"))
        params = []
        if self.live and self.spec.api in ("ffmpeg", "any"):  # network streams: bounded open and read waits
            if self.open_timeout and hasattr(cv2, "CAP_PROP_OPEN_TIMEOUT_MSEC"):
                params += [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.open_timeout * 1000)]
            if self.read_timeout and hasattr(cv2, "CAP_PROP_READ_TIMEOUT_MSEC"):
                params += [cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.read_timeout * 1000)]
        cap = cv2.VideoCapture(target, api, params) if params else cv2.VideoCapture(target, api)
        if not cap.isOpened():
            cap.release()
            if self.spec.api == "gstreamer" and "GStreamer:                   NO" in cv2.getBuildInformation():
                raise EdgeError(f"{self.spec.uri}: this OpenCV build has no GStreamer (use the system OpenCV on Jetson)")
            if not self.live:
                raise EdgeError(f"cannot open video {self.spec.target} (not a video OpenCV can decode)")
            raise SourceLost(f"cannot open {self.spec.uri}")
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and fps > 0 else None
        if _fourcc(cap.get(cv2.CAP_PROP_CODEC_PIXEL_FORMAT)) in GRAY_PIXEL_FORMATS:
            # a grayscale stream: skip OpenCV's gray → BGR conversion (the daemon wants gray anyway)
            cap.set(cv2.CAP_PROP_CONVERT_RGB, 0.0)
        self.cap = cap

    def read(self) -> Optional[np.ndarray]:
        if self.cap is None:
            raise SourceLost("not open")
        ok, frame = self.cap.read()
        if not ok:
            if self.live:
                raise SourceLost(f"{self.spec.uri} stopped delivering frames")
            raise EndOfStream()
        if frame is None or frame.size == 0:
            return None
        return frame

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


def open_source(spec: SourceSpec, fps: Optional[float] = None, open_timeout: Optional[float] = None,
                read_timeout: Optional[float] = None) -> Source:
    """The :class:`Source` for a spec (timeouts in seconds: network streams' open and read waits)."""
    if spec.kind == "images":
        return ImageFolderSource(spec.target, fps)
    return CaptureSource(spec, open_timeout=open_timeout, read_timeout=read_timeout)


@dataclass
class Frame:
    """One frame handed from the grab thread to the daemon."""

    index: int        # position in the source (corrupt frames keep their index)
    ts: float         # wall-clock time it was read (unix seconds)
    t_read: float     # time.monotonic() when read (latency start)
    image: np.ndarray
    prepared: object = None  # what Grabber.prepare made of the image in the grab thread (file sources)
    name: Optional[str] = None  # the file name of an image-folder frame (named when skipped)


class _End:
    """Queue sentinel: the grab thread finished."""


END = _End()


class Grabber:
    """The grab thread: reads ``source`` into a bounded queue.

    Args:
        source: The :class:`Source`.
        metrics: :class:`edge.capture.metrics.Metrics` to count into.
        queue_size: Max frames waiting (live: older ones are dropped).
        drop: Latest-frame semantics (default: ``source.live``).
        realtime: Pace a file source at ``source.fps`` (implies ``drop``).
        reconnect_initial: First reconnect wait in seconds (doubles up to ``reconnect_max``).
        max_reconnects: Give up after this many failed attempts in a row (None: never).
        max_frames: Stop after this many frames.
        prepare: Optional ``f(image) -> object`` run in the grab thread for file sources (tiling and
            preprocessing of the next frame then overlap the inference of the current one); live
            sources skip it so no work is spent on frames that may be dropped.
    """

    def __init__(self, source: Source, metrics, queue_size: int = 2, drop: Optional[bool] = None,
                 realtime: bool = False, reconnect_initial: float = 0.5, reconnect_max: float = 10.0,
                 max_reconnects: Optional[int] = None, max_frames: Optional[int] = None, prepare=None):
        self.source, self.metrics = source, metrics
        self.realtime = realtime
        self.drop = source.live or realtime if drop is None else drop
        self.queue: "queue.Queue" = queue.Queue(maxsize=max(1, int(queue_size)))
        self.reconnect_initial, self.reconnect_max = reconnect_initial, reconnect_max
        self.max_reconnects = max_reconnects
        self.max_frames = max_frames
        self.prepare = None if self.drop else prepare
        self.stop_event = threading.Event()
        self.error: Optional[BaseException] = None
        self._index = 0
        self._thread = threading.Thread(target=self._run, name="grab", daemon=True)

    def start(self) -> "Grabber":
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop grabbing (the frames already queued stay for the daemon to drain)."""
        self.stop_event.set()

    def join(self, timeout: Optional[float] = None) -> None:
        self._thread.join(timeout)

    def _put(self, item) -> None:
        if self.drop and item is not END:
            # latest-frame semantics: make room by dropping the oldest waiting frame
            while True:
                try:
                    self.queue.put_nowait(item)
                    return
                except queue.Full:
                    try:
                        self.queue.get_nowait()
                        self.metrics.inc("frames_dropped")
                    except queue.Empty:
                        pass
        # file sources: block, nothing is dropped; the daemon drains the queue until END even when
        # stopping, so a frame read before the stop is still processed
        self.queue.put(item)

    def _connect(self, after_loss: bool = False) -> bool:
        """Open the source; after a loss (or a failed open) wait the backoff first, doubling it."""
        while not self.stop_event.is_set():
            if after_loss:
                if self.stop_event.wait(self._wait):
                    return False
                self._wait = min(self._wait * 2, self.reconnect_max)
            try:
                self.source.open()
                self.metrics.connected = True
                return True
            except SourceLost as e:
                self._failures += 1
                if self.max_reconnects is not None and self._failures > self.max_reconnects:
                    raise EdgeError(f"{self.source.name}: gave up after {self._failures - 1} reconnect attempts ({e})")
                log.warning("source %s unavailable (%s); retrying in %.1f s", self.source.name, e, self._wait)
                after_loss = True
        return False

    def _run(self) -> None:
        self._wait, self._failures = self.reconnect_initial, 0
        try:
            if not self._connect():
                return
            period = 1.0 / self.source.fps if (self.realtime and self.source.fps) else 0.0
            t_next = time.monotonic()
            while not self.stop_event.is_set():
                if self.max_frames is not None and self._index >= self.max_frames:
                    break
                try:
                    img = self.source.read()
                except EndOfStream:
                    if not self.source.live:
                        break
                    self._lost("end of stream")
                    if not self._connect(after_loss=True):
                        break
                    continue
                except SourceLost as e:
                    self._lost(str(e))
                    if not self._connect(after_loss=True):
                        break
                    continue
                idx = self._index
                self._index += 1
                self._wait, self._failures = self.reconnect_initial, 0  # delivering again: reset the backoff
                self.metrics.inc("frames_read")
                self.metrics.frame_seen()
                if img is None or getattr(img, "size", 0) == 0:
                    self.metrics.inc("frames_corrupt")
                    self.metrics.inc("frames_skipped", 1, {"reason": "undecodable"})
                    continue
                if period:  # --realtime: deliver at the source's frame rate
                    t_next += period
                    delay = t_next - time.monotonic()
                    if delay > 0:
                        self.stop_event.wait(delay)
                fr = Frame(idx, time.time(), time.monotonic(), img, name=getattr(self.source, "frame_name", None))
                if self.prepare is not None:
                    fr.prepared = self.prepare(img)
                self._put(fr)
                self.metrics.queue_depth = self.queue.qsize()
        except BaseException as e:  # surfaced by the daemon
            self.error = e
        finally:
            self.metrics.connected = False
            try:
                self.source.close()
            finally:
                self._put(END)

    def _lost(self, why: str) -> None:
        self.metrics.connected = False
        self.metrics.inc("reconnects")
        log.warning("source %s lost (%s); reconnecting", self.source.name, why)
        try:
            self.source.close()
        except Exception:
            pass
