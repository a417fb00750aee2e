"""Anomaly detection on daily cost series, vectorised over every series at once (numpy).

A cost's noise is multiplicative and most anomalies last (a resource added or removed stays so), so each series is
modelled in log space and its test days (the last ``test_points``) are tested one by one and pooled: a lasting change
adds up over its days where one day of it hides in the noise.

Per series, on the training days (every day but the test days; days without cost left out), ``n`` of them:

- ``y`` = log cost minus the weekday effect (per weekday, the median of the log cost minus its centred 7-day mean,
  the effects centred on 0);
- level: least squares of ``y`` on a line plus, where it pays, a step: at the day where a step (with at least 7 days
  with cost before it and 2 from it on) cuts the squared error most, kept when the cut is at least ``STEP`` (16)
  sigma^2, sigma from the day-to-day differences of ``y``; fitted again (``ROUNDS`` in all) with the residuals
  clipped to 2.5 robust standard deviations and the days beyond ``FAR`` (5) left out (past spikes, even on the last
  training days, do not bend the line);
- scale ``s``: the residuals' 10th-90th percentile range / 2.563 (a standard deviation), times ``1 + 15 / n``.

expected = exp(weekday effect + level), the typical cost of the day. A test day's ``z`` = (log actual - log expected)
/ ``s``; a day without cost (or negative) is ``z`` = -10 on a steady series (a cost on each training day). With ``v``
the variance of the fitted level (least squares, in ``s^2`` units) and ``c = 1 + 11 / n`` (the weekday effects' error):

- one day: a test day is abnormal when ``|z| / sqrt(c + v)`` >= ``z_day`` (3.25); the band is expected x
  exp(-+ ``z_day`` ``s`` sqrt(c + v));
- shift: for each test day ``j``, the mean of the ``z`` (each clipped to +-3) of the ``m`` test days with a value
  from ``j`` to the last, over its standard error ``sqrt(c / m + v)`` (``v`` at the tail's mean day); the tail of at
  least 2 such days of the largest magnitude, when it reaches ``z_shift`` (3.0), makes its days with a value abnormal,
  in its direction (a day's own one-day flag first). The days the one-day test flagged are left out of the tails when
  the days after the last of them are back near the level (mean clipped one-day statistic in its direction under
  ``BACK``, 1): a spike's normal days after it are not taken for a lasting change, while a change whose first day
  was flagged and whose next days are milder keeps pooling it.

When a step was fitted, each statistic is also computed without it and the smaller magnitude is used (0 when the
signs differ): a change just before the test days is not taken for one inside them, nor a spike at the end of the
training days for a step; the expected cost and band are those without the step when the last training day and the
test days lie closer to them (the spike is over). Small deviations are not anomalies: the impact of the day (one day)
or the mean impact of the tail's days (shift, same sign as the statistic) must reach ``min_impact`` (currency units)
and ``min_impact_pct`` of the expected cost.

A series with a day without cost in training (intermittent) is modelled so on its days with cost when it has at least
``MIN_DAYS`` (21) of them. Its test days (and those of any series the log model cannot fit) are also tested, first, on
the additive decomposition of Azure Data Explorer's ``series_decompose_anomalies`` (seasonal = weekday medians, trend =
least-squares line): a day is abnormal outside Tukey's fence ``q90 + k (q90 - q10)`` / ``q10 - k (q90 - q10)`` of the
training residuals (k = 1.5), with the same materiality; that decomposition also gives the expected cost and band of a
series too sparse for the log model."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: Tukey's k of the additive fence (ADX's default threshold), for series with days without cost.
K = 1.5
#: Thresholds of the one-day test and of the shift test (pooled standard scores).
Z_DAY = 3.25
Z_SHIFT = 3.0
#: A step in the training days is fitted when it cuts the squared error by this many sigma^2.
STEP = 16.0
#: Days with cost an intermittent series needs in training for the log model.
MIN_DAYS = 21
#: The mean z (in the flagged days' direction) under which the days after a series' last flagged test day are back
#: near its level: its flagged days were a spike, left out of the tails.
BACK = 1.0
#: Rounds of the robust level fit, and the residual (robust standard deviations) beyond which a training day is left out
#: of it (a spike): closer ones are clipped to 2.5.
ROUNDS, FAR = 6, 5.0
_CLIP, _ZERO, _NZ90 = 3.0, -10.0, 1.2815515655446004  # z clip when pooled; z of a day without cost; N(0,1)'s q90
_SMALL, _WEEK = 15.0, 11.0  # the scale's small-sample factor 1 + _SMALL / n; c = 1 + _WEEK / n


@dataclass(frozen=True)
class Detection:
    """Per series and day: expected cost, the one-day band's lower and upper edges, and the flag (+1 up, -1 down, 0)."""

    expected: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    flag: np.ndarray


#: Training days of a weekday needed before the additive model gives it an effect of its own (a median of 3 days is
#: not moved by one day without cost).
WEEKDAY_DAYS = 3


def fit(values: np.ndarray, weekdays: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per series: the weekday medians (series x 7) and the least-squares trend (slope, intercept) of what they leave,
    over the days that are not NaN (a series' days before its first cost)."""
    n_series, n_days = values.shape
    seasonal = np.zeros((n_series, 7))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a weekday without any day yet: its median is 0
        overall = np.nan_to_num(np.nanmedian(values, axis=1))
        for wd in range(7):
            days = weekdays == wd
            if days.any():
                # a weekday seen fewer than WEEKDAY_DAYS times has no effect of its own: the series' median (one day
                # without cost would be that weekday's expected cost, and its next ordinary cost an anomaly)
                seen = (~np.isnan(values[:, days])).sum(axis=1)
                own = np.nan_to_num(np.nanmedian(values[:, days], axis=1))
                seasonal[:, wd] = np.where(seen >= WEEKDAY_DAYS, own, overall)
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


def _quantiles(x: np.ndarray, *qs: float) -> list[np.ndarray]:
    """Per row, the ``qs`` quantiles (linear interpolation) of the values that are not NaN; NaN for a row without any."""
    s = np.sort(x, axis=1)  # NaN last
    n = (~np.isnan(x)).sum(axis=1)
    rows, top = np.arange(len(x)), np.maximum(n - 1, 0)
    out = []
    for q in qs:
        pos = q * top
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, top)
        out.append(np.where(n > 0, s[rows, lo] + (pos - lo) * (s[rows, hi] - s[rows, lo]), np.nan))
    return out


def _spread(x: np.ndarray) -> np.ndarray:
    """Per row, a robust standard deviation: the 10th-90th percentile range / 2.563."""
    q10, q90 = _quantiles(x, 0.1, 0.9)
    return (q90 - q10) / (2 * _NZ90)


def _tails(x: np.ndarray) -> np.ndarray:
    """Per row, the sums from each column to the last."""
    return np.cumsum(x[:, ::-1], axis=1)[:, ::-1]


def _weekday_effect(y: np.ndarray, weekdays: np.ndarray) -> np.ndarray:
    """Per series x weekday: the median of ``y`` (training days) minus its centred 7-day mean (a full week of which at
    least 4 days have a value), centred on 0."""
    w = ~np.isnan(y)
    sums = np.pad(np.cumsum(np.where(w, y, 0.0), axis=1), ((0, 0), (1, 0)))
    counts = np.pad(np.cumsum(w, axis=1), ((0, 0), (1, 0)))
    n = counts[:, 7:] - counts[:, :-7]
    mean = np.full(y.shape, np.nan)
    mean[:, 3:-3] = np.where(n >= 4, (sums[:, 7:] - sums[:, :-7]) / np.maximum(n, 1), np.nan)
    effect = np.zeros((len(y), 7))
    for wd in range(7):
        if (weekdays == wd).any():
            effect[:, wd] = np.nan_to_num(_quantiles((y - mean)[:, weekdays == wd], 0.5)[0])
    return effect - effect.mean(axis=1, keepdims=True)


def _step(y: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per series: the training day where a step added to the line cuts the squared error of ``y`` most (at least 7
    days before it and 2 from it on), and whether the cut reaches ``STEP`` sigma^2 (sigma from day-to-day differences)."""
    w = ~np.isnan(y)
    yz, tz = np.where(w, y, 0.0), w * t
    n, st, stt, sy, sty = w.sum(1), tz.sum(1), (tz * t).sum(1), yz.sum(1), (tz * yz).sum(1)
    s1, st1, sy1 = (_tails(a) for a in (w.astype(float), tz, yz))  # sums from each day on: the step's products
    det = (n * stt - st ** 2)[:, None]

    def through(u1: np.ndarray, u2: np.ndarray, v1: np.ndarray, v2: np.ndarray) -> np.ndarray:
        """[u1 u2] M^-1 [v1 v2]', M the normal matrix of the line."""
        return (u1 * (stt[:, None] * v1 - st[:, None] * v2) + u2 * (n[:, None] * v2 - st[:, None] * v1)) / det

    ss = s1 - through(s1, st1, s1, st1)  # the step's squared residual on the line
    sy_ = sy1 - through(s1, st1, sy[:, None], sty[:, None])
    sigma = np.maximum(_spread(np.diff(y, axis=1)) / np.sqrt(2), 1e-3)
    cut = np.where((s1 >= 2) & (n[:, None] - s1 >= 7) & (ss > 1e-9), sy_ ** 2 / np.where(ss > 1e-9, ss, 1), 0.0)
    cut = np.nan_to_num(cut / sigma[:, None] ** 2)
    tau = np.argmax(cut, axis=1)
    return tau, cut[np.arange(len(tau)), tau] >= STEP


def _design(t: np.ndarray, step: np.ndarray, use: np.ndarray) -> np.ndarray:
    """Series x days x [1, t, step] (the step only where ``use``)."""
    return np.stack([np.ones(step.shape), np.broadcast_to(t, step.shape), step & use[:, None]], axis=-1)


def _scores(y: np.ndarray, t: np.ndarray, train: int, step: np.ndarray, use: np.ndarray, lost: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """The log-space level (a line, plus the step where ``use``) fitted on the training days: the level and the band's
    half-width in log units (every day), the one-day statistics (test days; ``lost``: a steady series' test days
    without cost; NaN where a test day has no value) and the tail statistics as a function of the test days they leave
    out."""
    x = _design(t, step, use)
    fit_y = y[:, :train]
    for _ in range(ROUNDS):  # least squares, then again with the residuals clipped, a spike's days left out
        xt = np.where(np.isnan(fit_y)[..., None], 0.0, x[:, :train])
        inv = np.linalg.pinv(xt.transpose(0, 2, 1) @ xt)
        beta = (inv @ np.einsum("ntk,nt->nk", xt, np.nan_to_num(fit_y))[..., None])[..., 0]
        level = (x @ beta[..., None])[..., 0]
        r = y[:, :train] - level[:, :train]
        sd = np.maximum(_spread(r), 1e-3)[:, None]  # a noiseless series: its days all kept
        fit_y = np.where(np.abs(r) > FAR * sd, np.nan, np.clip(r, -2.5 * sd, 2.5 * sd) + level[:, :train])
    n = (~np.isnan(y[:, :train])).sum(axis=1)
    scale = np.maximum(_spread(y[:, :train] - level[:, :train]), 1e-3) * (1 + _SMALL / n)
    c = (1 + _WEEK / n)[:, None]  # the weekday effects' error
    v = ((x @ inv) * x).sum(axis=-1)  # the fitted level's variance, in scale^2 units
    z = np.where(lost, _ZERO, (y - level)[:, train:] / scale[:, None])

    def tails(skip: np.ndarray) -> np.ndarray:
        """Per test day, the pooled statistic of the days from it to the last, ``skip`` days left out."""
        valid = ~np.isnan(z) & ~skip
        m = np.maximum(_tails(valid.astype(float)), 1)
        xm = _tails(np.where(valid[..., None], x[:, train:], 0.0)) / m[..., None]  # mean regressors of each tail
        vm = ((xm @ inv) * xm).sum(axis=-1)
        tail = _tails(np.clip(np.where(valid, z, 0.0), -_CLIP, _CLIP)) / m / np.sqrt(c / m + vm)
        return np.where(_tails(valid.astype(float)) >= 2, tail, 0.0)
    return level, scale[:, None] * np.sqrt(c + v), z / np.sqrt(c + v[:, train:]), tails


def _weaker(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The statistic of smaller magnitude where ``a`` and ``b`` agree in sign, else 0."""
    return np.where(np.sign(a) == np.sign(b), np.sign(a) * np.minimum(np.abs(a), np.abs(b)), 0.0)


def detect(values: np.ndarray, weekdays: np.ndarray, test_points: int, *, k: float = K, min_impact: float = 1.0,
           min_impact_pct: float = 0.1, z_day: float = Z_DAY, z_shift: float = Z_SHIFT) -> Detection:
    """``values``: series x days (0 for a day without cost; NaN before a series' first day); ``weekdays``: each day's
    weekday (0-6); the last ``test_points`` days are tested against the days before them (the module's docstring)."""
    n_series, n_days = values.shape
    train = n_days - test_points
    if train < 7:
        raise ValueError("at least 7 training days")
    t = np.arange(n_days, dtype=float)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        # the additive decomposition and Tukey's fence (series with days without cost)
        seasonal, slope, intercept = fit(values[:, :train], weekdays[:train])
        expected = seasonal[:, weekdays] + intercept[:, None] + slope[:, None] * t[None, :]
        residual = values - expected
        q10, q90 = (np.nan_to_num(q) for q in _quantiles(residual[:, :train], 0.1, 0.9))
        upper, lower = expected + (q90 + k * (q90 - q10))[:, None], expected + (q10 - k * (q90 - q10))[:, None]
        impact = np.abs(np.nan_to_num(residual))
        material = (impact >= min_impact) & (impact >= min_impact_pct * np.abs(expected))
        tukey = (np.where(values > upper, 1, np.where(values < lower, -1, 0)) * material)[:, train:]
        # the log-space model
        days = np.sum(values[:, :train] > 0, axis=1)
        steady = (days >= 7) & ~np.any(values[:, :train] <= 0, axis=1)
        logged = steady | (days >= MIN_DAYS)
        y = np.log(np.where(values > 0, values, np.nan))
        effect = _weekday_effect(y[:, :train], weekdays[:train])
        y -= effect[:, weekdays]
        tau, use = _step(y[:, :train], t[:train])
        step = t[None, :] >= tau[:, None]
        lost = (values[:, train:] <= 0) & steady[:, None]
        level, half, day, tails = _scores(y, t, train, step, use, lost)
        back = np.zeros(int(use.sum()), bool)
        if use.any():  # the statistics must hold without the step too
            level0, half0, day0, tails0 = _scores(y[use], t, train, step[use], np.zeros(use.sum(), bool), lost[use])
            # a spike on the last training days is no step when the days since are closer to the level without it:
            # that model alone then (a change after the spike is one against the level without it)
            recent = y[use, train - 1:]
            back = (np.nanmean(np.abs(recent - level0[:, train - 1:]), axis=1)
                    < np.nanmean(np.abs(recent - level[use, train - 1:]), axis=1))
            day[use] = np.where(back[:, None], day0, _weaker(day[use], day0))
            rows = np.flatnonzero(use)[back]
            level[rows], half[rows] = level0[back], half0[back]
        typical = np.exp(effect[:, weekdays] + level)
        logged &= np.isfinite(typical).all(axis=1) & np.isfinite(half).all(axis=1)
        expected = np.where(logged[:, None], typical, expected)
        lower = np.where(logged[:, None], typical * np.exp(-z_day * half), lower)
        upper = np.where(logged[:, None], typical * np.exp(z_day * half), upper)
        # materiality: a day's impact, or the mean impact of a tail's days
        tested = ~np.isnan(day)
        impact = np.where(tested, values[:, train:] - expected[:, train:], 0.0)
        base = np.where(tested, expected[:, train:], 0.0)
        material = (np.abs(impact) >= min_impact) & (np.abs(impact) >= min_impact_pct * base)
        one = np.where(logged[:, None] & material & (np.abs(np.nan_to_num(day)) >= z_day), np.sign(np.nan_to_num(day)), 0)
        # the normal days after a spike are not its lasting change: when the days after the last flagged day are back
        # near the level (their mean z, each clipped to +-3, in its direction under ``BACK``), the tails pool the days
        # the one-day test leaves; otherwise (a change going on) every day, a flagged one clipped to +-3
        cols = np.arange(test_points)[None, :]
        last = np.where((one != 0).any(axis=1), test_points - 1 - np.argmax((one != 0)[:, ::-1], axis=1), -1)
        after = tested & (one == 0) & (cols > last[:, None])
        sign = np.take_along_axis(one, np.maximum(last, 0)[:, None], axis=1)[:, 0]
        level_after = (np.where(after, np.clip(np.nan_to_num(day), -_CLIP, _CLIP), 0.0).sum(axis=1)
                       / np.maximum(after.sum(axis=1), 1) * sign)
        over = (last >= 0) & after.any(axis=1) & (level_after < BACK)
        pooled_days = tested & ~(over[:, None] & (one != 0))
        tail = tails(~pooled_days)
        if use.any():
            alone = tails0(~pooled_days[use])
            tail[use] = np.where(back[:, None], alone, _weaker(tail[use], alone))
        m = np.maximum(_tails(pooled_days.astype(float)), 1)
        mean_impact = _tails(np.where(pooled_days, impact, 0.0)) / m
        mean_base = _tails(np.where(pooled_days, base, 0.0)) / m
        pooled = ((np.abs(mean_impact) >= min_impact) & (np.abs(mean_impact) >= min_impact_pct * mean_base)
                  & (np.sign(mean_impact) == np.sign(tail)))
    tail = np.where(logged[:, None] & pooled & np.isfinite(tail), tail, 0.0)
    start = np.argmax(np.abs(tail), axis=1)
    best = tail[np.arange(n_series), start]
    run = (np.abs(best) >= z_shift)[:, None] & (np.arange(test_points)[None, :] >= start[:, None]) & tested
    log_flag = np.where(one != 0, one, np.where(run, np.sign(best)[:, None], 0))
    flag = np.zeros((n_series, n_days), dtype=np.int8)
    flag[:, train:] = np.where((steady & logged)[:, None] | (tukey == 0), log_flag, tukey)
    return Detection(expected, lower, upper, flag)


@dataclass(frozen=True)
class Interval:
    """Abnormal days of one series in one direction, consecutive but for one-day gaps (a day of the other direction
    inside counts as one): first and last abnormal day (indexes), direction, and whether it is still open (fewer than
    ``close_after`` days after it that are not of its direction)."""

    start: int
    end: int
    direction: int
    open: bool


def intervals(flags: np.ndarray, *, gap: int = 1, close_after: int = 2, idle: np.ndarray | None = None) -> list[Interval]:
    """The abnormal intervals of one series' flags (0 / +1 / -1 per day), oldest first (by first day). ``idle``: the
    days without cost: inside or after a ``down`` interval they neither end nor split it (a stopped resource's
    weekends, where a zero is the usual cost, are no return to normal)."""
    values = flags.tolist()  # one series of at most a few months: its days, not rows
    quiet = [False] * len(values) if idle is None else [bool(x) for x in idle.tolist()]
    out: list[Interval] = []
    for direction in (1, -1):
        days = [i for i, f in enumerate(values) if f == direction]
        runs: list[list[int]] = []
        for i in days:
            bridged = direction < 0 and runs and all(quiet[runs[-1][1] + 1:i])
            if runs and (i - runs[-1][1] <= gap + 1 or bridged):
                runs[-1][1] = i
            else:
                runs.append([i, i])
        for start, end in runs:
            after = sum(1 for j in range(end + 1, len(values)) if values[j] != direction and not (direction < 0 and quiet[j]))
            out.append(Interval(start, end, direction, after < close_after))
    return sorted(out, key=lambda iv: (iv.start, -iv.direction))
