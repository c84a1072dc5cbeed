"""FHIR date/dateTime strings to HL7 V3 timestamps, and back to the ISO form EPS answers with."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from eps._fhir import invalid

# FHIR R4's own patterns for date and dateTime (a time needs a zone); what EPS checks first
_YEAR = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
_MONTH_DAY = r"(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])"
_DATE = re.compile(rf"^{_YEAR}{_MONTH_DAY})?)?$")
_DATE_TIME = re.compile(
    rf"^{_YEAR}{_MONTH_DAY}"
    r"(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|([+-])((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?$"
)
_PARTS = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(Z|[+-]\d{2}:\d{2}))?)?)?$"
)


def _parse(value: str, path: str) -> datetime:
    """The instant a FHIR date/dateTime names, in UTC (a bare date is its midnight, UTC)."""
    match = _PARTS.match(value)
    if match is None:
        raise invalid(f"Incorrect format for date time string '{value}'.", path)
    year, month, day, hour, minute, second, zone = match.groups()
    try:
        moment = datetime(
            int(year),
            int(month or 1),
            int(day or 1),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            tzinfo=UTC,
        )
    except ValueError as exc:  # 30 February, a leap second
        raise invalid(f"Incorrect format for date time string '{value}'.", path) from exc
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        moment -= sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    return moment


def hl7_date(value: object, path: str) -> str:
    """A FHIR date as V3 ``YYYYMMDD`` (a birth date)."""
    if not isinstance(value, str) or not _DATE.match(value):
        raise invalid(f"Incorrect format for date string '{value}'.", path)
    return _parse(value, path).strftime("%Y%m%d")


def hl7_date_time(value: object, path: str) -> str:
    """A FHIR dateTime as V3 ``YYYYMMDDHHMMSS`` in UTC (fractions of a second dropped)."""
    if not isinstance(value, str) or not _DATE_TIME.match(value):
        raise invalid(f"Incorrect format for date time string '{value}'.", path)
    return _parse(value, path).strftime("%Y%m%d%H%M%S")


def hl7_now(now: datetime | None = None) -> str:
    """The V3 timestamp of an instant (default: this one), as EPS stamps an unsigned prescription."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y%m%d%H%M%S")


def iso_from_hl7(value: str) -> str:
    """V3 ``YYYYMMDDHHMMSS`` (UTC) -> ``YYYY-MM-DDTHH:MM:SS+00:00``, the $prepare timestamp."""
    return f"{value[0:4]}-{value[4:6]}-{value[6:8]}T{value[8:10]}:{value[10:12]}:{value[12:14]}+00:00"
