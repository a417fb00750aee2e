"""Month-end forecast of daily cost series (numpy): the recent weekly pattern projected over the month's remaining
days: each weekday's median over the last 28 days, shifted by the mean deviation of the last 7 days from it, a
single one beyond 3 robust sigmas (and 1 % of the typical day) clipped (the current level, which one spike does not
move and a change of level does; a 90-day trend line follows old levels). The 80 % and 95 % intervals
come from the spread ``sigma`` of the recent residuals, widened as ``sigma * h ** 0.9`` over ``h`` days left: a level
error persists for the rest of the month, so the days' errors are not independent (``sqrt(h)`` covered 41 % instead
of 80 % in bench/inspection.py; ``h`` covers slightly too much)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

Z80, Z95 = 1.2816, 1.9600
#: Days the weekly pattern is read from, days the current level is read from, the widening exponent of the interval.
RECENT, LEVEL, WIDEN = 28, 7, 0.9
#: Robust sigmas (1.4826 x the median absolute deviation) beyond which a single day's deviation is clipped.
CLIP = 3.0
#: ... and never less than this share of the series' typical daily cost: on a flat series (a fixed-price VM) the
#: deviation is 0, and a day a cent off would otherwise count as a second spike (a change of level, taken whole).
MATERIAL = 0.01


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
    recent = values[:, -RECENT:]
    recent_weekdays = weekdays[-RECENT:]
    seasonal = np.zeros((n_series, 7))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a weekday without a day yet: 0
        for wd in range(7):
            days = recent_weekdays == wd
            if days.any():
                seasonal[:, wd] = np.nan_to_num(np.nanmedian(recent[:, days], axis=1))
        residual = recent - seasonal[:, recent_weekdays]
        last = residual[:, -LEVEL:]
        center = np.nanmedian(last, axis=1)[:, None]
        spread = CLIP * 1.4826 * np.nanmedian(np.abs(last - center), axis=1)[:, None]  # robust sigma (MAD)
        typical = np.nan_to_num(np.nanmedian(np.abs(recent), axis=1))[:, None]
        outside = (np.abs(last - center) > np.maximum(spread, MATERIAL * typical)).sum(axis=1)
        # the mean of the last days' deviations; a single one beyond 3 robust sigmas of their median (a spike, an
        # anomaly already over) clipped first, so it does not lift the rest of the month; two or more are a change
        # of level, taken as they are
        clipped = np.where((outside <= 1)[:, None], np.clip(last, center - spread, center + spread), last)
        level = np.nan_to_num(np.nanmean(clipped, axis=1))
        counts = (~np.isnan(residual)).sum(axis=1)
        sigma = np.where(counts > 1, np.nan_to_num(np.nanstd(residual, axis=1, ddof=1)), 0.0)
    h = len(future_weekdays)
    if h == 0:
        zero = np.zeros(n_series)
        return Forecast(zero, zero, zero)
    path = seasonal[:, future_weekdays] + level[:, None]
    # a cost series does not go below 0; one with a negative day in its recent days (credits) may
    credits = np.nan_to_num(np.nanmin(recent, axis=1), nan=0.0) < 0 if recent.size else np.zeros(n_series, bool)
    remaining = np.where(credits, path.sum(axis=1), np.clip(path, 0, None).sum(axis=1))
    spread = sigma * h ** WIDEN
    return Forecast(remaining, Z80 * spread, Z95 * spread)
