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
