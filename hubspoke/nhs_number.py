"""The NHS Number check digit (Modulus 11, NHS Data Dictionary)."""

from __future__ import annotations

import re

_NHS_NUMBER = re.compile(r"[0-9]{10}")


def nhs_number_valid(value: str) -> bool:
    """Modulus 11 (NHS Data Dictionary): 10 digits, weights 10..2 on the first 9, check digit last."""
    if not isinstance(value, str) or not _NHS_NUMBER.fullmatch(value):
        return False
    check = 11 - sum(int(d) * w for d, w in zip(value[:9], range(10, 1, -1), strict=True)) % 11
    if check == 11:
        check = 0
    return check != 10 and check == int(value[9])
