"""`kycflow simulate`: realistic, correctly authenticated provider traffic for a kycflow server.

The way to try kycflow without a provider account. Each verification is one provider's
lifecycle (iDenfy, Ondato or IDWise; KYC, KYB, KYB documents or AML monitoring), sent in
provider order; verifications are interleaved at random. `--reorder` shuffles each
verification's events; `--duplicates` re-sends about a fifth of the deliveries, byte for
byte, later on. All randomness comes from `--seed`: a seed sends the same bytes again.

Choices the design leaves open: one verification's deliveries never overlap in flight,
so without `--reorder` they arrive in provider order even at high concurrency (IDWise has
no timestamps: its attempts are told apart by arrival). A delivery fails when answered
with anything but 202, or not at all; any failure makes the exit code 1. Without `--seed`
a fresh seed is drawn and shown in the summary. Secrets are never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import aiohttp
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from statemachines.envelope import PROVIDERS
from streams import config as cfg
from streams.config import Authenticator, ConfigError, TokenError, configured
from streams.simulator import lifecycles as builders
from streams.simulator.lifecycles import Clock
from streams.simulator.samples import Webhook

DEFAULT_URL = "http://127.0.0.1:8080"
DUPLICATE_SHARE = 0.2
TIMEOUT = aiohttp.ClientTimeout(total=30)  # the longest a provider waits (Ondato)
# Round-robin over kinds, providers alternating, so even a short run covers all three.
KINDS: tuple[tuple[str, builders.Lifecycle], ...] = (
    ("idenfy", builders.idenfy_kyc_lifecycle),
    ("ondato", builders.ondato_kyc_lifecycle),
    ("idwise", builders.idwise_kyc_lifecycle),
    ("idenfy", builders.idenfy_kyb_lifecycle),
    ("ondato", builders.ondato_kyb_lifecycle),
    ("idwise", builders.idwise_aml_lifecycle),
    ("idenfy", builders.idenfy_aml_lifecycle),
)


def lifecycles(
    rng: random.Random, verifications: int, providers: Sequence[str] = PROVIDERS
) -> list[list[Webhook]]:
    """Per verification, one provider's webhooks in the order that provider sends them."""
    kinds = [build for provider, build in KINDS if provider in providers]
    return [kinds[n % len(kinds)](rng, Clock(rng)) for n in range(verifications)] if kinds else []


class Delivery(NamedTuple):
    verification: int
    webhook: Webhook


def plan(
    rng: random.Random, histories: list[list[Webhook]], *, reorder: bool, duplicates: bool
) -> list[Delivery]:
    """All deliveries in sending order: verifications interleaved, each in its own order."""
    queues = [rng.sample(events, len(events)) if reorder else events for events in histories]
    turns = [n for n, events in enumerate(queues) for _ in events]
    rng.shuffle(turns)  # a uniform interleaving that keeps every queue's own order
    pending = [iter(events) for events in queues]
    sequence = [Delivery(n, next(pending[n])) for n in turns]
    if not duplicates:
        return sequence
    keyed = [(float(i), delivery) for i, delivery in enumerate(sequence)]
    for i, delivery in enumerate(sequence):
        if rng.random() < DUPLICATE_SHARE:  # a provider retry: same bytes, some time later
            keyed.append((rng.uniform(i + 0.5, len(sequence)), delivery))
    return [delivery for _, delivery in sorted(keyed, key=lambda pair: pair[0])]


# --- Sending ---------------------------------------------------------------------------
@dataclass
class Tally:
    sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def failed(self) -> int:
        return self.rejected.total() + self.errors.total()


@dataclass
class Summary:
    tallies: dict[str, Tally]
    seed: int
    skipped: tuple[str, ...] = ()
    elapsed: float = 0.0

    def total(self) -> Tally:
        total = Tally()
        for tally in self.tallies.values():
            total.sent, total.accepted = total.sent + tally.sent, total.accepted + tally.accepted
            total.duplicates += tally.duplicates
            total.rejected.update(tally.rejected)
            total.errors.update(tally.errors)
        return total

    @property
    def rate(self) -> float:
        return self.total().sent / self.elapsed if self.elapsed else 0.0


class Sender:
    def __init__(self, url: str, auth: Authenticator, summary: Summary):
        self.url, self.auth, self.summary = url, auth, summary

    async def deliver(self, delivery: Delivery) -> None:
        provider, headers, body = delivery.webhook
        tally = self.summary.tallies[provider]
        tally.sent += 1
        try:
            status, answer = await self._post(provider, headers, body)
        except (aiohttp.ClientError, TimeoutError, TokenError) as exc:
            tally.errors[_reason(exc)] += 1
            return
        if status != 202:
            tally.rejected[status] += 1
            return
        tally.accepted += 1
        tally.duplicates += isinstance(answer, dict) and answer.get("duplicate") is True

    async def _post(self, provider: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        sent = {**headers, **await self.auth.headers(provider, body)}
        status, answer = await self._once(provider, sent, body)
        if status == 401 and provider == "ondato" and self.auth.oauth:  # expired or revoked
            stale = sent["Authorization"].removeprefix("Bearer ")
            sent["Authorization"] = f"Bearer {await self.auth.token(stale)}"
            status, answer = await self._once(provider, sent, body)
        return status, answer

    async def _once(self, provider: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        target = f"{self.url}/webhooks/{provider}"
        async with self.auth.session.post(target, data=body, headers=headers) as response:
            raw = await response.read()
        try:
            return response.status, json.loads(raw) if response.status == 202 else None
        except ValueError:
            return response.status, None


def _reason(exc: Exception) -> str:
    """A short, secret-free name for a failure, to group them in the summary."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "cannot connect"
    if isinstance(exc, TimeoutError):
        return "timeout"
    return str(exc) if isinstance(exc, TokenError) else type(exc).__name__


async def _dispatch(
    sender: Sender, deliveries: list[Delivery], limit: int, tick: Callable[[], None]
) -> None:
    """At most `limit` in flight; a verification's next delivery waits for its previous one."""
    slots = asyncio.Semaphore(limit)
    last: dict[int, asyncio.Task[None]] = {}

    async def send(delivery: Delivery, before: asyncio.Task[None] | None) -> None:
        try:
            if before is not None:
                await before
            await sender.deliver(delivery)
        finally:
            slots.release()
            tick()

    for delivery in deliveries:
        await slots.acquire()
        before = last.get(delivery.verification)
        last[delivery.verification] = asyncio.create_task(send(delivery, before))
    # Each task awaited its predecessor, so awaiting each verification's last awaits all.
    await asyncio.gather(*last.values())


@contextmanager
def _progress(show: bool, total: int) -> Iterator[Callable[[], None]]:
    if not show:
        yield lambda: None
        return
    with Progress(console=Console(stderr=True)) as bar:
        task = bar.add_task("sending webhooks", total=total)
        yield lambda: bar.advance(task)


async def simulate(
    config: Mapping[str, str],
    url: str = DEFAULT_URL,
    verifications: int = 100,
    reorder: bool = False,
    duplicates: bool = False,
    concurrency: int = 16,
    seed: int | None = None,
    progress: bool = True,
) -> Summary:
    """Send the traffic and count the answers; providers without credentials are skipped."""
    ready = configured(config)
    if not ready:
        raise ConfigError("no provider credentials configured")
    seed = random.SystemRandom().randrange(2**32) if seed is None else seed
    rng = random.Random(seed)
    deliveries = plan(
        rng, lifecycles(rng, verifications, ready), reorder=reorder, duplicates=duplicates
    )
    skipped = tuple(provider for provider in PROVIDERS if provider not in ready)
    summary = Summary({provider: Tally() for provider in ready}, seed, skipped)
    url, started = url.rstrip("/"), time.perf_counter()
    connector = aiohttp.TCPConnector(limit=concurrency)  # keep-alive pool, one per slot
    async with aiohttp.ClientSession(connector=connector, timeout=TIMEOUT) as session:
        sender = Sender(url, Authenticator(config, url, session), summary)
        with _progress(progress, len(deliveries)) as tick:
            await _dispatch(sender, deliveries, concurrency, tick)
    summary.elapsed = time.perf_counter() - started
    return summary


# --- Command line ----------------------------------------------------------------------
def render(summary: Summary) -> Table:
    table = Table(title=f"kycflow simulate (seed {summary.seed})")
    table.caption = f"{summary.elapsed:.2f} s, {summary.rate:,.0f} deliveries/s"
    if summary.skipped:
        table.caption += f"; skipped (no credentials): {', '.join(summary.skipped)}"
    for name in ("provider", "sent", "accepted (202)", "duplicates", "rejected", "errors"):
        table.add_column(name, justify="left" if name == "provider" else "right")
    for name, tally in [*summary.tallies.items(), ("total", summary.total())]:
        rejected = ", ".join(f"{code}: {n}" for code, n in sorted(tally.rejected.items()))
        errors = ", ".join(f"{reason}: {n}" for reason, n in sorted(tally.errors.items()))
        counts = (tally.sent, tally.accepted, tally.duplicates)
        table.add_row(name, *(f"{n:,}" for n in counts), rejected or "0", errors or "0")
    return table


def _run(args: argparse.Namespace) -> int:
    err = Console(stderr=True, markup=False, highlight=False, soft_wrap=True)
    env = {**os.environ, **({"KYCFLOW_DB": args.db} if args.db else {})}
    try:
        config = cfg.load_config(env)
    except ConfigError as exc:
        err.print(f"error: {exc}")
        return 2
    ready = configured(config)
    if not ready:
        err.print(f"error: {cfg.how_to_configure(config)}")
        return 2
    err.print(_credentials_source(config))
    for provider in sorted(set(PROVIDERS) - set(ready)):
        err.print(f"warning: skipping {provider}: no credentials (set {cfg.HINTS[provider]})")
    options = ("url", "verifications", "reorder", "duplicates", "concurrency", "seed")
    try:
        summary = asyncio.run(simulate(config, **{name: getattr(args, name) for name in options}))
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    Console().print(render(summary))
    total = summary.total()
    if total.errors and not total.accepted + total.rejected.total():
        err.print(f"nothing answered at {args.url}: is kycflow serve running there?")
    return 1 if total.failed else 0


def _credentials_source(config: Mapping[str, str]) -> str:
    """Which credentials file was read: the first thing to check when every delivery is
    refused (a simulator pointed at another server's credentials)."""
    path = cfg.credentials_path(config["KYCFLOW_DB"]).absolute()
    if path.is_file():
        return f"credentials: {path} (KYCFLOW_* environment variables override it)"
    return f"credentials: the environment only (no file at {path})"


def _whole(text: str, low: int) -> int:
    """argparse names a failing type by its function name; this says what it wants."""
    digits = text.strip()
    if not (digits.isascii() and digits.isdigit() and len(digits) <= 12) or int(digits) < low:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least {low}, got {text!r}")
    return int(digits)


def _positive(text: str) -> int:
    return _whole(text, 1)


def _seed(text: str) -> int:
    return _whole(text, 0)


def base_url(text: str) -> str:
    """A server's base URL; `127.0.0.1:8080` means http://127.0.0.1:8080."""
    url = text.strip()
    if "://" not in url:
        url = f"http://{url}"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 — raises ValueError for a port that is not a number in range
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(
            f"expected a URL such as http://127.0.0.1:8080 or 127.0.0.1:8080, got {text!r}"
        )
    if parts.query or parts.fragment:
        raise argparse.ArgumentTypeError(f"expected a base URL without ? or #, got {text!r}")
    return url.rstrip("/")


HELP = """Send realistic, correctly authenticated provider traffic to a running kycflow
server: the way to try kycflow without a provider account. Each verification is one
provider's lifecycle, sent in provider order and interleaved with the others; --reorder
shuffles each verification's events, --duplicates re-sends about a fifth of the
deliveries later, byte for byte. The same --seed sends the same bytes again. Credentials
come from the environment over the credentials file kycflow serve wrote beside the
database; the command says which file it read, and never prints a secret."""


def add_parser(subparsers: Any, command: Any = None) -> argparse.ArgumentParser:
    """Register `kycflow simulate` on the CLI's subparsers; `command(subparsers, name,
    summary, description)`, when given, builds the parser in the CLI's help layout."""
    summary = "send realistic, signed provider webhooks to a running kycflow server"
    parser: argparse.ArgumentParser = (
        command(subparsers, "simulate", summary, HELP)
        if command is not None
        else subparsers.add_parser("simulate", help=summary, description=HELP)
    )
    add = parser.add_argument
    add("--url", type=base_url, default=DEFAULT_URL, help="server base URL (%(default)s)")
    add("--db", metavar="PATH", help="the database whose credentials file to read (KYCFLOW_DB)")
    add("--verifications", type=_positive, default=100, help="how many to simulate (100)")
    add("--reorder", action="store_true", help="shuffle each verification's events")
    add("--duplicates", action="store_true", help="re-send ~20%% of deliveries, same bytes, later")
    add("--concurrency", type=_positive, default=16, help="requests in flight at most (16)")
    add("--seed", type=_seed, help="the same seed sends the same bytes (default: a fresh one)")
    parser.set_defaults(handler=_run)
    return parser
