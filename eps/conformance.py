"""Conformance against EPS's own examples: ``python -m eps.conformance /path/to/eps/examples``.

Walks a directory of EPS examples, pairs every ``*Prepare-Request*.json`` with its
``*Prepare-Response*.json`` (and the flattened ``…prepare…-req.json``/``-res.json`` spec ones),
runs ``prepare()`` with the response's algorithm and author time, and reports each pair as
matched, mismatched, errored, refused (a 400 example we refuse too) or accepted (a 400 example we
let through). For a mismatch it names the first signature fragment that differs from EPS's own
HL7 V3 translation of the prescription (the sibling ``*Convert-Response-Send-200_OK.xml``).
A developer tool, not part of the proxy; exit status 1 when any 200 pair does not match.
"""

from __future__ import annotations

import copy
import json
import sys
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from lxml import etree

from eps import fragments as _fragments
from eps import signing
from eps._v3 import V3, canonical
from eps.prepare import HashAlgorithm, prepare
from proxy.errors import FhirError

_NS = {"hl7": V3}
_PARSER = etree.XMLParser(remove_blank_text=True, resolve_entities=False, no_network=True)


@dataclass(frozen=True)
class Outcome:
    request: Path
    status: str  # matched | mismatched | unverifiable | deliberate | errored | refused | accepted
    detail: str = ""
    eps_refused: bool = False  # the example is a 400 answer


def pairs(root: Path) -> list[tuple[Path, Path]]:
    """(request, response) for every Prepare example under ``root`` that has both halves."""
    found = []
    for request in sorted(root.rglob("*.json")):
        name = request.name
        if "Prepare-Request" in name:
            candidates = [name.replace("Prepare-Request", "Prepare-Response")]
            candidates.append(candidates[0].replace("-Send", ""))
        elif "prepare" in str(request.relative_to(root)).lower() and name.endswith("-req.json"):
            candidates = [name[: -len("-req.json")] + "-res.json"]
        else:
            continue
        response = next((request.with_name(c) for c in candidates if request.with_name(c).exists()), None)
        if response is not None:
            found.append((request, response))
    return found


def convert_response_for(request: Path) -> Path | None:
    """EPS's full V3 translation of the same prescription, if the example set has one."""
    number = request.name.split("-", 1)[0]
    marker = "__" if "__" in request.name else None
    if marker:  # flattened names (our shared copy): same prefix up to the file's own part
        stem = request.name.rsplit("__", 1)[0]
        number = request.name.rsplit("__", 1)[1].split("-", 1)[0]
        candidate = request.with_name(f"{stem}__{number}-Convert-Response-Send-200_OK.xml")
    else:
        candidate = request.with_name(f"{number}-Convert-Response-Send-200_OK.xml")
    return candidate if candidate.exists() else None


def expected_fragments(xml: bytes) -> dict[str, list[bytes]]:
    """EPS's signature fragments cut from its ParentPrescription translation, canonicalised.

    Keys: ``id``, ``AgentPerson``, ``recordTarget``, ``pertinentLineItem`` (one per item, without
    status and repeatNumber.low, as EPS signs them). The author time is left out: it is when
    EPS ran.
    """
    document = etree.fromstring(xml, _PARSER)
    prescription = document.find(".//hl7:pertinentPrescription", _NS)
    if prescription is None:
        raise ValueError("no pertinentPrescription in this document")
    out: dict[str, list[bytes]] = {
        "id": [canonical(copy.deepcopy(prescription.find("hl7:id", _NS)))],
        "AgentPerson": [canonical(copy.deepcopy(prescription.find("hl7:author/hl7:AgentPerson", _NS)))],
        "recordTarget": [canonical(copy.deepcopy(document.find(".//hl7:recordTarget", _NS)))],
        "pertinentLineItem": [],
    }
    for item in prescription.iterfind("hl7:pertinentInformation2/hl7:pertinentLineItem", _NS):
        item = copy.deepcopy(item)
        for unsigned in [
            *item.iterfind("hl7:pertinentInformation4", _NS),
            *item.iterfind("hl7:repeatNumber/hl7:low", _NS),
        ]:
            parent = unsigned.getparent()
            if parent is not None:
                parent.remove(unsigned)
        out["pertinentLineItem"].append(canonical(item))
    return out


def built_fragments(bundle: object) -> dict[str, list[bytes]]:
    """Our fragments for ``bundle``, keyed as ``expected_fragments``."""
    built = _fragments.build(bundle)
    return {
        "id": [canonical(built.id)],
        "AgentPerson": [canonical(built.agent_person)],
        "recordTarget": [canonical(built.record_target)],
        "pertinentLineItem": [canonical(item) for item in built.line_items],
    }


def _around(data: bytes, at: int) -> str:
    return data[max(0, at - 80) : at + 80].decode(errors="replace")


def first_difference(ours: dict[str, list[bytes]], theirs: dict[str, list[bytes]]) -> str:
    for key, expected in theirs.items():
        got = ours.get(key, [])
        if len(got) != len(expected):
            return f"{key}: {len(got)} built, EPS has {len(expected)}"
        for index, (mine, eps) in enumerate(zip(got, expected, strict=True)):
            if mine != eps:
                at = next(
                    (i for i, (a, b) in enumerate(zip(mine, eps, strict=False)) if a != b),
                    min(len(mine), len(eps)),
                )
                mine_text, eps_text = _around(mine, at), _around(eps, at)
                return f"{key}[{index}] differs at byte {at}:\n    ours: …{mine_text}\n    EPS:  …{eps_text}"
    return "fragments equal EPS's translation (the difference is elsewhere)"


def check_pair(request: Path, response: Path) -> Outcome:
    bundle = json.loads(request.read_bytes(), parse_float=Decimal)
    answer = json.loads(response.read_bytes())
    if answer.get("resourceType") != "Parameters":
        try:
            prepare(bundle)
        except FhirError as error:
            return Outcome(request, "refused", error.diagnostics, eps_refused=True)
        except Exception as error:  # noqa: BLE001 - a tool: report, do not stop
            return Outcome(request, "errored", f"unhandled {type(error).__name__}: {error}", eps_refused=True)
        return Outcome(request, "accepted", "EPS refuses this message; we do not", eps_refused=True)
    expected = {p["name"]: p["valueString"] for p in answer["parameter"]}
    now = datetime.fromisoformat(expected["timestamp"])
    try:
        got = prepare(bundle, HashAlgorithm(expected["algorithm"]), now=now).to_parameters()
    except FhirError as error:
        detail = f"FhirError {error.status}: {error.diagnostics} at {error.expression}"
        if "checksum" in error.diagnostics:
            # EPS's $prepare does not check the check character (Spine does, at $process-message);
            # we refuse it deliberately. Show that the digest is otherwise EPS's.
            canonical_fragments = signing.fragments_to_be_hashed(
                _fragments.build(bundle, now, check_ids=False)
            )
            same = signing.digest(canonical_fragments, expected["algorithm"]) == expected["digest"]
            detail += "; without that check the digest " + ("matches EPS's" if same else "still differs")
            return Outcome(request, "deliberate", detail)
        return Outcome(request, "errored", detail)
    except Exception as error:  # noqa: BLE001
        return Outcome(request, "errored", f"unhandled {type(error).__name__}: {error}")
    if got == answer or {p["name"]: p["valueString"] for p in got["parameter"]} == expected:
        return Outcome(request, "matched")
    convert = convert_response_for(request)
    detail = "digest differs"
    if convert is not None:
        detail += "; " + first_difference(built_fragments(bundle), expected_fragments(convert.read_bytes()))
    return Outcome(request, "mismatched", detail)


def run(root: Path) -> list[Outcome]:
    found = pairs(root)
    outcomes = [check_pair(request, response) for request, response in found]
    # one digest answering different prescriptions is a canned (sandbox/spec) answer, which no
    # computation can reproduce for all of them: report it as such, not as our mismatch
    by_digest: dict[str, list[int]] = {}
    for index, (_, response) in enumerate(found):
        answer = json.loads(response.read_bytes())
        if answer.get("resourceType") == "Parameters":
            digest = {p["name"]: p["valueString"] for p in answer["parameter"]}.get("digest", "")
            by_digest.setdefault(digest, []).append(index)
    for indexes in by_digest.values():
        hashed = {_fragments_or_none(found[i][0]) for i in indexes}
        if len(indexes) > 1 and len(hashed) > 1:
            for i in indexes:
                if outcomes[i].status == "mismatched":
                    others = ", ".join(found[j][0].name for j in indexes if j != i)
                    detail = (
                        f"EPS's answer is canned: the same digest answers a different prescription ({others})"
                    )
                    outcomes[i] = Outcome(outcomes[i].request, "unverifiable", detail)
    return outcomes


def _fragments_or_none(request: Path) -> bytes | None:
    try:
        bundle = json.loads(request.read_bytes(), parse_float=Decimal)
        return signing.fragments_to_be_hashed(_fragments.build(bundle, datetime(2000, 1, 1), check_ids=False))
    except FhirError:
        return None


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m eps.conformance /path/to/eps/examples", file=sys.stderr)
        return 2
    root = Path(args[0])
    outcomes = run(root)
    for outcome in outcomes:
        if outcome.status not in ("matched", "refused"):
            print(f"{outcome.status.upper()}: {outcome.request.relative_to(root)}\n  {outcome.detail}")
    ok = [o for o in outcomes if not o.eps_refused]
    refused = [o for o in outcomes if o.eps_refused]
    matched = sum(o.status == "matched" for o in ok)
    tally = ", ".join(
        f"{sum(o.status == s for o in ok)} {s}"
        for s in ("mismatched", "unverifiable", "deliberate", "errored")
    )
    print(
        f"200 pairs: {matched}/{len(ok)} matched ({tally}); "
        f"400 pairs: {sum(o.status == 'refused' for o in refused)}/{len(refused)} refused by us too"
    )
    failed = any(o.status in ("mismatched", "errored") for o in ok) or any(
        o.status != "refused" for o in refused
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
