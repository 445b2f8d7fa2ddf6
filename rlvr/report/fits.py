"""Scaling fits of a metric against the training step.

ZeroTIR ("agent RL scaling law") reports that accuracy, response length and
tool-use frequency grow predictably with RL steps. Two forms are fitted by least squares with
numpy alone:

- logarithmic: ``y = a + b * ln(step)``, linear least squares of y on ln(step);
- power law:   ``y = a * step**b``, linear least squares of ln(y) on ln(step) (so ``a = exp(c)``),
  over the points with y > 0 only.

R² is ``1 - SS_res / SS_tot`` on y itself for both forms, so the two are comparable; for the
power law it can be below the log-log R² (the fit minimises error in log space) and even
negative. Points with step <= 0 (the eval before training) are left out, as ln(0) is undefined.
A fit needs at least 3 points at 2 or more distinct steps (two parameters plus one to judge the
fit); otherwise it is skipped with a note. Limits: no weighting, no uncertainty on the parameters, and a constant
series has no R² (reported as None).
"""

import math
from dataclasses import asdict, dataclass

import numpy as np

MIN_POINTS = 3
CONSTANT = "constant series: R² undefined"
FORMS = {"log": "y = a + b*ln(step)", "power": "y = a * step^b"}


@dataclass
class Fit:
    """One fitted form; ``a``, ``b``, ``r2`` are None when skipped (``note`` says why)."""

    run: str
    metric: str
    form: str  # "log" | "power"
    a: float | None
    b: float | None
    r2: float | None
    n: int  # points used
    note: str = ""

    @property
    def formula(self) -> str:
        return FORMS[self.form]

    def predict(self, steps: np.ndarray) -> np.ndarray:
        steps = np.asarray(steps, dtype=float)
        if self.form == "log":
            return self.a + self.b * np.log(steps)
        return self.a * steps**self.b

    def to_dict(self) -> dict:
        return {**asdict(self), "formula": self.formula}


def r_squared(y: np.ndarray, predicted: np.ndarray) -> float | None:
    total = float(np.sum((y - y.mean()) ** 2))
    if total == 0.0:
        return None
    return 1.0 - float(np.sum((y - predicted) ** 2)) / total


def fit_log(steps, values, run: str = "", metric: str = "") -> Fit:
    """``y = a + b * ln(step)`` by least squares over the points with step > 0."""
    x, y = _points(steps, values, positive_y=False)
    if _too_few_points(x):
        return Fit(run, metric, "log", None, None, None, len(x), _too_few(x, "step > 0"))
    b, a = np.polyfit(np.log(x), y, 1)
    fit = Fit(run, metric, "log", float(a), float(b), None, len(x))
    fit.r2 = r_squared(y, fit.predict(x))
    fit.note = _notes(fit, _count_finite(steps, values) - len(x), "step <= 0")
    return fit


def fit_power(steps, values, run: str = "", metric: str = "") -> Fit:
    """``y = a * step**b`` by least squares of ln(y) on ln(step) over the points with step, y > 0."""
    x, y = _points(steps, values, positive_y=True)
    if _too_few_points(x):
        return Fit(run, metric, "power", None, None, None, len(x), _too_few(x, "step > 0 and y > 0"))
    b, log_a = np.polyfit(np.log(x), np.log(y), 1)
    fit = Fit(run, metric, "power", float(math.exp(log_a)), float(b), None, len(x))
    fit.r2 = r_squared(y, fit.predict(x))
    fit.note = _notes(fit, _count_finite(steps, values) - len(x), "step <= 0 or y <= 0")
    return fit


def fit_both(steps, values, run: str = "", metric: str = "") -> list[Fit]:
    return [fit_log(steps, values, run, metric), fit_power(steps, values, run, metric)]


def _points(steps, values, positive_y: bool) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(steps, dtype=float)
    y = np.asarray(values, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0)
    if positive_y:
        keep &= y > 0
    return x[keep], y[keep]


def _notes(fit: Fit, dropped: int, where: str) -> str:
    notes = [CONSTANT] if fit.r2 is None else []
    if dropped:
        notes.append(f"{dropped} point(s) with {where} left out")
    return "; ".join(notes)


def _count_finite(steps, values) -> int:
    return int(np.sum(np.isfinite(np.asarray(steps, float)) & np.isfinite(np.asarray(values, float))))


def _too_few_points(x: np.ndarray) -> bool:
    return len(x) < MIN_POINTS or len(np.unique(x)) < 2


def _too_few(x: np.ndarray, where: str) -> str:
    distinct = len(np.unique(x))
    return f"skipped: {len(x)} point(s) at {distinct} step(s) with {where}; a fit needs {MIN_POINTS} at 2+ steps"
