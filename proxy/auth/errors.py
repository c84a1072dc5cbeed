"""RFC 6749 §5.2 error answers of the token endpoint."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class OAuthError(Exception):
    status: int
    error: str  # invalid_request | invalid_client | invalid_grant | invalid_scope | unsupported_grant_type
    description: str

    def __post_init__(self) -> None:
        Exception.__init__(self, self.description)

    def body(self) -> dict:
        return {"error": self.error, "error_description": self.description}


def invalid_request(description: str, status: int = 400) -> OAuthError:
    return OAuthError(status, "invalid_request", description)


def invalid_client(description: str) -> OAuthError:
    return OAuthError(401, "invalid_client", description)
