"""Largest-remainder (Hamilton) split of an exact decimal amount over weights: the shares add up to the amount to
the last quantum, each is within one quantum of its exact share, has the amount's sign (or is 0), and the result
does not depend on the order the targets are given in."""

from __future__ import annotations

from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal, localcontext


def split(amount: Decimal, weights: dict[str, Decimal], quantum: Decimal) -> dict[str, Decimal]:
    """``amount`` shared over ``weights`` (target -> weight >= 0, total > 0) in multiples of ``quantum``.
    Remaining quanta go to the largest remainders, ties to the larger weight, then to the smaller target key."""
    with localcontext() as ctx:
        ctx.prec = 200  # exact: quanta x weights can exceed the default 28 digits
        return _split(amount, weights, quantum)


def _split(amount: Decimal, weights: dict[str, Decimal], quantum: Decimal) -> dict[str, Decimal]:
    total = sum(weights.values(), Decimal(0))
    if total <= 0 or any(w < 0 for w in weights.values()):
        raise ValueError("weights must be >= 0 with a positive total")
    units = amount / quantum
    if units != units.to_integral_value():
        raise ValueError(f"{amount} is not a multiple of {quantum}")
    sign = -1 if units < 0 else 1
    u = int(abs(units))
    floors: dict[str, int] = {}
    remainders: dict[str, Decimal] = {}
    for target, w in weights.items():
        exact = Decimal(u) * w
        floors[target] = int(exact // total)
        remainders[target] = exact - floors[target] * total
    left = u - sum(floors.values())
    order = sorted(weights, key=lambda t: (-remainders[t], -weights[t], t))
    for target in order[:left]:
        floors[target] += 1
    return {t: sign * floors[t] * quantum for t in weights}


def round_lines(amounts: dict[str, Decimal], quantum: Decimal) -> dict[str, Decimal]:
    """Exact line amounts rounded to ``quantum`` so that they add up to their total rounded half-even: each line is
    floored, and the quanta still missing go to the largest remainders (ties: larger amount, then key)."""
    with localcontext() as ctx:
        ctx.prec = 200
        total = sum(amounts.values(), Decimal(0)).quantize(quantum, rounding=ROUND_HALF_EVEN)
        floors = {k: (v / quantum).to_integral_value(rounding=ROUND_FLOOR) for k, v in amounts.items()}
        remainders = {k: v / quantum - floors[k] for k, v in amounts.items()}
        left = int(total / quantum - sum(floors.values(), Decimal(0)))
        for key in sorted(amounts, key=lambda k: (-remainders[k], -amounts[k], k))[:left]:
            floors[key] += 1
        return {k: floors[k] * quantum for k in amounts}
