"""Hub-and-spoke message checks: a spoke-to-hub or hub-to-spoke Bundle is classified once and
checked against the rules its England profile cannot express (``hubspoke.message_rules``), all
at once, so a sender fixing a message sees every problem in one OperationOutcome.

Problems answer 400 (the hub-and-spoke design: "Invalid message. Details will be provided within
an OperationOutcome"). Any other Bundle passes untouched. ``ctx.message`` (``provides =
("message",)``) tells later plugins which message this is and its digest as sent.
"""

from __future__ import annotations

from hubspoke.message_rules import check
from hubspoke.messages import classify, digest
from proxy.context import Message
from proxy.errors import FhirError
from proxy.hookspecs import hookimpl


class MessageChecks:
    provides = ("message",)

    @hookimpl
    def fhirplug_before_bundle(self, ctx, bundle):
        kind = classify(bundle)
        if kind is None:
            return None
        # the digest of the message as sent: later plugins amend the bundle, a resend must still match it
        ctx.message = Message(kind, digest(bundle), ctx.client.ods, ctx.client.id)
        problems = check(bundle, kind)
        if problems:
            raise FhirError.many(400, problems, code="invalid")
        return None


message_checks = MessageChecks()
