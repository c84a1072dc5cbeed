"""``make demo`` (``fhirplug demo``): a hub-and-spoke message forwarded between two local
deployments, on the stack ``make up`` started.

The ``make up`` stack is the hub (its identity, ``FHIRPLUG_ODS`` or ``var/identity.env``). The
demo starts a second deployment beside it, the spoke VNE51 (the IG examples' spoke): its own
store (H2 files under ``var/demo``), its own Redis database, proxy and worker. Each side gets a
key for calling the other and registers the other as a client and a partner, as two real
deployments would (README, "Registering a partner deployment"). Then, with a system client of
each organisation:

1. the spoke's pharmacy system sends the IG's spoke-to-hub message to its own proxy;
2. the spoke's worker forwards it to the hub, where the Task appears (``requested``);
3. the hub's system accepts the Task at the hub;
4. the hub's worker forwards the change, and the spoke's Task reads ``accepted``.

Every step is ordinary FHIR over HTTP with OAuth tokens. Safe to run again (each run sends a new
prescription). ``make down`` stops the spoke too.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from redis import Redis

from ops import stack as stackmod
from ops.processes import StackError, http_ok, say
from proxy.auth import partner_keys
from proxy.auth.outbound import PartnerCredentials, PartnerTokenClient
from proxy.auth.registry import ClientRecord, ClientRegistry
from proxy.partners import Partner, PartnerDirectory

SPOKE_ODS = "VNE51"
EXAMPLE = stackmod.ROOT / "ig" / "examples" / "valid-spoke-to-hub.json"
EXAMPLE_HUB = "FA565"  # the hub the IG example names
RFC4122 = "https://tools.ietf.org/html/rfc4122"
FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
SCOPES = "system/Task.cruds system/MedicationRequest.cruds system/MedicationDispense.cruds " + (
    "system/Patient.cruds system/Organization.cruds system/AuditEvent.cruds"
)


def spoke_config(hub: stackmod.StackConfig) -> stackmod.StackConfig:
    """The demo spoke: under var/demo, on the hub's ports plus one (FHIRPLUG_DEMO_PORT and
    FHIRPLUG_DEMO_STORE_PORT choose others), in the hub's Redis's database 1."""
    var = hub.var_dir / "demo"
    return stackmod.StackConfig(
        var_dir=var,
        proxy_port=int(os.environ.get("FHIRPLUG_DEMO_PORT", hub.proxy_port + 1)),
        store_port=int(os.environ.get("FHIRPLUG_DEMO_STORE_PORT", hub.store_port + 1)),
        metrics_port=hub.metrics_port + 1,
        redis_url=re.sub(r"/\d+$", "", hub.effective_redis_url) + "/1",
        h2_url=f"jdbc:h2:file:{var / 'h2' / 'spoke'};DB_CLOSE_ON_EXIT=FALSE",
        store_heap=hub.store_heap,
        proxy_env={
            "FHIRPLUG_WORKERS": "1",
            "FHIRPLUG_ODS": SPOKE_ODS,
            "FHIRPLUG_ROLE": "spoke",
            "FHIRPLUG_MESH_MAILBOX": "",  # no GP notifications from the demo spoke
        },
    )


def _session(fhir: str, client_id: str, private_jwk: dict) -> requests.Session:
    tokens = PartnerTokenClient(
        PartnerCredentials(fhir.removesuffix("/fhir") + "/oauth2/token", client_id, private_jwk, None)
    )

    class Bearer(requests.auth.AuthBase):
        def __call__(self, r):
            r.headers["Authorization"] = f"Bearer {tokens.token()}"
            return r

    s = requests.Session()
    s.auth = Bearer()
    return s


def _key(folder: Path, kid: str) -> tuple[dict, dict]:
    """(private JWK, public JWK set) for ``kid``, made once and kept under ``folder``."""
    private = folder / f"{kid}.private.jwk.json"
    public = folder / f"{kid}.jwks.json"
    if not private.exists():
        private, public = partner_keys.generate(kid, folder, "RS512")
    return json.loads(private.read_text()), json.loads(public.read_text())


def _link(hub: stackmod.StackConfig, spoke: stackmod.StackConfig, hub_ods: str) -> tuple[Any, Any]:
    """Register each side at the other (clients and partners) and a system of each organisation;
    returns the two systems' sessions (hub, spoke)."""
    keys = spoke.var_dir / "partner-keys"  # not var/demo/keys: the spoke's own token-signing keys are there
    hub_fhir, spoke_fhir = hub.public_base(), spoke.public_base()
    hub_redis, spoke_redis = (
        Redis.from_url(hub.effective_redis_url),
        Redis.from_url(spoke.effective_redis_url),
    )
    hub_at_spoke, hub_at_spoke_jwks = _key(keys, "hub-at-spoke")
    spoke_at_hub, spoke_at_hub_jwks = _key(keys, "spoke-at-hub")
    ClientRegistry(hub_redis).put(
        ClientRecord("demo-spoke", SPOKE_ODS, "spoke", SCOPES.split(), jwks=spoke_at_hub_jwks)
    )
    ClientRegistry(spoke_redis).put(
        ClientRecord("demo-hub", hub_ods, "hub", SCOPES.split(), jwks=hub_at_spoke_jwks)
    )
    token = "/oauth2/token"
    PartnerDirectory(hub_redis).put(
        Partner(
            SPOKE_ODS,
            "spoke",
            spoke_fhir,
            spoke_fhir.removesuffix("/fhir") + token,
            "demo-hub",
            str(keys / "hub-at-spoke.private.jwk.json"),
        )
    )
    PartnerDirectory(spoke_redis).put(
        Partner(
            hub_ods,
            "hub",
            hub_fhir,
            hub_fhir.removesuffix("/fhir") + token,
            "demo-spoke",
            str(keys / "spoke-at-hub.private.jwk.json"),
        )
    )
    hub_system, hub_system_jwks = _key(keys, "demo-hub-system")
    spoke_system, spoke_system_jwks = _key(keys, "demo-spoke-system")
    ClientRegistry(hub_redis).put(
        ClientRecord("demo-hub-system", hub_ods, "hub", SCOPES.split(), jwks=hub_system_jwks)
    )
    ClientRegistry(spoke_redis).put(
        ClientRecord("demo-spoke-system", SPOKE_ODS, "spoke", SCOPES.split(), jwks=spoke_system_jwks)
    )
    return (
        _session(hub_fhir, "demo-hub-system", hub_system),
        _session(spoke_fhir, "demo-spoke-system", spoke_system),
    )


def message(hub_ods: str) -> tuple[dict, str]:
    """The IG's spoke-to-hub example for this hub, with fresh identities: (bundle, Task identifier)."""
    text = EXAMPLE.read_text().replace(EXAMPLE_HUB, hub_ods)
    for old in set(re.findall(r"urn:uuid:[0-9a-f-]{36}", text)):
        text = text.replace(old, f"urn:uuid:{uuid.uuid4()}")
    bundle = json.loads(text)
    bundle["identifier"]["value"] = str(uuid.uuid4())
    task_identifier = str(uuid.uuid4())
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "Task":
            resource["identifier"] = [{"system": RFC4122, "value": task_identifier}]
        elif resource["resourceType"] == "MedicationRequest":
            for identifier in resource.get("identifier") or []:
                identifier["value"] = str(uuid.uuid4())  # a new prescription item each run
    return bundle, task_identifier


def _task(session, fhir: str, task_identifier: str) -> dict | None:
    r = session.get(f"{fhir}/Task", params={"identifier": f"{RFC4122}|{task_identifier}"}, headers=FHIR_JSON)
    entries = r.json().get("entry") if r.status_code == 200 else None
    return entries[0]["resource"] if entries else None


def _eventually(check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.5)
    return None


def run(hub: stackmod.StackConfig) -> None:
    if not http_ok(hub.proxy_url + "/healthz"):
        raise StackError(f"no proxy answers at {hub.proxy_url}: run `make up` first")
    hub_ods = stackmod.local_identity(hub)
    spoke = spoke_config(hub)
    say(f"the hub is the make up stack, ODS {hub_ods}, at {hub.public_base()}")
    say(f"starting the spoke {SPOKE_ODS} beside it (its own store, Redis database, proxy and worker)")
    stackmod.start_store(spoke)
    stackmod.load_profiles(spoke)
    stackmod.start_proxy(spoke)
    stackmod.start_worker(spoke)
    hub_system, spoke_system = _link(hub, spoke, hub_ods)
    say(f"linked: each side knows the other as a client and a partner ({spoke.public_base()})")

    bundle, task_identifier = message(hub_ods)
    r = spoke_system.post(spoke.public_base(), json=bundle, headers=FHIR_JSON)
    if r.status_code != 201:
        raise StackError(f"the spoke refused the message ({r.status_code}): {r.text[:500]}")
    say(f"1. the spoke's system sent a prescription (Task identifier {task_identifier}) to its proxy: 201")
    at_hub = _eventually(lambda: _task(hub_system, hub.public_base(), task_identifier))
    if at_hub is None:
        raise StackError(f"the message did not reach the hub; see {spoke.var_dir / 'log' / 'worker.log'}")
    say(f"2. forwarded by the spoke's worker: at the hub as Task/{at_hub['id']}, status {at_hub['status']}")
    patch = [{"op": "replace", "path": "/status", "value": "accepted"}]
    r = hub_system.patch(
        f"{hub.public_base()}/Task/{at_hub['id']}",
        json=patch,
        headers={"Content-Type": "application/json-patch+json", "Accept": "application/fhir+json"},
    )
    if r.status_code != 200:
        raise StackError(f"the hub could not accept the Task ({r.status_code}): {r.text[:500]}")
    say("3. the hub's system accepted the Task at the hub")
    at_spoke = _eventually(
        lambda: (
            (t := _task(spoke_system, spoke.public_base(), task_identifier))
            and t["status"] == "accepted"
            and t
        )
    )
    if not at_spoke:
        raise StackError(f"the change did not reach the spoke; see {hub.var_dir / 'log' / 'worker.log'}")
    say(f"4. forwarded by the hub's worker: the spoke's Task/{at_spoke['id']} reads {at_spoke['status']}")
    print(f"  spoke (FHIR base)  {spoke.public_base()}   logs in {spoke.var_dir / 'log'}")
    print("  `make down` stops the spoke with the hub")


def stop(hub: stackmod.StackConfig) -> None:
    demo = hub.var_dir / "demo"
    if (demo / "run").is_dir():
        stackmod.stop_all(spoke_config(hub))
