"""Import historical events from a worker: backpressure instead of drops, a spool for safety.

Run against the local server (no account needed):

    python examples/import_events.py --events 200000

or against PostHog with ``--host https://eu.i.posthog.com --api-key phc_...``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aioposthog import AsyncPostHog
from aioposthog.testing import LocalPostHog


@dataclass
class Row:
    user: str
    event: str
    at: datetime
    amount: float


async def rows(count: int) -> AsyncIterator[Row]:
    """Stands in for a database cursor or a file reader."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    for i in range(count):
        yield Row(
            user=f"customer-{i % 5_000}",
            event="order completed" if i % 4 else "refund issued",
            at=start + timedelta(seconds=37 * i),
            amount=round(10 + (i % 90) * 1.5, 2),
        )


async def main(count: int, host: str, api_key: str) -> None:
    async with AsyncPostHog(
        api_key,
        host=host,
        overflow="block",  # wait for room instead of dropping: an import must be complete
        historical_migration=True,  # PostHog routes these to its import pipeline
        spool_dir=".aioposthog-spool",  # whatever cannot be sent by shutdown is kept on disk
    ) as posthog:
        started = time.perf_counter()
        async for row in rows(count):
            await posthog.capture(
                row.event, distinct_id=row.user, properties={"amount": row.amount}, timestamp=row.at
            )
        await posthog.flush(timeout=120)
        stats = posthog.stats
    elapsed = time.perf_counter() - started
    print(
        f"imported {stats.sent:,} of {count:,} events in {elapsed:.1f} s "
        f"({stats.sent / elapsed:,.0f}/s), dropped {stats.dropped_total}, spooled {stats.spooled}"
    )


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--host")
    parser.add_argument("--api-key", default="phc_example_import")
    args = parser.parse_args()
    if args.host:
        asyncio.run(main(args.events, args.host, args.api_key))
        return

    async def local() -> None:
        async with LocalPostHog() as server:
            await main(args.events, server.url, args.api_key)
            print(f"the local server received {server.event_count:,} events")

    asyncio.run(local())


if __name__ == "__main__":
    cli()
