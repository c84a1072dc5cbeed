"""The shared cases (tests/fixtures/careaccess/cases.json), through the proxy's rules: the same
file the store's line is tested against over HTTP (tests/integration/test_care_access.py)."""

import json
from pathlib import Path

import pytest

from careaccess.labels import READER_SYSTEM, readable_by
from hubspoke.identifiers import TENANT_SYSTEM
from hubspoke.tenants import tenants_of, visible_to

CASES = json.loads(
    (Path(__file__).resolve().parents[2] / "fixtures" / "careaccess" / "cases.json").read_text()
)["cases"]


def labelled(case: dict) -> dict:
    security = [{"system": TENANT_SYSTEM, "code": t} for t in case["tenants"]]
    security += [{"system": READER_SYSTEM, "code": r} for r in case["readers"]]
    return {"resourceType": case["type"], "meta": {"security": security}}


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_the_proxy_reads_each_case_as_the_table_says(case):
    resource = labelled(case)
    assert readable_by(resource, case["ods"]) is case["read"]
    assert visible_to(resource, case["ods"]) is case["read"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_the_proxy_lets_only_a_tenant_write_each_case(case):
    assert (case["ods"] in tenants_of(labelled(case))) is case["write"]
