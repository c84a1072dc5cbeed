"""The web console in a real browser (headless Chromium) against the real proxy, store and Redis:
sign-in through the authorization-code + PKCE flow, lock-out, CSRF refusal, sign-out, uploading
a profile and validating a bundle. Screenshots of the main pages go to var/console-shots/."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from redis import Redis
from rq import Queue
from rq.job import Job
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from console.accounts import AccountStore
from console.audit import CONSOLE_ACTION_SYSTEM
from forwarding.delivery import QUEUE
from proxy.auth.registry import ClientRegistry
from tests.integration.test_queue_cli import kill, put
from tests.support import browser as browser_support
from tests.support import oauth

pytestmark = pytest.mark.integration
PASSWORD = "correct horse battery staple"
# screenshots of the main pages; a run writes them under var/ (the README's copies in docs/console
# are refreshed by hand: FHIRPLUG_CONSOLE_SHOTS=docs/console), so tests leave the tree as it was
SHOTS = Path(
    os.environ.get("FHIRPLUG_CONSOLE_SHOTS") or Path(__file__).resolve().parents[2] / "var" / "console-shots"
)
SHOTS.mkdir(parents=True, exist_ok=True)


@pytest.fixture(scope="module")
def console_redis(stack) -> str:
    """The console's proxy keeps its people, clients and queue in a Redis database of its own, on
    which no worker listens: a dead letter planted for the operator pages stays where the test put
    it (on the run's database, a worker of an earlier module could take it)."""
    url = stack.redis_url.rsplit("/", 1)[0] + "/6"
    Redis.from_url(url).flushdb()
    return url


@pytest.fixture(scope="module")
def origin(stack, console_redis) -> str:
    base, _ = stack.start_proxy({"REDIS_URL": console_redis})
    return base.removesuffix("/fhir")


@pytest.fixture(scope="module")
def accounts(console_redis) -> AccountStore:
    return AccountStore(Redis.from_url(console_redis))


@pytest.fixture(scope="module")
def people(accounts) -> dict[str, str]:
    names = {}
    for role in ("validator", "operator", "admin"):
        name = f"{role}-{uuid.uuid4().hex[:6]}"
        accounts.add(name, role, PASSWORD)
        names[role] = name
    return names


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    d = browser_support.start(tmp_path_factory.mktemp("chromium"))
    yield d
    d.quit()


@pytest.fixture
def browser(driver, origin):
    """A browser with no console cookies left from another test."""
    driver.get(origin + "/console/static/console.css")
    driver.delete_all_cookies()
    return driver


def wait_for(driver, css: str, timeout: float = 20):
    return WebDriverWait(driver, timeout).until(ec.presence_of_element_located((By.CSS_SELECTOR, css)))


def sign_in(driver, origin: str, username: str, password: str = PASSWORD, start: str = "/console/"):
    driver.get(origin + start)
    wait_for(driver, "#username")
    driver.find_element(By.ID, "username").clear()
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "signin").click()


def session_cookie(driver) -> str:
    return next(c["value"] for c in driver.get_cookies() if c["name"] == "__Host-fhirplug-console")


def audited(stack, username: str, action: str) -> list[dict]:
    r = stack.session().get(
        f"{stack.fhir}/AuditEvent",
        params={"altid": username, "subtype": f"{CONSOLE_ACTION_SYSTEM}|console-{action}"},
    )
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry") or []]


def test_the_root_redirects_to_the_console(origin):
    r = requests.get(origin + "/", allow_redirects=False, timeout=10)
    assert r.status_code == 302 and r.headers["Location"].endswith("/console/")


def test_a_validator_signs_in_and_the_cookie_is_locked_down(stack, browser, origin, people):
    sign_in(browser, origin, people["validator"])
    who = wait_for(browser, "#who")
    assert people["validator"] in who.text and "validator" in who.text
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / "home.png"))
    cookie = next(c for c in browser.get_cookies() if c["name"] == "__Host-fhirplug-console")
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Lax" and cookie["path"] == "/"
    assert audited(stack, people["validator"], "signin")


def test_a_session_id_planted_before_sign_in_is_not_the_one_after(browser, origin, people):
    browser.get(origin + "/console/static/console.css")
    planted = "planted-" + uuid.uuid4().hex
    browser.add_cookie({"name": "__Host-fhirplug-console", "value": planted, "path": "/", "secure": True})
    sign_in(browser, origin, people["validator"])
    wait_for(browser, "#who")
    assert session_cookie(browser) != planted


def test_a_wrong_password_is_refused_and_repeated_ones_lock_the_account(stack, browser, origin, accounts):
    name = f"locky-{uuid.uuid4().hex[:6]}"
    accounts.add(name, "validator", PASSWORD)
    sign_in(browser, origin, name, "not the password at all")
    assert "wrong" in wait_for(browser, "#error").text
    assert "/console/oauth2/authorize" in browser.current_url
    for _ in range(4):
        browser.find_element(By.ID, "password").send_keys("still not the password")
        browser.find_element(By.ID, "signin").click()
        wait_for(browser, "#error")
    assert "locked" in browser.find_element(By.ID, "error").text
    browser.save_screenshot(str(SHOTS / "locked.png"))
    # the right password now is refused too, until the lock ends or an administrator resets it
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.ID, "signin").click()
    assert "locked" in wait_for(browser, "#error").text
    assert not any(c["name"] == "__Host-fhirplug-console" for c in browser.get_cookies())
    assert audited(stack, name, "signin-locked")
    accounts.reset(name, PASSWORD + "!")
    sign_in(browser, origin, name, PASSWORD + "!")
    assert name in wait_for(browser, "#who").text


def test_a_form_post_without_its_csrf_token_is_refused(browser, origin, people):
    sign_in(browser, origin, people["validator"], start="/console/validate")
    wait_for(browser, "#validate")
    cookie = session_cookie(browser)
    jar = {"Cookie": f"__Host-fhirplug-console={cookie}"}
    bundle = json.dumps({"resourceType": "Bundle", "type": "collection"})
    r = requests.post(origin + "/console/validate", data={"text": bundle}, headers=jar, timeout=30)
    assert r.status_code == 403 and "security token" in r.text
    r = requests.post(
        origin + "/console/validate", data={"text": bundle, "csrf_token": "forged"}, headers=jar, timeout=30
    )
    assert r.status_code == 403


def test_sign_out_ends_the_session_on_the_server(browser, origin, people):
    sign_in(browser, origin, people["validator"])
    wait_for(browser, "#who")
    cookie = session_cookie(browser)
    browser.find_element(By.ID, "signout").click()
    wait_for(browser, "#signed-out")
    r = requests.get(
        origin + "/console/",
        headers={"Cookie": f"__Host-fhirplug-console={cookie}"},
        allow_redirects=False,
        timeout=10,
    )
    assert r.status_code == 302 and r.headers["Location"].startswith("/console/login")
    browser.get(origin + "/console/")
    wait_for(browser, "#username")


def test_sign_in_does_not_redirect_off_site(browser, origin, people):
    sign_in(browser, origin, people["validator"], start="/console/login?next=https://evil.example/")
    wait_for(browser, "#who")
    assert urlsplit(browser.current_url).netloc == urlsplit(origin).netloc
    assert urlsplit(browser.current_url).path == "/console/"


def test_an_operator_cannot_reach_the_validator_pages(browser, origin, people):
    sign_in(browser, origin, people["operator"], start="/console/validate")
    assert "role" in wait_for(browser, "#error").text


def test_a_validator_uploads_a_profile_and_sees_it_listed(stack, browser, origin, people, tmp_path):
    url = f"https://fhirplug.test/StructureDefinition/console-{uuid.uuid4().hex[:8]}"
    sd = {
        "resourceType": "StructureDefinition",
        "url": url,
        "version": "1.2.0",
        "name": "ConsoleUpload",
        "title": "Console upload <script>alert(1)</script>",
        "status": "active",
        "kind": "resource",
        "abstract": False,
        "type": "Patient",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Patient",
        "derivation": "constraint",
        "differential": {"element": [{"id": "Patient.birthDate", "path": "Patient.birthDate", "min": 1}]},
    }
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(sd))
    sign_in(browser, origin, people["validator"], start="/console/profiles")
    wait_for(browser, "#upload")
    browser.find_element(By.ID, "file").send_keys(str(path))
    browser.find_element(By.ID, "upload").click()
    title = wait_for(browser, "#result-title").text
    assert title.startswith("Accepted") and url in title and "1.2.0" in title, browser.find_element(
        By.ID, "result"
    ).text
    rows = browser.find_element(By.ID, "profiles").text
    assert url in rows
    # the name came back as text, not markup: the page shows it literally and runs nothing
    assert "<script>alert(1)</script>" in browser.page_source.replace("&lt;", "<").replace("&gt;", ">")
    assert not browser.find_elements(By.XPATH, "//script")
    browser.save_screenshot(str(SHOTS / "profiles.png"))
    assert audited(stack, people["validator"], "profile-upload")


def test_a_refused_profile_shows_the_reasons(browser, origin, people):
    sign_in(browser, origin, people["validator"], start="/console/profiles")
    wait_for(browser, "#upload")
    bad = {"resourceType": "StructureDefinition", "url": "https://fhirplug.test/x", "status": "nonsense"}
    browser.find_element(By.ID, "text").send_keys(json.dumps(bad))
    browser.find_element(By.ID, "upload").click()
    assert wait_for(browser, "#result-title").text.startswith("Refused")
    assert browser.find_elements(By.CSS_SELECTOR, "#issues tbody tr")


def test_a_validator_validates_a_bad_bundle_and_sees_the_element_marked(stack, browser, origin, people):
    # parses, but breaks the base definitions: Bundle.type is 1..1, an Observation needs status and code
    bundle = {
        "resourceType": "Bundle",
        "entry": [{"resource": {"resourceType": "Observation", "note": [{"text": "x"}]}}],
    }
    text = json.dumps(bundle, indent=2)
    sign_in(browser, origin, people["validator"], start="/console/validate")
    wait_for(browser, "#validate")
    browser.find_element(By.ID, "text").send_keys(text)
    browser.find_element(By.ID, "validate").click()
    title = wait_for(browser, "#result-title").text
    assert title.startswith("Not valid"), browser.find_element(By.ID, "result").text
    rows = browser.find_elements(By.CSS_SELECTOR, "#issues tbody tr")
    errors = [r.text for r in rows if r.find_element(By.CSS_SELECTOR, "td.severity").text == "error"]
    assert any("Bundle.type" in e for e in errors), errors
    assert any("Observation.status" in e or "status" in e for e in errors), errors
    # the Observation's lines are marked in the document as shown, and the issue links to its line
    marked = browser.find_elements(By.CSS_SELECTOR, "#document li.mark-error")
    assert marked, browser.find_element(By.ID, "result").text
    observation_line = next(
        n for n, line in enumerate(text.splitlines(), 1) if '"resourceType": "Observation"' in line
    )
    marked_lines = {int(li.get_attribute("id").removeprefix("line-")) for li in marked}
    assert any(n >= observation_line - 1 for n in marked_lines), (marked_lines, observation_line)
    browser.save_screenshot(str(SHOTS / "validate.png"))
    browser.find_elements(By.CSS_SELECTOR, "a.line-link")[-1].click()
    assert browser.current_url.endswith("#line-" + str(max(marked_lines))) or "#line-" in browser.current_url
    assert audited(stack, people["validator"], "validate")


def test_a_validator_cannot_reach_the_operator_pages(browser, origin, people):
    sign_in(browser, origin, people["validator"], start="/console/operations")
    assert "role" in wait_for(browser, "#error").text


def test_an_operator_sees_a_dead_letter_and_replays_it_after_confirming(
    stack, browser, origin, people, console_redis
):
    queue = Queue(QUEUE, connection=Redis.from_url(console_redis))
    partner = "FC" + uuid.uuid4().hex[:3].upper()
    job = kill(queue, put(queue, partner), reason="422: the partner refused <b>it</b>")
    try:
        sign_in(browser, origin, people["operator"], start="/console/operations")
        dead = wait_for(browser, "#dead")
        assert job.id in dead.text and "the partner refused <b>it</b>" in dead.text  # shown as text
        partners = browser.find_element(By.ID, "partners").text
        assert partner in partners
        browser.save_screenshot(str(SHOTS / "operations.png"))
        browser.find_element(By.ID, f"replay-{job.id}").click()
        wait_for(browser, "#confirm")
        assert job.id not in queue.get_job_ids()  # nothing happens before the confirmation
        browser.find_element(By.ID, "confirm").click()
        assert wait_for(browser, "#result-title").text.startswith(f"Replayed {job.id}")
        assert job.id in queue.get_job_ids() and job.id not in queue.failed_job_registry.get_job_ids()
        assert audited(stack, people["operator"], "replay")
    finally:
        queue.remove(job.id)
        queue.failed_job_registry.remove(job.id)
        Job.fetch(job.id, connection=queue.connection).delete()


def test_an_administrator_disables_and_enables_an_oauth_client(stack, browser, origin, people, console_redis):
    client = oauth.make_client(
        console_redis, stack.keys_dir, f"console-switch-{uuid.uuid4().hex[:6]}", "reader"
    )
    sign_in(browser, origin, people["admin"], start="/console/clients")
    wait_for(browser, "#clients")
    browser.find_element(By.ID, f"switch-{client.client_id}").click()
    assert "disabled" in wait_for(browser, "#result-title").text
    assert ClientRegistry(Redis.from_url(console_redis)).get(client.client_id).enabled is False
    browser.find_element(By.ID, f"switch-{client.client_id}").click()
    assert "enabled" in wait_for(browser, "#result-title").text
    assert ClientRegistry(Redis.from_url(console_redis)).get(client.client_id).enabled is True
    assert audited(stack, people["admin"], "client-disable")


def test_an_operator_cannot_switch_clients(browser, origin, people):
    sign_in(browser, origin, people["operator"], start="/console/clients")
    assert "role" in wait_for(browser, "#error").text


def test_a_person_disabled_while_signed_in_is_refused_the_next_page(browser, origin, accounts):
    name = f"leaver-{uuid.uuid4().hex[:6]}"
    accounts.add(name, "validator", PASSWORD)
    sign_in(browser, origin, name)
    wait_for(browser, "#who")
    accounts.set_enabled(name, False)
    browser.get(origin + "/console/profiles")
    assert "disabled" in wait_for(browser, "#error").text
    accounts.set_enabled(name, True)
    browser.get(origin + "/console/profiles")
    wait_for(browser, "#username")  # the session ended: signing in again is needed


@pytest.mark.parametrize("kind", ["json", "junit"])
def test_a_validation_report_downloads_as_fhirplug_validate_writes_it(browser, origin, people, kind):
    sign_in(browser, origin, people["validator"], start="/console/validate")
    wait_for(browser, "#validate")
    page = browser.page_source
    csrf = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    jar = {"Cookie": f"__Host-fhirplug-console={session_cookie(browser)}"}
    bundle = json.dumps({"resourceType": "Bundle"}, indent=2)  # Bundle.type missing
    r = requests.post(
        origin + "/console/validate",
        data={"text": bundle, "csrf_token": csrf, "report": kind},
        headers=jar,
        timeout=60,
    )
    assert r.status_code == 200 and "attachment" in r.headers["Content-Disposition"]
    if kind == "json":
        report = r.json()
        assert report["summary"]["errors"] >= 1
        assert any("Bundle.type" in i["diagnostics"] for i in report["files"][0]["issues"])
    else:
        assert r.text.startswith("<?xml") and "<failure" in r.text and "Bundle.type" in r.text


def test_an_operator_follows_a_tasks_hand_offs_from_its_audit_records(stack, browser, origin, people):
    admin = stack.session()
    task = {"resourceType": "Task", "status": "requested", "intent": "order"}
    r = admin.post(f"{stack.fhir}/Task", json=task, headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 201, r.text
    task_id = r.json()["id"]
    for code, ods, when in (
        ("received", "FA565", "2026-01-01T10:00:00Z"),
        ("accepted", "FH123", "2026-01-01T11:00:00Z"),
    ):
        event = {
            "resourceType": "AuditEvent",
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
            "subtype": [{"system": "https://fhirplug.org/fhir/CodeSystem/hand-off", "code": code}],
            "recorded": when,
            "agent": [
                {
                    "who": {
                        "identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": ods}
                    },
                    "altId": f"client-{ods}",
                    "requestor": True,
                }
            ],
            "source": {"observer": {"identifier": {"value": "FA565"}}},
            "entity": [{"what": {"reference": f"Task/{task_id}"}}],
        }
        r = admin.post(
            f"{stack.fhir}/AuditEvent", json=event, headers={"Content-Type": "application/fhir+json"}
        )
        assert r.status_code == 201, r.text
    sign_in(browser, origin, people["operator"], start=f"/console/journey?task={task_id}")
    rows = [r.text for r in wait_for(browser, "#journey").find_elements(By.CSS_SELECTOR, "tbody tr")]
    assert (
        len(rows) == 2
        and "received" in rows[0]
        and "FA565" in rows[0]
        and "accepted" in rows[1]
        and "FH123" in rows[1]
    )


# ---- an external OpenID Connect provider instead of passwords ----------------------------------


@pytest.fixture(scope="module")
def oidc_origin(stack, console_redis):
    """A second proxy on the same store whose console signs people in through an OpenID provider
    (oidc-provider-mock: a real provider over HTTP, whose sign-in form takes any subject)."""
    from oidc_provider_mock import run_server_in_thread

    with run_server_in_thread(require_nonce=True) as server:
        env = {
            "FHIRPLUG_CONSOLE_OIDC_ISSUER": f"http://localhost:{server.server_port}",
            "FHIRPLUG_CONSOLE_OIDC_CLIENT_ID": "fhirplug-console-test",
            "FHIRPLUG_CONSOLE_OIDC_CLIENT_SECRET": "a test secret",
            "REDIS_URL": console_redis,  # the accounts the tests add
        }
        base, _ = stack.start_proxy(env)
        yield base.removesuffix("/fhir")


def provider_sign_in(driver, origin: str, subject: str) -> None:
    driver.get(origin + "/console/")
    field = wait_for(driver, "input[name=sub]")
    assert "localhost" in driver.current_url  # at the provider, not at our password form
    field.send_keys(subject)
    field.submit()


def test_a_person_signs_in_through_the_external_provider(stack, browser, oidc_origin, accounts):
    name = f"dr-{uuid.uuid4().hex[:6]}@example.test"
    accounts.add_external(name, "operator")
    provider_sign_in(browser, oidc_origin, name)
    who = wait_for(browser, "#who")
    assert name in who.text and "operator" in who.text
    assert audited(stack, name, "signin")


def test_a_provider_subject_without_an_account_here_is_refused(browser, oidc_origin):
    provider_sign_in(browser, oidc_origin, f"stranger-{uuid.uuid4().hex[:6]}@example.test")
    assert "no console account" in wait_for(browser, "#error").text
    assert not any(c["name"] == "__Host-fhirplug-console" for c in browser.get_cookies())


def test_with_a_provider_the_password_form_is_off(oidc_origin):
    r = requests.get(oidc_origin + "/console/oauth2/authorize", timeout=10, allow_redirects=False)
    assert r.status_code == 404
