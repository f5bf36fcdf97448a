"""The bot process's CPU and memory (13.1, 13.2, 15.5), sampled over a few seconds."""
from __future__ import annotations

import asyncio

import psutil

MB = 1024 ** 2


async def sample(pids: list[int], seconds: float = 3.0) -> dict:
    """CPU percent over the interval and resident memory of the bot's processes (children included)."""
    processes = []
    for pid in pids:
        try:
            main = psutil.Process(pid)
            processes += [main, *main.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
    assert processes, f"no bot process found (pids {pids}); is the bot running?"
    for process in processes:
        process.cpu_percent(None)  # the first reading only starts the interval
    await asyncio.sleep(seconds)
    cpu = rss = 0.0
    for process in processes:
        try:
            cpu += process.cpu_percent(None)
            rss += process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return {"CPU": round(cpu, 1), "RSS": round(rss / MB, 1), "Processes": len(processes),
            "Sampled Seconds": seconds}
