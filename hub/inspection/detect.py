"""Anomaly detection on daily cost series, vectorised over every series at once (numpy): the decomposition of Azure
Data Explorer's ``series_decompose_anomalies`` that the Microsoft FinOps toolkit uses, with its defaults.

Per series, on the training days (every day but the test days): the seasonal part is the median of the days of the
same weekday, the trend a least-squares line through what is left (``linefit``); expected = seasonal + trend. A test
day is abnormal when its residual (actual - expected) lies outside Tukey's fence on the training residuals' 10th-90th
percentiles (``ctukey``): above ``q90 + k (q90 - q10)`` (``up``) or below ``q10 - k (q90 - q10)`` (``down``), k = 1.5.
Small deviations are not anomalies: the impact must reach ``min_impact`` (currency units) and ``min_impact_pct`` of the
expected cost."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Tukey's k of the fence (ADX's default threshold).
K = 1.5


@dataclass(frozen=True)
class Detection:
    """Per series and day: expected cost, the band's lower and upper edges, and the flag (+1 up, -1 down, 0)."""

    expected: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    flag: np.ndarray


def detect(values: np.ndarray, weekdays: np.ndarray, test_points: int, *, k: float = K, min_impact: float = 1.0,
           min_impact_pct: float = 0.1) -> Detection:
    """``values``: series x days (NaN-free, 0 for a day without cost); ``weekdays``: each day's weekday (0-6); the last
    ``test_points`` days are tested against what the days before them say."""
    n_series, n_days = values.shape
    train = n_days - test_points
    if train < 7:
        raise ValueError("at least 7 training days")
    x = values[:, :train]
    seasonal = np.zeros((n_series, 7))
    for wd in range(7):
        days = weekdays[:train] == wd
        if days.any():
            seasonal[:, wd] = np.median(x[:, days], axis=1)
    season = seasonal[:, weekdays]  # series x days
    rest = x - season[:, :train]
    t = np.arange(n_days, dtype=float)
    tt = t[:train]
    t_mean, r_mean = tt.mean(), rest.mean(axis=1)
    slope = ((tt - t_mean) * (rest - r_mean[:, None])).sum(axis=1) / ((tt - t_mean) ** 2).sum()
    intercept = r_mean - slope * t_mean
    expected = season + intercept[:, None] + slope[:, None] * t[None, :]
    residual = values - expected
    q10, q90 = np.percentile(residual[:, :train], [10, 90], axis=1)
    spread = q90 - q10
    hi, lo = q90 + k * spread, q10 - k * spread
    upper, lower = expected + hi[:, None], expected + lo[:, None]
    impact = np.abs(residual)
    material = (impact >= min_impact) & (impact >= min_impact_pct * np.abs(expected))
    flag = np.where(residual > hi[:, None], 1, np.where(residual < lo[:, None], -1, 0)) * material
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
