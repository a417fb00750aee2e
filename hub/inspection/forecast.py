"""Month-end forecast of daily cost series (numpy): the detector's decomposition (weekday median + least-squares
trend) projected over the month's remaining days, with 80 % and 95 % intervals from the spread of the training
residuals (a sum of ``h`` days errs by about ``sigma * sqrt(h)``: a normal approximation)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from hub.inspection.detect import fit

Z80, Z95 = 1.2816, 1.9600


@dataclass(frozen=True)
class Forecast:
    """Per series: the remaining days' expected cost and the half-widths of its 80 % and 95 % intervals."""

    remaining: np.ndarray
    half80: np.ndarray
    half95: np.ndarray


def forecast(values: np.ndarray, weekdays: np.ndarray, future_weekdays: np.ndarray) -> Forecast:
    """``values``: series x past days (the last is the inspection day); ``future_weekdays``: the weekdays of the days
    left in the month (none: a forecast of 0 +- 0)."""
    n_series, n_days = values.shape
    seasonal, slope, intercept = fit(values, weekdays)
    t = np.arange(n_days, dtype=float)
    residual = values - seasonal[:, weekdays] - (intercept[:, None] + slope[:, None] * t[None, :])
    counts = (~np.isnan(residual)).sum(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sigma = np.where(counts > 1, np.nan_to_num(np.nanstd(residual, axis=1, ddof=1)), 0.0)
    h = len(future_weekdays)
    if h == 0:
        zero = np.zeros(n_series)
        return Forecast(zero, zero, zero)
    future_t = np.arange(n_days, n_days + h, dtype=float)
    path = seasonal[:, future_weekdays] + intercept[:, None] + slope[:, None] * future_t[None, :]
    remaining = np.clip(path, 0, None).sum(axis=1)  # a cost series does not go below 0
    spread = sigma * np.sqrt(h)
    return Forecast(remaining, Z80 * spread, Z95 * spread)
