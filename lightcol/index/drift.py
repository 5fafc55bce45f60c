"""How far added documents lie from the data the codec was trained on (when to retrain).

The codec stores a vector as its nearest centroid plus a quantised residual; the quantiser was fitted
to the residuals of the training sample. Vectors from elsewhere land farther from every centroid,
and their residuals are quantised with more error. Two numbers measure it, both from what encoding
a vector computes anyway (the nearest centroid), in the codec's space:

* ``residual_ratio``: mean squared distance of the added vectors to their centroid, over the same
  for the training sample (1.0: no drift);
* ``far_share``: share of the added vectors farther from their centroid than 99% of the training
  sample (0.01: no drift).

The reference is measured at build on the training sample. Training vectors sit closer to
centroids fitted on them than new vectors of the same data do, so a new batch from the same
distribution reads above 1 / 0.01, and by how much depends on the vectors per centroid: on CISI
(MiniLM benchmark model) other abstracts read 1.26 / 0.026 against an index of 730 abstracts
(2,048 centroids) and 1.53 / 0.057 against one of 1,314 (4,096 centroids); the 112 queries (another
distribution: mostly [MASK] expansion tokens) read 1.44 / 0.138, the abstracts in a rotated space
(another model) 3.36 / 0.999. So ``far_share`` separates them and the ratio only flags gross
drift: :data:`LIMITS`. (A reference measured on held-out vectors would remove the bias.) An index
built before the reference was recorded gets one estimated from its decoded vectors at its first
change (``"source"`` says which).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lightcol import _kmeans

__all__ = ["LIMITS", "reference", "estimate_reference", "accumulate", "summary"]

#: ``drifted`` once the added vectors' ``residual_ratio`` or ``far_share`` exceeds these
LIMITS = {"residual_ratio": 2.0, "far_share": 0.1}
_SAMPLE = 1 << 16  # vectors the reference is measured on
_MIN_VECTORS = 1000  # fewer added vectors say too little to call drift


def _sq_residuals(codec: Any, x: np.ndarray, codes: np.ndarray | None = None, rotated: bool = False) -> np.ndarray:
    xr = np.asarray(x, dtype=np.float32) if rotated else codec.rotate(x)
    if codes is None:
        codes = _kmeans.assign(xr, codec.centroids, codec.groups)
    r = xr - codec.centroids[np.asarray(codes, dtype=np.int64)]
    return np.einsum("ij,ij->i", r, r)


def _from(r2: np.ndarray, source: str) -> dict[str, Any]:
    return {"residual_mse": float(r2.mean()), "far": float(np.quantile(r2, 0.99)), "vectors": int(r2.shape[0]),
            "source": source}


def _pick(n: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, _SAMPLE)).astype(np.int64))


def reference(codec: Any, sample: np.ndarray) -> dict[str, Any]:
    """The reference of a codec trained on ``sample`` (n, dim): measured on up to 65,536 of its vectors."""
    return _from(_sq_residuals(codec, sample[_pick(sample.shape[0])]), "training sample")


def estimate_reference(codec: Any, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """A reference for an index built without one: its decoded vectors (their residuals lack the
    quantisation error, so the estimate is a little low)."""
    idx = _pick(int(arrays["codes"].shape[0]))
    codes = np.asarray(arrays["codes"][idx])
    x = codec.decode(codes, np.asarray(arrays["residuals"][idx]))
    return _from(_sq_residuals(codec, x, codes, rotated=True), "decoded vectors (estimate)")


def accumulate(stats: dict[str, Any] | None, ref: dict[str, Any], codec: Any, x: np.ndarray,
               codes: np.ndarray) -> dict[str, Any]:
    """``stats`` (sums over everything added since the codec was trained) plus the vectors ``x``."""
    r2 = _sq_residuals(codec, x, codes)
    out = dict(stats or {"vectors": 0, "residual_sum": 0.0, "far_count": 0})
    out["vectors"] += int(r2.shape[0])
    out["residual_sum"] += float(r2.sum())
    out["far_count"] += int((r2 > ref["far"]).sum())
    out["last"] = {"vectors": int(r2.shape[0]), "residual_ratio": float(r2.mean() / ref["residual_mse"]),
                   "far_share": float((r2 > ref["far"]).mean())}
    return out


def summary(stats: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any]:
    """What :attr:`lightcol.Index.drift` reports."""
    n = max(int(stats["vectors"]), 1)
    ratio = stats["residual_sum"] / n / ref["residual_mse"]
    far = stats["far_count"] / n
    drifted = stats["vectors"] >= _MIN_VECTORS and (ratio > LIMITS["residual_ratio"] or far > LIMITS["far_share"])
    return {"residual_ratio": ratio, "far_share": far, "vectors": int(stats["vectors"]), "drifted": bool(drifted),
            "last": stats.get("last"), "reference": ref["source"]}
