"""GP notifications (Digital Medicine, issue 14): the FHIR STU3 ITK3 messages a pharmacy sends a
patient's registered GP practice over MESH, built from the R4 resources fhirplug stores.

Floor 2: no Flask, no store. The builders take resources already read and return the message;
``gpnotify.mesh`` is the MESH transport (over NHS England's ``mesh-client``).
"""

from gpnotify.emergency_supply import EMERGENCY_SUPPLY, build_emergency_supply
from gpnotify.immunisation import IMMUNISATION, build_immunisation
from gpnotify.itk import ItkMessage, Kind, Sender
from gpnotify.minor_illness import MINOR_ILLNESS, build_minor_illness_referral

KINDS = (IMMUNISATION, EMERGENCY_SUPPLY, MINOR_ILLNESS)

__all__ = [
    "EMERGENCY_SUPPLY",
    "IMMUNISATION",
    "KINDS",
    "MINOR_ILLNESS",
    "ItkMessage",
    "Kind",
    "Sender",
    "build_emergency_supply",
    "build_immunisation",
    "build_minor_illness_referral",
]
