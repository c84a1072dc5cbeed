"""Two live deployments on one machine for the tests: the session's stack is the hub (FA565), a
second stack (its own store on disk, Redis database, proxy, worker, authorization server) is the
spoke (VNE51); each is registered as the other's partner, with its own key for calling it."""

from __future__ import annotations

import json

from redis import Redis

from ops import stack as stackmod
from proxy.auth import partner_keys
from proxy.auth.registry import ClientRecord, ClientRegistry
from proxy.partners import Partner, PartnerDirectory
from tests.support import oauth

HUB, SPOKE = "FA565", "VNE51"
SPOKE_SCOPES = "system/Task.cruds system/MedicationRequest.cruds system/MedicationDispense.cruds " + (
    "system/Patient.cruds system/Organization.cruds system/AuditEvent.cruds"
)


class Deployment:
    def __init__(self, cfg: stackmod.StackConfig):
        self.cfg = cfg
        self.fhir = cfg.public_base()  # what its proxy is configured to be (FHIRPLUG_PUBLIC_BASE_URL)
        self.redis_url = cfg.effective_redis_url

    def register_partner(self, ods, role, other: Deployment, our_client_id, key_file):
        PartnerDirectory(Redis.from_url(self.redis_url)).put(
            Partner(
                ods,
                role,
                other.fhir,
                other.fhir.removesuffix("/fhir") + "/oauth2/token",
                our_client_id,
                str(key_file),
            )
        )

    def register_client(self, client_id, role, ods, jwks, scopes=SPOKE_SCOPES):
        record = ClientRecord(client_id, ods, role, scopes.split(), jwks=jwks)
        ClientRegistry(Redis.from_url(self.redis_url)).put(record)


class Pair:
    def __init__(self, hub, spoke, hub_system, spoke_system, hub_key):
        self.hub, self.spoke, self.hub_system, self.spoke_system = hub, spoke, hub_system, spoke_system
        self.hub_key = hub_key

    def link(self) -> None:
        """The hub treats VNE51 as a partner deployment (while unlinked, VNE51 is a local tenant
        of the hub, as the hub's other tests expect)."""
        self.hub.register_partner(SPOKE, "spoke", self.spoke, "hub-fa565", self.hub_key)

    def unlink(self) -> None:
        PartnerDirectory(Redis.from_url(self.hub.redis_url)).remove(SPOKE)

    def __iter__(self):
        return iter((self.hub, self.spoke, self.hub_system, self.spoke_system))


def start_pair(stack, var, keys, free_port) -> Pair:
    hub = Deployment(stack.cfg)
    spoke_cfg = stackmod.StackConfig(
        var_dir=var,
        proxy_port=free_port(),
        metrics_port=free_port(),  # its own metrics listener, never the default 9464 of a make up stack
        store_port=free_port(),
        redis_url=stack.cfg.effective_redis_url.rsplit("/", 1)[0] + "/1",  # its own Redis database
        h2_url=f"jdbc:h2:file:{var}/h2/spoke;DB_CLOSE_ON_EXIT=FALSE",  # kept across a store restart
        proxy_env={
            "FHIRPLUG_WORKERS": "1",
            "FHIRPLUG_ODS": SPOKE,
            "FHIRPLUG_ROLE": "spoke",
            "FHIRPLUG_SWEEP_SECONDS": "3",
            "FHIRPLUG_JOB_MONITORING_INTERVAL": "2",
        },
    )
    spoke = Deployment(spoke_cfg)
    stackmod.start_store(spoke_cfg)
    stackmod.load_profiles(spoke_cfg)
    stackmod.start_proxy(spoke_cfg)
    stackmod.start_worker(spoke_cfg)
    stackmod.start_worker(stack.cfg)  # the hub's worker
    hub_key, hub_jwks = partner_keys.generate("hub-at-spoke", keys, "RS512", rsa_bits=2048)
    spoke_key, spoke_jwks = partner_keys.generate("spoke-at-hub", keys, "RS512", rsa_bits=2048)
    hub.register_client("spoke-vne51", "spoke", SPOKE, json.loads(spoke_jwks.read_text()))
    spoke.register_client("hub-fa565", "hub", HUB, json.loads(hub_jwks.read_text()))
    spoke.register_partner(HUB, "hub", hub, "spoke-vne51", spoke_key)
    spoke_system = oauth.make_client(spoke.redis_url, keys, "spoke-system", "spoke", SPOKE)
    hub_system = oauth.make_client(hub.redis_url, keys, "hub-system", "hub", HUB)
    hub_session = oauth.session_for(hub.fhir, hub_system)
    spoke_session = oauth.session_for(spoke.fhir, spoke_system)
    return Pair(hub, spoke, hub_session, spoke_session, hub_key)


def stop_pair(stack, pair: Pair) -> None:
    stackmod.stop_all(pair.spoke.cfg)
    stackmod.stop(stack.cfg, "worker")
    pair.unlink()
