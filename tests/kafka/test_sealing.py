"""Kafka mode seals raw bodies at ingest (`ingest.kafka_keys`): no topic holds a body value
in the clear, and the worker and `replay --from-kafka` fold sealed records as before."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from streams.kafka.keys import RecordOpener
from streams.kafka.replay import replay_from_kafka
from tests.e2e.service import KYCFLOW
from tests.kafka.stack import KafkaStack, raw_records
from tests.kafka.test_kafka_mode import comparable, traffic
from tests.kafka.test_sealing_helpers import (
    append_sealed,
    envelopes,
    key_text,
    person,
    sealed,
    settings,
    start_worker,
    topic_bytes,
)

PERSONAL = (b"ALDONA", b"EA000001", b"1981-02-03", b"front.png", b"JOHN", b"AB123456")


def test_no_topic_holds_a_body_value_and_the_fold_is_unchanged(
    stack: KafkaStack, tmp_path: Path
) -> None:
    master = sealed(stack)
    sent = envelopes([*traffic(seed=5), *person("scan-a", "ALDONA", "EA000001", "1981-02-03")])
    start_worker(stack)
    stack.start_projector()
    positions = [r.offset for r in append_sealed(stack, master, sent)]
    stack.wait_projected(len(sent))

    stored = topic_bytes(stack)
    assert {f"{stack.name}.keys", f"{stack.name}.raw"} <= set(stored)
    assert b"scan-a" in stored[f"{stack.name}.raw"]  # the record keys: the provider's ids
    for topic, data in stored.items():
        for value in PERSONAL:
            assert value not in data, (topic, value)
    # The control: with the master key, the same records open to those values.
    opener = RecordOpener(settings(stack), master)
    try:
        opened = b"".join(e.body for e in opener.open(sorted(raw_records(stack).items())))
    finally:
        opener.close()
    assert all(value in opened for value in PERSONAL)

    # The worker folded what a fold of the plaintext gives; replay rebuilds the same.
    rebuilt = tmp_path / "rebuilt.db"
    assert replay_from_kafka(settings(stack), str(rebuilt), master=master) == len(sent)
    assert comparable(rebuilt, positions) == comparable(stack.db, positions)
    assert comparable(stack.db, positions)["verifications"]


def test_a_worker_without_the_right_master_key_stops_with_one_line(stack: KafkaStack) -> None:
    master = sealed(stack)
    append_sealed(stack, master, envelopes(person("scan-b", "ALDONA", "EA000001", "1981-02-03")))
    base = {k: v for k, v in os.environ.items() if not k.startswith("KYCFLOW_")}
    env = {**base, **stack.env}

    del env["KYCFLOW_MASTER_KEY"]
    missing = subprocess.run(
        [KYCFLOW, "worker"], env=env, capture_output=True, text=True, timeout=60
    )
    assert missing.returncode == 2, missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1, missing.stderr
    assert master.current in missing.stderr and "none is configured" in missing.stderr

    wrong = subprocess.run(
        [KYCFLOW, "worker"],
        env={**env, "KYCFLOW_MASTER_KEY": key_text()},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert wrong.returncode == 2, wrong.stderr
    lines = wrong.stderr.strip().splitlines()
    assert len(lines) == 1 and master.current in lines[0] and "Traceback" not in wrong.stderr
