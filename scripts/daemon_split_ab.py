"""The daemon end to end with the ONNX Runtime runner's CPU modes, A/B/C in one run: intra-op threads,
split batches, lanes.

Runs ``edge.capture`` (``CaptureDaemon``) on the same source in rounds whose order alternates (ABC,
CBA, ...): with the runner as it was before issue 14's speed work (``split=1``: one session,
onnxruntime's intra-op threads over the cores, one frame at a time), with each batch split into one
part per core (one intra-op thread each; ``--lanes 1``: one frame at a time), and with today's
default (``--lanes 0``: one frame per lane, each batch whole on one core), and reports each mode's
tiles/s, process CPU ms per tile, and the paired ratios against the split mode.

Example:
    python scripts/daemon_split_ab.py --model runs/convert-compact-u8fs/model.int8cpu.onnx \\
        --source raw://runs/line-tp/frames.npy --rounds 6 -o docs/results/daemon-split-ab.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python scripts/NAME.py` from anywhere
    sys.path.insert(0, str(ROOT))

from edge.errors import cli_entry  # noqa: E402

PROG = "daemon_split_ab"
#: mode -> (runner options, the daemon's --lanes)
MODES = {"intra-op": ({"split": 1}, 1), "split": ({}, 1), "lanes": ({}, 0)}


@cli_entry(PROG)
def main(argv=None) -> int:
    from edge.capture.daemon import CaptureDaemon
    from edge.fsutil import write_json
    from edge.runtime import load_runner
    from scripts.daemon_throughput import _config

    ap = argparse.ArgumentParser(PROG, description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--no-log-all", action="store_true", help="write defect events only (default: every tile)")
    ap.add_argument("-o", "--output", required=True)
    a = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="split-ab-"))
    res = {m: {"tiles_per_s": [], "cpu_ms_per_tile": []} for m in MODES}
    load0 = [round(v, 2) for v in os.getloadavg()]
    for k in range(a.rounds):
        for m in (list(MODES) if k % 2 == 0 else list(MODES)[::-1]):
            ev = work / f"events-{k}-{m}.jsonl"
            opts, lanes = MODES[m]
            cfg = _config(a.model, a.source, None, None, None, a.batch, 0, "auto", not a.no_log_all, ev, lanes=lanes)
            s = CaptureDaemon(cfg, runner=load_runner(a.model, **opts)).run()
            ev.unlink(missing_ok=True)
            res[m]["tiles_per_s"].append(round(s["tiles"] / s["elapsed_s"], 1))
            res[m]["cpu_ms_per_tile"].append(round(s["cpu_s"] * 1e3 / s["tiles"], 4))
    work.rmdir()
    paired = [b / a_ for a_, b in zip(res["intra-op"]["tiles_per_s"], res["split"]["tiles_per_s"])]
    lanes = [c / b for b, c in zip(res["split"]["tiles_per_s"], res["lanes"]["tiles_per_s"])]
    out = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "model": a.model, "source": a.source,
           "batch": a.batch, "rounds": a.rounds, "log_all": not a.no_log_all, "modes": res,
           "medians": {m: {"tiles_per_s": statistics.median(r["tiles_per_s"]),
                           "cpu_ms_per_tile": statistics.median(r["cpu_ms_per_tile"])} for m, r in res.items()},
           "paired_split_over_intra_op": [round(p, 3) for p in paired],
           "median_paired_split_over_intra_op": round(statistics.median(paired), 3),
           "paired_lanes_over_split": [round(p, 3) for p in lanes],
           "median_paired_lanes_over_split": round(statistics.median(lanes), 3),
           "loadavg_before": load0, "loadavg_after": [round(v, 2) for v in os.getloadavg()]}
    for m, d in out["medians"].items():
        print(f"{m}: {d['tiles_per_s']:,.0f} tiles/s, {d['cpu_ms_per_tile']:.3f} CPU ms per tile "
              f"(rounds: {', '.join(f'{v:,.0f}' for v in res[m]['tiles_per_s'])})")
    print(f"split / intra-op, paired: {out['paired_split_over_intra_op']} (median "
          f"{out['median_paired_split_over_intra_op']}); lanes / split, paired: {out['paired_lanes_over_split']} "
          f"(median {out['median_paired_lanes_over_split']}); load {load0} -> {out['loadavg_after']}")
    write_json(a.output, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
