"""The environment variables each command reads, listed at the end of its --help.

A command-line flag, where there is one, wins over its variable (the flag's help names
it); a non-empty variable wins over the first-run credentials file beside the database.
"""

from __future__ import annotations

import shutil
import textwrap

from streams.kafka.config import SETTINGS as KAFKA_SETTINGS

Variables = dict[str, str]

DATABASE: Variables = {
    "KYCFLOW_DB": "projections database (default ./kycflow.db); the raw log (NAME.raw.db) "
    "and the first-run credentials file (NAME.credentials.json) are beside it",
}
LISTEN: Variables = {
    "KYCFLOW_HOST": "address to listen on (default 127.0.0.1)",
    "KYCFLOW_PORT": "port to listen on (default 8080)",
    "KYCFLOW_WORKERS": "HTTP worker processes (default: one per CPU)",
    "KYCFLOW_API_TOKEN": "bearer token the read API requires; needed beyond loopback",
    "KYCFLOW_CONSOLE_SECURE_COOKIE": "true: console cookies are Secure (TLS proxy in front)",
}
CREDENTIALS: Variables = {
    "KYCFLOW_IDENFY_SIGNING_KEY": "iDenfy signing key(s), comma-separated for rotation",
    "KYCFLOW_ONDATO_USERNAME": "Ondato basic-auth user (with KYCFLOW_ONDATO_PASSWORD)",
    "KYCFLOW_ONDATO_PASSWORD": "Ondato basic-auth password",
    "KYCFLOW_ONDATO_CLIENT_ID": "Ondato OAuth2 client id (with KYCFLOW_ONDATO_CLIENT_SECRET)",
    "KYCFLOW_ONDATO_CLIENT_SECRET": "Ondato OAuth2 client secret",
    "KYCFLOW_IDWISE_TOKEN": "IDWise bearer token",
    "KYCFLOW_IDWISE_USERNAME": "IDWise basic-auth user (with KYCFLOW_IDWISE_PASSWORD)",
    "KYCFLOW_IDWISE_PASSWORD": "IDWise basic-auth password",
    "KYCFLOW_IDWISE_HEADER": "IDWise custom auth header, 'Header-Name: value'",
}
INGEST: Variables = {
    "KYCFLOW_ONDATO_TOKEN_TTL": "lifetime of Ondato OAuth2 tokens, seconds (default 3600)",
    "KYCFLOW_ONDATO_ALLOWED_IPS": "addresses/CIDRs Ondato may send from (default: any)",
    "KYCFLOW_TRUSTED_PROXIES": "proxies whose X-Forwarded-For is believed (default: none)",
    "KYCFLOW_MAX_BODY": "largest webhook body, bytes (default 1048576, at most 268435456)",
    "KYCFLOW_READ_TIMEOUT": "seconds to receive a webhook body (default 10)",
    "KYCFLOW_HEADER_TIMEOUT": "seconds from a connection (or a request's first byte) to its "
    "complete headers (default 10)",
    "KYCFLOW_KEEPALIVE_TIMEOUT": "seconds an idle connection stays open between requests "
    "(default 75)",
    "KYCFLOW_MAX_HEADER_SIZE": "largest header field, bytes (default 8192, at most 65536)",
    "KYCFLOW_ACCESS_LOG": "one INFO line per request: true or false (default true)",
}
PERSONAL_DATA: Variables = {
    "KYCFLOW_MASTER_KEY": "master key(s) wrapping the data keys, base64, new first "
    "(default: the first-run file NAME.master.key)",
    "KYCFLOW_MASTER_KEY_FILE": "file holding the master key(s) instead",
}
ENCRYPTION: Variables = {
    "KYCFLOW_ENCRYPTION": "off stores new raw bodies in the clear (default on)",
}
RETENTION: Variables = {
    "KYCFLOW_RETENTION": "how long raw bodies are kept: final+30d, last+90d (units d, h, m, "
    "s) or off (default off)",
    "KYCFLOW_RETENTION_INTERVAL": "seconds between the service's retention runs (default 3600)",
}
KAFKA: Variables = {
    name: f"{text} (default {default})" if default else text
    for name, (text, default) in KAFKA_SETTINGS.items()
}


def _kafka(*names: str) -> Variables:
    return {
        name: KAFKA[name]
        for name in ("KYCFLOW_KAFKA_BOOTSTRAP", "KYCFLOW_KAFKA_TOPIC_PREFIX", *names)
    }


# Whoever creates the topics (serve in Kafka mode, worker, project, topics) reads these.
TOPIC_CREATION = (
    "KYCFLOW_KAFKA_PARTITIONS",
    "KYCFLOW_KAFKA_REPLICATION",
    "KYCFLOW_KAFKA_RAW_RETENTION_MS",
)
CONSUMER_GROUP = (
    "KYCFLOW_KAFKA_GROUP",
    "KYCFLOW_KAFKA_SESSION_TIMEOUT",
    "KYCFLOW_KAFKA_REBALANCE_TIMEOUT",
    "KYCFLOW_WORKER_BATCH",
)
PRODUCER = ("KYCFLOW_KAFKA_LINGER_MS", "KYCFLOW_KAFKA_PRODUCE_TIMEOUT")
STALLS = ("KYCFLOW_KAFKA_STALL_TIMEOUT", "KYCFLOW_KAFKA_METRICS_HOST")

SERVE = {
    **DATABASE,
    **LISTEN,
    **CREDENTIALS,
    **INGEST,
    **PERSONAL_DATA,
    **ENCRYPTION,
    **RETENTION,
    # The console reads the projector's lag from its status port (Kafka mode).
    **_kafka(
        *TOPIC_CREATION, *PRODUCER, "KYCFLOW_PROJECTOR_METRICS_PORT", "KYCFLOW_KAFKA_METRICS_HOST"
    ),
}
REPLAY = {**DATABASE, **PERSONAL_DATA, **_kafka()}
INSPECT = {**DATABASE, **PERSONAL_DATA, **_kafka()}
SIMULATE = {**DATABASE, **CREDENTIALS}
ERASE = {**DATABASE, **PERSONAL_DATA, **ENCRYPTION, **_kafka()}
RETENTION_COMMAND = {**DATABASE, **PERSONAL_DATA, **ENCRYPTION, **RETENTION, **_kafka()}
KEYS = {**DATABASE, **PERSONAL_DATA, **_kafka()}
WORKER = {
    **DATABASE,  # where serve's first-run master key file is, on the same host
    **PERSONAL_DATA,
    **_kafka(*TOPIC_CREATION, *CONSUMER_GROUP, *STALLS, "KYCFLOW_WORKER_METRICS_PORT"),
}
PROJECT = {
    **DATABASE,
    **PERSONAL_DATA,
    **RETENTION,  # the projector applies the policy in Kafka mode
    **_kafka(*TOPIC_CREATION, *STALLS, "KYCFLOW_PROJECTOR_METRICS_PORT", *PRODUCER),
}
TAIL = _kafka()
TOPICS = _kafka(*TOPIC_CREATION)
NONE: Variables = {}


def epilog(variables: Variables) -> str:
    """The --help section naming each variable the command reads, wrapped as argparse
    wraps the rest of the help (to the terminal, COLUMNS when set)."""
    if not variables:
        return "environment: none read"
    indent = max(len(name) for name in variables) + 4
    width = max(shutil.get_terminal_size().columns - 2, indent + 30)
    lines = [
        textwrap.fill(
            text,
            width,
            initial_indent=f"  {name:<{indent - 2}}",
            subsequent_indent=" " * indent,
        )
        for name, text in variables.items()
    ]
    return "environment:\n" + "\n".join(lines)
