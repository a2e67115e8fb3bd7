"""Exact one-to-one correspondence of boundary pixels, as the BSDS benchmark's ``correspondPixels``.

The reference (``Match.cc`` of the BSDS benchmark) poses an assignment problem: every pixel of map 1 may be paired
with a pixel of map 2 at Euclidean distance ``d <= maxDist`` at the integer cost ``rint(100 d)``; every pixel may
instead be left unmatched through "outlier" nodes that cost ``ow = ceil(100 * outlierCost)`` with
``outlierCost = 100 * maxDist`` (both in pixels). Counting the perfect matching of that graph, a solution with the
set ``M`` of real pairs costs ``sum_M rint(100 d) + ow * (n1 + n2 - |M|)``: every pair saves ``ow - rint(100 d)``,
always positive and about 100 times larger than any pair cost, so the optimum matches as many pixels as possible
and, among those matchings, has the smallest total integer distance. The reference solves it approximately (it
connects each node to only 6 random outlier nodes, then runs Goldberg's CSA); this module solves the same objective
exactly.

The graph splits into connected components (pixels linked by candidate pairs), each solved on its own.
Components with a single pixel on one side are solved in closed form (the closest partner; ties go to the first
candidate in raster order). For the rest (:func:`_solve_hard`) a maximum matching (Dinic's max flow) gives the
Dulmage-Mendelsohn decomposition; its parts are min-cost *full* matchings of one side, solved by scipy's sparse
LAPJV (``min_weight_full_bipartite_matching``). Among equally cheap optima any one is returned (as in the reference,
whose choice depends on CSA's internals); matched *counts* are the same for all of them.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import (
    breadth_first_order,
    connected_components,
    maximum_flow,
    min_weight_full_bipartite_matching,
)

__all__ = ["PAIR_SCALE", "correspond_pixels", "disk_offsets", "match_edges", "outlier_weight"]

#: the reference converts distances to integers with this multiplier (``multiplier`` in Match.cc)
PAIR_SCALE: int = 100


def disk_offsets(max_dist: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Offsets ``(dy, dx)`` with ``dy² + dx² <= max_dist²`` and their integer costs ``rint(100 · distance)``.

    Returns int64 arrays ``dy, dx, w`` in raster order (dy, then dx, ascending).
    """
    r = math.ceil(max_dist)
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    dy, dx = dy.ravel(), dx.ravel()
    keep = dy * dy + dx * dx <= max_dist * max_dist
    dy, dx = dy[keep].astype(np.int64), dx[keep].astype(np.int64)
    w = np.rint(np.sqrt(dy * dy + dx * dx) * PAIR_SCALE).astype(np.int64)
    return dy, dx, w


def outlier_weight(max_dist: float, outlier_cost: float = 100.0) -> int:
    """The reference's integer cost of leaving a pixel unmatched: ``ceil(100 · outlier_cost · max_dist)``."""
    return math.ceil(outlier_cost * max_dist * PAIR_SCALE)


def _compact(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(ids, return_inverse=True)`` for non-negative ints, by marking instead of sorting."""
    if len(ids) == 0:
        return ids, ids
    mark = np.zeros(int(ids.max()) + 1, bool)
    mark[ids] = True
    uniq = np.flatnonzero(mark)
    pos = np.cumsum(mark) - 1
    return uniq, pos[ids]


def _csr(rows: np.ndarray, cols: np.ndarray, n: int, dtype: type = np.int8) -> csr_matrix:
    """``n×n`` sparse graph with unit edges ``rows -> cols``, built from counts (no COO round trip)."""
    if len(rows) > 1 and (np.diff(rows) < 0).any():
        order = np.argsort(rows, kind="stable")
        rows, cols = rows[order], cols[order]
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    return csr_matrix((np.ones(len(cols), dtype), cols.astype(np.int32), indptr.astype(np.int32)), shape=(n, n))


def _components(ei: np.ndarray, ej: np.ndarray, n1: int, n2: int) -> np.ndarray:
    """Connected-component label of every pair (graph on nodes ``[0, n1) ∪ [n1, n1 + n2)``)."""
    _, comp = connected_components(_csr(ei, ej + n1, n1 + n2), directed=False)
    return comp


def _cheapest_per_group(group: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Index of the cheapest pair of each group (first one in the given order on ties)."""
    order = np.lexsort((np.arange(len(w)), w, group))
    first = np.ones(len(order), bool)
    first[1:] = group[order[1:]] != group[order[:-1]]
    return order[first]


def match_edges(
    ei: np.ndarray,
    ej: np.ndarray,
    w: np.ndarray,
    n1: int,
    n2: int,
    ow: int,
    *,
    exact_pairs: bool = True,
    cache: dict[bytes, tuple[np.ndarray, np.ndarray]] | None = None,
    stable_ids: np.ndarray | None = None,
    warm: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-cardinality matching of least total cost of a bipartite candidate graph.

    This is the reference's optimum (unmatched nodes cost ``ow``) whenever no augmenting path is long enough to
    trade a pair for lower total distance: that needs more than ``ow / max(w)`` (about 100) consecutive pairs
    at the largest distance swapped against pairs at distance 0, which pixel boundary maps do not produce.

    Args:
        ei, ej: int ``E`` node ids of each candidate pair, ``0 <= ei < n1``, ``0 <= ej < n2`` (no duplicates).
        w: int ``E`` pair costs, each ``< ow``.
        n1, n2: number of nodes on each side.
        ow: cost of an unmatched node (only its being larger than any pair cost matters).
        exact_pairs: when False, only the *set of matched side-1 nodes* and the number of pairs are exact (what
            the boundary benchmark counts); side-2 partners may differ from the least-cost ones. Faster.
        cache: optional memo of solved sub-problems shared by calls on subgraphs of one graph with fixed node
            ids (the thresholds of one image and annotator).
        stable_ids: with ``cache``, an increasing id per side-1 node that stays the same across calls (when
            the calls number their side-1 nodes compactly); default: the node ids themselves.
        warm: optional pairs ``(i, j)`` of a matching of this graph (e.g. the previous threshold's result
            restricted to nodes still present) from which the maximum matching is grown; only speed depends on it.

    Returns:
        ``(mi, mj)``: the matched pairs (int arrays of equal length).
    """
    if len(ei) == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty
    ei = np.asarray(ei, np.int64)
    ej = np.asarray(ej, np.int64)
    w = np.asarray(w, np.int64)
    comp = _components(ei, ej, n1, n2)
    ci = comp[ei]
    size1 = np.bincount(comp[:n1], minlength=n1 + n2)
    size2 = np.bincount(comp[n1:], minlength=n1 + n2)
    simple = (size1[ci] == 1) | (size2[ci] == 1)
    out_i: list[np.ndarray] = []
    out_j: list[np.ndarray] = []
    if simple.any():
        # one node on a side: the best is that node's cheapest pair
        s = np.flatnonzero(simple)
        pick = s[_cheapest_per_group(ci[s], w[s])]
        out_i.append(ei[pick])
        out_j.append(ej[pick])
    hard = np.flatnonzero(~simple)
    if len(hard):
        stable = np.arange(n1) if stable_ids is None else np.asarray(stable_ids, np.int64)
        hi, hj = _solve_hard(ei[hard], ej[hard], w[hard], exact_pairs, cache, stable, warm)
        out_i.append(hi)
        out_j.append(hj)
    return np.concatenate(out_i), np.concatenate(out_j)


def correspond_pixels(
    pred: np.ndarray, gt: np.ndarray, max_dist: float, outlier_cost: float = 100.0
) -> tuple[np.ndarray, np.ndarray, float]:
    """Minimum-cost one-to-one correspondence between two boundary maps within ``max_dist`` pixels.

    Args:
        pred, gt: ``H×W`` boundary maps (non-zero = boundary).
        max_dist: the largest distance of a matched pair, in pixels (BSDS: ``0.0075 ×`` image diagonal).
        outlier_cost: cost of an unmatched pixel as a multiple of ``max_dist`` (the reference's 100).

    Returns:
        ``(match_pred, match_gt, cost)``: bool ``H×W`` masks of the matched pixels of each map, and the
        reference's cost: ``outlier_cost · max_dist`` per unmatched pixel plus the distance of each pair.
    """
    a = np.asarray(pred) != 0
    b = np.asarray(gt) != 0
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"correspond_pixels needs two H×W maps of one size, got {a.shape} and {b.shape}")
    h, w = a.shape
    ya, xa = np.nonzero(a)
    gid = np.full((h, w), -1, np.int64)
    gid[b] = np.arange(int(b.sum()))
    dy, dx, wt = disk_offsets(max_dist)
    yy = ya[:, None] + dy[None, :]
    xx = xa[:, None] + dx[None, :]
    inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
    j = np.where(inside, gid[np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)], -1)
    ii, kk = np.nonzero(j >= 0)
    mi, mj = match_edges(
        ii,
        j[ii, kk],
        np.broadcast_to(wt, j.shape)[ii, kk],
        len(ya),
        int(b.sum()),
        outlier_weight(max_dist, outlier_cost),
    )
    match_pred = np.zeros((h, w), bool)
    match_gt = np.zeros((h, w), bool)
    match_pred[ya[mi], xa[mi]] = True
    yb, xb = np.nonzero(b)
    match_gt[yb[mj], xb[mj]] = True
    dist = np.hypot(ya[mi] - yb[mj], xa[mi] - xb[mj]).sum()
    unmatched = (len(ya) - len(mi)) + (len(yb) - len(mj))
    return match_pred, match_gt, float(dist + unmatched * outlier_cost * max_dist)


def _max_matching(
    ia: np.ndarray, ib: np.ndarray, na: int, nb: int, start: tuple[np.ndarray, np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A maximum-cardinality matching, grown from the matching ``start`` (pairs of local ids) if given.

    Dinic's max flow on the residual network of the starting matching (source -> free ``a``, unmatched pair
    ``a -> b``, matched pair ``b -> a``, free ``b`` -> sink): each unit of flow is an augmenting path, so a good
    start leaves little to do. (scipy's Hopcroft-Karp took tens of seconds on some of these graphs.)
    Returns partner arrays ``mate_a`` (``na``, -1 = free) and ``mate_b`` (``nb``).
    """
    mate_a = np.full(na, -1, np.int64)
    mate_b = np.full(nb, -1, np.int64)
    if start is not None:
        mate_a[start[0]] = start[1]
        mate_b[start[1]] = start[0]
    s, t = na + nb, na + nb + 1
    free_pairs = mate_a[ia] != ib
    # rows in order (a-block, b-block, source) so the graph is built without sorting; every b has one edge
    rows = np.concatenate([ia[free_pairs], na + np.arange(nb), np.full(int((mate_a < 0).sum()), s)])
    cols = np.concatenate([na + ib[free_pairs], np.where(mate_b >= 0, mate_b, t), np.flatnonzero(mate_a < 0)])
    f = maximum_flow(_csr(rows, cols, t + 1, np.int32), s, t, method="dinic").flow.tocoo()
    pos = f.data > 0
    back = pos & (f.row >= na) & (f.row < na + nb) & (f.col < na)  # matched pairs given up
    fwd = pos & (f.row < na) & (f.col >= na) & (f.col < na + nb)  # new pairs
    mate_a[f.col[back]] = -1
    mate_b[f.row[back] - na] = -1
    mate_a[f.row[fwd]] = f.col[fwd] - na
    mate_b[f.col[fwd] - na] = f.row[fwd]
    return mate_a, mate_b


def _even_reachable(ia: np.ndarray, ib: np.ndarray, mate_a: np.ndarray, mate_b: np.ndarray) -> tuple:
    """Vertices reachable from the free ``a`` vertices by alternating paths: (even ``a`` set, odd ``b`` set).

    These are the ``a`` vertices left unmatched by *some* maximum matching and the ``b`` vertices matched into
    them by *every* one (the Dulmage-Mendelsohn decomposition).
    """
    na, nb = len(mate_a), len(mate_b)
    src = na + nb
    free = np.flatnonzero(mate_a < 0)
    mb = np.flatnonzero(mate_b >= 0)
    rows = np.concatenate([ia, na + mb, np.full(len(free), src)])
    cols = np.concatenate([na + ib, mate_b[mb], free])
    reach = breadth_first_order(_csr(rows, cols, src + 1), src, directed=True, return_predecessors=False)
    even_a = np.zeros(na, bool)
    odd_b = np.zeros(nb, bool)
    even_a[reach[reach < na]] = True
    rb = reach[(reach >= na) & (reach < src)] - na
    odd_b[rb] = True
    return even_a, odd_b


def _full_match(r: np.ndarray, c: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Min-cost matching that covers every vertex of ``r`` (which must admit one), by sparse LAPJV."""
    if len(r) == 0:
        return r, c
    ru, ri = _compact(r)
    cu, ci = _compact(c)
    g = csr_matrix(((w + 1).astype(np.float64), (ri, ci)), shape=(len(ru), len(cu)))
    rr, cc = min_weight_full_bipartite_matching(g)
    return ru[rr], cu[cc]


def _solve_hard(
    ei: np.ndarray,
    ej: np.ndarray,
    w: np.ndarray,
    exact_pairs: bool,
    cache: dict[bytes, tuple[np.ndarray, np.ndarray]] | None,
    stable: np.ndarray,
    warm: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-cardinality matching of least total cost, through the Dulmage-Mendelsohn decomposition.

    With one maximum matching at hand the nodes split into three parts that no maximum matching connects:
    (A) side-1 nodes that some maximum matching leaves free, with the side-2 nodes that every maximum matching
    matches into them; (B) the same with the sides swapped; (C) a core matched perfectly by every maximum
    matching. Each part is a min-cost *full* matching of one side (A: its side-2 nodes, B: its side-1 nodes,
    C: both), which sparse LAPJV solves far faster than the problem padded with outlier nodes. Which side-1
    nodes end up matched depends on the costs in part A only: B and C match all of their side-1 nodes.
    """
    rows, ia = _compact(ei)
    cols, ib = _compact(ej)
    na, nb = len(rows), len(cols)
    start = None
    if warm is not None and len(warm[0]):
        # the warm pairs whose two pixels are in this graph (then their pair is one of its candidate pairs)
        wi, wj = np.asarray(warm[0], np.int64), np.asarray(warm[1], np.int64)
        loc_a = np.full(max(int(rows[-1]), int(wi.max())) + 1, -1, np.int64)
        loc_b = np.full(max(int(cols[-1]), int(wj.max())) + 1, -1, np.int64)
        loc_a[rows] = np.arange(na)
        loc_b[cols] = np.arange(nb)
        la, lb = loc_a[wi], loc_b[wj]
        keep = (la >= 0) & (lb >= 0)
        start = (la[keep], lb[keep])
    mate_a, mate_b = _max_matching(ia, ib, na, nb, start)
    even_a, odd_b = _even_reachable(ia, ib, mate_a, mate_b)
    out_a: list[np.ndarray] = []
    out_b: list[np.ndarray] = []
    if exact_pairs:
        even_b, odd_a = _even_reachable(ib, ia, mate_b, mate_a)
        core_a, core_b = ~even_a & ~odd_a, ~even_b & ~odd_b
        for part in (odd_a[ia] & even_b[ib], core_a[ia] & core_b[ib]):
            pa, pb = _full_match(ia[part], ib[part], w[part])
            out_a.append(pa)
            out_b.append(pb)
    else:
        # B and C: any maximum matching matches exactly their side-1 nodes; keep the one at hand
        keep = (mate_a >= 0) & ~even_a
        out_a.append(np.flatnonzero(keep))
        out_b.append(mate_a[keep])
    part = even_a[ia] & odd_b[ib]
    if part.any():
        pa, pb = _solve_part_a(ia[part], ib[part], w[part], stable[rows], cols, cache)
        out_a.append(pa)
        out_b.append(pb)
    return rows[np.concatenate(out_a)], cols[np.concatenate(out_b)]


def _solve_part_a(
    ia: np.ndarray,
    ib: np.ndarray,
    w: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    cache: dict[bytes, tuple[np.ndarray, np.ndarray]] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Least-cost matching covering every side-2 node of part A, component by component.

    A component with one side-2 node takes its cheapest pair; the others go to LAPJV, once per distinct
    component: a component is defined by its pair list (in stable node ids: ``rows`` holds the stable id of
    each local side-1 node, increasing), so a later threshold that meets the same component reuses the
    solution from ``cache``.
    """
    comp = _components(ia, ib, int(ia.max()) + 1, int(ib.max()) + 1)
    ci = comp[ia]
    nb_in = np.bincount(comp[int(ia.max()) + 1 :][_compact(ib)[0]], minlength=len(comp))
    single = nb_in[ci] == 1
    out_a: list[np.ndarray] = []
    out_b: list[np.ndarray] = []
    if single.any():
        s = np.flatnonzero(single)
        pick = s[_cheapest_per_group(ci[s], w[s])]
        out_a.append(ia[pick])
        out_b.append(ib[pick])
    multi = np.flatnonzero(~single)
    if len(multi) and cache is None:
        pb, pa = _full_match(ib[multi], ia[multi], w[multi])
        out_a.append(pa)
        out_b.append(pb)
    elif len(multi):
        multi = multi[np.argsort(ci[multi], kind="stable")]
        groups = np.split(multi, np.flatnonzero(np.diff(ci[multi])) + 1)
        todo: list[np.ndarray] = []
        keys: list[bytes] = []
        for grp in groups:
            key = rows[ia[grp]].tobytes() + cols[ib[grp]].tobytes()
            hit = cache.get(key)
            if hit is None:
                todo.append(grp)
                keys.append(key)
            else:
                out_a.append(np.searchsorted(rows, hit[0]))
                out_b.append(np.searchsorted(cols, hit[1]))
        if todo:
            sel = np.concatenate(todo)
            pb, pa = _full_match(ib[sel], ia[sel], w[sel])
            out_a.append(pa)
            out_b.append(pb)
            pc = comp[pa]
            order = np.argsort(pc, kind="stable")
            pa, pb, pc = pa[order], pb[order], pc[order]
            for key, grp in zip(keys, todo):
                c = ci[grp[0]]
                lo, up = np.searchsorted(pc, c, "left"), np.searchsorted(pc, c, "right")
                cache[key] = (rows[pa[lo:up]], cols[pb[lo:up]])
    return np.concatenate(out_a), np.concatenate(out_b)
