"""Anomaly detection on daily cost series, vectorised over every series at once (numpy): the decomposition of Azure
Data Explorer's ``series_decompose_anomalies`` that the Microsoft FinOps toolkit uses, with its defaults.

Per series, on the training days (every day but the test days): the seasonal part is the median of the days of the
same weekday, the trend a least-squares line through what is left (``linefit``); expected = seasonal + trend. A test
day is abnormal when its residual (actual - expected) lies outside Tukey's fence on the training residuals' 10th-90th
percentiles (``ctukey``): above ``q90 + k (q90 - q10)`` (``up``) or below ``q10 - k (q90 - q10)`` (``down``), k = 1.5.
Small deviations are not anomalies: the impact must reach ``min_impact`` (currency units) and ``min_impact_pct`` of the
expected cost."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

#: Tukey's k of the fence (ADX's default threshold).
K = 1.5
#: A day under this share of its expected cost is low whatever the fence (series never at 0 in training).
DROP = 0.4


@dataclass(frozen=True)
class Detection:
    """Per series and day: expected cost, the band's lower and upper edges, and the flag (+1 up, -1 down, 0)."""

    expected: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    flag: np.ndarray


def fit(values: np.ndarray, weekdays: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per series: the weekday medians (series x 7) and the least-squares trend (slope, intercept) of what they leave,
    over the days that are not NaN (a series' days before its first cost)."""
    n_series, n_days = values.shape
    seasonal = np.zeros((n_series, 7))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a weekday without any day yet: its median is 0
        for wd in range(7):
            days = weekdays == wd
            if days.any():
                seasonal[:, wd] = np.nan_to_num(np.nanmedian(values[:, days], axis=1))
    rest = values - seasonal[:, weekdays]
    w = ~np.isnan(rest)
    r = np.where(w, rest, 0.0)
    t = np.broadcast_to(np.arange(n_days, dtype=float), values.shape)
    n = np.maximum(w.sum(axis=1), 1)
    t_mean = (t * w).sum(axis=1) / n
    r_mean = r.sum(axis=1) / n
    dt = (t - t_mean[:, None]) * w
    denom = (dt ** 2).sum(axis=1)
    slope = np.where(denom > 0, (dt * (r - r_mean[:, None])).sum(axis=1) / np.where(denom > 0, denom, 1), 0.0)
    return seasonal, slope, r_mean - slope * t_mean


def detect(values: np.ndarray, weekdays: np.ndarray, test_points: int, *, k: float = K, min_impact: float = 1.0,
           min_impact_pct: float = 0.1) -> Detection:
    """``values``: series x days (0 for a day without cost; NaN before a series' first day); ``weekdays``: each day's
    weekday (0-6); the last ``test_points`` days are tested against what the days before them say."""
    n_series, n_days = values.shape
    train = n_days - test_points
    if train < 7:
        raise ValueError("at least 7 training days")
    seasonal, slope, intercept = fit(values[:, :train], weekdays[:train])
    t = np.arange(n_days, dtype=float)
    expected = seasonal[:, weekdays] + intercept[:, None] + slope[:, None] * t[None, :]
    residual = values - expected
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        q10, q90 = np.nan_to_num(np.nanpercentile(residual[:, :train], [10, 90], axis=1))
    spread = q90 - q10
    hi, lo = q90 + k * spread, q10 - k * spread
    upper, lower = expected + hi[:, None], expected + lo[:, None]
    # on a noisy series the lower fence falls below zero, where no drop reaches: a series that is never 0 in training
    # is also low on a day under DROP of its expected cost
    steady = ~np.any(values[:, :train] == 0, axis=1)
    lower = np.where(steady[:, None], np.maximum(lower, DROP * expected), lower)
    impact = np.abs(np.nan_to_num(residual))
    material = (impact >= min_impact) & (impact >= min_impact_pct * np.abs(expected))
    flag = np.where(values > upper, 1, np.where(values < lower, -1, 0)) * material
    flag[:, :train] = 0
    return Detection(expected, lower, upper, flag.astype(np.int8))


@dataclass(frozen=True)
class Interval:
    """Consecutive abnormal days of one series (a one-day gap tolerated): first and last abnormal day (indexes),
    direction, and whether it is still open (fewer than ``close_after`` normal days after it)."""

    start: int
    end: int
    direction: int
    open: bool


def intervals(flags: np.ndarray, *, gap: int = 1, close_after: int = 2) -> list[Interval]:
    """The abnormal intervals of one series' flags (0 / +1 / -1 per day), oldest first."""
    out: list[Interval] = []
    start = end = None
    direction = 0
    for i, f in enumerate(flags.tolist()):  # one series of at most a few months: its days, not rows
        if f != 0 and start is not None and f == direction and i - end <= gap + 1:
            end = i
        elif f != 0:
            if start is not None:
                out.append(Interval(start, end, direction, False))
            start, end, direction = i, i, f
    if start is not None:
        out.append(Interval(start, end, direction, len(flags) - 1 - end < close_after))
    return out
