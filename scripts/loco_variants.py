"""Validation-only comparison of open-set score variants on the leave-one-class-out folds.

Reads the per-fold arrays that ``scripts/loco.py --arrays DIR`` saves (probabilities, logits and
penultimate features of the train / val / test images) and prints the mean **validation** AUROC of
each variant (fold values beside it): class-mean distances (Mahalanobis with a shared Ledoit-Wolf
covariance, relative Mahalanobis, cosine, centred cosine) and the k-th nearest training feature
(kNN, cosine = l2-normalised, k in :data:`KNN_K`) in several feature spaces (the avg+max pooled
features, each half, their L2-normalised or square-rooted form, the logits), and the two logit
scores. Test arrays are not read. Used to choose which variant joins ``scripts/loco.py``'s candidates
(docs/results/open-set-loco.md).

Usage::

    python scripts/loco_variants.py runs/loco2/arrays --md runs/loco2/variants.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FOLDS = ("crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches")


def _md(f, means, precision):
    d = f[:, None, :] - means[None]
    return np.einsum("nkd,de,nke->nk", d, precision, d)


#: k of the kNN variants (Sun et al. 2022's k-th nearest training feature, edge.ood.knn; k = 1 is what
#: stock Keras layers compute in the graph: a max).
KNN_K = (1, 5, 10, 50)


def variants(z) -> dict:
    """``{variant: val AUROC}`` for one fold's arrays (a mapping of name -> array)."""
    from sklearn.covariance import LedoitWolf

    from edge import ood as O

    def auroc(si, so):
        return O.evaluate(si, so)["auroc"]

    y = z["known_train_y"]
    k = int(y.max()) + 1
    c = z["known_train_features"].shape[1] // 2
    spaces = {"features": lambda f: f, "avg half": lambda f: f[:, :c], "max half": lambda f: f[:, c:],
              "l2-normalised": lambda f: f / np.linalg.norm(f, axis=1, keepdims=True),
              "square root": lambda f: np.sqrt(np.maximum(f, 0))}
    out = {"max_softmax": auroc(O.max_softmax(z["known_val_probs"]), O.max_softmax(z["unknown_val_probs"])),
           "energy": auroc(O.energy(z["known_val_logits"]), O.energy(z["unknown_val_logits"]))}
    for name in list(spaces) + ["logits"]:
        def get(pre, name=name):
            return z[f"{pre}_logits"] if name == "logits" else spaces[name](z[f"{pre}_features"])
        tr, kv, uv = get("known_train"), get("known_val"), get("unknown_val")
        st = O.fit_feature_stats(tr, y, k)
        m, p, ctr = st["means"], st["precision"], st["center"]
        mu0, p0 = tr.mean(0), np.linalg.inv(LedoitWolf().fit(tr).covariance_)

        def rel(f):
            return _md(f, m, p).min(1) - _md(f, mu0[None], p0)[:, 0]
        out[f"mahalanobis, {name}"] = auroc(_md(kv, m, p).min(1), _md(uv, m, p).min(1))
        out[f"relative mahalanobis, {name}"] = auroc(rel(kv), rel(uv))
        out[f"cosine, {name}"] = auroc(O.cosine(kv, m), O.cosine(uv, m))
        out[f"centred cosine, {name}"] = auroc(O.cosine(kv, m, ctr), O.cosine(uv, m, ctr))
        for kk in KNN_K:
            out[f"knn k={kk}, {name}"] = auroc(O.knn(kv, tr, kk), O.knn(uv, tr, kk))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("arrays", help="folder of <held-out class>.npz from scripts/loco.py --arrays")
    ap.add_argument("--md", help="write the table here")
    args = ap.parse_args(argv)
    folds = [f for f in FOLDS if (Path(args.arrays) / f"{f}.npz").is_file()]
    if not folds:
        raise SystemExit(f"loco_variants: no fold arrays in {args.arrays}")
    per = {f: variants(np.load(Path(args.arrays) / f"{f}.npz")) for f in folds}
    names = sorted(per[folds[0]], key=lambda n: -np.mean([per[f][n] for f in folds]))
    lines = ["| variant | mean val AUROC | " + " | ".join(folds) + " |", "|---|---|" + "---|" * len(folds)]
    for n in names:
        lines.append(f"| {n} | {np.mean([per[f][n] for f in folds]):.4f} | "
                     + " | ".join(f"{per[f][n]:.3f}" for f in folds) + " |")
    text = "\n".join(lines) + "\n"
    if args.md:
        Path(args.md).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
