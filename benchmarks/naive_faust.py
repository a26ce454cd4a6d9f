"""The naive Faust design, the worker benchmark's baseline: one event at a time, the
subject's state read from and written to a Faust Table per event (a changelog write
each), one status record sent per event. Same core (`step`), same broker, same data.

Run as `python -m benchmarks.naive_faust` with the `KYCFLOW_KAFKA_*` environment.
"""

from __future__ import annotations

import os
from typing import Any

import faust
import pydantic_core

from statemachines.codec import state_from_dict, state_to_dict, status_record
from statemachines.envelope import envelope_from_record
from statemachines.process import step
from statemachines.routing import position
from streams.kafka.config import KafkaSettings
from streams.kafka.worker import app_settings


def main() -> None:
    settings = KafkaSettings.from_config(os.environ)
    assert settings is not None, "set KYCFLOW_KAFKA_BOOTSTRAP"
    app = faust.App(settings.group, **app_settings(settings))
    raw = app.topic(settings.topic("raw"), key_type=bytes, value_type=bytes,
                    key_serializer="raw", value_serializer="raw")  # fmt: skip
    status = app.topic(settings.topic("status"), key_type=bytes, value_type=bytes,
                       key_serializer="raw", value_serializer="raw")  # fmt: skip
    table: Any = app.Table("naive-states", default=None, partitions=settings.partitions)

    class States(dict[str, Any]):
        def get(self, key: str, default: Any = None) -> Any:
            stored = table.get(key)
            return state_from_dict(stored) if stored is not None else default

    @app.agent(raw)
    async def fold(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            env = envelope_from_record(event.value, position(message.partition, message.offset))
            result = step(env, States())
            if result.outcome is not None:
                state = result.outcome.state
                table[state.subject.key] = state_to_dict(state)
                record = pydantic_core.to_json(status_record(state))
                await status.send(key=state.subject.key.encode(), value=record)

    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
