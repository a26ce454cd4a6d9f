"""A broker failure in the middle of a Kafka-mode erasure (`streams.erasure.kafka`): it is
reported as not completed, naming the step and no personal value, the log holds the old
state or a safe part of the new one, and running the same erasure again completes it.
Real broker, worker and projector (one deployment for the module, so the erasure's wait
for young data keys is paid once); the failure is injected at a step, or (for one case)
is the broker itself stopping to answer."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from kafka.errors import KafkaTimeoutError

from ingest.sealing import MasterKeys
from streams.cli.main import main
from streams.erasure import Request
from streams.erasure import kafka as kafka_erasure
from streams.erasure.api import erase_routes
from streams.erasure.kafka import Incomplete, erase
from tests.kafka.stack import Broker, KafkaStack
from tests.kafka.test_erasure import opened_bodies
from tests.kafka.test_sealing_helpers import append_sealed, envelopes, person, sealed, settings

# One subject per case, each with values of its own.
PEOPLE = {
    "plan": ("ALGIRDA", "PL000001"),
    "reduce": ("BRONISLAVA", "RD000002"),
    "catch_up": ("CESLOVA", "CU000003"),
    "shred": ("DANUTE", "SH000004"),
    "record": ("EGLE", "RC000005"),
    "hung": ("FELICIJA", "HB000006"),
    "api": ("GRAZINA", "AP000007"),
    "kept": ("HALINA", "KP000008"),  # never erased
}
DOB = "1966-06-06"


def subject(case: str) -> str:
    return f"idenfy/kyc/faults-{case}"


def values(case: str) -> tuple[bytes, ...]:
    return tuple(v.encode() for v in PEOPLE[case])


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KafkaStack, MasterKeys]]:
    broker = Broker().start()  # its own: one case stops it
    stack = KafkaStack(broker, tmp_path_factory.mktemp("faults"))
    try:
        master = sealed(stack)
        sent = envelopes(
            [
                webhook
                for case, (name, number) in PEOPLE.items()
                for webhook in person(f"faults-{case}", name, number, DOB)
            ]
        )
        stack.start_worker()
        stack.start_projector()
        append_sealed(stack, master, sent)
        stack.wait_projected(len(sent))
        yield stack, master
    finally:
        stack.stop()
        broker.stop()


def erased_at(db: Path, key: str) -> object:
    with sqlite3.connect(db) as conn:
        row = conn.execute(
            "SELECT erased_at FROM verifications WHERE subject = ?", (key,)
        ).fetchone()
    return row[0]


def nothing() -> None:
    pass


def failing(
    monkeypatch: pytest.MonkeyPatch, step: str, before: Callable[[], None] = nothing
) -> None:
    """`_Session.<step>` fails once: `before` runs first (e.g. stopping the broker), then
    the step itself (its writes reach the broker), then its acknowledgement is lost."""
    real = getattr(kafka_erasure._Session, step)
    calls: list[str] = []

    def step_then_fail(self: Any, *args: Any, **kwargs: Any) -> Any:
        if calls:
            return real(self, *args, **kwargs)
        calls.append(step)
        before()
        real(self, *args, **kwargs)
        raise KafkaTimeoutError("acknowledgement lost")

    monkeypatch.setattr(kafka_erasure._Session, step, step_then_fail)


def kycflow(*args: str) -> int:
    """The command line, in this process; its umask (main sets one) restored after."""
    umask = os.umask(0o077)
    try:
        return main(list(args))
    finally:
        os.umask(umask)


def assert_completed(stack: KafkaStack, master: MasterKeys, case: str) -> None:
    """The subject's values open nowhere and its erasure record is folded."""
    opened = opened_bodies(stack, master)
    assert not any(v in opened for v in values(case))
    assert all(v in opened for v in values("kept"))
    deadline = time.monotonic() + 30
    while erased_at(stack.db, subject(case)) is None:
        assert time.monotonic() < deadline, "the erasure record was not folded"
        time.sleep(0.1)


@pytest.mark.parametrize("step", ["plan", "reduce", "catch_up", "shred", "record"])
def test_a_failure_at_any_step_is_incomplete_and_running_again_completes_it(
    deployment: tuple[KafkaStack, MasterKeys], monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    stack, master = deployment
    options: dict[str, Any] = {
        "settings": settings(stack),
        "master": master,
        "db_path": str(stack.db),
    }
    request = Request((subject(step),))
    failing(monkeypatch, step)
    with pytest.raises(Incomplete) as failed:
        erase(request, **options)
    message = str(failed.value)
    assert message.startswith("erasure not completed: Kafka at " + stack.broker.bootstrap)
    assert failed.value.step in message and message.endswith("run it again to complete it")
    assert not any(v.decode() in message for v in values(step)) and "\n" not in message
    opened = opened_bodies(stack, master)
    if step in ("plan", "reduce", "catch_up"):  # no key destroyed: the old state
        assert all(v in opened for v in values(step))
    else:  # keys destroyed (events kept): the bodies are gone, the subject not yet marked
        assert not any(v in opened for v in values(step))
    if step != "record":
        assert erased_at(stack.db, subject(step)) is None

    [done] = erase(request, **options)
    assert done.subject == subject(step)
    assert_completed(stack, master, step)


def test_a_broker_that_stops_answering_midway_is_one_line_and_the_same_command_completes(
    deployment: tuple[KafkaStack, MasterKeys],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`kycflow erase` (in this process, to stop the broker at the step): the broker hangs
    just before the data keys are destroyed."""
    stack, master = deployment
    broker = stack.broker.process
    assert broker is not None
    for name, value in stack.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(kafka_erasure, "ACK_TIMEOUT", 2.0)
    failing(monkeypatch, "shred", before=lambda: broker.send_signal(signal.SIGSTOP))
    try:
        code = kycflow("erase", "idenfy", "kyc", "faults-hung")
    finally:
        broker.send_signal(signal.SIGCONT)
    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    [line] = err.strip().splitlines()
    assert "erasure not completed" in line and "destroying the data keys" in line, line
    assert "run it again" in line and stack.broker.bootstrap in line
    assert not any(v.decode() in err for v in values("hung"))

    code = kycflow("erase", "idenfy", "kyc", "faults-hung")
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.startswith(f"erased {subject('hung')} at ")
    assert_completed(stack, master, "hung")


def test_the_api_answers_503_with_retry_after_and_asking_again_completes(
    deployment: tuple[KafkaStack, MasterKeys], monkeypatch: pytest.MonkeyPatch
) -> None:
    stack, master = deployment
    case = "api"
    app = web.Application()
    app.add_routes(
        erase_routes(str(stack.db), api_token=None, master=master, kafka=settings(stack))
    )
    path = f"/verifications/{subject(case)}"
    failing(monkeypatch, "shred")  # after the keys went: the worst case to answer for

    async def scenario() -> tuple[int, str | None, dict[str, Any], int]:
        client: TestClient[Any, Any] = TestClient(TestServer(app, host="127.0.0.1", port=0))
        async with client:
            async with client.delete(path) as first:
                answer = (first.status, first.headers.get("Retry-After"), await first.json())
            async with client.delete(path) as again:
                return (*answer, again.status)

    status, retry_after, body, again = asyncio.run(asyncio.wait_for(scenario(), 120))
    assert (status, retry_after) == (503, "5"), body
    assert "not completed" in body["error"] and "destroying the data keys" in body["error"]
    assert again == 200
    assert_completed(stack, master, case)
