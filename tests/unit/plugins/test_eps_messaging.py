"""$process-message served by the proxy: who may send which event, the envelope, exactly once by
message id (Redis claim, store fallback), sync answers in both forms, and the async pattern's
custody and SSRF rules. Handlers are replaced by recorders here (their rules are tested in
tests/unit/eps); the fake store and fake Redis stand in for the real ones."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import pytest

from eps import events, records
from eps.events import EventResult
from plugins import eps_messaging as plugin_module
from plugins.eps_messaging import CAPABILITY, KEY_PREFIX, EpsMessaging
from proxy.config import ConfigError, Settings
from proxy.context import Client
from proxy.errors import FhirError
from proxy.partners import KEY as PARTNERS
from proxy.partners import Partner
from proxy.response import ProxyResponse
from tests.support.fake_redis import FakeRedis
from tests.support.plugin_context import ScriptedStore, request_context, searchset

PRESCRIBER = Client("gp-system", "A83008", "prescriber")
PHARMACY = Client("pharmacy-system", "FA565", "dispenser")
GP_BASE = "https://gp.example/fhir"


def message(event: str = "prescription-order", message_id: str = "m-1", **extra) -> dict:
    header = {
        "resourceType": "MessageHeader",
        "eventCoding": {"system": events.EVENT_SYSTEM, "code": event},
        "source": {"endpoint": GP_BASE},
    }
    return {
        "resourceType": "Bundle",
        "id": message_id,
        "type": "message",
        "entry": [{"resource": header}],
        **extra,
    }


class Recorder:
    """A handler that records its calls and answers as told; stores through ``store`` if asked."""

    def __init__(self, result: EventResult | None = None, error: FhirError | None = None, store_it=True):
        self.calls: list[tuple] = []
        self.result, self.error, self.store_it = result or EventResult(), error, store_it

    def __call__(self, message, sender, store, now):
        self.calls.append((message, sender, store, now))
        if self.error is not None:
            raise self.error
        if self.store_it:
            task = {
                "resourceType": "Task",
                "meta": {"security": [{"system": records.TENANT_SYSTEM, "code": sender.ods}]},
            }
            store.as_caller(sender.role, sender.ods).transaction(
                {
                    "resourceType": "Bundle",
                    "type": "transaction",
                    "entry": [{"fullUrl": "urn:uuid:t", "resource": task}],
                }
            )
        return self.result


@pytest.fixture
def handler(monkeypatch):
    recorder = Recorder()
    monkeypatch.setitem(events.HANDLERS, "prescription-order", recorder)
    return recorder


@pytest.fixture
def queued(monkeypatch):
    deliveries = []
    monkeypatch.setattr(plugin_module, "enqueue", lambda delivery, redis: deliveries.append(delivery))
    return deliveries


def store_answering(found_task: dict | None = None) -> ScriptedStore:
    return ScriptedStore(
        {
            ("POST", ""): {
                "resourceType": "Bundle",
                "type": "transaction-response",
                "entry": [{"response": {"status": "201 Created", "location": "Task/7/_history/1"}}],
            },
            ("GET", "Task"): searchset(*([found_task] if found_task else [])),
            ("PUT", "Basic/*"): {"resourceType": "Basic"},
        }
    )


def call(
    body: object = None,
    *,
    client: Client = PRESCRIBER,
    method: str = "POST",
    query: list[tuple[str, str]] | None = None,
    headers: dict | None = None,
    redis: FakeRedis | None = None,
    store: ScriptedStore | None = None,
    plugin: EpsMessaging | None = None,
) -> ProxyResponse:
    ctx = request_context(
        "operation", method, client=client, query=query, headers=headers, store=store or store_answering()
    )
    ctx.interaction = replace(ctx.interaction, operation="$process-message")
    ctx.request = replace(ctx.request, content_type="application/fhir+json")
    raw = json.dumps(message() if body is None else body).encode()
    ctx.body_source = lambda: raw
    plugin = plugin or EpsMessaging(redis or FakeRedis(), trust_anchors=[], source="https://us.example/fhir")
    return plugin.fhirplug_request(ctx=ctx)


def refusal(**kwargs) -> FhirError:
    with pytest.raises(FhirError) as raised:
        call(**kwargs)
    return raised.value


def header(response: ProxyResponse) -> dict:
    return response.resource["entry"][0]["resource"]


# ------------------------------------------------------------------ dispatch and who


def test_a_prescriber_gets_a_response_message_naming_its_message(handler):
    answer = call()
    assert answer.status == 200 and answer.resource["type"] == "message"
    assert header(answer)["response"] == {"identifier": "m-1", "code": "ok"}
    [(_, sender, _, _)] = handler.calls
    assert (sender.client_id, sender.role, sender.ods) == ("gp-system", "prescriber", "A83008")


def test_prefer_operation_outcome_answers_epss_way(handler):
    answer = call(headers={"Prefer": "return=OperationOutcome"})
    assert answer.resource == {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "information", "code": "informational"}],
    }


def test_a_pharmacy_may_not_send_a_prescription_order(handler):
    error = refusal(client=PHARMACY)
    assert error.status == 403 and handler.calls == []


@pytest.mark.parametrize("role", ["admin", "reader", "spoke", "hub", "validator"])
def test_roles_other_than_eps_systems_are_refused(handler, role):
    assert refusal(client=Client("x", "FA001", role)).status == 403


def test_an_unknown_event_is_unsupported(handler):
    error = refusal(body=message("prescription-teleport"))
    assert (error.status, error.expression) == (400, ["MessageHeader.eventCoding.code"])


def test_only_post(handler):
    assert refusal(method="GET").status == 405


def test_a_handlers_refusal_is_a_fatal_error_response_with_its_status(monkeypatch):
    monkeypatch.setitem(events.HANDLERS, "prescription-order", Recorder(error=FhirError(400, "bad", ["X.y"])))
    answer = call()
    assert answer.status == 400
    assert header(answer)["response"]["code"] == "fatal-error"
    assert answer.resource["entry"][1]["resource"]["issue"][0]["expression"] == ["X.y"]


def test_a_store_failure_is_a_plain_503_and_releases_the_claim(monkeypatch):
    redis = FakeRedis()
    monkeypatch.setitem(events.HANDLERS, "prescription-order", Recorder(error=FhirError(503, "store down")))
    assert refusal(redis=redis).status == 503
    assert redis.get(KEY_PREFIX + "A83008/m-1") is None


@pytest.mark.parametrize("query", [[("foo", "1")], [("async", "maybe")], [("response-url", GP_BASE)]])
def test_unknown_or_misused_parameters_are_refused(handler, query):
    assert refusal(query=query).status == 400


# ------------------------------------------------------------------ exactly once


def test_a_resend_gets_the_first_answer_and_the_handler_runs_once(handler):
    redis = FakeRedis()
    first, again = call(redis=redis), call(redis=redis)
    assert first.resource == again.resource and len(handler.calls) == 1


def test_other_content_under_the_same_id_is_a_conflict(handler):
    redis = FakeRedis()
    call(redis=redis)
    error = refusal(body=message(extra="changed"), redis=redis)
    assert (error.status, error.expression) == (409, ["Bundle.id"])


def test_a_refused_message_is_judged_afresh(monkeypatch):
    redis = FakeRedis()
    recorder = Recorder(error=FhirError(400, "bad"))
    monkeypatch.setitem(events.HANDLERS, "prescription-order", recorder)
    call(redis=redis)
    call(redis=redis)
    assert len(recorder.calls) == 2


def test_a_replayed_event_is_answered_ok_and_stores_nothing(monkeypatch):
    monkeypatch.setitem(
        events.HANDLERS, "prescription-order", Recorder(EventResult(replayed=True), store_it=False)
    )
    store = store_answering()
    answer = call(store=store)
    assert answer.status == 200 and header(answer)["response"] == {"identifier": "m-1", "code": "ok"}
    assert [c for c in store.calls if c["method"] != "GET"] == []


def test_redis_down_is_503():
    class Down(FakeRedis):
        def set(self, *a, **k):
            from redis.exceptions import ConnectionError

            raise ConnectionError("down")

    assert refusal(redis=Down()).status == 503


# ------------------------------------------------------------------ asynchronous


def registered(redis: FakeRedis, base: str = GP_BASE) -> None:
    partner = Partner("A83008", "prescriber", base, "https://gp.example/oauth2/token", "us", "/keys/us.json")
    redis.hset(PARTNERS, "A83008", json.dumps(asdict(partner)))


def test_async_stores_the_response_delivery_with_the_message_and_answers_202(handler, queued):
    redis, store = FakeRedis(), store_answering()
    registered(redis)
    answer = call(query=[("async", "true")], redis=redis, store=store)
    assert answer.status == 202 and answer.resource["issue"][0]["severity"] == "information"
    [transaction] = [c["body"] for c in store.calls if c["method"] == "POST"]
    basic = transaction["entry"][-1]
    assert basic["request"]["method"] == "PUT" and basic["resource"]["resourceType"] == "Basic"
    assert basic["resource"]["meta"]["security"] == [{"system": records.TENANT_SYSTEM, "code": "A83008"}]
    [delivery] = queued
    assert delivery.partner == "A83008" and delivery.path == "$process-message?async=true"
    assert basic["request"]["url"] == f"Basic/{delivery.id}"
    assert delivery.body["entry"][0]["resource"]["response"] == {"identifier": "m-1", "code": "ok"}


def test_async_resend_is_acknowledged_again_and_queues_nothing_new(handler, queued):
    redis = FakeRedis()
    registered(redis)
    first = call(query=[("async", "true")], redis=redis)
    again = call(query=[("async", "true")], redis=redis)
    assert first.resource == again.resource and len(queued) == 1 and len(handler.calls) == 1


def test_async_response_url_under_the_registered_base_is_used(handler, queued):
    redis = FakeRedis()
    registered(redis)
    call(query=[("async", "true"), ("response-url", GP_BASE + "/inbox/$process-message")], redis=redis)
    assert queued[0].path == "inbox/$process-message?async=true"


@pytest.mark.parametrize(
    "url", ["http://169.254.169.254/", "https://gp.example/other", "https://evil.example/fhir"]
)
def test_async_never_answers_to_an_address_of_the_requests_choosing(handler, queued, url):
    redis = FakeRedis()
    registered(redis)
    error = refusal(query=[("async", "true"), ("response-url", url)], redis=redis)
    assert (error.status, error.expression) == (400, ["response-url"])
    assert handler.calls == [] and queued == []


def test_async_without_a_registered_endpoint_is_refused(handler):
    error = refusal(query=[("async", "true")])
    assert (error.status, error.expression) == (400, ["MessageHeader.source.endpoint"])


def test_async_refusal_is_answered_at_once_and_sends_nothing(monkeypatch, queued):
    redis = FakeRedis()
    registered(redis)
    monkeypatch.setitem(events.HANDLERS, "prescription-order", Recorder(error=FhirError(400, "bad")))
    assert call(query=[("async", "true")], redis=redis).status == 400
    assert queued == []


# ------------------------------------------------------------------ configuration and discovery


def test_an_unusable_trust_dir_stops_the_proxy(tmp_path):
    plugin = EpsMessaging()
    settings = Settings(public_base_url="https://x/fhir", eps_trust_dir=str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="FHIRPLUG_EPS_TRUST_DIR"):
        plugin.fhirplug_configure(settings=settings, redis=FakeRedis())


def test_no_trust_dir_starts_but_accepts_no_prescription():
    from eps import order

    EpsMessaging().fhirplug_configure(settings=Settings(public_base_url="https://x/fhir"), redis=FakeRedis())
    assert order._trust.anchors is None


def test_metadata_lists_the_operation():
    ctx = request_context("capabilities")
    response = ProxyResponse.from_resource(
        200, {"resourceType": "CapabilityStatement", "rest": [{"mode": "server"}]}
    )
    EpsMessaging(FakeRedis()).fhirplug_response(ctx=ctx, response=response)
    assert CAPABILITY in response.resource["rest"][0]["operation"]


def test_async_replayed_event_is_acknowledged_and_queues_nothing(monkeypatch, queued):
    redis, store = FakeRedis(), store_answering()
    registered(redis)
    monkeypatch.setitem(
        events.HANDLERS, "prescription-order", Recorder(EventResult(replayed=True), store_it=False)
    )
    answer = call(query=[("async", "true")], redis=redis, store=store)
    assert answer.status == 202 and queued == []
    assert [c for c in store.calls if c["method"] != "GET"] == []


def test_a_handler_that_stores_without_a_transaction_still_gets_its_outbox_record(monkeypatch, queued):
    redis, store = FakeRedis(), store_answering()
    registered(redis)
    monkeypatch.setitem(events.HANDLERS, "prescription-order", Recorder(store_it=False))
    assert call(query=[("async", "true")], redis=redis, store=store).status == 202
    [put] = [c for c in store.calls if c["method"] == "PUT"]
    assert put["path"] == f"Basic/{queued[0].id}" and "subject" not in put["body"]
