"""kycflow's configuration: the environment over the first-run credentials file.

`kycflow serve` writes generated provider credentials, on first run, next to the database:
`./kycflow.db` -> `./kycflow.credentials.json`, a JSON object keyed by the same `KYCFLOW_*`
names as the environment. Other commands (`simulate`) read the same file so that they
work against a fresh server with no setup; a non-empty environment variable wins over the
file, so an operator can always override one value. Values are stripped and an empty one
counts as unset, as in `ingest.settings`.

The provider credentials are also turned, here, into the authentication a provider would
send (iDenfy's signature, Ondato's Basic or OAuth2 bearer token, IDWise's bearer token):
`kycflow simulate` uses it, and it is the client-side twin of ingest's checks.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from pathlib import Path

import aiohttp

from statemachines.envelope import PROVIDERS

DEFAULT_DB = "./kycflow.db"
PREFIX = "KYCFLOW_"
HINTS = {  # what to set, per provider, to make it usable
    "idenfy": "KYCFLOW_IDENFY_SIGNING_KEY",
    "ondato": "KYCFLOW_ONDATO_USERNAME and KYCFLOW_ONDATO_PASSWORD, or "
    "KYCFLOW_ONDATO_CLIENT_ID and KYCFLOW_ONDATO_CLIENT_SECRET",
    "idwise": "KYCFLOW_IDWISE_TOKEN",
}


class KycflowError(Exception):
    """A refusal to start or to go on, for the operator: the command line prints the message
    as one line (no traceback) and exits non-zero. Messages never carry secrets or bodies."""


class ConfigError(KycflowError, ValueError):
    """The credentials file exists but cannot be used; the message names the file only."""


def credentials_path(db_path: str | Path) -> Path:
    """The first-run credentials file that belongs to a database path."""
    return Path(db_path).with_suffix(".credentials.json")


def db_path(env: Mapping[str, str]) -> str:
    return (env.get("KYCFLOW_DB") or "").strip() or DEFAULT_DB


def load_config(env: Mapping[str, str], database: str | None = None) -> dict[str, str]:
    """`KYCFLOW_*` settings: the credentials file of the database, then the environment.

    The database path is `database` when given, else `KYCFLOW_DB`, else `./kycflow.db`;
    a missing credentials file is fine (everything may come from the environment).
    """
    path = database or db_path(env)
    config = _read_file(credentials_path(path))
    for key, value in env.items():
        if key.startswith(PREFIX) and value.strip():
            config[key] = value.strip()
    config["KYCFLOW_DB"] = path
    return config


def _read_file(path: Path) -> dict[str, str]:
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        doc = json.loads(raw)
    except ValueError:
        # The file holds secrets: say where the problem is, never echo the content.
        raise ConfigError(f"{path} is not valid JSON") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path} must hold a JSON object of KYCFLOW_* settings")
    return {
        key: str(value).strip()
        for key, value in doc.items()
        if key.startswith(PREFIX) and value is not None and str(value).strip()
    }


# --- Provider credentials, read the way ingest.settings reads them -----------------------
def value(config: Mapping[str, str], key: str) -> str:
    return (config.get(key) or "").strip()


def signing_key(config: Mapping[str, str]) -> str:
    """The first of iDenfy's signing keys (ingest accepts a list, for key rotation)."""
    keys = [key.strip() for key in value(config, "KYCFLOW_IDENFY_SIGNING_KEY").split(",")]
    return next((key for key in keys if key), "")


def ondato_client(config: Mapping[str, str]) -> tuple[str, str] | None:
    """OAuth2 client id and secret, when both are set."""
    pair = value(config, "KYCFLOW_ONDATO_CLIENT_ID"), value(config, "KYCFLOW_ONDATO_CLIENT_SECRET")
    return pair if all(pair) else None


def ondato_basic(config: Mapping[str, str]) -> tuple[str, str] | None:
    """HTTP Basic user name and password, when both are set."""
    pair = value(config, "KYCFLOW_ONDATO_USERNAME"), value(config, "KYCFLOW_ONDATO_PASSWORD")
    return pair if all(pair) else None


def configured(config: Mapping[str, str]) -> list[str]:
    """The providers whose credentials the configuration holds."""
    ready = {
        "idenfy": bool(signing_key(config)),
        "ondato": bool(ondato_client(config) or ondato_basic(config)),
        "idwise": bool(value(config, "KYCFLOW_IDWISE_TOKEN")),
    }
    return [provider for provider in PROVIDERS if ready[provider]]


def how_to_configure(config: Mapping[str, str]) -> str:
    path = credentials_path(config.get("KYCFLOW_DB") or DEFAULT_DB)
    hints = "\n".join(f"  {provider}: {hint}" for provider, hint in HINTS.items())
    return (
        f"no provider credentials in the environment or in {path}.\n"
        "Run `kycflow serve` once (it writes that file with generated credentials), "
        f"or set, per provider:\n{hints}"
    )


# --- Authenticating a delivery exactly as ingest checks it ------------------------------
def basic_auth(user: str, password: str) -> str:
    """HTTP Basic in UTF-8, as ingest decodes it (aiohttp's BasicAuth is deprecated)."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


class TokenError(Exception):
    """The OAuth2 token endpoint gave no usable token."""


class Authenticator:
    """Credentials of all three providers; Ondato's OAuth2 token is shared and refreshed."""

    def __init__(self, config: Mapping[str, str], url: str, session: aiohttp.ClientSession):
        self.config, self.session, self.token_url = config, session, f"{url}/oauth/token"
        self.oauth = ondato_client(config)  # preferred: it is what Ondato does when offered
        self._token, self._expires, self._lock = "", 0.0, asyncio.Lock()

    async def headers(self, provider: str, body: bytes) -> dict[str, str]:
        if provider == "idenfy":
            digest = hmac.new(signing_key(self.config).encode(), body, hashlib.sha256)
            return {"Idenfy-Signature": digest.hexdigest()}
        if provider == "idwise":
            return {"Authorization": f"Bearer {value(self.config, 'KYCFLOW_IDWISE_TOKEN')}"}
        if self.oauth:
            return {"Authorization": f"Bearer {await self.token()}"}
        return {"Authorization": basic_auth(*(ondato_basic(self.config) or ("", "")))}

    async def token(self, stale: str = "") -> str:
        """A valid token; `stale` was refused, so fetch anew unless another task already did."""
        async with self._lock:
            if self._token and self._token != stale and time.monotonic() < self._expires:
                return self._token
            if self.oauth is None:
                raise TokenError("no OAuth2 client id and secret configured")
            form = {"grant_type": "client_credentials"}
            client = {"Authorization": basic_auth(*self.oauth)}  # RFC 6749 §2.3.1
            async with self.session.post(self.token_url, data=form, headers=client) as response:
                raw = await response.read()
            if response.status != 200:
                raise TokenError(f"token endpoint answered {response.status}")
            try:
                doc = json.loads(raw)
                self._token, lifetime = str(doc["access_token"]), float(doc["expires_in"])
            except (ValueError, KeyError, TypeError):
                raise TokenError("token endpoint gave no access_token/expires_in") from None
            self._expires = time.monotonic() + 0.9 * lifetime  # refresh a little early
            return self._token
