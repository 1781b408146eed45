"""EventWriter: buffering, the 1-second flush, flush on close, size-based rotation."""

import json

from edge.capture.events import EventWriter, read_events
from scripts.fixtures.polling import wait_until


def test_rotation_keeps_every_event_across_files(tmp_path):
    p = tmp_path / "ev" / "events.jsonl"
    w = EventWriter(p, max_bytes=1000, backups=20, flush_interval=60)
    for i in range(100):
        w.write({"frame": i, "label": "scratches", "confidence": 0.9})
    w.close()
    files = sorted(p.parent.iterdir())
    assert len(files) > 3 and w.rotations == len(files) - 1
    assert all(f.stat().st_size <= 1000 for f in files)
    assert [e["frame"] for e in read_events(p)] == list(range(100))   # oldest file first, nothing lost


def test_rotation_drops_files_beyond_backups(tmp_path):
    p = tmp_path / "events.jsonl"
    with EventWriter(p, max_bytes=300, backups=2, flush_interval=60) as w:
        for i in range(60):
            w.write({"frame": i})
    names = sorted(f.name for f in tmp_path.iterdir())
    assert names == ["events.jsonl", "events.jsonl.1", "events.jsonl.2"]
    frames = [e["frame"] for e in read_events(p)]
    assert frames == list(range(60 - len(frames), 60))                 # the newest are kept, in order


def test_buffered_until_interval_then_flushed_without_more_writes(tmp_path):
    p = tmp_path / "events.jsonl"
    w = EventWriter(p, flush_interval=0.4)
    w.write({"frame": 1})
    assert p.read_text() == ""            # buffered, not yet written
    assert wait_until(lambda: p.read_text() != "", timeout=10)   # the background flush, no more writes
    assert [json.loads(line)["frame"] for line in p.read_text().splitlines()] == [1]
    w.write({"frame": 2})
    w.close()
    assert len(p.read_text().splitlines()) == 2 and w.written == 2


def test_rotation_counts_dropped_lines_across_count_blocks(tmp_path):
    # files several COUNT_BLOCKs long, so lines straddle the blocks _count_lines reads
    from edge.capture.events import COUNT_BLOCK

    p = tmp_path / "events.jsonl"
    n = 0
    with EventWriter(p, max_bytes=3 * COUNT_BLOCK + 777, backups=1, flush_interval=60) as w:
        while w.dropped["rotation"] == 0 or n < 3000:
            w.write({"frame": n, "label": "scratches", "pad": "x" * (n % 37)})
            n += 1
            if n % 500 == 0:
                w.flush()
    on_disk = [e["frame"] for e in read_events(p)]
    assert w.dropped["rotation"] > 0
    assert on_disk == list(range(w.dropped["rotation"], n))   # every line not on disk counted as dropped


def test_line_encoder_fast_and_json_write_the_same_lines(tmp_path):
    """orjson (when installed) and json write lines that parse to the same event (orjson writes 1e-6 where
    json writes 1e-06); write_many keeps the order and counts like single writes."""
    import numpy as np
    import pytest

    from edge.capture.events import line_encoder

    ev = {"id": "00000012-0003", "run": "20261202T140000Z-abcdef", "frame": 12, "ts": 1764684000.123456,
          "tile": [200, 0, 200, 200], "label": "rolled-in_scale", "confidence": 0.987654, "uncertain": False,
          "ood_score": -1.234567, "top_class": "scratches", "probs": [0.1, 0.2, 1e-06, 0.0, 0.699999, 1.0],
          "crop": "20261202T140000Z-abcdef_00000012-0003_unknown.png"}
    slow = line_encoder(fast=False)
    assert slow(ev) == (json.dumps(ev, separators=(",", ":")) + "\n").encode()
    assert json.loads(slow(ev)) == ev
    pytest.importorskip("orjson", reason="orjson not installed: the writer uses json")
    fast = line_encoder()
    assert fast(ev) != slow(ev) and json.loads(fast(ev)) == ev and fast(ev).endswith(b"}\n")
    del ev["probs"]   # no exponent notation left: the very same bytes
    assert fast(ev) == slow(ev)
    assert json.loads(fast({"x": np.float32(0.5), "n": np.int64(3)})) == {"x": 0.5, "n": 3}
    p = tmp_path / "events.jsonl"
    counted = []
    with EventWriter(p, flush_interval=60, on_written=counted.append) as w:
        w.write_many([{"frame": i} for i in range(5)])
        w.write_many([])
        w.write({"frame": 5})
    assert [e["frame"] for e in read_events(p)] == list(range(6)) and sum(counted) == 6
