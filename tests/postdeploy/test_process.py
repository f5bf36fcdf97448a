"""Performance checks 13.1 and 13.2: the bot process is not busy and not bloated, sampled on the bot's host."""
import pytest

from deploycheck.checks.performance import bot_usage

CPU_LIMIT = 50.0    # percent, the checklist's "normal (<50% CPU)"
RSS_LIMIT = 500.0   # MB, the checklist's "normal (<500MB RSS)"


@pytest.fixture(scope="session")
def samples() -> dict:
    return {}


@pytest.fixture
async def usage(service, host, samples):
    """One few-second sample per bot process, shared by 13.1 and 13.2 (a restarted bot is sampled anew)."""
    pids = tuple(service.pids())
    if pids not in samples:
        samples[pids] = await bot_usage(service, host, list(pids))
    return samples[pids]


@pytest.mark.item("13.1")
def test_cpu_usage_normal(usage, evidence):
    evidence.update({"CPU": f"{usage['CPU']}%", "Sampled Seconds": usage["Sampled Seconds"],
                     "Sampled On": usage["Sampled On"],
                     "Processes": [{k: p[k] for k in ("PID", "Command", "CPU")} for p in usage["Processes"]]})
    assert usage["CPU"] < CPU_LIMIT, f"the bot uses {usage['CPU']}% CPU over {usage['Sampled Seconds']} s; " \
                                     f"normal is under {CPU_LIMIT:g}%: look for a busy loop or a retry storm in its logs"


@pytest.mark.item("13.2")
def test_memory_usage_normal(usage, evidence):
    evidence.update({"RSS": f"{usage['RSS']} MB", "Sampled On": usage["Sampled On"],
                     "Processes": [{k: p[k] for k in ("PID", "Command", "RSS")} for p in usage["Processes"]]})
    assert usage["RSS"] < RSS_LIMIT, (f"the bot's resident memory is {usage['RSS']} MB; normal is under "
                                      f"{RSS_LIMIT:g} MB: look for a leak before it is killed")
