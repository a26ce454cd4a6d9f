#!/usr/bin/env bash
# Validate compose.yaml without a Docker daemon or real secrets (`make compose`, part of
# `make test`). Uses the Debian `docker-compose` (v1.29) syntax checker, with the fake values
# of compose.env.example, then checks the resolved configuration:
#   - the file parses and validates (`docker-compose config --quiet`);
#   - the services are exactly kafka, ingest, worker, projector, wired as designed;
#   - KYCFLOW_API_TOKEN is required (config fails without it);
#   - compose.env.example names every variable compose.yaml interpolates.
# Any failure exits non-zero with a message starting "check_compose: FAIL".
set -euo pipefail

cd "$(dirname "$0")/.."
COMPOSE_FILE_PATH=compose.yaml
ENV_EXAMPLE=compose.env.example

fail() {
    echo "check_compose: FAIL: $*" >&2
    exit 1
}

[ -f "$COMPOSE_FILE_PATH" ] || fail "$COMPOSE_FILE_PATH not found"
[ -f "$ENV_EXAMPLE" ] || fail "$ENV_EXAMPLE not found"

if ! command -v docker-compose >/dev/null 2>&1; then
    echo "check_compose: docker-compose not found; installing the Debian package" >&2
    apt-get update -qq && apt-get install -y -qq docker-compose >/dev/null
fi
echo "check_compose: $(docker-compose version --short 2>/dev/null || docker-compose --version)"

# Only the example env file and the variables set here: no .env, no stray KYCFLOW_* or
# COMPOSE_* from the caller's shell can make the check pass or fail by accident.
compose() {
    env -i PATH="$PATH" HOME="${HOME:-/tmp}" "$@"
}
dc() {
    compose docker-compose --project-directory . -f "$COMPOSE_FILE_PATH" "$@"
}

# 1. The file is valid (syntax, schema, interpolation) with the example values.
if ! dc --env-file "$ENV_EXAMPLE" config --quiet; then
    fail "docker-compose config rejected $COMPOSE_FILE_PATH (see the error above)"
fi

# 2. Structure of the resolved configuration.
resolved=$(dc --env-file "$ENV_EXAMPLE" config) || fail "docker-compose config failed"
# The docker-compose package depends on python3-yaml; prefer the interpreter it uses.
PYTHON=python3
if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import yaml' 2>/dev/null; then
    PYTHON=/usr/bin/python3
fi
"$PYTHON" -c 'import yaml' 2>/dev/null || fail "python3 with PyYAML is needed (apt-get install python3-yaml)"
resolved_file=$(mktemp)
empty_env=$(mktemp)
trap 'rm -f "$resolved_file" "$empty_env"' EXIT
printf '%s\n' "$resolved" >"$resolved_file"
"$PYTHON" - "$resolved_file" <<'PY' || fail "resolved configuration does not match the design (see above)"
import sys

import yaml

with open(sys.argv[1], encoding="utf-8") as f:
    doc = yaml.safe_load(f)
errors = []
services = doc.get("services") or {}
expected = {"kafka", "ingest", "worker", "projector"}
if set(services) != expected:
    errors.append(f"services are {sorted(services)}, expected {sorted(expected)}")

def env(name):
    e = services.get(name, {}).get("environment") or {}
    if isinstance(e, list):
        e = dict(item.split("=", 1) if "=" in item else (item, "") for item in e)
    return {k: "" if v is None else str(v) for k, v in e.items()}

def volumes(name):
    out = []
    for v in services.get(name, {}).get("volumes") or []:
        # v1 prints "source:target:rw", v2 the long form
        out.append(":".join(v.split(":")[:2]) if isinstance(v, str)
                   else f"{v.get('source')}:{v.get('target')}")
    return out

kafka = services.get("kafka", {})
if kafka.get("image") != "apache/kafka:3.9.1":
    errors.append(f"kafka image is {kafka.get('image')!r}, expected apache/kafka:3.9.1")
if "healthcheck" not in kafka:
    errors.append("kafka has no healthcheck")
kenv = env("kafka")
for key, want in {
    "KAFKA_PROCESS_ROLES": "broker,controller",
    "KAFKA_ADVERTISED_LISTENERS": "PLAINTEXT://kafka:9092",
    "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@kafka:9093",
    "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
    "KAFKA_LOG_DIRS": "/var/lib/kafka/data",
}.items():
    if kenv.get(key) != want:
        errors.append(f"kafka {key}={kenv.get(key)!r}, expected {want!r}")
if not any(v.startswith("kafka-data:") for v in volumes("kafka")):
    errors.append("kafka data is not on the kafka-data volume")

required_env = [
    "KYCFLOW_KAFKA_BOOTSTRAP", "KYCFLOW_DB", "KYCFLOW_KAFKA_PARTITIONS",
    "KYCFLOW_KAFKA_SESSION_TIMEOUT", "KYCFLOW_KAFKA_REBALANCE_TIMEOUT",
    "KYCFLOW_IDENFY_SIGNING_KEY", "KYCFLOW_ONDATO_USERNAME", "KYCFLOW_ONDATO_PASSWORD",
    "KYCFLOW_ONDATO_CLIENT_ID", "KYCFLOW_ONDATO_CLIENT_SECRET", "KYCFLOW_ONDATO_ALLOWED_IPS",
    "KYCFLOW_IDWISE_TOKEN", "KYCFLOW_API_TOKEN",
]
commands = {"ingest": "serve", "worker": "worker", "projector": "project"}
for name, sub in commands.items():
    svc = services.get(name, {})
    cmd = svc.get("command")
    cmd = cmd.split() if isinstance(cmd, str) else list(cmd or [])
    if cmd != ["kycflow", sub]:
        errors.append(f"{name} command is {cmd}, expected kycflow {sub}")
    if not svc.get("build"):
        errors.append(f"{name} is not built from the repository Dockerfile")
    dep = svc.get("depends_on") or {}
    cond = dep.get("kafka", {}).get("condition") if isinstance(dep, dict) else None
    if cond != "service_healthy":
        errors.append(f"{name} does not wait for kafka to be healthy")
    e = env(name)
    missing = [k for k in required_env if k not in e]
    if missing:
        errors.append(f"{name} lacks {missing}")
    if e.get("KYCFLOW_KAFKA_BOOTSTRAP") != "kafka:9092":
        errors.append(f"{name} KYCFLOW_KAFKA_BOOTSTRAP is not kafka:9092")
    if e.get("KYCFLOW_DB") != "/data/kycflow.db":
        errors.append(f"{name} KYCFLOW_DB is not /data/kycflow.db")

for name in ("ingest", "projector"):
    if "kycflow-data:/data" not in volumes(name):
        errors.append(f"{name} does not mount the kycflow-data volume at /data")
ingest = services.get("ingest", {})
if "healthcheck" not in ingest:
    errors.append("ingest has no healthcheck")
if env("ingest").get("KYCFLOW_HOST") != "0.0.0.0":
    errors.append("ingest KYCFLOW_HOST is not 0.0.0.0")
worker = services.get("worker", {})
for key in ("container_name", "ports"):
    if worker.get(key):
        errors.append(f"worker sets {key}: it could not be scaled (--scale worker=N)")
for name in ("worker", "projector"):
    if services.get(name, {}).get("restart") != "unless-stopped":
        errors.append(f"{name} restart is not unless-stopped")

if errors:
    for error in errors:
        print(f"check_compose: FAIL: {error}", file=sys.stderr)
    sys.exit(1)
print("check_compose: services " + ", ".join(sorted(services)) + " as designed")
PY

# 3. Without KYCFLOW_API_TOKEN the configuration must not resolve (${...:?...}).
grep -v '^KYCFLOW_API_TOKEN=' "$ENV_EXAMPLE" >"$empty_env"
if dc --env-file "$empty_env" config --quiet >/dev/null 2>&1; then
    fail "config resolves without KYCFLOW_API_TOKEN; it must be required"
fi

# 4. The example env file names every variable the compose file interpolates.
used=$(grep -oE '\$\{[A-Za-z_][A-Za-z0-9_]*' "$COMPOSE_FILE_PATH" | cut -c3- | sort -u)
listed=$(grep -oE '^[A-Za-z_][A-Za-z0-9_]*=' "$ENV_EXAMPLE" | tr -d '=' | sort -u)
missing=$(comm -23 <(printf '%s\n' "$used") <(printf '%s\n' "$listed"))
[ -z "$missing" ] || fail "$ENV_EXAMPLE lacks: $(echo "$missing" | tr '\n' ' ')"

echo "check_compose: OK ($COMPOSE_FILE_PATH valid; kafka, ingest, worker, projector present)"
