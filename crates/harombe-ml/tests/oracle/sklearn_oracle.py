"""scikit-learn oracle for harombe-ml's Isolation Forest.

Usage:
  sklearn_oracle.py export OUTDIR   fits sklearn IsolationForest on several generated data
                                    sets and writes, per case, OUTDIR/<case>.model.json (the
                                    trees, in the format harombe-ml imports) and
                                    OUTDIR/<case>.data.json (training rows, probe rows,
                                    sklearn's score_samples on both, offset_, contamination).
  sklearn_oracle.py auc OUTDIR      writes OUTDIR/<name>.auc.json per labelled data set: rows,
                                    labels (1 = injected outlier) and, over several seeds,
                                    sklearn's ROC AUC, mean score_samples and offset_ (0.05).
  sklearn_oracle.py bench           prints sklearn's timings as JSON (score one row, fit 1000).

Floats go out through json.dumps (repr: shortest round-trip), so Rust reads them bit-exact.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import sklearn
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score

AUC_SEEDS = list(range(10))


def blobs(rng, n=1000, d=4, n_out=50):
    centers = rng.uniform(-5, 5, size=(3, d))
    inl = np.vstack([c + rng.normal(0, 0.8, size=(n // 3, d)) for c in centers])
    out = rng.uniform(-9, 9, size=(n_out, d))
    x = np.vstack([inl, out])
    y = np.r_[np.zeros(len(inl)), np.ones(n_out)]
    return x, y


def near_outliers(rng, n=1500, d=6, n_out=75):
    # Harder: outliers only mildly off the inlier distribution, so AUC is well below 1.
    inl = rng.normal(0, 1, size=(n, d))
    out = rng.normal(0, 1, size=(n_out, d)) * 1.8 + 0.8
    x = np.vstack([inl, out])
    y = np.r_[np.zeros(n), np.ones(n_out)]
    return x, y


def mixed_scales(rng, n=800):
    scales = np.array([1e-3, 1.0, 1e4, 1e6, 0.05])
    inl = rng.normal(0, 1, size=(n, 5)) * scales
    out = rng.normal(0, 1, size=(40, 5)) * scales * 4
    x = np.vstack([inl, out])
    y = np.r_[np.zeros(n), np.ones(40)]
    return x, y


def dup_const(rng, n=600):
    a = np.round(rng.normal(0, 1, size=n), 1)          # many duplicate values
    b = np.full(n, 7.0)                                 # constant column
    c = a.copy()                                        # duplicate column
    d = rng.integers(0, 3, size=n).astype(float)        # three values only
    e = 1.0 + rng.uniform(0, 5e-8, size=n)              # range under FEATURE_THRESHOLD
    f = rng.exponential(2.0, size=n)
    x = np.column_stack([a, b, c, d, e, f])
    x[: n // 4] = x[0]                                  # a quarter identical rows
    return x


def probes(rng, x, m=200):
    lo, hi = x.min(axis=0), x.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    p = rng.uniform(lo - 0.5 * span, hi + 0.5 * span, size=(m, x.shape[1]))
    # Also rows exactly at training values (ties with thresholds happen there).
    return np.vstack([p, x[rng.integers(0, len(x), size=50)]])


def export_model(model, names):
    trees = []
    for est, feats in zip(model.estimators_, model.estimators_features_):
        t = est.tree_
        trees.append(
            {
                "features": [int(f) for f in feats],
                "feature": t.feature.tolist(),
                "threshold": t.threshold.tolist(),
                "children_left": t.children_left.tolist(),
                "children_right": t.children_right.tolist(),
                "n_node_samples": t.n_node_samples.tolist(),
            }
        )
    return {
        "format": "sklearn-isolation-forest",
        "version": 1,
        "sklearn_version": sklearn.__version__,
        "n_features_in": int(model.n_features_in_),
        "feature_names": names,
        "max_samples": int(model.max_samples_),
        "max_features": int(model._max_features),
        "contamination": model.contamination,
        "offset": float(model.offset_),
        "estimators": trees,
    }


def cases():
    rng = np.random.default_rng(20240601)
    x_blobs, _ = blobs(rng)
    x_mixed, _ = mixed_scales(rng)
    yield "blobs", x_blobs, {}
    yield "uniform", rng.uniform(-1, 1, size=(500, 3)), {}
    yield "dup_const", dup_const(rng), {}
    yield "tiny", rng.normal(0, 1, size=(40, 3)), {}
    yield "mixed_scales", x_mixed, {}
    yield "max_features_half", x_blobs, {"max_features": 0.5}
    yield "max_samples_100", x_blobs, {"max_samples": 100}
    yield "single_row", np.array([[1.0, 2.0]]), {}
    yield "all_constant", np.full((50, 3), 4.25), {}


def cmd_export(out):
    rng = np.random.default_rng(7)
    for name, x, extra in cases():
        p = probes(rng, x)
        names = [f"f{i}" for i in range(x.shape[1])] if name == "blobs" else None
        for contamination in ["auto", 0.05]:
            model = IsolationForest(random_state=42, contamination=contamination, **extra)
            model.fit(x)
            case = f"{name}-{'auto' if contamination == 'auto' else 'c05'}"
            (out / f"{case}.model.json").write_text(json.dumps(export_model(model, names)))
            data = {
                "x": x.tolist(),
                "probes": p.tolist(),
                "score_x": model.score_samples(x).tolist(),
                "score_probes": model.score_samples(p).tolist(),
                "offset": float(model.offset_),
                "contamination": contamination,
            }
            (out / f"{case}.data.json").write_text(json.dumps(data))


def cmd_auc(out):
    rng = np.random.default_rng(11)
    for name, gen in [("blobs", blobs), ("near_outliers", near_outliers), ("mixed_scales", mixed_scales)]:
        x, y = gen(rng)
        aucs, means, offsets = [], [], []
        for seed in AUC_SEEDS:
            model = IsolationForest(random_state=seed, contamination=0.05).fit(x)
            s = model.score_samples(x)
            aucs.append(roc_auc_score(y, -s))
            means.append(float(np.mean(s)))
            offsets.append(float(model.offset_))
        data = {
            "x": x.tolist(),
            "labels": [bool(v) for v in y],
            "seeds": AUC_SEEDS,
            "sklearn_auc": aucs,
            "sklearn_mean_score": means,
            "sklearn_offset": offsets,
        }
        (out / f"{name}.auc.json").write_text(json.dumps(data))


def cmd_bench():
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, size=(1000, 8))
    t0 = time.perf_counter()
    reps = 5
    for seed in range(reps):
        model = IsolationForest(random_state=seed).fit(x)
    fit_s = (time.perf_counter() - t0) / reps
    row = x[:1]
    model.score_samples(row)
    n = 200
    t0 = time.perf_counter()
    for _ in range(n):
        model.score_samples(row)
    one_s = (time.perf_counter() - t0) / n
    big = rng.normal(0, 1, size=(20000, 8))
    t0 = time.perf_counter()
    model.score_samples(big)
    batch_s = (time.perf_counter() - t0) / len(big)
    print(json.dumps({
        "sklearn_version": sklearn.__version__,
        "fit_1000x8_s": fit_s,
        "score_one_row_s": one_s,
        "score_batch_per_row_s": batch_s,
    }))


def main():
    cmd = sys.argv[1]
    if cmd == "bench":
        cmd_bench()
        return
    out = Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    {"export": cmd_export, "auc": cmd_auc}[cmd](out)


if __name__ == "__main__":
    main()
