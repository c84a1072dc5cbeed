"""The conformance tool a developer runs over EPS's examples pairs them and judges each pair."""

from __future__ import annotations

from pathlib import Path

from eps.conformance import run

EXAMPLES = Path(__file__).resolve().parents[3] / ".." / "shared" / "examples" / "eps"


def test_the_shared_pairs_are_found_and_the_computable_ones_match():
    outcomes = {o.request.name: o.status for o in run(EXAMPLES)}
    assert outcomes[
        "primary-care__acute__nominated-pharmacy__medical-prescriber__1-Prepare-Request-200_OK.json"
    ] == ("matched")
    secondary = next(n for n in outcomes if n.startswith("secondary-care__community__repeat-dispensing"))
    assert outcomes[secondary] == "matched"
    # EPS's canned sandbox answer (see test_prepare.py): its digest is another prescription's
    assert outcomes["spec__prepare__eRD-primary-example-req.json"] == "mismatched"
