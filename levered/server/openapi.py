"""The OpenAPI document as the server behaves (``/schema/openapi.json`` and Swagger UI).

Litestar derives the document from handler signatures: it knows parameters and success bodies
but not what the services raise, so it documented its own ``{status_code, detail}`` for 400
(the app sends the envelope of :mod:`levered.server.envelope`), no other error, no
credentials, and no body for the ingestion endpoints (they read the raw body). :func:`document`
walks the generated document once per app and makes it true:

* every operation lists the statuses it can send, each error with the envelope schema
  (:class:`~levered.schemas.common.ErrorEnvelope`); the ones that follow from the handler are
  derived from it — 400 with a query parameter or a body, 401 when it authenticates, 404 with a
  path parameter (a malformed id matches no route), 413 with a body, 503 when it touches the
  database, 500 always — and :data:`OPERATIONS` adds what its service raises (403, 404, 409…);
  an operation missing there is an error, so a new route cannot go undocumented;
* JSON bodies are described by msgspec's schema of the Struct the handler decodes (Litestar's
  omitted ``additionalProperties: false`` of ``forbid_unknown_fields``);
* the ingestion bodies are msgspec's schema of the decoders' own types
  (:mod:`levered.schemas.ingest`), plus the rules the service checks per event that a schema
  can say (no NUL, finite numbers); the rules it cannot (time bounds, the design) are
  described in words;
* ``/oauth/*`` are documented with their own formats (RFC 6749 errors, HTML pages, redirects)
  and the parameters the service requires;
* credentials: ``bearer`` (an API key or a user access token), ``apiKey`` (``X-API-Key``,
  ingestion and serving), and the OAuth 2 authorization-code flow that issues user tokens.
"""

from __future__ import annotations

import copy
from typing import Any, Final

import msgspec
from litestar import Litestar, Request
from litestar.enums import RequestEncodingType
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.params import BodyKwarg, ParameterKwarg
from litestar.routes import HTTPRoute

from levered.schemas.common import ErrorEnvelope
from levered.schemas.ingest import (
    EXPOSURE_BATCH_DECODER,
    MAX_BODY_BYTES,
    MAX_EVENTS,
    REWARD_BATCH_DECODER,
    IngestResult,
)
from levered.schemas.oauth import OAuthErrorBody, TokenResponse
from levered.services.oauth import CLIENT_ID, MAX_REDIRECT_URI, STATE
from levered.services.roles import SERVER_ADMIN, required_role
from levered.services.scopes import ANY_SCOPE, required_scope

Schema = dict[str, Any]
REF: Final = "#/components/schemas/{name}"
ENVELOPE: Final[Schema] = {"$ref": REF.format(name="ErrorEnvelope")}

GENERIC: Final[dict[int, str]] = {
    400: "`validation_error`: a parameter or the body is malformed; `details` names each "
    "problem by its JSON path.",
    401: "`unauthorized`: no credentials, or an unknown, revoked or expired API key or token.",
    404: "`not_found`: no such resource in the caller's organization (an id that is not a UUID "
    "matches no route: also 404).",
    413: f"`payload_too_large`: the body is over {MAX_BODY_BYTES // 2**20} MB.",
    500: "`internal_error`: an unexpected server error; quote `meta.request_id` when reporting.",
    503: "`unavailable`: the database is unreachable or busy; retry after `Retry-After` seconds.",
}

NOT_MANAGED: Final = "`warehouse_not_managed`: the organization's warehouse is not the managed one."
NO_METRIC: Final = "`no_reward_metric`: the optimization has no reward metric."
INGEST_ERRORS: Final = {
    400: GENERIC[400] + " Also when no event of the batch is valid.",
    403: "`forbidden`: an optimization_id is unknown or another organization's; nothing was "
    "stored.",
    409: "`conflict`: the organization is not on the managed warehouse.",
}

OPERATIONS: Final[dict[str, dict[int, str]]] = {
    "GET /health": {},
    "GET /ready": {503: "The database is unreachable or its migrations are not current."},
    "POST /api/v2/ingest/exposures": INGEST_ERRORS,
    "POST /api/v2/ingest/rewards": INGEST_ERRORS,
    "GET /api/v2/api-keys": {},
    "POST /api/v2/api-keys": {},
    "DELETE /api/v2/api-keys/{key_id}": {},
    "GET /api/v2/me": {},
    "GET /api/v2/organizations": {},
    "POST /api/v2/organizations": {},
    "POST /api/v2/organizations/{organization_id}/switch": {
        403: "`forbidden`: an API key cannot switch organization (`details.required_auth`).",
        404: "Not a member of that organization (or it does not exist).",
    },
    "GET /api/v2/organizations/{organization_id}/members": {},
    "POST /api/v2/organizations/{organization_id}/members": {
        409: "`account_exists`: the email already has an account; invite it instead.",
    },
    "PATCH /api/v2/organizations/{organization_id}/members/{user_id}": {
        409: "`last_admin`: the organization's last admin cannot be demoted.",
    },
    "DELETE /api/v2/organizations/{organization_id}/members/{user_id}": {
        409: "`last_admin`: the organization's last admin cannot be removed.",
    },
    "GET /api/v2/organizations/{organization_id}/invites": {},
    "POST /api/v2/organizations/{organization_id}/invites": {
        409: "`already_member`: that email is already a member.",
    },
    "POST /api/v2/invites/accept": {
        401: "The invited email already has an account and the password is not its own.",
        404: "Unknown invite token.",
        409: "`invite_used`, `invite_expired`, or `already_member`.",
    },
    "GET /oauth/authorize": {},  # see _oauth
    "POST /oauth/authorize": {},
    "POST /oauth/token": {},
    "POST /oauth/revoke": {},
    "GET /api/v2/optimizations": {},
    "POST /api/v2/optimizations": {},
    "GET /api/v2/optimizations/{optimization_id}": {},
    "PATCH /api/v2/optimizations/{optimization_id}": {
        409: "`invalid_transition` (the allowed statuses in `details`), or a change the "
        "optimization's status forbids (design edits outside draft, any edit when archived).",
    },
    "DELETE /api/v2/optimizations/{optimization_id}": {
        409: "Only drafts can be deleted: archive it instead.",
    },
    "GET /api/v2/optimizations/{optimization_id}/variants": {},
    "GET /api/v2/optimizations/{optimization_id}/observations": {409: NO_METRIC},
    "GET /api/v2/optimizations/{optimization_id}/results": {
        409: "The reward metric cannot be read (e.g. " + NOT_MANAGED + ")",
    },
    "GET /api/v2/optimizations/{optimization_id}/guardrails": {
        409: "The exposures cannot be attributed (e.g. " + NOT_MANAGED + ")",
    },
    "GET /api/v2/optimizations/{optimization_id}/progress": {
        409: "The reward metric cannot be read (e.g. " + NOT_MANAGED + ")",
    },
    "GET /api/v2/optimizations/{optimization_id}/lift-history": {
        409: "The exposures cannot be attributed (e.g. " + NOT_MANAGED + ")",
    },
    "GET /api/v2/optimizations/{optimization_id}/report-data": {
        409: "The exposures cannot be attributed (e.g. " + NOT_MANAGED + ")",
    },
    "POST /api/v2/optimizations/{optimization_id}/serve": {},  # serving.py documents its own
    "POST /api/v2/optimizations/best-variant": {404: GENERIC[404]},
    "GET /api/v2/warehouse": {},
    "PUT /api/v2/warehouse": {},
    "PUT /api/v2/warehouse/exposures": {
        409: "`warehouse_not_connected` (the managed warehouse) or `not_supported` (ClickHouse).",
        503: "`warehouse_unavailable`: the connected PostgreSQL could not be reached to check the "
        "table (nothing was stored), or `unavailable`: Levered's database is busy; retry after "
        "`Retry-After` seconds.",
    },
    "DELETE /api/v2/warehouse/exposures": {},
    "GET /api/v2/warehouse/tables": {409: NOT_MANAGED},
    "GET /api/v2/warehouse/tables/{table}/columns": {
        404: "No such warehouse table.",
        409: NOT_MANAGED,
    },
    "GET /api/v2/warehouse/tables/{table}/preview": {
        404: "No such warehouse table.",
        409: NOT_MANAGED,
    },
    "POST /api/v2/warehouse/query": {409: NOT_MANAGED},
    "GET /api/v2/metrics": {},
    "POST /api/v2/metrics": {409: NOT_MANAGED},
    "GET /api/v2/metrics/{metric_id}": {},
    "GET /api/v2/metrics/{metric_id}/preview": {409: NOT_MANAGED},
    "DELETE /api/v2/metrics/{metric_id}": {
        409: "An optimization uses the metric (the 409 names them).",
    },
    "GET /api/v2/models": {},
    "GET /api/v2/models/{model_id}": {},
    "GET /api/v2/models/{model_id}/state": {},
    "POST /api/v2/models/{model_id}/train": {
        409: "`training_in_progress`, `no_reward_metric`, `metric_failed`, `training_failed`, "
        "`exposures_table_invalid` (the organization's own exposures table no longer reads as "
        "mapped), or the model was deleted while training.",
    },
    "DELETE /api/v2/models/{model_id}": {},
}
"""Per operation (``METHOD path``): the statuses its service can send beyond the derived ones."""

NO_DATABASE: Final = frozenset({"GET /health", "GET /oauth/authorize"})

SECURITY_SCHEMES: Final[Schema] = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (`lvk_…`) or a user access token from `/oauth/token`.",
    },
    "apiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "An API key, for ingestion and serving.",
    },
    "oauth2": {
        "type": "oauth2",
        "description": "How the CLI logs a user in (PKCE S256, loopback redirect); the access "
        "token is then sent as a bearer token.",
        "flows": {
            "authorizationCode": {
                "authorizationUrl": "/oauth/authorize",
                "tokenUrl": "/oauth/token",
                "refreshUrl": "/oauth/token",
                "scopes": {},
            }
        },
    },
}
MANAGEMENT: Final[list[dict[str, list[str]]]] = [{"bearer": []}, {"oauth2": []}]
API_KEY: Final[list[dict[str, list[str]]]] = [{"bearer": []}, {"apiKey": []}]
OPTIONAL_KEY: Final[list[dict[str, list[str]]]] = [{}, {"bearer": []}, {"apiKey": []}]
SERVING: Final = frozenset(
    {
        "POST /api/v2/optimizations/{optimization_id}/serve",
        "POST /api/v2/optimizations/best-variant",
    }
)

CONTEXT_VALUE: Final[Schema] = {"type": ["string", "number", "boolean", "null"]}


class DocumentedJson(JsonRenderPlugin):
    """``/schema/openapi.json``: the document after :func:`document`."""

    _source: dict[str, Any] | None = None
    _document: dict[str, Any] | None = None

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return super().render(request, _cached(self, request.app, openapi_schema))


class DocumentedSwagger(SwaggerRenderPlugin):
    """Swagger UI over the same document."""

    _source: dict[str, Any] | None = None
    _document: dict[str, Any] | None = None

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return super().render(request, _cached(self, request.app, openapi_schema))


def _cached(
    plugin: DocumentedJson | DocumentedSwagger, app: Litestar, source: dict[str, Any]
) -> dict[str, Any]:
    # Litestar caches the generated dict, so it is the same object on every request.
    if plugin._document is None or plugin._source is not source:
        plugin._source, plugin._document = source, document(app, source)
    return plugin._document


def document(app: Litestar, generated: dict[str, Any]) -> dict[str, Any]:
    """A corrected copy of Litestar's document of ``app``."""
    doc = copy.deepcopy(generated)
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.update(_components(ErrorEnvelope, OAuthErrorBody, TokenResponse, IngestResult))
    components["securitySchemes"] = SECURITY_SCHEMES
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        item = doc["paths"].get(route.path_format, {})
        for handler in route.route_handlers:
            for method in sorted(handler.http_methods):
                operation = item.get(method.lower())
                if operation is None:
                    continue  # not in the document (OPTIONS, the schema's own routes)
                key = f"{method} {route.path_format}"
                if key not in OPERATIONS:
                    raise KeyError(f"{key} is not described in levered.server.openapi.OPERATIONS")
                _describe(key, operation, handler, schemas)
    _business_rules(schemas)
    return doc


def _describe(
    key: str, operation: Schema, handler: HTTPRouteHandler, schemas: dict[str, Schema]
) -> None:
    params = handler.parsed_fn_signature.parameters
    if "principal" in params:
        operation["security"] = MANAGEMENT
    elif "api_principal" in params:
        operation["security"] = API_KEY
    elif key in SERVING:
        operation["security"] = OPTIONAL_KEY
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "query":
            _bounds(parameter, handler)
        if parameter["name"] == "context" and parameter["in"] == "query":
            _json_parameter(parameter)
    if key.startswith(("GET /oauth", "POST /oauth")):
        _oauth(key, operation)
        return
    data = params.get("data")
    if data is not None and isinstance(data.kwarg_definition, BodyKwarg):
        assert data.kwarg_definition.media_type == RequestEncodingType.JSON, key
        body = _body_schema(data.annotation, schemas)
        operation["requestBody"] = {
            "required": not data.is_optional,
            "content": {"application/json": {"schema": body}},
        }
    if key.startswith("POST /api/v2/ingest/"):
        _ingestion(key, operation, schemas)
    codes = dict(OPERATIONS[key])
    has_query = any(p["in"] != "path" for p in operation.get("parameters", []))
    has_path = any(p["in"] == "path" for p in operation.get("parameters", []))
    has_body = "requestBody" in operation
    derived = {
        400: has_query or has_body,
        401: "security" in operation and key not in SERVING,
        404: has_path,
        413: has_body,
        500: True,
        503: key not in NO_DATABASE,
    }
    for status, applies in derived.items():
        if applies:
            codes.setdefault(status, GENERIC[status])
    if "security" in operation:
        method, _, path = key.partition(" ")
        scope = required_scope(method, path, handler.opt.get("scope"))
        role = required_role(method, path, handler.opt.get("role"))
        reasons = []
        if scope != ANY_SCOPE:  # any key may call an ANY_SCOPE route
            reasons.append(
                f"the API key lacks the `{scope}` scope this operation needs "
                "(`details.missing_scope` names it)"
            )
        if role == SERVER_ADMIN:
            reasons.append("the caller is not a server administrator (`details.required_role`)")
        elif "principal" in params:  # user tokens too, so roles apply
            reasons.append(
                f"a user's role is below `{role}` (`details.role`, `details.required_role`)"
            )
        if reasons:
            lacking = f"`forbidden`: {', or '.join(reasons)}; see docs/teams.md."
            codes[403] = f"{codes[403]} Or {lacking}" if 403 in codes else lacking
    responses = operation.setdefault("responses", {})
    for status in [s for s in responses if s.isdigit() and int(s) >= 400]:
        if int(status) not in codes and not _is_envelope(responses[status]):
            del responses[status]  # Litestar's default 400 where no 400 can happen
    for status, text in sorted(codes.items()):
        existing = responses.get(str(status))
        if existing is not None and _is_envelope(existing):
            continue  # documented by the route itself (serving)
        responses[str(status)] = _error(text, retry=status in (429, 503))


def _error(text: str, *, retry: bool = False) -> Schema:
    response: Schema = {"description": text, "content": {"application/json": {"schema": ENVELOPE}}}
    if retry:
        response["headers"] = {
            "Retry-After": {"description": "Seconds to wait.", "schema": {"type": "string"}}
        }
    return response


def _is_envelope(response: Schema) -> bool:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return bool(schema == ENVELOPE)


def _components(*types: Any) -> dict[str, Schema]:
    _, found = msgspec.json.schema_components(types, ref_template=REF)
    return found


def _body_schema(annotation: Any, schemas: dict[str, Schema]) -> Schema:
    """msgspec's schema of a body type (the decoder's own rules), its Structs as components."""
    (body,), found = msgspec.json.schema_components([annotation], ref_template=REF)
    schemas.update(found)
    return body


def _bounds(parameter: Schema, handler: HTTPRouteHandler) -> None:
    """A query parameter's numeric bounds as declared (Litestar drops a bound of 0:
    ``ge=0`` documented no minimum, so ``?seed=-1`` looked valid)."""
    for field in handler.parsed_fn_signature.parameters.values():
        kwarg = field.kwarg_definition
        if not isinstance(kwarg, ParameterKwarg):
            continue
        if (kwarg.query or kwarg.name or field.name) != parameter["name"]:
            continue
        schema = parameter["schema"]
        for bound, key in (
            (kwarg.ge, "minimum"),
            (kwarg.gt, "exclusiveMinimum"),
            (kwarg.le, "maximum"),
            (kwarg.lt, "exclusiveMaximum"),
        ):
            if bound is not None:
                schema[key] = bound


def _business_rules(schemas: dict[str, Schema]) -> None:
    """Rules a service checks that a schema can state (the Structs leave them to the service,
    which explains them better than a decoder would)."""
    schemas["OptimizationCreate"]["properties"]["design_factors"]["minItems"] = 1
    schemas["MetricCreate"]["allOf"] = [
        {
            "if": {
                "properties": {"reward_type": {"const": reward_type}},
                "required": ["reward_type"],
            },
            "then": {"properties": {field: {"type": kind}}, "required": [field]},
        }
        for reward_type, field, kind in (
            ("numeric", "value_col", "string"),
            ("weighted", "outcomes", "array"),
        )
    ]


def _json_parameter(parameter: Schema) -> None:
    """``?context=`` is a JSON object of scalars (:mod:`levered.server.context_query`)."""
    parameter.pop("schema", None)
    parameter["content"] = {
        "application/json": {"schema": {"type": "object", "additionalProperties": CONTEXT_VALUE}}
    }


# -- ingestion --------------------------------------------------------------------------------

NUL_FREE: Final = "^[^\\u0000]*$"
FINITE: Final = {"minimum": -1.7976931348623157e308, "maximum": 1.7976931348623157e308}
JSON_VALUE: Final = "JsonValue"
"""A JSON value without NUL (U+0000) in any string or key: PostgreSQL cannot store one."""

INGEST_DESCRIPTION: Final = (
    f'Body `{{"events": [...]}}` with 1–{MAX_EVENTS} events. Each event is checked on its own; '
    "an invalid one is rejected (207, listed in `rejected` with its index, code and JSON path) "
    "and the others are stored. Beyond the schema, the server checks per event: the timestamp "
    "(server time when omitted) lies between 2000-01-01 and 24 h after server time "
    "(`timestamp_too_old`, `timestamp_in_future`), and an exposure's `variant` names exactly "
    "one level of each design factor of its optimization (`invalid_variant`). "
    "200: every event stored, or already stored under its idempotency key (`duplicates`; for "
    "an exposure also: a serve already recorded it — same optimization, anonymous id and "
    "variant within 60 s). "
    "207: some events rejected, the valid ones stored. 400: not JSON, wrong shape, 0 or more "
    f"than {MAX_EVENTS} events, or no valid event (`details` names each problem by JSON path). "
    "403: an optimization_id is unknown or another organization's (nothing stored). 409: the "
    "organization is not on the managed warehouse. 413: body over 5 MB. 503: storage failed, "
    "nothing stored; retry after `Retry-After` seconds — or the database did not answer within "
    "5 s (`details.cause` `database_timeout`: the batch may be stored; resend it with the same "
    "idempotency keys)."
)


def ingestion_components() -> dict[str, Schema]:
    """The batch and event schemas of the ingestion decoders, with the per-event rules a schema
    can express (tested against the decoders in tests/integration/test_openapi_contract.py)."""
    found = _components(EXPOSURE_BATCH_DECODER.type, REWARD_BATCH_DECODER.type)
    found[JSON_VALUE] = {
        "description": "Any JSON value without the NUL character (U+0000) in a string or key.",
        "anyOf": [
            {"type": "string", "pattern": NUL_FREE},
            {"type": "number", **FINITE},
            {"type": "boolean"},
            {"type": "null"},
            {"type": "array", "items": {"$ref": REF.format(name=JSON_VALUE)}},
            {
                "type": "object",
                "propertyNames": {"pattern": NUL_FREE},
                "additionalProperties": {"$ref": REF.format(name=JSON_VALUE)},
            },
        ],
    }
    for name in ("ExposureBatch", "RewardBatch"):
        found[name].pop("description", None)
    for name in ("ExposureEvent", "RewardEvent"):
        for prop in found[name]["properties"].values():
            for option in prop.get("anyOf", [prop]):
                if option.get("type") == "string" and "format" not in option:
                    option["pattern"] = NUL_FREE
                elif option.get("type") == "object":
                    option["propertyNames"] = {"pattern": NUL_FREE}
                    option["additionalProperties"] = {"$ref": REF.format(name=JSON_VALUE)}
                elif option.get("type") == "number":
                    option.update(FINITE)
    return found


def _ingestion(key: str, operation: Schema, schemas: dict[str, Schema]) -> None:
    schemas.update(ingestion_components())
    batch = "ExposureBatch" if key.endswith("/exposures") else "RewardBatch"
    operation["description"] = INGEST_DESCRIPTION
    operation["requestBody"] = {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": REF.format(name=batch)}}},
    }
    result = {"application/json": {"schema": {"$ref": REF.format(name="IngestResult")}}}
    operation["responses"] = {
        "200": {"description": "Every event stored or already stored.", "content": result},
        "207": {
            "description": "Some events rejected (`rejected`); the rest stored.",
            "content": result,
        },
    }


# -- OAuth ------------------------------------------------------------------------------------

_PORT: Final = "(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})"
LOOPBACK_REDIRECT: Final = (
    "^http://(127\\.0\\.0\\.1|localhost|\\[::1\\])(:" + _PORT + ')?(/[!"$-\\[\\]-~]*)?$'
)
"""The loopback redirect URIs the server accepts (RFC 8252): printable ASCII without space,
backslash or fragment, no user info, a valid port. A subset of what
:func:`levered.services.oauth.is_loopback_redirect` accepts (it also takes ``LOCALHOST``…):
every URI matching it is accepted (tested)."""

REDIRECTED: Final = " Any other value is reported to the redirect URI (a 303), not refused."
AUTHORIZE_FIELDS: Final[dict[str, Schema]] = {
    "client_id": {"type": "string", "pattern": f"^{CLIENT_ID.pattern}$"},
    "redirect_uri": {
        "type": "string",
        "maxLength": MAX_REDIRECT_URI,
        "pattern": LOOPBACK_REDIRECT,
    },
    "state": {
        "type": "string",
        "pattern": f"^({STATE.pattern})?$",
        "description": "Echoed to the redirect URI; empty is no state.",
    },
    "response_type": {"type": "string", "description": "`code`." + REDIRECTED},
    "code_challenge": {
        "type": "string",
        "description": "base64url (no padding) of the SHA-256 of the code verifier: 43 "
        "characters." + REDIRECTED,
    },
    "code_challenge_method": {"type": "string", "description": "`S256`." + REDIRECTED},
}
"""Errors in ``client_id``, ``redirect_uri`` or ``state`` are refused (400, never redirected:
redirecting is not safe yet); any other error goes back to the redirect URI (RFC 6749
§4.1.2.1), so those parameters are unconstrained here: every value has a documented answer."""
AUTHORIZE_REQUIRED: Final = ["client_id", "redirect_uri"]
HTML: Final[Schema] = {"text/html": {"schema": {"type": "string"}}}
OAUTH_ERROR: Final[Schema] = {
    "application/json": {"schema": {"$ref": REF.format(name="OAuthErrorBody")}}
}
LOCATION: Final[Schema] = {
    "Location": {"description": "The redirect URI with its query.", "schema": {"type": "string"}}
}
UNUSABLE_REQUEST: Final[Schema] = {
    "description": "The client_id or redirect_uri is missing or unusable, or a parameter is "
    "given twice: never redirected. An HTML page when the caller accepts text/html, else the "
    "error envelope (`invalid_request`).",
    "content": {**HTML, "application/json": {"schema": ENVELOPE}},
}
REDIRECTED_ERROR: Final = (
    "Any other request error, reported to the redirect URI as `?error=…&error_description=…"
    "&state=…` (RFC 6749 §4.1.2.1)"
)


def _form(properties: dict[str, Schema], required: list[str]) -> Schema:
    return {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {"type": "object", "properties": properties, "required": required}
            }
        },
    }


def _oauth(key: str, operation: Schema) -> None:
    """RFC 6749's formats: HTML and redirects at ``/authorize``, §5.2 errors at ``/token`` and
    ``/revoke`` (:mod:`levered.server.oauth`)."""
    internal = _error(GENERIC[500])
    unavailable = _error(GENERIC[503], retry=True)
    too_large = _error(GENERIC[413])
    if key == "GET /oauth/authorize":
        operation["parameters"] = [
            {"name": name, "in": "query", "required": name in AUTHORIZE_REQUIRED, "schema": schema}
            for name, schema in AUTHORIZE_FIELDS.items()
        ]
        operation["responses"] = {
            "200": {"description": "The login form.", "content": HTML},
            "303": {"description": REDIRECTED_ERROR + ".", "headers": LOCATION},
            "400": UNUSABLE_REQUEST,
            "500": internal,
        }
    elif key == "POST /oauth/authorize":
        # Credentials are checked after the authorization request: a request error is
        # redirected (303) whatever they are, and missing ones show the form again (401).
        credentials = {"email": {"type": "string"}, "password": {"type": "string"}}
        operation["requestBody"] = _form({**credentials, **AUTHORIZE_FIELDS}, AUTHORIZE_REQUIRED)
        operation["responses"] = {
            "303": {
                "description": "Signed in: to the redirect URI with `code` and `state`. "
                + REDIRECTED_ERROR
                + " goes there too.",
                "headers": LOCATION,
            },
            "400": UNUSABLE_REQUEST,
            "401": {"description": "Wrong email or password: the form again.", "content": HTML},
            "413": too_large,
            "500": internal,
            "503": unavailable,
        }
    elif key == "POST /oauth/token":
        operation["requestBody"] = _form(
            {
                "grant_type": {"type": "string", "enum": ["authorization_code", "refresh_token"]},
                "code": {"type": "string"},
                "redirect_uri": {"type": "string"},
                "client_id": {"type": "string"},
                "code_verifier": {"type": "string"},
                "refresh_token": {"type": "string"},
            },
            ["grant_type"],
        )
        operation["responses"] = {
            "200": {
                "description": "The tokens (RFC 6749 §5.1; no `meta`).",
                "content": {
                    "application/json": {"schema": {"$ref": REF.format(name="TokenResponse")}}
                },
            },
            "400": {
                "description": "RFC 6749 §5.2: `invalid_request`, `invalid_grant` or "
                "`unsupported_grant_type`.",
                "content": OAUTH_ERROR,
            },
            "401": {"description": "`invalid_client`.", "content": OAUTH_ERROR},
            "413": too_large,
            "500": internal,
            "503": unavailable,
        }
    else:  # POST /oauth/revoke
        operation["requestBody"] = _form(
            {
                "token": {"type": "string", "minLength": 1},
                "token_type_hint": {"type": "string"},
                "client_id": {"type": "string"},
            },
            ["token"],
        )
        operation["responses"] = {
            "200": {"description": "Revoked, or nothing to revoke (RFC 7009 §2.2)."},
            "400": {"description": "`invalid_request`: no token.", "content": OAUTH_ERROR},
            "413": too_large,
            "500": internal,
            "503": unavailable,
        }
