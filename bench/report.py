"""Report writers of ``edge-bench``: JSON (the documented schema), Markdown (Ultralytics-style table), plots.

JSON schema (keys documented in the README)::

    {
      "environment": {...},                       # bench.environment.environment()
      "reference": {"model", "accuracy", ...},
      "results": [{
          "artifact", "format", "backend", "precision", "size_mb",
          "latency_ms": {"<batch>": {"min","mean","p50","p90","p95","p99","max","cov"}},  # per batch, end-to-end
          "latency_per_image_ms": {"<batch>": {...same keys...}},
          "latency_parts_ms": {"<batch>": {"preprocess"|"h2d"|"compute"|"d2h": {...same keys...}}},
          "throughput_ips": {"<batch>": float},
          "accuracy",
          "drift": {"accuracy_delta_pp", "top1_agreement", "max_abs_prob_diff", "mean_abs_prob_diff",
                    "kl", "per_class_f1_delta": {"<class>": float}},
          "confusion_matrix", "disagreements": [{"file","label","reference","artifact",...}],
          "status": "ok" | "drift" | "failed", "status_reason"
      }],
      "corruptions": null | {"seed", "conditions": [{"corruption","severity","param","reference_accuracy",
                                                    "results": {"<artifact>": {"accuracy","accuracy_delta_pp","top1_agreement"}}}],
                             "summary": {"<model or artifact>": {"clean","per_kind","per_kind_1_3","mca","mca_1_3",
                                         "relative","relative_1_3","max_drop_pp_vs_reference_1_3","min_agreement_1_3"}}},
      "conventions": {...}, "settings": {...}
    }
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Dict, List

from edge.errors import EdgeError
from edge.fsutil import atomic_path, write_json, write_text

STATUS_ICON = {"ok": "✅", "drift": "❎", "failed": "❌"}


def public(report: Dict[str, Any]) -> Dict[str, Any]:
    """The report without private keys (raw samples), as written to JSON."""
    out = copy.deepcopy(report)
    for res in out.get("results", []):
        for k in [k for k in res if k.startswith("_")]:
            del res[k]
    return out


def write_json_report(path: str | Path, report: Dict[str, Any]) -> Path:
    """Write the JSON report atomically."""
    return write_json(path, public(report))


def _f(v, fmt: str = "{:.2f}", none: str = "-") -> str:
    return none if v is None else fmt.format(v)


def _pp(v) -> str:
    return "-" if v is None else f"{v:+.2f}"


def _name(r: Dict[str, Any]) -> str:
    return r.get("name") or Path(r.get("artifact") or r.get("model")).name


def _refs(report: Dict[str, Any]) -> List[Dict[str, Any]]:
    return report.get("references") or [report["reference"]]


def summary_table(report: Dict[str, Any]) -> str:
    """The one-row-per-artifact table (Ultralytics style); each reference row precedes its artifacts."""
    results = report["results"]
    batches = sorted({int(b) for r in results for b in r.get("latency_ms", {})}) or \
        sorted(int(b) for b in report.get("settings", {}).get("batches", [1]))
    b0 = str(batches[0]) if batches else "1"
    head = ["Format", "Precision", "Size (MB)", "Accuracy", "Δ pp", "Agreement",
            f"p50 ms (b{b0})", f"p99 ms (b{b0})"] + [f"img/s (b{b})" for b in batches] + ["Status"]
    rows = []
    refs = _refs(report)
    for i, ref in enumerate(refs):
        rows.append([f"Keras reference `{_name(ref)}`", ref.get("precision", "fp32"), _f(ref.get("size_mb")),
                     _f(100 * ref["accuracy"], "{:.2f}%"), "0.00", "100.00%", "-", "-"] + ["-" for _ in batches]
                    + ["reference"])
        mine = [r for r in results if r.get("reference", refs[0]["model"]) == ref["model"]
                or (i == 0 and r.get("reference") not in {x["model"] for x in refs})]
        for r in mine:
            lat = r.get("latency_ms", {}).get(b0)
            d = r.get("drift") or {}
            icon = STATUS_ICON.get(r.get("status"), "❌")
            status = icon + (f" {r['status_reason']}" if r.get("status_reason") else "")
            rows.append([
                f"{r['format']} `{_name(r)}`", r["precision"], _f(r.get("size_mb")),
                _f(None if r.get("accuracy") is None else 100 * r["accuracy"], "{:.2f}%"),
                _pp(d.get("accuracy_delta_pp")),
                _f(None if d.get("top1_agreement") is None else 100 * d["top1_agreement"], "{:.2f}%"),
                _f(lat and lat["p50"], "{:.3f}"), _f(lat and lat["p99"], "{:.3f}"),
            ] + [_f(r.get("throughput_ips", {}).get(str(b)), "{:.1f}") for b in batches] + [status.replace("|", "/")])
    return _table(head, rows)


def _table(head: List[str], rows: List[List[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def latency_table(report: Dict[str, Any]) -> str:
    """Per artifact and batch: per-batch and per-image stats, the parts, throughput."""
    head = ["Artifact", "Batch", "Per", "min", "mean", "p50", "p90", "p95", "p99", "max", "CoV %", "img/s"]
    rows = []
    for r in report["results"]:
        name = _name(r)
        for b, st in r.get("latency_ms", {}).items():
            pi = r["latency_per_image_ms"][b]
            thr = _f(r["throughput_ips"].get(b), "{:.1f}")
            warn = " ⚠" if st["cov"] > 2.5 else ""
            for label, s in (("batch (end-to-end)", st), ("image (end-to-end)", pi)):
                rows.append([name, b, label] + [_f(s[k], "{:.3f}") for k in ("min", "mean", "p50", "p90", "p95", "p99", "max")]
                            + [_f(s["cov"], "{:.1f}") + warn, thr])
            for part, ps in r.get("latency_parts_ms", {}).get(b, {}).items():
                rows.append([name, b, f"batch: {part}"] + [_f(ps[k], "{:.3f}") for k in ("min", "mean", "p50", "p90", "p95", "p99", "max")]
                            + [_f(ps["cov"], "{:.1f}"), ""])
    return _table(head, rows) if rows else "(no latency measured)"


def drift_table(report: Dict[str, Any]) -> str:
    """Per artifact: the drift figures and per-class F1 deltas."""
    classes = report["reference"].get("classes") or []
    head = ["Artifact", "Accuracy", "Δ pp", "Top-1 agreement", "max abs Δp", "mean abs Δp", "KL (nats)"] + \
        [f"ΔF1 {c}" for c in classes]
    rows = []
    for r in report["results"]:
        d = r.get("drift")
        if d is None:
            continue
        rows.append([_name(r), _f(100 * r["accuracy"], "{:.2f}%"), _pp(d["accuracy_delta_pp"]),
                     _f(100 * d["top1_agreement"], "{:.2f}%"), _f(d["max_abs_prob_diff"], "{:.2e}"),
                     _f(d["mean_abs_prob_diff"], "{:.2e}"), _f(d["kl"], "{:.2e}")] +
                    [_f(d["per_class_f1_delta"].get(c), "{:+.4f}") for c in classes])
    return _table(head, rows) if rows else "(no artifact ran)"


def corruption_table(report: Dict[str, Any]) -> str:
    """Accuracy (and Δ pp and agreement against its reference under the same corruption) per condition."""
    cor = report.get("corruptions")
    if not cor:
        return ""
    ran = [r for r in report["results"] if r.get("drift") is not None]
    refs = _refs(report)
    head = ["Corruption", "Severity", "Parameter"] + [f"`{_name(x)}` (reference)" for x in refs] + \
        [f"`{_name(r)}` (Δ pp, agreement)" for r in ran]
    rows = []
    for c in cor["conditions"]:
        accs = c.get("reference_accuracies") or {refs[0]["model"]: c["reference_accuracy"]}
        row = [c["corruption"], str(c["severity"]), _f(c["param"], "{:g}")] + \
            [_f(None if accs.get(x["model"]) is None else 100 * accs[x["model"]], "{:.2f}%") for x in refs]
        for r in ran:
            x = c["results"].get(r["artifact"])
            row.append("-" if x is None else
                       f"{100 * x['accuracy']:.2f}% ({x['accuracy_delta_pp']:+.2f}, {100 * x['top1_agreement']:.1f}%)")
        rows.append(row)
    return _table(head, rows)


def corruption_summary_table(report: Dict[str, Any]) -> str:
    """Per model: clean accuracy, mean per kind over severities 1-5, mean corruption accuracy (mCA), relative."""
    cor = report.get("corruptions") or {}
    summ = cor.get("summary")
    if not summ:
        return ""
    names = {x["model"]: f"`{_name(x)}` (Keras FP32)" for x in _refs(report)}
    names.update({r["artifact"]: f"`{_name(r)}`" for r in report["results"]})
    kinds = list(next(iter(summ.values()))["per_kind"])
    head = ["Model", "Clean"] + kinds + ["mCA 1-5", "mCA 1-3", "relative 1-5", "worst Δ pp vs FP32 (sev ≤ 3)",
                                         "min agreement (sev ≤ 3)"]
    rows = []
    for m, x in summ.items():
        pct = lambda v: _f(None if v is None else 100 * v, "{:.2f}%")  # noqa: E731
        rows.append([names.get(m, m), pct(x["clean"])] + [pct(x["per_kind"].get(k)) for k in kinds] +
                    [pct(x["mca"]), pct(x["mca_1_3"]), _f(x["relative"], "{:.3f}"),
                     _f(None if x["max_drop_pp_vs_reference_1_3"] is None else -x["max_drop_pp_vs_reference_1_3"],
                        "{:+.2f}"),
                     pct(x["min_agreement_1_3"])])
    return _table(head, rows)


def markdown(report: Dict[str, Any], max_disagreements: int = 20) -> str:
    """The whole Markdown report."""
    from bench.environment import summary_lines

    ref = report["reference"]
    s = report.get("settings", {})
    parts = ["# edge-bench report", ""]
    refs = _refs(report)
    parts.append(f"Reference{'s' if len(refs) > 1 else ''}: "
                 + "; ".join(f"`{x['model']}` (Keras FP32, accuracy {100 * x['accuracy']:.2f}%)" for x in refs)
                 + f", on {ref.get('images', '?')} images ({s.get('data', '?')}, split {s.get('split', '?')}"
                 f"{', split file ' + str(s['split_file']) if s.get('split_file') else ''}). Each artifact is "
                 "compared with the Keras model it was made from (source_model.sha256 in its metadata).")
    parts.append("")
    parts.append(summary_table(report))
    parts.append("")
    if report.get("line_capacity"):
        from bench.capacity import sentence

        parts += ["**Line capacity**: " + sentence(report["line_capacity"]), ""]
    conv = report.get("conventions", {})
    parts.append(f"Latency: {conv.get('latency', '')}. Throughput: {conv.get('throughput', '')}. "
                 f"Status: {conv.get('status', '')}.")
    parts.append("")
    if s:
        parts.append(f"Settings: batches {s.get('batches')}, warmup {s.get('warmup')}, "
                     + (f"duration {s['duration']} s" if s.get("duration") else f"iterations {s.get('iterations')}")
                     + f", ONNX Runtime threads {s.get('threads') or 'default'}.")
        parts.append("")
    env = report.get("environment")
    load, cores = (env or {}).get("load_average"), (env or {}).get("cores_usable")
    if load and cores and load[0] > cores:
        parts += [f"⚠ The machine was busy while this was measured (load average {load[0]:g} on {cores} usable "
                  "cores, other jobs running): latencies are inflated and noisy (see the CoV column); the accuracy "
                  "and drift figures are not affected.", ""]
    if env:
        parts += ["## Environment", ""] + [f"- {line}" for line in summary_lines(env)] + [""]
    parts += ["## Latency (ms)", "", latency_table(report), ""]
    parts += ["## Accuracy drift against the reference", "", drift_table(report), ""]
    for r in report["results"]:
        dis = r.get("disagreements") or []
        if dis:
            parts.append(f"Images where `{_name(r)}` and its reference disagree ({len(dis)}):")
            parts.append("")
            for x in dis[:max_disagreements]:
                parts.append(f"- `{x['file']}` (label {x['label']}): reference {x['reference']} "
                             f"({x['reference_prob']:.3f}), artifact {x['artifact']} ({x['artifact_prob']:.3f})")
            if len(dis) > max_disagreements:
                parts.append(f"- ... and {len(dis) - max_disagreements} more (see the JSON report)")
            parts.append("")
    if report.get("corruptions"):
        parts += ["## Robustness under line-capture corruptions", "",
                  "ImageNet-C style: each kind at severities 1-5 (parameters in bench/corruptions.py), applied to "
                  "the uint8 images before each model's own preprocessing, deterministic under the seed "
                  f"({report['corruptions'].get('seed')}). mCA = mean corruption accuracy over the kinds and "
                  "severities; relative = mCA / clean accuracy; worst Δ pp and min agreement compare each artifact "
                  "with its FP32 Keras reference under the same corrupted images.", "",
                  corruption_summary_table(report), "",
                  "Per condition: accuracy; for artifacts in brackets the difference to the reference under the same "
                  "corruption (pp) and the top-1 agreement with it.",
                  "", corruption_table(report), ""]
    if report.get("plots"):
        parts += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in report["plots"]] + [""]
    return "\n".join(parts)


def write_markdown(path: str | Path, report: Dict[str, Any]) -> Path:
    """Write the Markdown report atomically."""
    return write_text(path, markdown(report))


def write_html_report(path: str | Path, report: Dict[str, Any], plots_base: str | Path | None = None) -> Path:
    """One self-contained HTML page of the Markdown report (tables, plots inlined as base64).

    The plots are the ones already written (``report["plots"]``, relative to the Markdown file or
    absolute; relative ones are read from ``plots_base``, the Markdown file's folder); without them
    they are drawn into a temporary folder and inlined from there.
    """
    import tempfile

    from bench.html import write_html

    rep = dict(report)
    with tempfile.TemporaryDirectory(prefix="edge-bench-html-") as tmp:
        if rep.get("plots"):
            base = Path(plots_base or ".")
            rep["plots"] = [str(p if Path(p).is_absolute() else (base / p).resolve()) for p in rep["plots"]]
        elif any(r.get("_samples") or r.get("confusion_matrix") for r in rep.get("results", [])):
            rep["plots"] = [str(p.resolve()) for p in write_plots(tmp, rep)]
        return write_html(path, markdown(rep), base=Path(path).resolve().parent, title="edge-bench report")


# --------------------------------------------------------------------------- plots

def _savefig(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


_NICE = (1, 1.5, 2, 3, 5, 7)


def ms_ticks(lo: float, hi: float) -> List[float]:
    """Readable tick values (1-1.5-2-3-5-7 x 10^k, thinned to 1-2-5 when there are many) in [lo, hi]."""
    import math

    if not (lo > 0 and hi >= lo):
        return []
    ticks = [m * 10 ** e for e in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
             for m in _NICE]
    ticks = [t for t in ticks if lo * 0.98 <= t <= hi * 1.02]
    if len(ticks) > 8:
        ticks = [t for t in ticks if round(t / 10 ** math.floor(math.log10(t)), 6) in (1, 2, 5)]
    return ticks


def _ms_axis(ax, samples) -> None:
    """Latency axis in ms that can be read: log scale with labelled 1-2-5 ticks when the values span
    more than a factor 4, else linear; ticks labelled in ms either way."""
    import numpy as np
    from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter, NullLocator

    vals = np.concatenate([np.asarray(x, float).ravel() for x in samples]) if samples else np.zeros(0)
    vals = vals[vals > 0]
    if vals.size == 0:
        return
    lo, hi = float(vals.min()), float(vals.max())
    fmt = FuncFormatter(lambda v, _: f"{v:g}")
    if hi / lo > 4:
        ax.set_xscale("log")
        ax.set_xlim(lo / 1.1, hi * 1.1)
        ticks = ms_ticks(lo / 1.1, hi * 1.1)
        ax.set_xticks(ticks)
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
    else:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=8))
    ax.xaxis.set_major_formatter(fmt)


def write_plots(outdir: str | Path, report: Dict[str, Any]) -> List[Path]:
    """Latency CDF per artifact, throughput vs batch, confusion matrices side by side (PNG files).

    Needs the raw samples (``_samples``) that :func:`bench.core.run` keeps in memory.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from bench.stats import cdf

    outdir = Path(outdir)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise EdgeError(f"cannot create plot folder {outdir}: {e.strerror or e}") from None
    ran = [r for r in report["results"] if r.get("latency_ms")]
    written: List[Path] = []
    if ran:
        batches = sorted({int(b) for r in ran for b in r["latency_ms"]})
        fig, axes = plt.subplots(1, len(batches), figsize=(5.5 * len(batches), 4), squeeze=False)
        for ax, b in zip(axes[0], batches):
            for r in ran:
                smp = r.get("_samples", {}).get(str(b))
                if smp:
                    x, y = cdf(np.asarray(smp) / b)
                    ax.step(x, y, where="post", label=_name(r))
            _ms_axis(ax, [np.asarray(r["_samples"][str(b)]) / b for r in ran if r.get("_samples", {}).get(str(b))])
            ax.set_xlabel("latency per image, ms (end-to-end host wall time)")
            ax.set_ylabel("fraction of calls")
            ax.set_title(f"Latency CDF, batch {b}")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
        written.append(_savefig(fig, outdir / "latency_cdf.png"))

        fig, ax = plt.subplots(figsize=(6, 4))
        for r in ran:
            bs = sorted(int(b) for b in r["throughput_ips"])
            ax.plot(bs, [r["throughput_ips"][str(b)] for b in bs], marker="o", label=_name(r))
        ax.set_xscale("log", base=2)
        ax.set_xticks(batches)
        ax.set_xticklabels([str(b) for b in batches])
        ax.set_xlabel("batch size")
        ax.set_ylabel("images / s (end-to-end)")
        ax.set_title("Throughput vs batch")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
        written.append(_savefig(fig, outdir / "throughput.png"))

    cor = report.get("corruptions") or {}
    if cor.get("conditions") and cor.get("summary"):
        written.append(_corruption_plot(outdir / "corruptions.png", report))

    from sklearn.metrics import ConfusionMatrixDisplay

    classes = report["reference"].get("classes") or []
    mats = [(f"{_name(x)} (Keras FP32)", x.get("confusion_matrix")) for x in _refs(report)] + \
        [(_name(r), r.get("confusion_matrix")) for r in report["results"] if r.get("confusion_matrix")]
    mats = [(t, m) for t, m in mats if m is not None]
    if mats:
        from edge.data import NEU_PREFIXES

        abbrev = {v: k for k, v in NEU_PREFIXES.items()}
        short = [abbrev.get(c, c[:8]) for c in classes] if classes else None
        ncol = min(5, len(mats))
        nrow = -(-len(mats) // ncol)
        fig, axes = plt.subplots(nrow, ncol, figsize=(4.0 * ncol, 4.2 * nrow), squeeze=False)
        for ax in axes.flat[len(mats):]:
            ax.axis("off")
        for ax, (title, m) in zip(axes.flat, mats):
            ConfusionMatrixDisplay(np.asarray(m), display_labels=short).plot(ax=ax, colorbar=False)
            ax.set_title(title, fontsize=9)
        fig.tight_layout()
        written.append(_savefig(fig, outdir / "confusion_matrices.png"))
    return written


def _corruption_plot(path: Path, report: Dict[str, Any]) -> Path:
    """One panel per corruption kind: accuracy against severity (0 = clean), one line per model."""
    import matplotlib.pyplot as plt

    cor = report["corruptions"]
    conds = cor["conditions"]
    names = {x["model"]: f"{_name(x)} (Keras)" for x in _refs(report)}
    names.update({r["artifact"]: _name(r) for r in report["results"]})
    ref_models = {x["model"] for x in _refs(report)}
    kinds = [k for k in dict.fromkeys(c["corruption"] for c in conds) if k != "none"]
    ncol = min(3, len(kinds))
    nrow = -(-len(kinds) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.2 * nrow), squeeze=False, sharey=True)
    for ax in axes.flat[len(kinds):]:
        ax.axis("off")
    clean = conds[0]

    def acc(c, m):
        if m in ref_models:
            return (c.get("reference_accuracies") or {}).get(m)
        x = c["results"].get(m)
        return None if x is None else x["accuracy"]

    for ax, kind in zip(axes.flat, kinds):
        rows = [clean] + sorted((c for c in conds if c["corruption"] == kind), key=lambda c: c["severity"])
        for m in cor["summary"]:
            pts = [(c["severity"], acc(c, m)) for c in rows if acc(c, m) is not None]
            ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], marker="o", ms=3, label=names.get(m, m),
                    ls="-" if m in ref_models else "--")
        ax.set_title(kind, fontsize=9)
        ax.set_xticks(range(0, 6))
        ax.set_xlabel("severity (0 = clean)")
        ax.set_ylabel("accuracy %")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    return _savefig(fig, path)
