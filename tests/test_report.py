"""curves.png's plots: the validation scores on a fixed 0..1 axis, other units apart, a marker per evaluation."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ubernet.report import COLOURS, curves, line_plot

# line_plot's frame: left 48, right width - 110, top 18, bottom height - 24
W, H = 420, 260
LEFT, RIGHT, TOP, BOTTOM = 48, W - 110, 18, H - 24


def _has_colour(img: np.ndarray, colour: tuple[int, int, int], y: int, x: int, r: int = 1) -> bool:
    patch = img[y - r : y + r + 1, x - r : x + r + 1].reshape(-1, 3)
    return bool((patch == np.array(colour, np.uint8)).all(axis=1).any())


def test_fixed_range_places_a_score_by_its_value_not_the_data_extent() -> None:
    # one point at y = 0.5 on a 0..1 axis sits halfway between the frame's bottom and top; at x = 10 of 0..10,
    # on the right edge. Without the fixed range a lone point would define the axis by itself.
    img = line_plot({"a": [(0.0, 0.5), (10.0, 0.5)]}, y_range=(0.0, 1.0), markers=True)
    y_mid = round(BOTTOM - 0.5 * (BOTTOM - TOP))
    assert _has_colour(img, COLOURS[0], y_mid, RIGHT)
    assert _has_colour(img, COLOURS[0], y_mid, LEFT)
    # nothing of the series near the bottom (where a data-extent axis of [0.5, 1.5] would have put it)
    assert not _has_colour(img, COLOURS[0], BOTTOM - 3, (LEFT + RIGHT) // 2, r=2)


def test_markers_mark_every_point() -> None:
    # three points of a line: with markers each has a 5x5 dot, i.e. coloured pixels 2 px above the line
    pts = [(0.0, 0.2), (5.0, 0.2), (10.0, 0.2)]
    y = round(BOTTOM - 0.2 * (BOTTOM - TOP))
    x_mid = round(LEFT + 0.5 * (RIGHT - LEFT))
    with_markers = line_plot({"a": pts}, y_range=(0.0, 1.0), markers=True)
    without = line_plot({"a": pts}, y_range=(0.0, 1.0))
    dot = [tuple(with_markers[y - 2, x_mid]), tuple(without[y - 2, x_mid])]
    assert dot[0] == COLOURS[0] and dot[1] != COLOURS[0]


def _model(keys: dict[str, str]) -> SimpleNamespace:
    return SimpleNamespace(tasks={t: SimpleNamespace(summary_keys=lambda k=k: (k,)) for t, k in keys.items()})


def test_curves_put_degrees_apart_from_scores() -> None:
    losses = {"loss/boundaries": [(10, 0.1), (20, 0.08)], "loss/normals": [(10, 3.0), (20, 2.5)]}
    evals = [(10, {"boundaries": {"ods": 0.5}, "normals": {"mean": 30.0}}),
             (20, {"boundaries": {"ods": 0.6}, "normals": {"mean": 28.0}})]
    both = curves(losses, evals, _model({"boundaries": "ods", "normals": "mean"}))
    scores_only = curves(losses, [(s, {"boundaries": r["boundaries"]}) for s, r in evals],
                         _model({"boundaries": "ods", "normals": "mean"}))
    pad = 4
    assert scores_only.shape[1] == 2 * (W + pad) + pad  # losses + scores
    assert both.shape[1] == 3 * (W + pad) + pad  # + the plot of other units
    # the ODS series (first series of the scores plot) at 0.6 on the fixed axis, in the second tile
    x0 = pad + (W + pad)
    y = round(BOTTOM - 0.6 * (BOTTOM - TOP)) + pad
    assert _has_colour(both, COLOURS[0], y, x0 + RIGHT)
