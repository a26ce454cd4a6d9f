"""Where a raw webhook goes in Kafka mode, and how its log coordinate is named.

Kafka keeps order per partition only, and a subject's events must be folded by one worker
in log order; so `kycflow.raw` is keyed by the subject the webhook belongs to, computed
at ingest with the same normaliser the workers run (no second copy of the mapping). A
webhook the core cannot read is keyed by its dedup key: it belongs to no subject.

A Kafka record is named by (partition, offset); projections and the precedence key need
one integer, as the embedded raw log's offset is. `position` packs both, readable in
decimal: partition 3, offset 1234 -> 3_000_000_001_234. Within one subject (one
partition) positions keep log order, which is all the fold's last-resort tiebreak needs.
"""

from __future__ import annotations

from statemachines.envelope import RawEnvelope
from statemachines.events import Unrecognised
from statemachines.normalise import normalise

PARTITION_STRIDE = 10**12  # offsets per partition before positions would collide


def routing_key(env: RawEnvelope) -> bytes:
    """The Kafka key of a raw webhook: its subject key, else its dedup key."""
    return owner(env).encode("utf-8", "surrogatepass")


def owner(env: RawEnvelope) -> str:
    """Who a raw webhook belongs to: its subject key, else (unreadable) its dedup key."""
    normalised = normalise(env)
    if isinstance(normalised, Unrecognised):
        return env.dedup_key
    return normalised.subject.key


def position(partition: int, offset: int) -> int:
    """One integer for a Kafka record's coordinate (see the module docstring)."""
    if not 0 <= offset < PARTITION_STRIDE:
        raise ValueError(f"offset {offset} out of range")
    return partition * PARTITION_STRIDE + offset


def coordinate(pos: int) -> tuple[int, int]:
    """Inverse of `position`: (partition, offset)."""
    return divmod(pos, PARTITION_STRIDE)
