"""Hub-and-spoke messages for tests: the IG's examples with fresh identities, consistently."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "ig" / "examples"
FHIR_JSON = {"Content-Type": "application/fhir+json"}
JSON_PATCH = {"Content-Type": "application/json-patch+json"}
RFC4122 = "https://tools.ietf.org/html/rfc4122"
TASK_ID = "0f8c2e6a-3d4b-4c1e-9f7a-5b2d8e1c6a94"  # the examples' Task identifier
ITEM_ID = "7dc0390a-f416-4d8a-9751-257bfa6294cd"  # the examples' prescription item


class Case:
    """One prescription's journey: the spoke's message and the hub's answers share fresh ids."""

    def __init__(self):
        self.task_identifier, self.item, self.message = (str(uuid.uuid4()) for _ in range(3))
        self.ids: dict[str, str] = {}

    def load(self, name: str) -> dict:
        text = (EXAMPLES / name).read_text()
        text = text.replace(TASK_ID, self.task_identifier).replace(ITEM_ID, self.item)
        for old in set(re.findall(r"urn:uuid:[0-9a-f-]{36}", text)):
            text = text.replace(old, f"urn:uuid:{uuid.uuid4()}")
        bundle = json.loads(text)
        bundle["identifier"]["value"] = self.message if "spoke-to-hub" in name else str(uuid.uuid4())
        return bundle

    @property
    def task_query(self) -> dict:
        return {"identifier": f"{RFC4122}|{self.task_identifier}"}

    def submit(self, fhir: str, session, name: str = "valid-spoke-to-hub.json") -> dict:
        r = session.post(fhir, json=self.load(name), headers=FHIR_JSON)
        assert r.status_code == 201, r.text
        self.ids = {
            loc.split("/")[0]: loc.split("/")[1]
            for e in r.json()["entry"]
            if (loc := e["response"].get("location"))
        }
        return r.json()


def move(fhir: str, session, task_id: str, status: str, **extra):
    patch = [{"op": "replace", "path": "/status", "value": status}]
    patch += [{"op": "add", "path": f"/{k}", "value": v} for k, v in extra.items()]
    return session.patch(f"{fhir}/Task/{task_id}", json=patch, headers=JSON_PATCH)
