"""The NHS Number check digit: Modulus 11."""

import pytest

from hubspoke.nhs_number import nhs_number_valid


def _check_digit(nine: str) -> int:
    return 11 - sum(int(d) * w for d, w in zip(nine, range(10, 1, -1), strict=True)) % 11


ELEVEN = next(f"{n:09d}" for n in range(944930400, 944931000) if _check_digit(f"{n:09d}") == 10)


@pytest.mark.parametrize(
    "number,valid",
    [
        ("9449304130", True),
        ("9449310378", True),
        ("9434765919", True),
        ("9449304131", False),
        ("1234567890", False),
        ("123", False),
        ("12345678901", False),
        ("94493O4130", False),
        ("abcdefghij", False),
        ("944 930 4130", False),
        ("", False),
        (9449304130, False),
        (None, False),
    ],
)
def test_nhs_number_modulus_11(number, valid):
    assert nhs_number_valid(number) is valid


def test_a_check_digit_of_ten_is_never_valid():
    assert _check_digit(ELEVEN) == 10
    assert not any(nhs_number_valid(f"{ELEVEN}{d}") for d in range(10))


def test_a_check_digit_of_eleven_is_zero():
    nine = next(f"{n:09d}" for n in range(944930400, 944931000) if _check_digit(f"{n:09d}") == 11)
    assert nhs_number_valid(f"{nine}0")
    assert not nhs_number_valid(f"{nine}1")
