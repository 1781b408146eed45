"""Frame sources by URI (jetson-inference style) and the grab thread that feeds the daemon.

URIs::

    v4l2:///dev/video0      V4L2 camera (OpenCV CAP_V4L2); v4l2://0 for an index
    csi://0                 MIPI CSI camera through GStreamer nvarguscamerasrc (Jetson)
    rtsp://host/stream      network stream (OpenCV's FFmpeg backend; with hw_decode, GStreamer
                            rtspsrc → nvv4l2decoder → nvvidconv → GRAY8 appsink on a Jetson)
    gst://<pipeline>        any GStreamer pipeline ending in appsink
    file://line.mp4         a video file (with hw_decode an H.264/H.265 file decoded by nvv4l2decoder)
    file://frames/          image files in name order
    raw://frames.npy        a raw recording: uint8 array N x H x W (.npy), memory-mapped, no codec
    line.mp4, frames/, x.png, frames.npy   plain paths, the same as file:// (.npy: raw://)

Hardware decode on a Jetson (``hw_decode="h264"`` / ``"h265"``, edge-capture ``--hw-decode``):
the stream or file goes through a GStreamer pipeline (:func:`nv_decode_pipeline`) into OpenCV's
GStreamer backend, so decoding runs on NVDEC and the conversion to gray on the VIC, not on the ARM
cores; an OpenCV built without GStreamer (pip wheels) gets a one-line error.

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

from edge.capture.png import decode as decode_png
from edge.errors import EdgeError

log = logging.getLogger(__name__)

IMAGE_EXTS = {".bmp", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".pgm", ".ppm", ".webp"}


class EndOfStream(Exception):
    """The source has no more frames (a file's end, or a live stream that ended)."""


class SourceLost(Exception):
    """A live source stopped delivering frames (camera unplugged, network drop)."""


@dataclass(frozen=True)
class SourceSpec:
    """What a URI resolves to: how to open it and whether it is live."""

    uri: str
    kind: str       # v4l2 | csi | rtsp | gst | video | images | raw
    target: str     # device/path/URL/pipeline given to OpenCV, or the folder/file of images
    live: bool
    api: str = "any"  # OpenCV capture API name: any | v4l2 | gstreamer | ffmpeg | images


def csi_pipeline(sensor: int = 0, width: int = 1920, height: int = 1080, fps: int = 30) -> str:
    """The nvarguscamerasrc → nvvidconv → GRAY8 appsink pipeline of a Jetson CSI camera."""
    return (f"nvarguscamerasrc sensor-id={sensor} ! video/x-raw(memory:NVMM), width={width}, height={height}, "
            f"framerate={fps}/1, format=NV12 ! nvvidconv ! video/x-raw, format=GRAY8 ! "
            f"appsink drop=true max-buffers=1 sync=false")


#: Hardware-decodable codecs: (RTP depayloader, parser) per codec.
HW_CODECS = {"h264": ("rtph264depay", "h264parse"), "h265": ("rtph265depay", "h265parse")}
#: GStreamer demuxer per container suffix (elementary streams need none).
DEMUXERS = {".mp4": "qtdemux", ".mov": "qtdemux", ".m4v": "qtdemux", ".mkv": "matroskademux",
            ".webm": "matroskademux", ".ts": "tsdemux", ".h264": None, ".264": None, ".h265": None,
            ".265": None, ".hevc": None}
_GRAY_SINK = "nvvidconv ! video/x-raw, format=GRAY8 ! appsink"


def _quote(text: str) -> str:
    if '"' in text:
        raise EdgeError(f"a path or URL for a GStreamer pipeline cannot hold a double quote: {text!r}")
    return f'"{text}"'


def nv_decode_pipeline(kind: str, target: str, codec: str, latency_ms: int = 200) -> str:
    """The Jetson hardware-decode pipeline of an RTSP stream or an H.264/H.265 file, into GRAY8 appsink.

    ``rtspsrc → rtph26xdepay → h26xparse → nvv4l2decoder → nvvidconv → GRAY8 → appsink`` (live:
    latest frame only) or ``filesrc → demuxer → h26xparse → nvv4l2decoder → nvvidconv → GRAY8 →
    appsink`` (file: every frame).

    Args:
        kind: ``rtsp`` or ``video``.
        target: The URL or file path.
        codec: ``h264`` or ``h265``.
        latency_ms: rtspsrc jitter buffer.

    Raises:
        EdgeError: unknown codec, or a container GStreamer cannot demux here.
    """
    if codec not in HW_CODECS:
        raise EdgeError(f"hardware decode supports {', '.join(HW_CODECS)}, got {codec!r}")
    depay, parse = HW_CODECS[codec]
    if kind == "rtsp":
        return (f"rtspsrc location={_quote(target)} latency={int(latency_ms)} ! {depay} ! {parse} ! nvv4l2decoder ! "
                f"{_GRAY_SINK} drop=true max-buffers=1 sync=false")
    suffix = Path(target).suffix.lower()
    if suffix not in DEMUXERS:
        raise EdgeError(f"hardware decode reads {', '.join(DEMUXERS)} files, not {suffix or 'a file without suffix'} "
                        f"({target})")
    demux = DEMUXERS[suffix]
    mid = f"{demux} ! " if demux else ""
    return (f"filesrc location={_quote(target)} ! {mid}{parse} ! nvv4l2decoder ! "
            f"{_GRAY_SINK} sync=false max-buffers=4 drop=false")


def gstreamer_available() -> bool:
    """Whether this OpenCV build has the GStreamer backend (cv2.getBuildInformation)."""
    import cv2

    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return line.split(":", 1)[1].strip().upper().startswith("YES")
    return False


def parse_source(uri: str, width: int = 1920, height: int = 1080, fps: int = 30,
                 hw_decode: Optional[str] = None) -> SourceSpec:
    """Resolve a source URI or plain path.

    Args:
        uri: The source (see the module doc).
        width: CSI capture width.
        height: CSI capture height.
        fps: CSI capture rate.
        hw_decode: ``h264`` / ``h265``: decode ``rtsp://`` and video files with the Jetson's
            nvv4l2decoder through GStreamer (:func:`nv_decode_pipeline`); None: OpenCV's FFmpeg.

    Raises:
        EdgeError: unknown scheme, or a file/folder that does not exist or holds no images.
    """
    uri = str(uri)
    if hw_decode is not None and hw_decode not in HW_CODECS:
        raise EdgeError(f"--hw-decode takes {' or '.join(HW_CODECS)}, got {hw_decode!r}")
    m = re.match(r"^([a-z0-9]+)://(.*)$", uri, re.I)
    scheme, rest = (m.group(1).lower(), m.group(2)) if m else ("file", uri)
    if scheme == "file" and rest.lower().endswith(".npy"):
        scheme = "raw"
    if scheme == "raw":
        path = Path(rest)
        if path.suffix.lower() != ".npy":
            raise EdgeError(f"raw:// reads a .npy file (uint8 N x H x W), got {rest!r}")
        if not path.is_file():
            raise EdgeError(f"source {path} does not exist")
        return SourceSpec(uri, "raw", str(path), False, "raw")
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
        if hw_decode is not None:
            if scheme not in ("rtsp", "rtsps"):
                raise EdgeError(f"hardware decode reads rtsp:// streams and files, not {scheme}://")
            return SourceSpec(uri, "rtsp", nv_decode_pipeline("rtsp", uri, hw_decode), True, "gstreamer")
        return SourceSpec(uri, "rtsp", uri, True, "ffmpeg")
    if scheme == "gst":
        if not rest.strip():
            raise EdgeError("gst:// needs a pipeline, e.g. gst://videotestsrc ! videoconvert ! appsink")
        return SourceSpec(uri, "gst", rest, True, "gstreamer")
    if scheme != "file":
        raise EdgeError(f"unknown source scheme {scheme!r} in {uri!r} (v4l2, csi, rtsp, gst, raw, file or a path)")
    path = Path(rest)
    if path.is_dir():
        if not image_files(path):
            raise EdgeError(f"source folder {path} has no image files ({', '.join(sorted(IMAGE_EXTS))})")
        return SourceSpec(uri, "images", str(path), False, "images")
    if not path.exists():
        raise EdgeError(f"source {path} does not exist")
    if path.suffix.lower() in IMAGE_EXTS:
        return SourceSpec(uri, "images", str(path), False, "images")
    if hw_decode is not None:
        return SourceSpec(uri, "video", nv_decode_pipeline("video", str(path), hw_decode), False, "gstreamer")
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
    """Image files in name order (or one image file); unreadable files are corrupt frames.

    PNG files are decoded by :func:`edge.capture.png.decode` (ISA-L inflate, numpy filters for gray
    frames: about 0.4x OpenCV's CPU time on a line frame, the same pixels); other files by OpenCV.
    """

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
            if f.suffix.lower() == ".png":
                img = decode_png(f.read_bytes())     # ISA-L inflate; the same pixels as cv2.imread
            else:
                img = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
        except (cv2.error, OSError):
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


class RawSource(Source):
    """A raw recording: a uint8 ``.npy`` array N x H x W (or N x H x W x 1/3), memory-mapped.

    Frames are views into the mapped file (no decode, no copy until the tiles are packed), the way
    a camera delivers raw frames; plants can replay raw recordings, and the daemon's throughput
    can be measured without a codec in the way.
    """

    def __init__(self, target: str, fps: Optional[float] = None):
        self.path = Path(target)
        self.name = str(target)
        self.fps = fps
        self.frames: Optional[np.ndarray] = None
        self._i = 0

    def open(self) -> None:
        try:
            arr = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise EdgeError(f"{self.path} is not a readable .npy array: {' '.join(str(e).split())[:160]}") from None
        if arr.dtype != np.uint8 or not (arr.ndim == 3 or (arr.ndim == 4 and arr.shape[3] in (1, 3, 4))):
            raise EdgeError(f"{self.path}: a raw recording is a uint8 array N x H x W (or N x H x W x 1/3/4), "
                            f"got {arr.dtype} {tuple(arr.shape)}")
        self.frames, self._i = arr, 0

    def __len__(self) -> int:
        return 0 if self.frames is None else len(self.frames)

    def read(self) -> Optional[np.ndarray]:
        if self.frames is None:
            raise SourceLost("not open")
        if self._i >= len(self.frames):
            raise EndOfStream()
        f = self.frames[self._i]
        self._i += 1
        return f

    def close(self) -> None:
        self.frames = None  # drops the memory map


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

        if self.spec.api == "gstreamer" and not gstreamer_available():
            raise EdgeError(f"{self.spec.uri}: this OpenCV build has no GStreamer backend (pip wheels have none); "
                            "use the system OpenCV on the Jetson (JetPack's python3-opencv)")
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
    if spec.kind == "raw":
        return RawSource(spec.target, fps)
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


class _Refill(threading.Condition):
    """The ``not_full`` condition of a :class:`FrameQueue`: wakes the blocked producer only once the
    queue is down to ``low`` items (then it refills it in one go), not after every ``get``."""

    def __init__(self, q: "FrameQueue", low: int):
        super().__init__(q.mutex)
        self._q, self._low = q, low

    def notify(self, n: int = 1) -> None:
        if self._q._qsize() <= self._low:
            super().notify(n)


class FrameQueue(queue.Queue):
    """A bounded queue whose blocked producer (the grab thread of a file source) is woken when the
    queue is half empty rather than after each frame taken: the grab thread reads frames in bursts
    instead of taking a core from the classifying threads once per frame.

    Args:
        maxsize: Max items waiting.
    """

    def __init__(self, maxsize: int):
        super().__init__(maxsize)
        self.not_full = _Refill(self, maxsize // 2)


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
        self.queue: "queue.Queue" = FrameQueue(max(1, int(queue_size)))
        self.reconnect_initial, self.reconnect_max = reconnect_initial, reconnect_max
        self.max_reconnects = max_reconnects
        self.max_frames = max_frames
        self.prepare = None if self.drop else prepare
        self.stop_event = threading.Event()
        self.error: Optional[BaseException] = None
        self.in_read = False  # True while blocked in source.open()/read() (the daemon need not wait for it to stop)
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
                self.in_read = True  # blocked in the source while it opens too (network open timeout)
                try:
                    self.source.open()
                finally:
                    self.in_read = False
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
                    self.in_read = True
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
                finally:
                    self.in_read = False
                if self.stop_event.is_set() and self.source.live:
                    break  # read while stopping (a stalled stream came back): not queued
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
