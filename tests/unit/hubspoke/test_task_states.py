"""The hub-and-spoke Task state machine: who may move a Task where, and who may change what."""

import itertools

import pytest

from fhirpatch import apply_patch
from hubspoke.task_states import (
    ALLOWED_CHANGES,
    FINAL_STATUSES,
    STATUSES,
    TRANSITIONS,
    actor_of,
    changed_elements,
    check_changes,
    check_task_update,
    check_transition,
)
from proxy.context import Client
from proxy.errors import FhirError
from tests.support.tasks import FHIR_JSON, op, params, task

# ---------------------------------------------------------------- the state machine, spelled out

# Written out by hand (not derived from TRANSITIONS) so the table test checks the module against
# the design: spoke creates `requested`, hub receives/accepts/rejects, works, holds, ends; the
# spoke may cancel until work starts.
OWNER_MOVES = {
    ("requested", "received"),
    ("requested", "accepted"),
    ("requested", "rejected"),
    ("received", "accepted"),
    ("received", "rejected"),
    ("accepted", "in-progress"),
    ("in-progress", "on-hold"),
    ("in-progress", "completed"),
    ("in-progress", "failed"),
    ("on-hold", "in-progress"),
}
REQUESTER_MOVES = {
    ("requested", "cancelled"),
    ("received", "cancelled"),
    ("accepted", "cancelled"),
}
LEGAL = {(a, b, "owner") for a, b in OWNER_MOVES} | {(a, b, "requester") for a, b in REQUESTER_MOVES}


def expected(old, new, actor):
    """None (passes), 403 or 409 for one (from, to, actor)."""
    if old == new:
        return None  # keeping the status is not a move
    if actor == "both":
        return None if (old, new) in OWNER_MOVES | REQUESTER_MOVES else 409
    if (old, new, actor) in LEGAL:
        return None
    if (old, new) in OWNER_MOVES | REQUESTER_MOVES:
        return 403
    return 409


def test_statuses_are_the_twelve_r4_codes():
    assert len(STATUSES) == len(set(STATUSES)) == 12
    assert {"draft", "ready", "entered-in-error", "on-hold"} <= set(STATUSES)


def test_transitions_table_is_the_design():
    assert {(a, b, who) for (a, b), who in TRANSITIONS.items()} == LEGAL


CASES = list(itertools.product(STATUSES, STATUSES, ["owner", "requester", "both"]))


@pytest.mark.parametrize("old,new,actor", CASES, ids=[f"{a}->{b}-{c}" for a, b, c in CASES])
def test_every_status_pair_for_every_actor(old, new, actor):
    want = expected(old, new, actor)
    if want is None:
        assert check_transition(old, new, actor) is None
        return
    with pytest.raises(FhirError) as caught:
        check_transition(old, new, actor)
    err = caught.value
    assert err.status == want
    assert err.expression == ["Task.status"]
    assert f"'{old}'" in err.diagnostics and f"'{new}'" in err.diagnostics
    if want == 409:
        assert err.code == "conflict"
        assert err.diagnostics.startswith(f"Task cannot move from '{old}' to '{new}'")
    else:
        assert err.code == "forbidden"
        other = "requester" if actor == "owner" else "owner"
        assert err.diagnostics.startswith(f"only the {other} may move a Task from '{old}' to '{new}'")


def test_exactly_the_legal_triples_pass():
    passed = set()
    for old, new, actor in itertools.product(STATUSES, STATUSES, ["owner", "requester"]):
        if old == new:
            continue
        try:
            check_transition(old, new, actor)
        except FhirError:
            continue
        passed.add((old, new, actor))
    assert passed == LEGAL


@pytest.mark.parametrize("old,new", sorted(TRANSITIONS))
def test_every_reverse_of_a_legal_move_fails(old, new):
    if (new, old) in TRANSITIONS:  # the one round trip the workflow has: hold and resume
        assert {old, new} == {"in-progress", "on-hold"}
        return
    for actor in ("owner", "requester", "both"):
        with pytest.raises(FhirError) as caught:
            check_transition(new, old, actor)
        assert caught.value.status == 409
        assert f"from '{new}' to '{old}'" in caught.value.diagnostics


@pytest.mark.parametrize("final", sorted(FINAL_STATUSES))
def test_nothing_leaves_a_final_status(final):
    assert not [to for (frm, to) in TRANSITIONS if frm == final]
    with pytest.raises(FhirError) as caught:
        check_transition(final, "in-progress", "both")
    assert "final status" in caught.value.diagnostics


@pytest.mark.parametrize("status", ["draft", "ready", "entered-in-error"])
def test_unused_codes_are_neither_start_nor_end_of_a_move(status):
    assert all(status not in pair for pair in TRANSITIONS)


@pytest.mark.parametrize(
    "old,new,which",
    [("requested", "done", "updated"), ("bogus", "accepted", "stored"), ("requested", None, "")],
)
def test_a_status_that_is_not_a_task_status_is_422(old, new, which):
    with pytest.raises(FhirError) as caught:
        check_transition(old, new, "owner")
    assert caught.value.status == 422
    assert caught.value.expression == ["Task.status"]
    assert which in caught.value.diagnostics


def test_an_unknown_actor_is_a_programming_error():
    with pytest.raises(ValueError):
        check_transition("requested", "accepted", "hub")


# ---------------------------------------------------------------- changed elements and who may change them


def test_changed_elements_ignores_meta_text_and_id():
    old = task()
    new = task(meta={"versionId": "2"}, text={"status": "generated", "div": "<div/>"}, id="other")
    assert changed_elements(old, new) == set()


@pytest.mark.parametrize(
    "over,changed",
    [
        ({"status": "accepted"}, {"status"}),
        ({"businessStatus": {"text": "picking"}}, {"businessStatus"}),  # added
        ({"statusReason": None}, {"statusReason"}),  # removed
        ({"note": [{"text": "please dispense"}, {"text": "more"}]}, {"note"}),
        ({"for": {"reference": "Patient/p2"}, "status": "accepted"}, {"for", "status"}),
        ({"_status": {"extension": [{"url": "x", "valueString": "y"}]}}, {"status"}),
        ({"note": [{"text": "please dispense"}]}, set()),  # equal, though a new object
    ],
)
def test_changed_elements(over, changed):
    assert changed_elements(task(), task(**over)) == changed


def test_changed_elements_compares_json_values_not_python_ones():
    assert changed_elements({"a": True}, {"a": 1}) == {"a"}
    assert changed_elements({"a": 1}, {"a": 1.0}) == set()


def test_allowed_changes_are_the_agreed_ones():
    assert ALLOWED_CHANGES["owner"] == {
        "status",
        "businessStatus",
        "statusReason",
        "output",
        "note",
        "executionPeriod",
        "lastModified",
    }
    assert ALLOWED_CHANGES["requester"] == {"status", "note", "lastModified"}


@pytest.mark.parametrize(
    "actor,over,forbidden",
    [
        ("owner", {"for": {"reference": "Patient/other"}}, ["Task.for"]),
        (
            "owner",
            {"owner": {"reference": "Organization/x"}, "priority": "urgent"},
            ["Task.owner", "Task.priority"],
        ),
        ("requester", {"businessStatus": {"text": "picking"}}, ["Task.businessStatus"]),
        ("requester", {"output": [{"type": {"text": "x"}, "valueString": "y"}]}, ["Task.output"]),
        ("requester", {"statusReason": {"text": "changed"}}, ["Task.statusReason"]),
        ("both", {"for": {"reference": "Patient/other"}, "note": []}, ["Task.for"]),
    ],
)
def test_check_changes_refuses_what_the_actor_may_not_change(actor, over, forbidden):
    with pytest.raises(FhirError) as caught:
        check_changes(task(), task(**over), actor)
    err = caught.value
    assert (err.status, err.code) == (403, "forbidden")
    assert err.expression == forbidden
    for name in forbidden:
        assert name in err.diagnostics
    assert "Task.note" not in err.diagnostics.split("(")[0]


@pytest.mark.parametrize(
    "actor,over",
    [
        ("owner", {"status": "accepted", "businessStatus": {"text": "queued"}, "lastModified": "2024-05-02"}),
        (
            "owner",
            {"output": [{"type": {"text": "x"}, "valueString": "y"}], "executionPeriod": {"start": "2024"}},
        ),
        ("requester", {"note": [{"text": "please dispense"}, {"text": "call first"}]}),
        ("requester", {"status": "cancelled", "lastModified": "2024-05-02"}),
        ("both", {"businessStatus": {"text": "x"}, "note": [{"text": "y"}]}),
    ],
)
def test_check_changes_lets_the_allowed_through(actor, over):
    assert check_changes(task(), task(**over), actor) is None


@pytest.mark.parametrize(
    "old_status,new_status,actor,over,want",
    [
        ("accepted", "cancelled", "requester", {}, None),
        ("requested", "cancelled", "requester", {"note": [{"text": "no longer needed"}]}, None),
        ("in-progress", "cancelled", "requester", {}, 409),
        ("on-hold", "cancelled", "requester", {}, 409),
        ("accepted", "cancelled", "owner", {}, 403),
        ("requested", "accepted", "owner", {"businessStatus": {"text": "queued"}}, None),
        ("requested", "accepted", "requester", {}, 403),
        ("in-progress", "in-progress", "owner", {"businessStatus": {"text": "labelled"}}, None),
        ("in-progress", "in-progress", "requester", {"note": [{"text": "any news?"}]}, None),
        ("in-progress", "in-progress", "requester", {"businessStatus": {"text": "x"}}, 403),
        ("in-progress", "completed", "owner", {"for": {"reference": "Patient/x"}}, 403),  # changes first
        ("completed", "in-progress", "owner", {}, 409),
        ("completed", "completed", "owner", {"note": [{"text": "late note"}]}, 409),  # final: no change
        ("completed", "completed", "owner", {}, None),  # an exact replay is harmless
        ("cancelled", "cancelled", "requester", {"lastModified": "2024-06-01"}, 409),
    ],
)
def test_check_task_update(old_status, new_status, actor, over, want):
    old = task(status=old_status)
    new = task(status=new_status, **over)
    if want is None:
        assert check_task_update(old, new, actor) is None
        return
    with pytest.raises(FhirError) as caught:
        check_task_update(old, new, actor)
    assert caught.value.status == want


def test_check_task_update_names_both_states_when_the_spoke_cancels_too_late():
    with pytest.raises(FhirError) as caught:
        check_task_update(task(status="in-progress"), task(status="cancelled"), "requester")
    assert "'in-progress'" in caught.value.diagnostics and "'cancelled'" in caught.value.diagnostics
    assert caught.value.expression == ["Task.status"]


def test_check_task_update_refuses_a_task_without_status():
    with pytest.raises(FhirError) as caught:
        check_task_update(task(status="accepted"), task(status=None), "owner")
    assert caught.value.status == 422


# ---------------------------------------------------------------- a patch, then the judgement


def test_patch_then_check_a_hub_acceptance_end_to_end():
    old = task()
    new = apply_patch(
        old,
        params(
            op("replace", "Task.status", value=("valueCode", "accepted")),
            op("add", "Task", name="businessStatus", value=("valueCodeableConcept", {"text": "queued"})),
        ),
        FHIR_JSON,
    )
    assert check_task_update(old, new, "owner") is None
    with pytest.raises(FhirError) as caught:
        check_task_update(old, new, "requester")
    assert caught.value.status == 403 and caught.value.expression == ["Task.businessStatus"]


# ---------------------------------------------------------------- who is acting


class Orgs:
    def read(self, resource_type, resource_id):
        ods = {"spoke": "SPOKE1", "hub": "HUB1"}.get(resource_id)
        ident = [{"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": ods}] if ods else []
        return {"resourceType": "Organization", "id": resource_id, "identifier": ident}


@pytest.mark.parametrize(
    "role,ods,actor",
    [
        ("hub", "HUB1", "owner"),
        ("spoke", "SPOKE1", "requester"),
        ("admin", None, "both"),
        ("admin", "X", "both"),
    ],
)
def test_actor_of(role, ods, actor):
    assert actor_of(Client("c", ods, role), task(), Orgs()) == actor


def test_actor_of_a_client_that_is_owner_and_requester_is_both():
    same = task(owner={"reference": "Organization/spoke"})
    assert actor_of(Client("c", "SPOKE1", "spoke"), same, Orgs()) == "both"


@pytest.mark.parametrize("ods", ["OTHER", None])
def test_actor_of_anyone_else_is_refused(ods):
    with pytest.raises(FhirError) as caught:
        actor_of(Client("c", ods, "spoke"), task(), Orgs())
    assert caught.value.status == 403
