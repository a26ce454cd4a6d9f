"""The OpenAPI 3.1 description of the ingest routes: `POST /webhooks/{provider}` and
`POST /oauth/token`, with their schemas and the providers' security schemes.

Plain data next to the routes it describes; `streams.service.openapi` assembles it with the
read API's part into the served document. `#/components/schemas/Error` is defined there.
"""

from __future__ import annotations

from typing import Any

from statemachines.envelope import PROVIDERS

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(required: list[str], **properties: Schema) -> Schema:
    return {"type": "object", "required": required, "properties": properties}


def _json(description: str, schema: Schema) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> Schema:
    return _json(description, _ref("Error"))


SCHEMAS: dict[str, Schema] = {
    "OAuthError": _object(
        ["error"], error={"type": "string"}, error_description={"type": "string"}
    ),
    "Accepted": _object(
        ["offset", "duplicate"],
        offset={"type": "integer", "description": "Raw-log offset of this delivery."},
        duplicate={
            "type": "boolean",
            "description": "The same delivery was received before; it changes nothing.",
        },
    ),
    "Token": _object(
        ["access_token", "token_type", "expires_in"],
        access_token={"type": "string"},
        token_type={"const": "Bearer"},
        expires_in={"type": "integer", "description": "Lifetime in seconds."},
    ),
}

SECURITY_SCHEMES: dict[str, Schema] = {
    "idenfySignature": {
        "type": "apiKey",
        "in": "header",
        "name": "Idenfy-Signature",
        "description": "iDenfy: hex HMAC-SHA256 of the exact body with the signing key.",
    },
    "basic": {"type": "http", "scheme": "basic", "description": "Ondato or IDWise basic auth."},
    "providerBearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "IDWise: the configured static token.",
    },
    "ondatoOAuth2": {
        "type": "oauth2",
        "flows": {"clientCredentials": {"tokenUrl": "/oauth/token", "scopes": {}}},
        "description": "Ondato's OAuth2 mode: a bearer token from `POST /oauth/token`.",
    },
}
# Alternatives: each provider uses the one it is configured for (design.md §7, fail closed).
WEBHOOK_SECURITY: list[Schema] = [
    {name: []} for name in ("idenfySignature", "basic", "ondatoOAuth2", "providerBearer")
]

RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}}
CHALLENGE = {
    "WWW-Authenticate": {
        "description": "Ondato: Basic; IDWise: Bearer; iDenfy signs, so sends none.",
        "schema": {"type": "string"},
    }
}

WEBHOOK = {
    "post": {
        "summary": "Receive a provider webhook; 202 once it is durably in the raw log.",
        "description": (
            "Authentication is checked over the exact bytes received, which are then stored "
            "byte for byte, whatever they are: a body the core cannot read (not JSON, not an "
            "object, an unknown event) is still accepted with 202 and quarantined by the "
            "processor with the reason, so nothing authenticated is lost and a fix can "
            "replay it. Only identity encodings are accepted: a compressed body would not be "
            "the bytes the signature covers."
        ),
        "security": WEBHOOK_SECURITY,
        "parameters": [
            {
                "name": "provider",
                "in": "path",
                "required": True,
                "description": "The sending provider.",
                "schema": {"enum": list(PROVIDERS)},
            }
        ],
        "requestBody": {
            "required": True,
            "description": (
                "The provider's raw body, usually a JSON object; any bytes are accepted once "
                "authenticated (see above). The Content-Type is not checked."
            ),
            "content": {"application/json": {"schema": {}}},
        },
        "responses": {
            "202": _json("Durably appended.", _ref("Accepted")),
            "400": _error(
                "Broken body framing, a kept header sent twice, or a delivery id longer "
                "than 512 characters."
            ),
            "401": {
                **_error("Bad, missing or repeated credentials, or none configured."),
                "headers": CHALLENGE,
            },
            "403": _error("Remote address not allowed (KYCFLOW_ONDATO_ALLOWED_IPS)."),
            "404": _error("Unknown provider."),
            "408": _error("Body not received within KYCFLOW_READ_TIMEOUT."),
            "413": _error("Body larger than KYCFLOW_MAX_BODY (or than the Kafka record limit)."),
            "415": _error(
                "A Content-Encoding other than identity, or a Transfer-Encoding other than "
                "chunked, however spelled or repeated."
            ),
            "431": _error("A kept header's value is longer than 1024 characters."),
            "503": {**_error("Raw log unavailable; retry."), "headers": RETRY_AFTER},
        },
    }
}
TOKEN = {
    "post": {
        "summary": "OAuth2 client-credentials token (RFC 6749 §4.4) for Ondato's OAuth2 mode.",
        "security": [{"basic": []}, {}],  # or client_id/client_secret form fields
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": _object(
                        ["grant_type"],
                        grant_type={"const": "client_credentials"},
                        client_id={"type": "string"},
                        client_secret={"type": "string"},
                        scope={"type": "string"},
                    )
                }
            },
        },
        "responses": {
            "200": _json("A bearer token (sent with Cache-Control: no-store).", _ref("Token")),
            "400": _json(
                "Invalid request or grant type, a repeated parameter, a malformed form body.",
                _ref("OAuthError"),
            ),
            "401": {
                **_json("Client authentication failed; no token.", _ref("OAuthError")),
                "headers": {"WWW-Authenticate": {"schema": {"const": "Basic"}}},
            },
            "408": _json("Form not received within KYCFLOW_READ_TIMEOUT.", _ref("OAuthError")),
            "413": _json("Form body too large.", _ref("OAuthError")),
            "415": _json(
                "Not application/x-www-form-urlencoded, or an encoded body.", _ref("OAuthError")
            ),
        },
    }
}

PATHS: dict[str, Schema] = {"/webhooks/{provider}": WEBHOOK, "/oauth/token": TOKEN}
