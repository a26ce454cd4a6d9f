"""`kycflow topics` on the real broker: each topic with the partitions it has there (the data
keys and the audit trail one each), and an existing topic's own count, not the setting's."""

from __future__ import annotations

import re

from tests.kafka.stack import KafkaStack

LINE = re.compile(r"^(\S+)\s+(created|exists)\s+(\d+) partitions?, ")


def listed(stack: KafkaStack) -> dict[str, tuple[str, int]]:
    done = stack.run("topics")
    assert done.returncode == 0, done.stderr
    found = [LINE.match(line) for line in done.stderr.strip().splitlines()]
    assert all(found), done.stderr
    return {m[1].split(".", 1)[1]: (m[2], int(m[3])) for m in found if m}


def test_topics_lists_the_partitions_each_topic_has(stack: KafkaStack) -> None:
    first = listed(stack)  # KYCFLOW_KAFKA_PARTITIONS=4 in the stack
    single = {"keys", "audit"}
    assert first == {
        suffix: ("created", 1 if suffix in single else 4)
        for suffix in ("raw", "status", "transitions", "annotations", "quarantine", "keys",
                       "reduced", "audit")
    }  # fmt: skip
    stack.overrides["KYCFLOW_KAFKA_PARTITIONS"] = "6"  # new topics only
    assert listed(stack) == {suffix: ("exists", n) for suffix, (_, n) in first.items()}
