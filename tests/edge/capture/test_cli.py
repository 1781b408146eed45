"""edge-capture as a process: SIGTERM mid-run, config file, one-line errors."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from edge.capture.cli import main
from edge.capture.events import read_events
from scripts.fixtures.intensity_model import class_level, make_intensity_model
from scripts.fixtures.mosquitto import free_port

T = 32


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_intensity_model(tmp_path_factory.mktemp("m") / "m.onnx", T)


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    import cv2

    d = tmp_path_factory.mktemp("frames")
    for f in range(12):
        img = np.zeros((T, 2 * T), np.uint8)
        img[:, :T] = class_level(f % 6)
        img[:, T:] = class_level((f + 1) % 6)
        cv2.imwrite(str(d / f"{f:03d}.png"), img)
    return d


def _processed(url):
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("edge_capture_frames_processed_total "):
                    return int(float(line.split()[1]))
    except OSError:
        return -1
    return -1


def test_sigterm_mid_run_exits_0_with_every_processed_frames_events(tmp_path, model, frames):
    ev, summ = tmp_path / "ev.jsonl", tmp_path / "summary.json"
    port = free_port()
    # --realtime at 4 fps keeps the 12-frame run going ~3 s; /metrics tells when it is mid-way
    cmd = [sys.executable, "-m", "edge.capture.cli", "--model", str(model), "--source", str(frames), "--realtime",
           "--fps", "4", "--log-all", "--events", str(ev), "--summary", str(summ), "--flush-interval", "30",
           "--metrics", f"127.0.0.1:{port}"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 60 and _processed(f"http://127.0.0.1:{port}/metrics") < 2:
        assert p.poll() is None, p.communicate()
        time.sleep(0.05)
    assert p.poll() is None, p.communicate()
    p.send_signal(signal.SIGTERM)
    t1 = time.monotonic()
    out, err = p.communicate(timeout=10)
    assert p.returncode == 0, err
    assert time.monotonic() - t1 < 5
    s = json.loads(summ.read_text())
    events = read_events(ev)
    assert 2 <= s["frames_processed"] < 12                # stopped mid-run; flush interval 30 s: flushed on exit
    assert s["frames_read"] == s["frames_processed"]      # a frame read before the stop is still processed
    assert len(events) == 2 * s["frames_processed"] == s["events"]
    assert sorted({e["frame"] for e in events}) == list(range(s["frames_processed"]))
    assert "SIGTERM" in err and "frames read" in err and "p99" in err   # the final summary line


def test_config_file_mirrors_flags_and_flags_override(tmp_path, model, frames, capsys):
    cfg = tmp_path / "capture.toml"
    cfg.write_text(f'[capture]\nmodel = "{model}"\nsource = "{frames}"\nlog-all = true\nbatch = 1\n'
                   f'events = "out/ev.jsonl"\nthreshold = 0.9\nmax_frames = 4\nsummary = "out/s.json"\n')
    assert main(["--config", str(cfg), "--max-frames", "3"]) == 0
    s = json.loads((tmp_path / "out" / "s.json").read_text())
    assert s["frames_processed"] == 3                        # the flag beat the file's 4
    assert len(read_events(tmp_path / "out" / "ev.jsonl")) == 6   # relative paths: beside the config file


@pytest.mark.parametrize("args,msg", [
    (["--source", "x"], "no model"),
    (["--model", "MODEL", "--source", "ftp://x"], "unknown source scheme"),
    (["--model", "MODEL", "--source", "FRAMES", "--roi", "1,2"], "ROI must be x,y,w,h"),
    (["--model", "MODEL", "--source", "FRAMES", "--tile", "500"], "smaller than one 500x500 tile"),
    (["--config", "/nonexistent.toml"], "does not exist"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, model, frames, capsys, args, msg):
    args = [str(model) if a == "MODEL" else str(frames) if a == "FRAMES" else a for a in args]
    args += ["--events", str(tmp_path / "ev.jsonl"), "-q"]   # -q: no per-frame warnings before the error
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edge-capture: error:") and msg in err[0]


def test_unknown_config_key_is_refused(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('modle = "x"\n')
    assert main(["--config", str(cfg)]) == 2
    assert "unknown setting(s) modle" in capsys.readouterr().err


def test_yaml_config_without_pyyaml_is_a_clear_error(tmp_path, capsys):
    try:
        import yaml  # noqa: F401
        pytest.skip("PyYAML is installed here")
    except ImportError:
        pass
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: x\n")
    assert main(["--config", str(cfg)]) == 2
    assert "YAML config needs PyYAML" in capsys.readouterr().err


def test_tensorrt_options_reach_the_runner(tmp_path, monkeypatch):
    """--cuda-backend/--cuda-graph/--zero-copy are passed to the TensorRT runner."""
    from edge.capture.config import CaptureConfig
    from edge.capture.daemon import CaptureDaemon

    seen = {}

    def fake_load_runner(artifact, backend="auto", **opts):
        seen.update(opts, backend=backend)
        return None

    monkeypatch.setattr("edge.runtime.load_runner", fake_load_runner)
    monkeypatch.setattr("edge.runtime.backend_of", lambda artifact, meta=None: "tensorrt")
    cfg = CaptureConfig(model="m.engine", source="x", batch=4, cuda_backend="pycuda", cuda_graph=True, zero_copy=True)
    CaptureDaemon(cfg)._make_runner()
    assert seen == {"cuda_backend": "pycuda", "cuda_graph": True, "zero_copy": True, "backend": "auto"}


def test_every_config_setting_has_a_flag():
    from dataclasses import fields

    from edge.capture.cli import build_parser
    from edge.capture.config import CaptureConfig

    dests = {a.dest for a in build_parser()._actions}
    assert {f.name for f in fields(CaptureConfig)} <= dests
