"""OperationOutcome errors: the one shape in which anything fhirplug refuses leaves the proxy."""

from __future__ import annotations

from dataclasses import dataclass, field

FHIR_JSON = "application/fhir+json"

# HTTP status -> the OperationOutcome issue code that says the same thing.
_CODE_FOR_STATUS = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    409: "conflict",
    412: "conflict",
    413: "too-costly",
    415: "not-supported",
    422: "processing",
    500: "exception",
    502: "transient",
    503: "transient",
    504: "timeout",
}


def operation_outcome(
    diagnostics: str,
    *,
    code: str = "processing",
    severity: str = "error",
    expression: list[str] | None = None,
) -> dict:
    issue: dict = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = list(expression)
    return {"resourceType": "OperationOutcome", "issue": [issue]}


@dataclass
class FhirError(Exception):
    """Raise (or return from a hook) to answer with an OperationOutcome.

    ``expression`` holds FHIRPath locations of the offending element, relative to the resource
    a hook was given (``Task.status``); the proxy rebases them onto ``Bundle.entry[n].resource``
    when the resource came inside a transaction or batch.
    """

    status: int
    diagnostics: str
    expression: list[str] = field(default_factory=list)
    code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # further problems found in the same check, each {"diagnostics": ..., "expression": [...]}:
    # a caller fixing a message wants every problem at once, not one per round trip
    more: list[dict] = field(default_factory=list)
    # where in the document as the caller sent it ("Line[3] Col[7]"): R4's issue.location, for
    # syntax problems (an XML body that is not well-formed) that a FHIRPath alone cannot place
    location: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        Exception.__init__(self, self.diagnostics)
        if isinstance(self.expression, str):
            self.expression = [self.expression]

    def to_resource(self) -> dict:
        code = self.code or _CODE_FOR_STATUS.get(self.status, "processing")
        outcome = operation_outcome(self.diagnostics, code=code, expression=self.expression)
        if self.location:
            outcome["issue"][0]["location"] = list(self.location)
        for extra in self.more:
            issue = {
                "severity": "error",
                "code": extra.get("code", code),
                "diagnostics": extra["diagnostics"],
            }
            if extra.get("expression"):
                issue["expression"] = list(extra["expression"])
            if extra.get("location"):
                issue["location"] = list(extra["location"])
            outcome["issue"].append(issue)
        return outcome

    @classmethod
    def unavailable(cls, diagnostics: str, retry_after: int = 5) -> FhirError:
        """503: a part we depend on is not answering; nothing was changed, so retry later."""
        return cls(503, diagnostics, code="transient", headers={"Retry-After": str(retry_after)})

    @classmethod
    def many(cls, status: int, problems: list[tuple[str, list[str]]], code: str | None = None) -> FhirError:
        """One error carrying several problems, each (diagnostics, expressions)."""
        (first, where), rest = problems[0], problems[1:]
        return cls(
            status, first, list(where), code, more=[{"diagnostics": d, "expression": e} for d, e in rest]
        )

    def rebased(self, prefix: str) -> FhirError:
        """The same error with every expression moved under ``prefix`` (e.g. ``Bundle.entry[2].resource``)."""
        return FhirError(
            self.status,
            self.diagnostics,
            [rebase_expression(e, prefix) for e in self.expression] or [prefix],
            self.code,
            dict(self.headers),
            [
                {**m, "expression": [rebase_expression(e, prefix) for e in m.get("expression") or []]}
                for m in self.more
            ],
            list(self.location),
        )


def rebase_expression(expression: str, prefix: str) -> str:
    """``Task.status`` under ``Bundle.entry[2].resource`` is ``Bundle.entry[2].resource.status``."""
    head, _, rest = expression.partition(".")
    if head[:1].isupper():  # the leading resource type names the root the prefix now stands for
        return f"{prefix}.{rest}" if rest else prefix
    return f"{prefix}.{expression}"
