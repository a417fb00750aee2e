"""Seeded generator of daily FOCUS-like cost series with labelled anomalies, for ``bench/inspection.py``.

:func:`generate` makes ``n`` daily ``EffectiveCost`` series (numpy, vectorised over the series), each the usage-based
cost of one sub-account:

- a level (lognormal, median 20 a day), a weekly shape (60 % of the series dip 5-45 % at weekends), a trend
  (N(0, 0.3 %) a day, compounding), multiplicative lognormal noise (sigma 2-25 % a series);
- intermittent series (10 %: 40 % of their days without cost), young series (10 %: the first cost 1 to
  ``days - 2 test_days - 15`` days in; NaN before it, as the hub reads a series without rows);
- unlabelled incidents in the history (30 %: a 1-3-day spike x1.5-3 or a persisting step x0.5-2, before the last
  ``2 test_days`` days, or anywhere with ``incidents_anywhere``): the history is not clean, as in a real bill;
- month-start recurring fees (20 %: 2-10x the level on the 1st of each month), kept apart in :attr:`Series.fees`:
  the hub inspects usage-based series only (``ChargeFrequency = 'Usage-Based'``); :meth:`Series.unsplit` adds them
  back, the series a detector sees when charges are not split;
- labelled anomalies (``anomaly_share`` of the series, one each, starting in the label window: by default the last
  ``test_days`` days): ``spike`` (1-2 days, +30 % to +300 % of the clean level, log-uniform), ``shift_up`` and
  ``new_resource`` (the same excess, persisting to the last day; a new resource is a new instance in the breakdown),
  ``shift_down`` and ``removed_resource`` (-30 % to -90 % of the day's cost, persisting). Labels are (series, first
  abnormal day, last abnormal day, injected excess per day: :attr:`Series.excess`, signed).

:func:`breakdown` splits chosen series into products (``ServiceName``) and instances (``ResourceId``) so root-cause
ranking can be scored: every instance has its own share and daily noise, the sum over the instances is the series;
a labelled anomaly's excess sits on 1-3 culprit instances of one product (an up anomaly adds to them, or to 1-2 new
instances for ``new_resource``; a down anomaly takes it from instances holding a fixed share of the series, all of it
for ``removed_resource``), so the culprits, their product and each culprit's excess are known.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KINDS = ("spike", "shift_up", "new_resource", "shift_down", "removed_resource")
#: How often each kind is drawn for a labelled series.
KIND_WEIGHTS = (0.30, 0.20, 0.20, 0.15, 0.15)
UP = {"spike", "shift_up", "new_resource"}
PRODUCTS = ("Virtual Machines", "Storage", "Azure SQL Database", "Azure Kubernetes Service", "Bandwidth", "Azure Monitor",
            "Azure Cosmos DB", "Azure App Service", "Azure Functions", "Load Balancer", "Azure Cache for Redis",
            "Azure Data Factory", "Key Vault", "Azure OpenAI", "Azure Databricks", "Event Hubs", "Azure Backup",
            "Azure DNS", "Container Registry", "Azure Firewall")
REGIONS = ("westeurope", "northeurope", "eastus", "westus2")


@dataclass
class Series:
    """``n`` daily series from ``start``; arrays are series x days unless said otherwise."""

    start: np.datetime64
    usage: np.ndarray  # usage-based cost, labelled anomalies included; NaN before a series' first day
    fees: np.ndarray  # recurring month-start fees (0 where none)
    base: np.ndarray  # usage-based cost without the labelled anomaly (unlabelled incidents included)
    clean: np.ndarray  # level x weekly shape x trend (x a persisting incident step): the normal cost, without noise
    excess: np.ndarray  # the labelled anomaly's injected excess per day (signed; 0 outside its window)
    first: np.ndarray  # per series: index of the first day with data
    kind: np.ndarray  # per series: index into KINDS, -1 for a clean series
    label_start: np.ndarray  # per series: first abnormal day (-1 when clean)
    label_end: np.ndarray  # per series: last abnormal day (-1 when clean)
    magnitude: np.ndarray  # per series: + share of the clean level (up) or - share of the day's cost (down)
    intermittent: np.ndarray  # per series, bool
    has_fee: np.ndarray  # per series, bool
    incident: np.ndarray  # per series, bool: an unlabelled incident in the history
    sigma: np.ndarray  # per series: the noise's sigma
    seed: int

    @property
    def n(self) -> int:
        return self.usage.shape[0]

    @property
    def days(self) -> int:
        return self.usage.shape[1]

    @property
    def dates(self) -> np.ndarray:
        return self.start + np.arange(self.days)

    @property
    def weekdays(self) -> np.ndarray:
        """Each day's weekday, Monday 0 (1970-01-01 was a Thursday)."""
        return ((self.dates.astype("datetime64[D]").astype(np.int64) + 3) % 7).astype(int)

    @property
    def labelled(self) -> np.ndarray:
        return self.kind >= 0

    @property
    def up(self) -> np.ndarray:
        """Per series: +1 for an up anomaly, -1 for a down one, 0 when clean."""
        return np.where(self.kind < 0, 0, np.where(self.kind < 3, 1, -1))

    def unsplit(self) -> np.ndarray:
        """Usage-based cost plus the recurring fees: what a detector sees without the ``ChargeFrequency`` split."""
        return self.usage + self.fees


def _between(t: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """series x days: lo[i] <= t <= hi[i]."""
    return (t[None, :] >= lo[:, None]) & (t[None, :] <= hi[:, None])


def generate(n: int, days: int = 90, *, start: str = "2025-12-05", seed: int = 0, test_days: int = 7,
             anomaly_share: float = 0.5, fee_share: float = 0.2, intermittent_share: float = 0.1,
             incident_share: float = 0.3, young_share: float = 0.1, label_window: tuple[int, int] | None = None,
             incidents_anywhere: bool = False, kind_weights: tuple[float, ...] = KIND_WEIGHTS,
             uniform_magnitudes: bool = False) -> Series:
    """``n`` series x ``days`` days from ``start``. Labelled anomalies start in ``label_window`` (first and last day
    index, default the last ``test_days`` days) and at least 21 days after the series' first day. Up magnitudes are
    log-uniform over +30 % to +300 % (a bill's anomalies: many small, a few large), or uniform with
    ``uniform_magnitudes`` (INSPECTION.md §7.1's setup, with ``kind_weights=(0.5, 0.5, 0, 0, 0)``)."""
    rng = np.random.default_rng(seed)
    t = np.arange(days)
    day0 = np.datetime64(start, "D")
    dates = day0 + t
    weekdays = (dates.astype(np.int64) + 3) % 7
    month_start = dates.astype("datetime64[M]").astype("datetime64[D]") == dates
    history_end = days - 2 * test_days  # unlabelled incidents and young starts stay before the detector's test days

    level = np.exp(rng.normal(np.log(20.0), 1.2, n))
    weekly = np.ones((n, 7))
    dips = rng.random(n) < 0.6
    weekly[dips, 5:] = (1 - rng.uniform(0.05, 0.45, dips.sum()))[:, None]
    slope = rng.normal(0, 0.003, n)
    clean = level[:, None] * weekly[:, weekdays] * np.exp(slope[:, None] * (t - (days - 1))[None, :])
    sigma = rng.uniform(0.02, 0.25, n)
    noise = np.exp(rng.standard_normal((n, days)) * sigma[:, None] - sigma[:, None] ** 2 / 2)
    intermittent = rng.random(n) < intermittent_share
    noise[intermittent[:, None] & (rng.random((n, days)) < 0.4)] = 0.0

    first = np.zeros(n, dtype=int)
    young = rng.random(n) < young_share
    first[young] = rng.integers(1, max(2, history_end - 15), young.sum())

    incident = rng.random(n) < incident_share
    last_incident = days - 1 if incidents_anywhere else history_end - 1
    at = rng.integers(np.minimum(first + 7, last_incident), last_incident + 1)
    spike = rng.random(n) < 0.5
    length = np.where(spike, rng.integers(1, 4, n), days)
    factor = np.where(spike, rng.uniform(1.5, 3.0, n), rng.uniform(0.5, 2.0, n))
    hit = incident[:, None] & _between(t, at, at + length - 1)
    clean = np.where(hit & ~spike[:, None], clean * factor[:, None], clean)  # a persisting step: the new normal
    base = clean * noise * np.where(hit & spike[:, None], factor[:, None], 1.0)

    has_fee = rng.random(n) < fee_share
    fee = rng.uniform(2, 10, n) * level
    fees = np.where(has_fee[:, None] & month_start[None, :] & (t[None, :] >= first[:, None]), fee[:, None], 0.0)

    lo, hi = label_window if label_window is not None else (days - test_days, days - 1)
    labelled = rng.random(n) < anomaly_share
    kind = np.where(labelled, rng.choice(len(KINDS), n, p=np.asarray(kind_weights) / sum(kind_weights)), -1)
    s = rng.integers(np.minimum(np.maximum(lo, first + 21), hi), hi + 1)
    e = np.where(kind == 0, np.minimum(s + rng.integers(0, 2, n), days - 1), days - 1)
    up = (kind >= 0) & (kind < 3)
    size = rng.uniform(0.3, 3.0, n) if uniform_magnitudes else np.exp(rng.uniform(np.log(0.3), np.log(3.0), n))
    magnitude = np.where(up, size, -rng.uniform(0.3, 0.9, n))
    magnitude[kind < 0] = 0.0
    span = labelled[:, None] & _between(t, s, e)
    wobble = np.exp(rng.normal(0, 0.1, (n, days)))  # an up excess has a little noise of its own
    excess = np.where(span & up[:, None], magnitude[:, None] * clean * wobble, 0.0)
    excess = np.where(span & ~up[:, None], magnitude[:, None] * base, excess)
    void = labelled & (np.abs(excess).sum(axis=1) == 0)  # a drop on days without cost (intermittent): nothing to find
    kind[void], labelled[void], magnitude[void] = -1, False, 0.0
    usage = base + excess
    before = t[None, :] < first[:, None]
    for a in (usage, base, clean):
        a[before] = np.nan
    return Series(day0, usage, fees, base, clean, excess, first, kind, np.where(labelled, s, -1), np.where(labelled, e, -1),
                  magnitude, intermittent, has_fee, incident, sigma, seed)


@dataclass
class Breakdown:
    """Rows (one per instance and day with cost) of chosen series, and per labelled series its culprits."""

    series: np.ndarray  # per row: the series index
    day: np.ndarray  # per row: the day index
    instance: np.ndarray  # per row: index into ``instances``
    cost: np.ndarray  # per row
    names: np.ndarray  # per instance: ResourceId
    product: np.ndarray  # per instance: ServiceName
    region: np.ndarray  # per instance: RegionId
    sku: np.ndarray  # per instance: SkuId
    #: per labelled series index: {"product": ServiceName, "culprits": {ResourceId: excess over the label window}}
    truth: dict[int, dict]


def breakdown(s: Series, rows: np.ndarray, *, products: tuple[int, int] = (3, 15), instances: tuple[int, int] = (1, 50),
              seed: int = 1) -> Breakdown:
    """Split the series ``rows`` into products x instances (their counts drawn from the ranges)."""
    rng = np.random.default_rng(seed)
    rows = np.asarray(rows)
    days = s.days
    t = np.arange(days)
    base = np.nan_to_num(s.base[rows])
    excess = s.excess[rows]
    n_prod = rng.integers(products[0], products[1] + 1, len(rows))
    n_inst = rng.integers(instances[0], instances[1] + 1, len(rows))
    kinds = s.kind[rows]
    n_inst = np.where(kinds >= 3, np.maximum(n_inst, 4), n_inst)  # a down anomaly needs instances outside the culprits
    n_prod = np.minimum(n_prod, n_inst)
    new = np.where(kinds == KINDS.index("new_resource"), rng.integers(1, 3, len(rows)), 0)
    total = n_inst + new
    owner = np.repeat(np.arange(len(rows)), total)  # per instance: its position in ``rows``
    offset = np.concatenate([[0], np.cumsum(total)[:-1]])
    local = np.arange(len(owner)) - offset[owner]
    is_new = local >= n_inst[owner]
    # products: instance j < n_prod gets product j (none is empty), the others a random one
    prod_local = np.where(local < n_prod[owner], local, rng.integers(0, 1 << 30, len(owner)) % n_prod[owner])
    catalogue = np.array(PRODUCTS)
    picks = np.argsort(rng.random((len(rows), len(PRODUCTS))), axis=1)  # each series' own products, in order
    fixed = np.zeros(len(owner))  # fixed share of a down anomaly's culprits
    extra = np.zeros((len(owner), days))  # what an up anomaly adds to an instance
    scale = np.ones((len(owner), days))  # what a down anomaly leaves of an instance
    truth: dict[int, dict] = {}
    for pos in np.flatnonzero(kinds >= 0):  # the labelled series: a few hundred to a few thousand small steps
        i = int(rows[pos])
        kind = KINDS[kinds[pos]]
        mine = np.flatnonzero(owner == pos)
        old, fresh = mine[~is_new[mine]], mine[is_new[mine]]
        product = int(prod_local[old[rng.integers(len(old))]])
        if kind == "new_resource" and rng.random() < 0.2:
            product = int(n_prod[pos])  # a product the series never had
        prod_local[fresh] = product
        in_product = old[prod_local[old] == product]
        span = _between(t, np.array([s.label_start[i]]), np.array([s.label_end[i]]))[0]
        if kind in UP:
            culprits = fresh if kind == "new_resource" else rng.permutation(in_product)[: rng.integers(1, 4)]
            split = rng.dirichlet(np.ones(len(culprits)))
            extra[culprits] = split[:, None] * excess[pos][None, :]
            moved = split * excess[pos][span].sum()
        else:
            culprits = in_product[:1] if kind == "removed_resource" else rng.permutation(in_product)[: rng.integers(1, 4)]
            if len(culprits) == len(old):  # keep one instance outside the culprits
                culprits = culprits[:-1]
            m = -s.magnitude[i]
            share = m if kind == "removed_resource" else min(0.95, m / rng.uniform(0.5, 1.0))
            split = rng.dirichlet(np.ones(len(culprits)))
            fixed[culprits] = share * split
            scale[np.ix_(culprits, np.flatnonzero(span))] = (share - m) / share
            moved = -split * m * base[pos][span].sum()
        names_here = [f"res-{i:05d}-{j:02d}" for j in culprits - offset[pos]]
        truth[i] = {"product": str(catalogue[picks[pos, product]]), "kind": kind,
                    "culprits": dict(zip(names_here, moved.tolist(), strict=True))}
    # everyday shares: a gamma weight and daily lognormal jitter, normalised over the series' instances outside the
    # fixed shares; the fixed ones keep theirs exactly (a down anomaly's excess is then known)
    weight = rng.gamma(0.7, 1.0, len(owner)) * ~is_new
    jitter = np.exp(rng.standard_normal((len(owner), days)) * rng.uniform(0.05, 0.3, len(owner))[:, None])
    free = np.where(fixed[:, None] > 0, 0.0, weight[:, None] * jitter)
    sums = np.zeros((len(rows), days))
    np.add.at(sums, owner, free)
    fixed_sum = np.bincount(owner, weights=fixed, minlength=len(rows))
    share = np.where(fixed[:, None] > 0, fixed[:, None], free / np.where(sums[owner] > 0, sums[owner], 1)
                     * (1 - fixed_sum[owner])[:, None])
    cost = share * base[owner] * scale + extra
    before = t[None, :] < s.first[rows][owner][:, None]
    cost[before] = 0
    inst, day = np.nonzero(cost > 5e-7)
    names = np.array([f"res-{rows[o]:05d}-{j:02d}" for o, j in zip(owner.tolist(), local.tolist(), strict=True)])
    product_name = catalogue[picks[owner, prod_local]]
    region = np.array(REGIONS)[rng.integers(0, len(REGIONS), len(owner))]
    sku = np.char.add(np.char.add(product_name.astype(str), " / "), np.array(["standard", "premium", "basic"])[local % 3])
    return Breakdown(rows[owner[inst]], day, inst, cost[inst, day], names, product_name, region, sku, truth)
