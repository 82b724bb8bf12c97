"""Kubernetes resource quantities ("500m", "2", "1.5Gi", "512M") as exact numbers (pure; shared by the scheduler
extender and hubfleet-devcluster, which depends on hubfleet, never the reverse).

Written here rather than imported: kubernetes_asyncio ships no quantity parser, and the sync ``kubernetes``
client's ``parse_quantity`` would pull in a second Kubernetes client for one function.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from .errors import HubfleetError

_SUFFIXES = {
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40, "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"),
    "P": Decimal("1e15"), "E": Decimal("1e18"),
}
_RE = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|)$")


class QuantityError(HubfleetError, ValueError):
    """A resource quantity that Kubernetes would refuse."""


def parse_quantity(value: object, *, field: str = "quantity") -> Decimal:
    """Parse a quantity; `field` names where it came from, for the error message."""
    if isinstance(value, bool):
        raise QuantityError(f"{field}: {value!r} is not a resource quantity (expected e.g. 2, '500m', '4Gi')")
    if isinstance(value, (int, float)):
        value = str(value)
    if not isinstance(value, str):
        raise QuantityError(f"{field}: {value!r} is not a resource quantity (expected e.g. 2, '500m', '4Gi')")
    m = _RE.match(value.strip())
    if not m:
        raise QuantityError(f"{field}: {value!r} is not a resource quantity (expected e.g. 2, '500m', '4Gi')")
    try:
        number = Decimal(m.group(1))
    except InvalidOperation as e:
        raise QuantityError(f"{field}: {value!r} is not a resource quantity") from e
    if number < 0:
        raise QuantityError(f"{field}: {value!r} must not be negative")
    return number * _SUFFIXES[m.group(2)]


def format_cpu(value: Decimal) -> str:
    return f"{int(value * 1000)}m" if value != value.to_integral() else str(int(value))


def format_bytes(value: Decimal) -> str:
    for suffix in ("Gi", "Mi", "Ki"):
        unit = _SUFFIXES[suffix]
        if value >= unit and value % unit == 0:
            return f"{int(value / unit)}{suffix}"
    return str(int(value))
