"""Kubernetes resource quantities parsed exactly (resource.Quantity's grammar), into our units."""

from __future__ import annotations

import math
import re
from fractions import Fraction
from functools import lru_cache

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 10**3),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
}
_QUANTITY = re.compile(r"^([+-]?)(\d+\.?\d*|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$")


class QuantityError(ValueError):
    """A quantity string Kubernetes would reject."""


def parse_quantity(text: str | int | float) -> Fraction:
    """Exact value of a quantity (``"500m"`` -> 1/2, ``"1Gi"`` -> 1073741824, ``"2e3"`` -> 2000)."""
    if isinstance(text, bool):
        raise QuantityError(f"quantity {text!r} is not a number")
    if isinstance(text, int):
        return Fraction(text)
    if isinstance(text, float):
        if not math.isfinite(text):
            raise QuantityError(f"quantity {text!r} is not finite")
        return Fraction(str(text))
    match = _QUANTITY.match(text.strip()) if isinstance(text, str) else None
    if not match or text != text.strip():
        raise QuantityError(
            f"quantity {text!r} is malformed: expected a number with an optional suffix "
            "(m, k, M, G, Ki, Mi, Gi, ... or an exponent like e3)"
        )
    sign, number, suffix = match.groups()
    value = Fraction(number)
    suffix = suffix or ""
    if suffix in _BINARY:
        value *= _BINARY[suffix]
    elif suffix in _DECIMAL:
        value *= _DECIMAL[suffix]
    else:
        value *= Fraction(10) ** int(suffix[1:])
    return -value if sign == "-" else value


@lru_cache(maxsize=4096, typed=True)
def to_canonical(resource: str, text: str | int | float) -> int:
    """Our integer unit for a resource: cpu in millicores, everything else in whole units; rounds up
    as Quantity.MilliValue()/Value() do, so a request is never under-counted. Memoised: a cluster's pods
    repeat a few quantities, and every pod event parses them (a pure function; errors are not cached)."""
    value = parse_quantity(text)
    if value < 0:
        raise QuantityError(f"quantity {text!r} for {resource} is negative")
    if resource == "cpu":
        value *= 1000
    return math.ceil(value)
