"""BSDS500 boundary benchmark: per-threshold matched-pixel counts, ODS / OIS / AP.

Protocol (the BSDS500 benchmark's ``evaluation_bdry_image`` + ``collect_eval_bdry``, as also used by the
Structured Edge toolbox's ``edgesEvalImg`` / ``edgesEvalDir``):

* thresholds ``t_k = k / (N + 1)``, ``k = 1..N``; binary map ``pred >= t_k``, thinned with MATLAB
  ``bwmorph(.., 'thin', Inf)`` (:func:`ubernet.metrics.thin.thin`);
* for each annotator separately, the exact correspondence of :mod:`ubernet.metrics.correspond` within
  ``max_dist = 0.0075 × image diagonal`` pixels;
* ``cntR`` = annotator pixels matched, summed over annotators; ``sumR`` = annotator pixels, summed over
  annotators; ``cntP`` = predicted pixels matched to *any* annotator; ``sumP`` = predicted (thinned) pixels;
* these four counts per threshold are the sufficient statistics of an image; :func:`summarize` turns the dataset
  sums into ODS (best F over thresholds, interpolated linearly between neighbouring thresholds at 100 steps),
  OIS (each image at its own best threshold, first one on ties, counts summed) and AP (precision interpolated at
  recall 0, 0.01, ..., 1 over the dataset curve, points outside the curve's recall range count as 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from ubernet.metrics import pool
from ubernet.metrics.correspond import disk_offsets, match_edges, outlier_weight
from ubernet.metrics.thin import thin as thin_map

__all__ = ["BoundaryMetric", "evaluate_boundaries", "fmeasure", "summarize", "thresholds_for"]


def thresholds_for(n: int) -> np.ndarray:
    """The benchmark's ``n`` thresholds ``k / (n + 1)``, ``k = 1..n`` (float64, ascending)."""
    if n < 1:
        raise ValueError(f"need at least one threshold, got {n}")
    return np.arange(1, n + 1, dtype=np.float64) / (n + 1)


def fmeasure(r: np.ndarray | float, p: np.ndarray | float) -> np.ndarray:
    """``2 P R / (P + R)``, 0 where ``P + R = 0`` (the benchmark's ``fmeasure``)."""
    r = np.asarray(r, np.float64)
    p = np.asarray(p, np.float64)
    s = p + r
    return 2 * p * r / np.where(s == 0, 1.0, s)


def _ratio(cnt: np.ndarray, tot: np.ndarray) -> np.ndarray:
    cnt = np.asarray(cnt, np.float64)
    tot = np.asarray(tot, np.float64)
    return cnt / np.where(tot == 0, 1.0, tot)


class _AnnotatorGraph:
    """Candidate pairs between every pixel that can ever be predicted and one annotator's boundary pixels.

    Built once per image and annotator; each threshold only selects the pairs of its (thinned) pixels, so the
    neighbour search is not repeated 99 times.
    """

    def __init__(self, gt: np.ndarray, possible: np.ndarray, max_dist: float) -> None:
        h, w = gt.shape
        dy, dx, wt = disk_offsets(max_dist)
        self.n_gt = int(gt.sum())
        r = math.ceil(max_dist)
        disk = np.zeros((2 * r + 1, 2 * r + 1), bool)
        disk[dy + r, dx + r] = True
        near = ndimage.binary_dilation(gt, structure=disk) & possible
        py, px = np.nonzero(near)
        self.pix = py * w + px  # flat index of each candidate pixel
        gid = np.full((h + 2 * r, w + 2 * r), -1, np.int64)
        gid[r : r + h, r : r + w][gt] = np.arange(self.n_gt)
        j = gid[py[:, None] + (dy + r)[None, :], px[:, None] + (dx + r)[None, :]]
        ii, kk = np.nonzero(j >= 0)
        self.ei = ii  # candidate id (index into self.pix), ascending
        self.ej = j[ii, kk]
        self.ew = wt[kk]
        self.cache: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
        self._last: tuple[np.ndarray, np.ndarray, int] | None = None
        # the previous threshold's matching (candidate ids, annotator pixel ids): the next one grows from it
        self._warm: tuple[np.ndarray, np.ndarray] = (np.zeros(0, np.int64), np.zeros(0, np.int64))

    def match(self, on: np.ndarray, ow: int) -> tuple[np.ndarray, int]:
        """Match the predicted pixels ``on`` (flat bool ``H·W``); return (matched flat pixels, #matched)."""
        if len(self.ei) == 0:
            return self.pix[:0], 0
        active = on[self.pix]
        if self._last is not None and np.array_equal(active, self._last[0]):
            # the same predicted pixels near this annotator as at the previous threshold: same matching
            return self._last[1], self._last[2]
        sel = active[self.ei]
        # compact ids of the active candidates keep every array of the solver proportional to this threshold
        on_ids = np.flatnonzero(active)
        cid = np.cumsum(active) - 1
        keep = active[self._warm[0]]
        warm = (cid[self._warm[0][keep]], self._warm[1][keep])
        mi, mj = match_edges(
            cid[self.ei[sel]],
            self.ej[sel],
            self.ew[sel],
            len(on_ids),
            self.n_gt,
            ow,
            exact_pairs=False,
            cache=self.cache,
            stable_ids=on_ids,
            warm=warm,
        )
        self._warm = (on_ids[mi], mj)
        pix = self.pix[on_ids[mi]]
        self._last = (active, pix, len(mi))
        return pix, len(mi)


def evaluate_boundaries(
    pred: np.ndarray,
    gts: np.ndarray,
    *,
    thresholds: int | Sequence[float] = 99,
    max_dist: float = 0.0075,
    thin: bool = True,
) -> np.ndarray:
    """One image's counts at every threshold.

    Args:
        pred: float ``H×W`` soft boundary map in [0, 1] (higher = more boundary).
        gts: bool ``K×H×W`` (or ``H×W`` for one annotator) human boundary maps.
        thresholds: a number ``N`` of thresholds ``k/(N+1)`` or an ascending list of thresholds in (0, 1].
        max_dist: matching tolerance as a fraction of the image diagonal.
        thin: thin each thresholded map first (the benchmark's default).

    Returns:
        float64 ``N×4``: columns ``cntR, sumR, cntP, sumP``.
    """
    pred = np.asarray(pred, np.float64)
    gts = np.asarray(gts).astype(bool)
    if gts.ndim == 2:
        gts = gts[None]
    if pred.ndim != 2 or gts.ndim != 3 or gts.shape[1:] != pred.shape:
        raise ValueError(f"pred must be H×W and gts K×H×W of the same size, got {pred.shape} and {gts.shape}")
    thr = thresholds_for(thresholds) if isinstance(thresholds, (int, np.integer)) else np.asarray(thresholds, float)
    h, w = pred.shape
    md = max_dist * math.hypot(h, w)
    ow = outlier_weight(md)
    # the benchmark thresholds with pred >= max(eps, t); a pixel below the lowest threshold is never on
    lo = max(float(thr.min()), np.finfo(np.float64).eps)
    possible = pred >= lo
    graphs = [_AnnotatorGraph(g, possible, md) for g in gts]
    sum_r = float(gts.sum())
    counts = np.zeros((len(thr), 4))
    prev_n = -1
    for k, t in enumerate(thr):
        on2d = pred >= max(float(t), np.finfo(np.float64).eps)
        n_on = int(on2d.sum())
        if n_on == prev_n:
            # pred >= t only shrinks as t grows: equal sizes mean the same map, hence the same counts
            counts[k] = counts[k - 1]
            continue
        prev_n = n_on
        if n_on == 0:
            counts[k] = (0.0, sum_r, 0.0, 0.0)
            continue
        on = (thin_map(on2d) if thin else on2d).ravel()
        acc = np.zeros(h * w, bool)
        cnt_r = 0
        for g in graphs:
            pix, n = g.match(on, ow)
            acc[pix] = True
            cnt_r += n
        counts[k] = (cnt_r, sum_r, float(acc.sum()), float(on.sum()))
    return counts


def _best_interpolated(thr: np.ndarray, r: np.ndarray, p: np.ndarray) -> tuple[float, float, float, float]:
    """The benchmark's ``maxF``: best F over 100 linear steps between each pair of neighbouring thresholds.

    Returns ``(t, r, p, f)``; a strictly larger F replaces the current best (so the first best is kept).
    """
    best = (float(thr[0]), float(r[0]), float(p[0]), float(fmeasure(r[0], p[0])))
    if len(thr) == 1:
        return best
    d = np.linspace(0.0, 1.0, 100)[None, :]
    ti = thr[1:, None] * d + thr[:-1, None] * (1 - d)
    ri = r[1:, None] * d + r[:-1, None] * (1 - d)
    pi = p[1:, None] * d + p[:-1, None] * (1 - d)
    fi = fmeasure(ri, pi)
    k = int(np.argmax(fi))  # row-major: first segment, then first step, as the reference's nested loops
    if fi.flat[k] > best[3]:
        best = (float(ti.flat[k]), float(ri.flat[k]), float(pi.flat[k]), float(fi.flat[k]))
    return best


def summarize(thr: np.ndarray, per_image: Sequence[np.ndarray]) -> dict[str, float | list]:
    """ODS, OIS and AP from per-image count tables (each ``N×4``: cntR, sumR, cntP, sumP).

    Returns a dict with ``ods, ods_threshold, ods_recall, ods_precision, ois, ois_recall, ois_precision, ap``
    and the dataset curve ``thresholds, recall, precision, f`` (lists, one value per threshold).
    """
    thr = np.asarray(thr, np.float64)
    if len(per_image) == 0:
        tot = np.zeros((len(thr), 4))
        ois_counts = np.zeros(4)
    else:
        stack = np.stack(per_image)  # I×N×4
        tot = stack.sum(axis=0)
        r_i = _ratio(stack[:, :, 0], stack[:, :, 1])
        p_i = _ratio(stack[:, :, 2], stack[:, :, 3])
        best = np.argmax(fmeasure(r_i, p_i), axis=1)  # first maximum, as find(F == max(F))(1)
        ois_counts = stack[np.arange(len(stack)), best].sum(axis=0)
    r = _ratio(tot[:, 0], tot[:, 1])
    p = _ratio(tot[:, 2], tot[:, 3])
    t_o, r_o, p_o, f_o = _best_interpolated(thr, r, p)
    r_ois = float(_ratio(ois_counts[0], ois_counts[1]))
    p_ois = float(_ratio(ois_counts[2], ois_counts[3]))
    return {
        "ods": f_o,
        "ods_threshold": t_o,
        "ods_recall": r_o,
        "ods_precision": p_o,
        "ois": float(fmeasure(r_ois, p_ois)),
        "ois_recall": r_ois,
        "ois_precision": p_ois,
        "ap": average_precision(r, p),
        "thresholds": thr.tolist(),
        "recall": r.tolist(),
        "precision": p.tolist(),
        "f": fmeasure(r, p).tolist(),
    }


def average_precision(r: np.ndarray, p: np.ndarray) -> float:
    """The benchmark's AP: ``interp1`` of precision over the unique recalls at ``0:0.01:1``, NaN -> 0, times 0.01.

    For repeated recall values the first threshold's precision is kept (MATLAB's ``unique`` since R2013a).
    """
    r = np.asarray(r, np.float64)
    p = np.asarray(p, np.float64)
    ru, idx = np.unique(r, return_index=True)
    if len(ru) <= 1:
        return 0.0
    ri = np.linspace(0.0, 1.0, 101)
    pi = np.interp(ri, ru, p[idx])
    pi[(ri < ru[0]) | (ri > ru[-1])] = 0.0  # interp1 gives NaN outside the data range
    return float(pi.sum() * 0.01)


class BoundaryMetric:
    """BSDS boundary evaluation accumulated over a dataset (ODS, OIS, AP).

    Args:
        thresholds: number ``N`` of thresholds ``k/(N+1)`` (99 in the benchmark).
        max_dist: matching tolerance as a fraction of the image diagonal (0.0075 in the benchmark).
        thin: thin each thresholded map (the benchmark's default; predictions are expected to be NMS-ed).
        fast: approximate mode (not the benchmark): thresholds are evaluated on the distance-transform test
            "within ``max_dist`` of any pixel of the other map" instead of a one-to-one matching, which
            over-counts matches. Never the default; results carry ``"mode": "fast (approximate)"``.
    """

    def __init__(
        self, *, thresholds: int = 99, max_dist: float = 0.0075, thin: bool = True, fast: bool = False
    ) -> None:
        self.thresholds = thresholds_for(int(thresholds))
        self.max_dist = float(max_dist)
        self.thin = bool(thin)
        self.fast = bool(fast)
        self.reset()

    def reset(self) -> None:
        self.per_image: list[np.ndarray] = []

    def update(self, pred: np.ndarray, gts: np.ndarray) -> None:
        """Add one image: ``pred`` float ``H×W`` in [0, 1]; ``gts`` bool ``K×H×W`` (K annotators) or ``H×W``."""
        if self.fast:
            from ubernet.metrics.bsds_fast import evaluate_boundaries_fast

            counts = evaluate_boundaries_fast(
                pred, gts, thresholds=self.thresholds, max_dist=self.max_dist, thin=self.thin
            )
        else:  # in a worker process under `metric_workers` (the exact matcher is the expensive part)
            counts = pool.submit(evaluate_boundaries, np.asarray(pred), np.asarray(gts), thresholds=self.thresholds,
                                 max_dist=self.max_dist, thin=self.thin)
        self.per_image.append(counts)

    def compute(self) -> dict[str, float | list | dict]:
        out = summarize(self.thresholds, pool.resolve(self.per_image))
        out["num_images"] = len(self.per_image)
        out["mode"] = "fast (approximate)" if self.fast else "exact"
        return out
