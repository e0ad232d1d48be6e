"""Captions: label sentences and spatial phrases with the documented thresholds."""

from __future__ import annotations

import numpy as np
import pytest

from output.captions import label_sentence, spatial_phrase, trajectory_summary


@pytest.mark.parametrize("label, sentence", [
    ("dog barking", "The sound of a dog barking."),
    ("ambulance siren", "The sound of an ambulance siren."),
    ("people marching", "The sound of people marching."),
    ("playing violin, fiddle", "The sound of playing violin, fiddle."),
    ("lions roaring", "The sound of lions roaring."),
    ("bus", "The sound of a bus."),
    ("rain on surface", "The sound of rain on surface."),
    ("  helicopter  ", "The sound of a helicopter."),
    ("", ""),
    (None, ""),
])
def test_label_sentence(label, sentence):
    assert label_sentence(label) == sentence


def ramp(a, b, n=80):
    return np.linspace(a, b, n)


@pytest.mark.parametrize("az, phrase", [
    (np.full(80, 40.0), "on the left"),
    (np.full(80, -40.0), "on the right"),
    (np.full(80, 10.0), "in the centre"),
    (np.full(80, 15.0), "on the left"),  # |az| < 15 is the centre
    (np.full(80, -14.9), "in the centre"),
    (ramp(60, -60), "on the left, moving to the right"),
    (ramp(-50, 50), "on the right, moving to the left"),
    (ramp(0, 40), "in the centre, moving to the left"),
    (ramp(30, 45), "on the left"),  # change 15 deg <= 20: not moving
    (np.r_[np.full(40, np.nan), np.full(40, -30.0)], "on the right"),
    (np.full(10, np.nan), ""),
    (np.zeros(0), ""),
    (None, ""),
])
def test_spatial_phrase(az, phrase):
    assert spatial_phrase(az) == phrase


def test_trajectory_summary():
    az = ramp(60, -60)
    traj = np.stack([az, np.full(80, 5.0), np.full(80, 2.0)], 1)
    s = trajectory_summary(traj, 8.0)
    assert s["frames"] == 80 and s["fps"] == 8.0
    assert s["az_start_deg"] == pytest.approx(np.median(az[:20]))
    assert s["az_end_deg"] == pytest.approx(np.median(az[-20:]))
    assert s["az_mean_deg"] == pytest.approx(0.0, abs=1e-9)
    assert (s["az_min_deg"], s["az_max_deg"]) == (-60.0, 60.0)
    assert s["el_mean_deg"] == 5.0 and s["distance_mean_m"] == 2.0
    empty = trajectory_summary(None, 8.0)
    assert empty["frames"] == 0 and empty["az_mean_deg"] is None
