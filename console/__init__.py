"""The web console: server-rendered pages for validators and operators, with sign-in for people.

One job per module: ``settings`` (its configuration keys), ``accounts`` (operator accounts,
argon2id hashes, lock-out), ``sessions`` (server-side sessions and CSRF tokens), ``authorization``
(the authorization-code + PKCE grant people sign in through), ``fhir_api`` (the proxy's own FHIR
API, called in-process as the signed-in person), ``audit`` (an AuditEvent per console action),
``signin`` and ``pages`` (the routes), ``app`` (mounts it all on the proxy's Flask app).
"""
