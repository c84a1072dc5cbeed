"""EPS: the Electronic Prescription Service's prescription messaging, on the ground floor.

What a prescriber signs (``$prepare``), how a signature is checked, and, later, the
prescription lifecycle (``$process-message``, ``Task/$release``). Pure rules and data shapes:
no Flask, no store; only ``proxy``'s contract pieces (errors) are imported from above.

Modules:
- ``prepare``: FHIR prescription-order message -> ``Parameters`` {digest, timestamp, algorithm}
- ``fragments`` / the V3 builders (``v3_prescription``, ``v3_agent_person``, ``v3_patient``,
  ``v3_line_item``, ``v3_demographics``): the HL7 V3 pieces EPS signs, built from the FHIR message
  (``_fhir``: defensive reading with EPS's error wording; ``_v3``: lxml element helpers;
  ``_dates``: FHIR dates to V3 timestamps)
- ``conformance``: dev tool, ``python -m eps.conformance DIR`` checks prepare() against EPS's examples
- ``signing``: FragmentsToBeHashed -> exclusive C14N -> hash -> SignedInfo
- ``verify``: a signed prescription's XML-DSig signature checked against its fragments
- ``events``: the $process-message contract (Sender, EventResult, EpsStore, HANDLERS by event)
- ``messaging``: FHIR messaging rules (request envelope, message id, response message, async address)
- ``order``: the prescription-order event (checks, signature, one transaction as the prescriber)
- ``audit``: a lifecycle step's AuditEvent naming the client
- ``records``: how a prescription is kept (message Bundle, parts, tracking Task)
"""
