"""Scaling fits against hand-computed data."""

import math

import numpy as np
import pytest

from rlvr.report.fits import fit_log, fit_power

STEPS = list(range(1, 11))


def test_exact_log_curve_gives_its_parameters_and_r2_one():
    fit = fit_log(STEPS, [2 + 3 * math.log(s) for s in STEPS])
    assert (fit.a, fit.b, fit.r2, fit.n) == (pytest.approx(2), pytest.approx(3), pytest.approx(1), 10)
    assert fit.formula == "y = a + b*ln(step)"


def test_exact_power_law_gives_its_parameters_and_r2_one():
    fit = fit_power(STEPS, [5 * s**0.5 for s in STEPS])
    assert (fit.a, fit.b, fit.r2) == (pytest.approx(5), pytest.approx(0.5), pytest.approx(1))
    np.testing.assert_allclose(fit.predict(np.array([4.0, 16.0])), [10.0, 20.0])


def test_noisy_data_has_r2_below_one():
    noise = np.random.default_rng(0).normal(0, 0.3, len(STEPS))
    y = [2 + 3 * math.log(s) + e for s, e in zip(STEPS, noise, strict=True)]
    log_fit, power_fit = fit_log(STEPS, y), fit_power(STEPS, y)
    assert 0.8 < log_fit.r2 < 1 and power_fit.r2 < 1
    assert log_fit.b == pytest.approx(3, abs=0.5)


def test_too_few_points_are_skipped_with_a_note():
    fit = fit_log([1, 2], [0.1, 0.2])
    assert (fit.a, fit.b, fit.r2, fit.n) == (None, None, None, 2)
    assert fit.note.startswith("skipped: 2 point(s)")
    assert fit_log([3, 3, 3], [0.1, 0.2, 0.3]).a is None  # one distinct step: no slope to fit


def test_step_zero_and_non_positive_values_are_left_out():
    steps, y = [0, 1, 2, 4, 8], [0.0, 0.0, 1.0, 2.0, 3.0]  # y = log2(step) except the eval at step 0
    log_fit = fit_log(steps, y)
    assert log_fit.n == 4 and log_fit.b == pytest.approx(1 / math.log(2))
    assert log_fit.note == "1 point(s) with step <= 0 left out"
    power_fit = fit_power(steps, y)
    assert power_fit.n == 3 and "2 point(s)" in power_fit.note
    assert fit_power([1, 2, 3, 4], [0.0, 0.0, 0.5, 0.0]).note.startswith("skipped: 1 point(s)")


def test_constant_series_has_no_r2():
    fit = fit_log(STEPS, [0.5] * len(STEPS))
    assert fit.b == pytest.approx(0, abs=1e-12) and fit.r2 is None
    assert fit.note == "constant series: R² undefined"
