"""Embedded target: time from start to the first answered query, cold (empty cache: initdb) and warm.

Run: ./run python benchmarks/bench_embedded.py [--warm-runs 5]
"""
import argparse
import asyncio
import os
import statistics
import tempfile
import time

import asyncpg

from deploycheck.infra.embedded import EmbeddedPostgres


def start_to_first_query() -> tuple[float, str]:
    began = time.perf_counter()
    server = EmbeddedPostgres().start()
    try:
        async def first_query():
            conn = await asyncpg.connect(server.dsn)
            try:
                return await conn.fetchval("SELECT version()")
            finally:
                await conn.close()
        version = asyncio.run(first_query())
        return time.perf_counter() - began, version
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--warm-runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="deploycheck-bench-cache-") as cache:
        os.chmod(cache, 0o755)
        os.environ["DEPLOYCHECK_CACHE"] = cache
        cold, version = start_to_first_query()
        warm = [start_to_first_query()[0] for _ in range(args.warm_runs)]
    print(f"server: {version.split(',')[0]}")
    print(f"cold start to first query (initdb into an empty cache): {cold:.3f} s")
    print(f"warm start to first query, {len(warm)} runs: median {statistics.median(warm):.3f} s, "
          f"max {max(warm):.3f} s (target: under 0.5 s)")


if __name__ == "__main__":
    main()
