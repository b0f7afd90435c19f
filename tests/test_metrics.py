"""Metrics against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from polyp_live.core.metrics import MetricAccumulator, confusion, image_metrics


def masks():
    pred = np.zeros((4, 4), bool)
    truth = np.zeros((4, 4), bool)
    pred[0, :3] = True      # 3 predicted
    truth[0, 1:] = True     # 3 true, 2 overlap
    return pred, truth


def test_confusion_counts():
    assert confusion(*masks()) == (2, 1, 1, 12)


def test_hand_computed_metrics():
    m = image_metrics(*masks())
    assert m["dice"] == pytest.approx(4 / 6)
    assert m["iou"] == pytest.approx(2 / 4)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(12 / 13)
    assert m["accuracy"] == pytest.approx(14 / 16)
    assert m["f2"] == pytest.approx(5 * (2 / 3) ** 2 / (4 * 2 / 3 + 2 / 3))


def test_empty_prediction_and_truth_is_a_perfect_score():
    z = np.zeros((3, 3), bool)
    m = image_metrics(z, z)
    assert m["dice"] == m["iou"] == m["f2"] == 1.0


def test_missed_polyp_scores_zero():
    truth = np.zeros((3, 3), bool)
    truth[1, 1] = True
    m = image_metrics(np.zeros((3, 3), bool), truth)
    assert m["dice"] == 0.0 and m["recall"] == 0.0


def test_mean_and_pooled_differ_as_they_should():
    acc = MetricAccumulator()
    big_t = np.ones((10, 10), bool)
    acc.add(big_t, big_t)                       # Dice 1 on a large polyp
    small_t = np.zeros((10, 10), bool)
    small_t[0, 0] = True
    acc.add(np.zeros((10, 10), bool), small_t)  # Dice 0 on a tiny one
    assert acc.mean()["dice"] == pytest.approx(0.5)
    assert acc.pooled()["dice"] == pytest.approx(200 / 201)


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="differ in shape"):
        confusion(np.zeros((2, 2), bool), np.zeros((3, 3), bool))
