"""The audit trail in Kafka mode, on the real broker with real workers: `kycflow erase` and
`kycflow retention` each append one entry to PREFIX.audit (one partition), and `kycflow
audit` prints them, oldest first, with no personal value in them."""

from __future__ import annotations

import json
from typing import Any

from kafka import KafkaConsumer

from tests.kafka.stack import KafkaStack
from tests.kafka.test_erasure import ERASED, KEPT
from tests.kafka.test_sealing_helpers import append_sealed, envelopes, person, sealed

ERASE = "idenfy/kyc/audit-erase"
KEEP = "idenfy/kyc/audit-keep"


def trail(stack: KafkaStack) -> list[dict[str, Any]]:
    done = stack.run("audit", "--json")
    assert done.returncode == 0, done.stderr
    assert not any(value.decode() in done.stdout for value in ERASED + KEPT)
    entries: list[dict[str, Any]] = json.loads(done.stdout)
    return entries


def test_erasure_and_retention_are_audited_in_the_audit_topic(stack: KafkaStack) -> None:
    master = sealed(stack)
    sent = envelopes(
        [
            *person("audit-erase", "ALDONA", "EA000001", "1981-02-03"),
            *person("audit-keep", "BIRUTE", "KB000002", "1972-04-05"),
        ]
    )
    stack.start_worker()  # creates the topics, the audit topic among them
    stack.start_projector()
    append_sealed(stack, master, sent)
    stack.wait_projected(len(sent))
    assert trail(stack) == []
    consumer = KafkaConsumer(bootstrap_servers=stack.broker.bootstrap)
    try:
        assert consumer.partitions_for_topic(f"{stack.name}.audit") == {0}  # one order
    finally:
        consumer.close()

    erased = stack.run("erase", "idenfy", "kyc", "audit-erase")
    assert erased.returncode == 0, erased.stderr
    stack.overrides["KYCFLOW_RETENTION"] = "last+0s"  # for the command, not the projector
    reduced = stack.run("retention", "--json")
    assert reduced.returncode == 0, reduced.stderr
    assert json.loads(reduced.stdout)["deliveries"] == 2
    nothing = stack.run("retention")  # nothing left to reduce: not audited
    assert nothing.returncode == 0, nothing.stderr

    entries = trail(stack)
    assert [{k: e[k] for k in ("action", "by", "subjects", "deliveries", "keys")}
            for e in entries] == [
        {"action": "erase", "by": "cli", "subjects": [ERASE], "deliveries": 2, "keys": 1},
        {"action": "retention", "by": "retention", "subjects": [KEEP], "deliveries": 2,
         "keys": 1},
    ]  # fmt: skip
    assert all(set(e) == {"at", "action", "by", "subjects", "deliveries", "keys"} for e in entries)
    assert entries[0]["at"] < entries[1]["at"]
    newest = stack.run("audit", "--limit", "1")
    assert newest.returncode == 0, newest.stderr
    [line] = newest.stdout.strip().splitlines()
    assert "retention" in line and KEEP in line
