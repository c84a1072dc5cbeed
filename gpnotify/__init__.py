"""GP notifications (Digital Medicine, issue 14): the FHIR STU3 ITK3 messages a pharmacy sends a
patient's registered GP practice over MESH, built from the R4 resources fhirplug stores.

Floor 2: no Flask, no store. The builders take resources already read and return the message;
``gpnotify.mesh`` is the MESH transport (over NHS England's ``mesh-client``).
"""

from gpnotify.immunisation import IMMUNISATION, build_immunisation
from gpnotify.itk import ItkMessage, Kind, Sender

__all__ = ["IMMUNISATION", "ItkMessage", "Kind", "Sender", "build_immunisation"]
