"""OAuth 2.0 with signed JWTs: fhirplug as an authorization server (token endpoint, keys,
client registry) and as a resource server (bearer check, SMART scopes).

One module per job: ``client_assertion`` (RFC 7523 client authentication), ``registry`` (who may
ask), ``signing`` (our keys), ``access_tokens`` (issue and verify), ``scopes`` (SMART v2),
``routes`` (HTTP endpoints), ``outbound`` (our side as a client of partners).
"""
