"""EPS ``$prepare``: a FHIR prescription-order message -> what the prescriber must sign.

``prepare`` answers exactly what EPS answers (digest, timestamp, algorithm) for the same
message and author time; ``fragments_to_hash`` gives the canonical FragmentsToBeHashed bytes,
which signature verification recomputes. Anything wrong with the message is a
``FhirError(400)`` naming the element, never an unhandled exception.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from eps import fragments as _fragments
from eps import signing
from eps._dates import iso_from_hl7
from eps._fhir import invalid
from proxy.errors import FhirError


class HashAlgorithm(enum.Enum):
    RS1 = "RS1"
    RS256 = "RS256"


@dataclass(frozen=True)
class Prepared:
    digest: str
    timestamp: str
    algorithm: HashAlgorithm

    def to_parameters(self) -> dict:
        """The FHIR Parameters resource EPS answers $prepare with (digest, timestamp, algorithm)."""
        return {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "digest", "valueString": self.digest},
                {"name": "timestamp", "valueString": self.timestamp},
                {"name": "algorithm", "valueString": self.algorithm.value},
            ],
        }


def _as_bundle(bundle: object) -> object:
    # raw JSON is parsed keeping decimals exact, as EPS (lossless-json) keeps a quantity's digits
    if isinstance(bundle, bytes | bytearray | str):
        try:
            return json.loads(bundle, parse_float=Decimal)
        except (ValueError, RecursionError) as exc:
            raise invalid("The body is not valid JSON.", "Bundle") from exc
    return bundle


def _build(bundle: object, now: datetime | None) -> _fragments.Fragments:
    try:
        return _fragments.build(_as_bundle(bundle), now)
    except FhirError:
        raise
    except (KeyError, TypeError, AttributeError, ValueError, IndexError, RecursionError) as exc:
        # a shape no check foresaw: still the caller's message at fault, never a 500
        raise invalid(f"The prescription could not be read: {type(exc).__name__}.", "Bundle") from exc


def fragments_to_hash(bundle: object, *, now: datetime | None = None) -> bytes:
    """The canonical (exclusive C14N) FragmentsToBeHashed of a prescription-order message.

    ``now`` is the author time to use when the message carries no requester signature
    (default: the current time, as EPS does).
    """
    return signing.fragments_to_be_hashed(_build(bundle, now))


def prepare(
    bundle: object, algorithm: HashAlgorithm = HashAlgorithm.RS256, *, now: datetime | None = None
) -> Prepared:
    """$prepare: the digest to sign, its timestamp and algorithm, byte-identical to EPS's.

    ``bundle`` is the parsed message (decimals best kept as ``Decimal``) or its raw JSON.
    ``now`` pins the author time of an unsigned message (default: the current time).
    """
    if not isinstance(algorithm, HashAlgorithm):
        raise invalid(f"Unknown algorithm '{algorithm}'.", "algorithm")
    built = _build(bundle, now)
    canonical = signing.fragments_to_be_hashed(built)
    return Prepared(
        digest=signing.digest(canonical, algorithm.value),
        timestamp=iso_from_hl7(built.time),
        algorithm=algorithm,
    )


def signed_parts(bundle: object, *, now: datetime | None = None) -> tuple[bytes, str]:
    """From one build: the canonical FragmentsToBeHashed of a prescription-order message (what
    its signature must cover) and its author time (ISO 8601; for a signed message, the time of
    the requester's signature). Refuses what ``prepare`` refuses, the check character included."""
    built = _build(bundle, now)
    return signing.fragments_to_be_hashed(built), iso_from_hl7(built.time)
