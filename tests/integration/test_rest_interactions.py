"""Every FHIR REST interaction, through the real proxy to the real HAPI store."""

import uuid

import pytest

pytestmark = pytest.mark.integration
FHIR_JSON = "application/fhir+json"


def uid() -> str:
    return uuid.uuid4().hex[:20]


def put_patient(stack, http, pid=None, family="Smith", **extra):
    pid = pid or f"p-{uid()}"
    body = {"resourceType": "Patient", "id": pid, "name": [{"family": family}], **extra}
    r = http.put(f"{stack.fhir}/Patient/{pid}", json=body, headers={"Content-Type": FHIR_JSON})
    assert r.status_code in (200, 201), r.text
    return pid, r


def test_metadata_is_a_capability_statement_naming_no_internal_address(stack, http):
    r = http.get(f"{stack.fhir}/metadata")
    assert r.status_code == 200
    cs = r.json()
    assert cs["resourceType"] == "CapabilityStatement" and cs["fhirVersion"] == "4.0.1"
    assert stack.store_url not in r.text


def test_create_answers_201_with_location_at_the_proxy(stack, http):
    r = http.post(
        f"{stack.fhir}/Patient", json={"resourceType": "Patient"}, headers={"Content-Type": FHIR_JSON}
    )
    assert r.status_code == 201
    assert r.headers["Location"].startswith(stack.fhir + "/Patient/")
    assert r.headers["ETag"] == 'W/"1"'
    assert "Last-Modified" in r.headers
    follow = http.get(r.headers["Location"])
    assert follow.status_code == 200


def test_read_keeps_etag_and_last_modified(stack, http):
    pid, _ = put_patient(stack, http)
    r = http.get(f"{stack.fhir}/Patient/{pid}")
    assert r.status_code == 200 and r.json()["id"] == pid
    assert r.headers["ETag"] == 'W/"1"' and r.headers["Last-Modified"]


def test_read_of_missing_resource_is_the_stores_404(stack, http):
    r = http.get(f"{stack.fhir}/Patient/does-not-exist-{uid()}")
    assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"


def test_if_none_match_on_current_version_is_304(stack, http):
    pid, _ = put_patient(stack, http)
    r = http.get(f"{stack.fhir}/Patient/{pid}", headers={"If-None-Match": 'W/"1"'})
    assert r.status_code == 304


def test_vread_returns_the_old_version(stack, http):
    pid, _ = put_patient(stack, http, family="One")
    put_patient(stack, http, pid, family="Two")
    r = http.get(f"{stack.fhir}/Patient/{pid}/_history/1")
    assert r.status_code == 200 and r.json()["name"][0]["family"] == "One"
    assert r.headers["Content-Location"].startswith(stack.fhir)


def test_update_creates_then_versions(stack, http):
    pid, first = put_patient(stack, http)
    assert first.status_code == 201
    _, second = put_patient(stack, http, pid, family="Jones")
    assert second.status_code == 200 and second.headers["ETag"] == 'W/"2"'


def test_if_match_on_a_stale_version_is_412(stack, http):
    pid, _ = put_patient(stack, http)
    put_patient(stack, http, pid, family="Changed")
    r = http.put(
        f"{stack.fhir}/Patient/{pid}",
        json={"resourceType": "Patient", "id": pid},
        headers={"Content-Type": FHIR_JSON, "If-Match": 'W/"1"'},
    )
    assert r.status_code == 412
    assert r.json()["resourceType"] == "OperationOutcome"


def test_if_match_on_the_current_version_updates(stack, http):
    pid, _ = put_patient(stack, http)
    r = http.put(
        f"{stack.fhir}/Patient/{pid}",
        json={"resourceType": "Patient", "id": pid},
        headers={"Content-Type": FHIR_JSON, "If-Match": 'W/"1"'},
    )
    assert r.status_code == 200


def test_conditional_create_answers_the_existing_resource(stack, http):
    ident = uid()
    body = {"resourceType": "Patient", "identifier": [{"system": "urn:test", "value": ident}]}
    h = {"Content-Type": FHIR_JSON, "If-None-Exist": f"identifier=urn:test|{ident}"}
    first = http.post(f"{stack.fhir}/Patient", json=body, headers=h)
    second = http.post(f"{stack.fhir}/Patient", json=body, headers=h)
    assert first.status_code == 201
    assert second.status_code == 200
    assert second.headers["Location"] == first.headers["Location"]
    found = http.get(f"{stack.fhir}/Patient", params={"identifier": f"urn:test|{ident}"}).json()
    assert found["total"] == 1


def test_conditional_update_by_identifier(stack, http):
    ident = uid()
    body = {"resourceType": "Patient", "identifier": [{"system": "urn:test", "value": ident}]}
    url = f"{stack.fhir}/Patient?identifier=urn:test|{ident}"
    created = http.put(url, json=body, headers={"Content-Type": FHIR_JSON})
    updated = http.put(url, json={**body, "active": True}, headers={"Content-Type": FHIR_JSON})
    assert created.status_code == 201 and updated.status_code == 200
    assert updated.json()["active"] is True and updated.json()["meta"]["versionId"] == "2"


def test_json_patch(stack, http):
    pid, _ = put_patient(stack, http)
    r = http.patch(
        f"{stack.fhir}/Patient/{pid}",
        data='[{"op":"add","path":"/active","value":true}]',
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert r.status_code == 200, r.text
    assert http.get(f"{stack.fhir}/Patient/{pid}").json()["active"] is True


def test_a_json_patch_sent_as_application_json_is_a_json_patch(stack, http):
    pid, _ = put_patient(stack, http)
    r = http.patch(
        f"{stack.fhir}/Patient/{pid}",
        data='[{"op":"add","path":"/active","value":true}]',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 200, r.text
    assert http.get(f"{stack.fhir}/Patient/{pid}").json()["active"] is True


def test_fhirpys_patch_a_merge_patch_is_applied(stack, http):
    """fhirpy's ``client.patch(type, id, **fields)`` sends ``{"field": value}`` as
    application/json (RFC 7386 merge patch): set, merged and removed members all land."""
    from fhirpy import SyncFHIRClient

    pid, _ = put_patient(stack, http, gender="female", birthDate="1970-01-01")
    client = SyncFHIRClient(stack.fhir, authorization=f"Bearer {http.auth.oauth.token()}")
    patched = client.patch("Patient", pid, active=True, gender=None, name=[{"family": "Jones"}])
    stored = http.get(f"{stack.fhir}/Patient/{pid}").json()
    assert patched["active"] is True and stored["active"] is True
    assert "gender" not in stored and stored["birthDate"] == "1970-01-01"
    assert stored["name"] == [{"family": "Jones"}]


def test_fhirpath_patch(stack, http):
    pid, _ = put_patient(stack, http)
    patch = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "operation",
                "part": [
                    {"name": "type", "valueCode": "add"},
                    {"name": "path", "valueString": "Patient"},
                    {"name": "name", "valueString": "gender"},
                    {"name": "value", "valueCode": "female"},
                ],
            }
        ],
    }
    r = http.patch(f"{stack.fhir}/Patient/{pid}", json=patch, headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 200, r.text
    assert http.get(f"{stack.fhir}/Patient/{pid}").json()["gender"] == "female"


def test_patch_with_stale_if_match_is_412(stack, http):
    pid, _ = put_patient(stack, http)
    put_patient(stack, http, pid, family="Changed")
    r = http.patch(
        f"{stack.fhir}/Patient/{pid}",
        data='[{"op":"add","path":"/active","value":true}]',
        headers={"Content-Type": "application/json-patch+json", "If-Match": 'W/"1"'},
    )
    assert r.status_code == 412


def test_delete_then_read_is_410(stack, http):
    pid, _ = put_patient(stack, http)
    assert http.delete(f"{stack.fhir}/Patient/{pid}").status_code in (200, 204)
    assert http.get(f"{stack.fhir}/Patient/{pid}").status_code == 410


def test_conditional_delete(stack, http):
    ident = uid()
    http.post(
        f"{stack.fhir}/Patient",
        json={"resourceType": "Patient", "identifier": [{"system": "urn:test", "value": ident}]},
        headers={"Content-Type": FHIR_JSON},
    )
    r = http.delete(f"{stack.fhir}/Patient", params={"identifier": f"urn:test|{ident}"})
    assert r.status_code in (200, 204)
    assert http.get(f"{stack.fhir}/Patient", params={"identifier": f"urn:test|{ident}"}).json()["total"] == 0


def test_history_instance_type_and_system(stack, http):
    pid, _ = put_patient(stack, http)
    put_patient(stack, http, pid, family="Again")
    inst = http.get(f"{stack.fhir}/Patient/{pid}/_history").json()
    assert inst["type"] == "history" and inst["total"] == 2
    typ = http.get(f"{stack.fhir}/Patient/_history", params={"_count": 5}).json()
    assert typ["type"] == "history" and typ["entry"]
    system = http.get(f"{stack.fhir}/_history", params={"_count": 5})
    assert system.status_code == 200 and system.json()["type"] == "history"
    assert stack.store_url not in system.text


def test_search_by_get_and_by_post_agree(stack, http):
    family = f"Fam{uid()}"
    for _ in range(3):
        put_patient(stack, http, family=family)
    by_get = http.get(f"{stack.fhir}/Patient", params={"family": family}).json()
    by_post = http.post(
        f"{stack.fhir}/Patient/_search",
        data={"family": family},
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ).json()
    assert by_get["total"] == by_post["total"] == 3
    assert {e["resource"]["id"] for e in by_get["entry"]} == {e["resource"]["id"] for e in by_post["entry"]}


def test_search_is_not_served_from_a_stale_cache(stack, http):
    family = f"Fam{uid()}"
    put_patient(stack, http, family=family)
    assert http.get(f"{stack.fhir}/Patient", params={"family": family}).json()["total"] == 1
    put_patient(stack, http, family=family)
    assert http.get(f"{stack.fhir}/Patient", params={"family": family}).json()["total"] == 2


def test_paging_next_links_point_at_the_proxy_and_work(stack, http):
    family = f"Page{uid()}"
    ids = {put_patient(stack, http, family=family)[0] for _ in range(5)}
    page = http.get(f"{stack.fhir}/Patient", params={"family": family, "_count": 2}).json()
    seen = set()
    pages = 0
    while True:
        pages += 1
        seen |= {e["resource"]["id"] for e in page.get("entry", [])}
        for link in page["link"]:
            assert link["url"].startswith(stack.fhir), link
        nxt = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
        if not nxt:
            break
        page = http.get(nxt).json()
    assert seen == ids and pages == 3


def test_transaction_resolves_urn_uuid_references(stack, http):
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:9d0d3c9a-5a3b-4bd5-9a53-0c5c1c7f0001",
                "resource": {"resourceType": "Patient", "name": [{"family": "Tx"}]},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "fullUrl": "urn:uuid:9d0d3c9a-5a3b-4bd5-9a53-0c5c1c7f0002",
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "t"},
                    "subject": {"reference": "urn:uuid:9d0d3c9a-5a3b-4bd5-9a53-0c5c1c7f0001"},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    r = http.post(stack.fhir, json=bundle, headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 200, r.text
    resp = r.json()
    assert resp["type"] == "transaction-response"
    patient_loc, obs_loc = (e["response"]["location"] for e in resp["entry"])
    assert patient_loc.startswith("Patient/") or patient_loc.startswith(stack.fhir)
    obs = http.get(f"{stack.fhir}/{obs_loc.split('/fhir/')[-1].split('/_history')[0]}").json()
    patient_id = patient_loc.split("/_history")[0].split("Patient/")[1]
    assert obs["subject"]["reference"] == f"Patient/{patient_id}"


def test_transaction_with_a_bad_entry_stores_nothing(stack, http):
    family = f"Atomic{uid()}"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {"resourceType": "Patient", "name": [{"family": family}]},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "t"},
                    "subject": {"reference": f"Patient/missing-{uid()}"},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    r = http.post(stack.fhir, json=bundle, headers={"Content-Type": FHIR_JSON})
    assert r.status_code in (400, 404, 422)
    assert http.get(f"{stack.fhir}/Patient", params={"family": family}).json()["total"] == 0


def test_batch_answers_each_entry(stack, http):
    pid, _ = put_patient(stack, http)
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": f"Patient/{pid}"}},
            {"request": {"method": "GET", "url": f"Patient/missing-{uid()}"}},
            {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
        ],
    }
    r = http.post(stack.fhir, json=bundle, headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 200
    statuses = [e["response"]["status"].split()[0] for e in r.json()["entry"]]
    assert statuses == ["200", "404", "201"]


def test_validate_operation_returns_an_operation_outcome(stack, http):
    bad = {"resourceType": "Observation"}  # status and code are required
    r = http.post(f"{stack.fhir}/Observation/$validate", json=bad, headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 200  # HAPI >= 6.6: the outcome says what is wrong, the status does not
    oo = r.json()
    assert oo["resourceType"] == "OperationOutcome"
    errors = [i for i in oo["issue"] if i["severity"] == "error"]
    assert any("Observation.status" in i["diagnostics"] for i in errors)


def test_prefer_return_minimal_passes(stack, http):
    r = http.post(
        f"{stack.fhir}/Patient",
        json={"resourceType": "Patient"},
        headers={"Content-Type": FHIR_JSON, "Prefer": "return=minimal"},
    )
    assert r.status_code == 201 and r.content == b""


def test_references_in_the_proxys_address_are_stored_as_local(stack, http):
    pid, _ = put_patient(stack, http)
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "t"},
        "subject": {"reference": f"{stack.fhir}/Patient/{pid}"},
    }
    r = http.post(f"{stack.fhir}/Observation", json=obs, headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 201, r.text
    found = http.get(f"{stack.fhir}/Observation", params={"subject": f"Patient/{pid}"}).json()
    assert found["total"] == 1


def test_gzip_is_offered_to_callers_that_accept_it(stack, http):
    family = f"Gz{uid()}"
    for _ in range(3):
        put_patient(stack, http, family=family)
    r = http.get(f"{stack.fhir}/Patient", params={"family": family}, headers={"Accept-Encoding": "gzip"})
    assert r.headers["Content-Encoding"] == "gzip"
    assert r.json()["total"] == 3  # requests decodes it


def test_gzip_request_bodies_are_accepted(stack, http):
    import gzip
    import json

    body = gzip.compress(json.dumps({"resourceType": "Patient"}).encode())
    r = http.post(
        f"{stack.fhir}/Patient", data=body, headers={"Content-Type": FHIR_JSON, "Content-Encoding": "gzip"}
    )
    assert r.status_code == 201


def test_large_responses_stream_without_the_internal_address(stack, http):
    family = f"Big{uid()}"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {"resourceType": "Patient", "name": [{"family": family, "given": ["x" * 2000]}]},
                "request": {"method": "POST", "url": "Patient"},
            }
            for _ in range(60)
        ],
    }
    assert http.post(stack.fhir, json=bundle, headers={"Content-Type": FHIR_JSON}).status_code == 200
    r = http.get(f"{stack.fhir}/Patient", params={"family": family, "_count": 100}, stream=True)
    assert "Content-Length" not in r.headers  # chunked: relayed as it arrives
    body = b"".join(r.iter_content(8192))
    assert len(body) > 120_000
    assert stack.store_url.encode() not in body
    assert body.count(stack.fhir.encode() + b"/Patient/") >= 60


def test_store_headers_that_are_not_allow_listed_stay_behind(stack, http):
    r = http.get(f"{stack.fhir}/metadata")
    assert "X-Powered-By" not in r.headers


def test_request_id_reaches_the_store(stack, http):
    rid = f"rid-{uid()}"
    r = http.post(
        f"{stack.fhir}/Patient",
        json={"resourceType": "Patient"},
        headers={"Content-Type": FHIR_JSON, "X-Request-ID": rid},
    )
    assert r.headers["X-Request-ID"] == rid
    # HAPI records the request id it was sent as the resource's meta.source
    assert r.json()["meta"]["source"].endswith(rid)
