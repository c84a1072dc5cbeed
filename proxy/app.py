"""The Flask app factory: routes every request through the plugin pipeline."""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from urllib.parse import quote

from flask import Flask, Response, request
from redis import Redis
from werkzeug.exceptions import HTTPException

from proxy import bodies, canonical, pipeline, request_metrics
from proxy.auth import routes as oauth_routes
from proxy.auth.enforcement import AuthEnforcer
from proxy.auth.server import AuthServer
from proxy.capability_statement import CapabilityStatement
from proxy.config import Settings
from proxy.context import Interaction, RequestContext, make_request_view
from proxy.errors import FhirError
from proxy.fhir_routes import FhirPassthrough
from proxy.interactions import parse_interaction
from proxy.logs import configure_logging
from proxy.plugin_manager import build_plugin_manager
from proxy.read_cache import CachingStore
from proxy.response import ProxyResponse
from proxy.store_caller import CallerSigner
from proxy.store_reader import StoreReader
from proxy.upstream import StoreClient
from proxy.xml_convert import XmlConverter
from proxy.xml_intake import XmlIntake

log = logging.getLogger("fhirplug.app")
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
COMPRESSIBLE = ("json", "xml", "text", "html")


def create_app(
    settings: Settings | None = None,
    extra_plugins: Sequence[object] = (),
    store: StoreClient | None = None,
    redis: Redis | None = None,
) -> Flask:
    """Build the proxy. ``extra_plugins``, ``store`` and ``redis`` let unit tests run it without
    servers. ``settings`` (by default read from the environment, once) and the one Redis client
    are handed to every plugin (``fhirplug_configure``) before the app serves. Raises ConfigError
    without a public base (FHIRPLUG_PUBLIC_BASE_URL): who we are comes from configuration only,
    never from a request's Host."""
    configure_logging()
    settings = settings or Settings.from_env()
    settings.check_public_base()
    app = Flask("fhirplug")
    # the process's one client for the proxy's Redis work, the plugins' included (connections are
    # made on first use); a unit test's in-memory one replaces it
    if redis is None:
        redis = Redis.from_url(settings.redis_url, socket_timeout=3, socket_connect_timeout=3)
    auth = None
    if settings.auth:
        auth = AuthServer.build(settings.redis_url, settings.keys_dir, settings.token_lifetime_s, redis)
    else:
        log.warning("FHIRPLUG_AUTH=off: every caller is an administrator; never do this in production")
    enforcer = AuthEnforcer(
        auth.tokens if auth else None,
        settings.issuer,
        tenant_scoping="tenancy" in settings.plugins,
    )
    capabilities = CapabilityStatement(settings.public_base_url or None)
    if store is None:  # an injected store (unit tests) is used as it is
        store = _store(settings, redis)
    # XML bodies become JSON right after authentication, before any configured plugin reads them
    xml = XmlIntake(XmlConverter(store))
    pm = build_plugin_manager(
        settings.plugins,
        list(extra_plugins),
        builtins=[("auth", enforcer), ("xml", xml), ("capabilities", capabilities)],
    )
    pm.hook.fhirplug_configure(settings=settings, redis=redis)  # once, before serving
    fhir = FhirPassthrough(pm, store, settings.max_body_bytes)
    app.extensions["fhirplug"] = {"settings": settings, "plugins": pm, "store": store, "auth": auth}

    def serve(interaction_of, handler, fhir=False, body_source=None):
        ctx, route_error = _context(settings, store, interaction_of, fhir)
        ctx.body_source = body_source
        if route_error is not None:

            def handler(ctx, error=route_error):  # still run the hooks (request id, log), then refuse
                raise error

        response = pipeline.run(pm, ctx, handler)
        out = _to_flask(response, settings.gzip_min_bytes)
        out.call_on_close(lambda: _finished(pm, ctx, out.status_code))
        return out

    @app.route("/fhir", methods=METHODS, defaults={"path": ""}, strict_slashes=False)
    @app.route("/fhir/<path:path>", methods=METHODS)
    def fhir_route(path: str):
        # ``path`` as Flask decoded it is not used: the request line is read once, canonically,
        # from the raw URI (proxy.canonical), and that reading is what is judged and relayed
        def interaction_of(view):
            paging = view.param("_getpages") is not None
            return parse_interaction(request.method, view.path, bool(view.query), view.headers, paging)

        def read_body() -> bytes:
            raw = bodies.read_limited(request.stream, request.content_length, settings.max_body_bytes)
            return bodies.decode_body(raw, request.headers.get("Content-Encoding"), settings.max_body_bytes)

        def handler(ctx):
            # the body once, whoever reads it first: a plugin serving an operation, or the pass-through
            return fhir.handle(ctx, ctx.request_body(), None)

        return serve(interaction_of, handler, fhir=True, body_source=read_body)

    oauth_routes.register(app, auth, settings.issuer, serve)

    # the request metrics, then every plugin's (the forwarding ones, read from Redis): one text for
    # the metrics listener (proxy/gunicorn_conf.py) and the administrators' GET /metrics alike
    def metrics_text() -> str:
        return request_metrics.exposition() + "".join(pm.hook.fhirplug_metrics(redis=redis))

    app.extensions["fhirplug"]["metrics_text"] = metrics_text
    _metrics(app, serve, settings, auth, metrics_text)

    @app.get("/healthz")
    def healthz():
        return serve(
            lambda h: Interaction("health", "GET"),
            lambda ctx: ProxyResponse.from_resource(200, {"status": "ok"}),
        )

    @app.get("/readyz")
    def readyz():
        def handler(ctx):
            if not store.ping():
                raise FhirError(503, "The FHIR store is not answering", code="transient")
            return ProxyResponse.from_resource(200, {"status": "ready"})

        return serve(lambda h: Interaction("health", "GET"), handler)

    _error_pages(app, settings)
    # web front ends (the console), found by entry point like plugins: proxy/ does not import them
    for front_end in entry_points(group="fhirplug.web"):
        front_end.load()(app, redis)

    @app.route("/", methods=METHODS, defaults={"path": ""})
    @app.route("/<path:path>", methods=METHODS)
    def unknown(path: str):
        def handler(ctx):
            raise FhirError(404, f"Unknown route: /{path}")

        return serve(lambda h: Interaction("unknown", request.method), handler)

    return app


def _finished(pm, ctx: RequestContext, status: int) -> None:
    """After the answer has been sent: the plugins' observers (access log), then the metrics."""
    pipeline.finished(pm, ctx, status)
    try:
        request_metrics.observe_request(ctx, status)
    except Exception:  # a metrics file that cannot be written must not break serving
        log.exception("could not record the request's metrics")


def _error_pages(app: Flask, settings: Settings) -> None:
    """What werkzeug answers itself (405 for a method no route takes, 404 for a path no route
    matches, such as one with a %0A in it) and any exception that escapes a view: an
    OperationOutcome, never werkzeug's HTML page or a traceback."""

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        status = exc.code or 500
        headers = {k: v for k, v in exc.get_headers() if k.lower() == "allow"}
        if status == 405:
            text = f"The method {request.method} is not supported here"
        elif status == 404:
            text = "Unknown route"
        else:
            text = exc.description or exc.name
        err = FhirError(status, text, headers=headers)
        return _to_flask(pipeline.error_response(err), settings.gzip_min_bytes)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.error("unexpected error outside the pipeline", exc_info=exc)
        err = FhirError(500, "Internal error in the proxy", code="exception")
        return _to_flask(pipeline.error_response(err), settings.gzip_min_bytes)


def _store(settings: Settings, redis: Redis):
    """The store client, with the read cache around it unless FHIRPLUG_READ_CACHE_TTL is 0."""
    client = StoreClient(
        settings.store_url,
        settings.store_connect_timeout,
        settings.store_read_timeout,
        settings.store_pool_size,
        settings.store_max_idle_s,
        CallerSigner(settings.store_secret),  # refuses an empty secret: the store would refuse us
    )
    if settings.read_cache_ttl_s <= 0:
        return client
    # a write's marker outlives the longest the store could still be working on it
    marker_ttl = settings.store_connect_timeout + settings.store_read_timeout + 60
    return CachingStore(client, redis, settings.read_cache_ttl_s, settings.read_cache_max_bytes, marker_ttl)


def _metrics(app: Flask, serve, settings: Settings, auth: AuthServer | None, text: Callable[[], str]) -> None:
    """GET /metrics (Prometheus) for administrators' tokens; open only when auth is off. ``text``
    gives the exposition (every plugin's ``fhirplug_metrics``)."""
    from proxy import metrics_route

    def authorize(header: str | None) -> None:
        if auth is None:
            return
        claims = auth.tokens.verify(header, settings.issuer)
        if claims.role != "admin":
            raise FhirError(403, "Metrics are for administrators", code="forbidden")

    metrics_route.register(app, serve, text, authorize)


def _context(settings: Settings, store, interaction_of, fhir: bool = False):
    """The request's context, and the error to answer with when the request cannot be read."""
    headers = {k: v for k, v in request.headers.items()}
    path = request.view_args.get("path", "") if request.view_args else ""
    query = list(request.args.items(multi=True))
    error = None
    if fhir:
        try:
            path, query = _fhir_target(settings)
        except FhirError as exc:
            path, query, error = "", [], exc
    view = make_request_view(
        request.method, request.path, path, query, headers, request.content_type, request.remote_addr
    )
    try:
        interaction = interaction_of(view if fhir else view.headers)
    except FhirError as exc:
        interaction, error = Interaction("unknown", request.method), error or exc
    if error is not None:
        interaction = Interaction("unknown", request.method)
    ctx = RequestContext(request=view, interaction=interaction, public_base=settings.public_base_url)
    ctx.store = StoreReader(store, lambda: ctx.request_id)
    return ctx, error


def _fhir_target(settings: Settings) -> tuple[str, list[tuple[str, str]]]:
    """The canonical path below /fhir and query of this request, read from the raw request line.

    A form-encoded ``POST _search`` body is search parameters too (the store reads it so): it
    is read here, by the same rules, and its parameters join the query; the store then gets
    them all in the URL and an empty body, so nothing it acts on escaped the checks."""
    env = request.environ
    raw = env.get("RAW_URI") or env.get("REQUEST_URI")
    if raw is None:
        raw = quote(env.get("PATH_INFO", ""), safe="/;$!*'(),:@&=+") + (
            "?" + env["QUERY_STRING"] if env.get("QUERY_STRING") else ""
        )
    if "://" in raw.split("?", 1)[0]:  # absolute-form request target: keep its path and query
        rest = raw.split("://", 1)[1]
        raw = rest[rest.find("/") :] if "/" in rest else "/"
    raw_path, _, raw_query = raw.partition("?")
    root = request.script_root  # mounted under a prefix (SCRIPT_NAME): the raw URI carries it
    if root and raw_path.startswith(root + "/"):
        raw_path = raw_path[len(root) :]
    if not (raw_path == "/fhir" or raw_path.startswith("/fhir/")):
        raise FhirError(400, "The FHIR base in the URL path must be written /fhir, unencoded", code="invalid")
    canonical.check_headers(request.headers.keys())
    target = canonical.parse_request_target(raw_path[len("/fhir") :], raw_query)
    query = list(target.query)
    if (
        request.method == "POST"
        and target.path.rsplit("/", 1)[-1] == "_search"
        and bodies.media_type(request.content_type) == bodies.FORM
    ):
        raw_body = bodies.read_limited(request.stream, request.content_length, settings.max_body_bytes)
        try:
            text = raw_body.decode("ascii")
        except UnicodeDecodeError:
            raise FhirError(400, "A form-encoded _search body must be ASCII (percent-encoded)") from None
        query += canonical.parse_query(text)
    return target.path, query


def _to_flask(response: ProxyResponse, gzip_min: int) -> Response:
    headers = dict(response.headers)
    body = response.iter_body()
    ctype = headers.get("Content-Type", "")
    accepts_gzip = "gzip" in request.headers.get("Accept-Encoding", "").lower()
    length = headers.get("Content-Length")
    if (
        accepts_gzip
        and request.method != "HEAD"
        and any(t in ctype for t in COMPRESSIBLE)
        and (length is None or int(length) >= gzip_min)
    ):
        headers.pop("Content-Length", None)
        headers["Content-Encoding"] = "gzip"
        headers["Vary"] = "Accept-Encoding"
        body = _gzip(body)
    return Response(body, status=response.status, headers=headers)


def _gzip(chunks):
    z = zlib.compressobj(6, zlib.DEFLATED, 31)
    for chunk in chunks:
        out = z.compress(chunk)
        if out:
            yield out
    yield z.flush()
