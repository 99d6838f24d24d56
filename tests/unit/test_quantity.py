from fractions import Fraction

import pytest

from scheduler.kube.quantity import QuantityError, parse_quantity, to_canonical


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", Fraction(1)),
        ("500m", Fraction(1, 2)),
        ("1.5", Fraction(3, 2)),
        ("1Gi", Fraction(2**30)),
        ("1Ki", Fraction(1024)),
        ("2e3", Fraction(2000)),
        ("1E3", Fraction(1000)),  # exponent, not exa: Kubernetes reads "E3" as 10^3
        ("1E", Fraction(10**18)),
        ("100M", Fraction(10**8)),
        ("250u", Fraction(1, 4000)),
        (".5", Fraction(1, 2)),
        ("+3", Fraction(3)),
        (4, Fraction(4)),
        (0.25, Fraction(1, 4)),
    ],
)
def test_parse(text: str, expected: Fraction) -> None:
    assert parse_quantity(text) == expected


@pytest.mark.parametrize("text", ["", "5x", "1.2.3", "m", "1 Gi", "Gi", "--1", "1e", "0x10", " 1"])
def test_malformed(text: str) -> None:
    with pytest.raises(QuantityError, match="malformed"):
        parse_quantity(text)


def test_canonical_units() -> None:
    assert to_canonical("cpu", "500m") == 500
    assert to_canonical("cpu", "2") == 2000
    assert to_canonical("cpu", "0.0001") == 1  # rounds up like MilliValue
    assert to_canonical("memory", "1Gi") == 2**30
    assert to_canonical("memory", "1.5k") == 1500
    assert to_canonical("nvidia.com/gpu", "2") == 2
    with pytest.raises(QuantityError, match="negative"):
        to_canonical("cpu", "-1")
