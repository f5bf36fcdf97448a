"""Performance checks 13.1 and 13.2: the bot process is not busy and not bloated."""
import pytest

from deploycheck.checks.performance import sample

CPU_LIMIT = 50.0    # percent, the checklist's "normal (<50% CPU)"
RSS_LIMIT = 500.0   # MB, the checklist's "normal (<500MB RSS)"


@pytest.fixture(scope="session")
def samples() -> dict:
    return {}


@pytest.fixture
async def usage(service, samples):
    """One few-second sample per bot process, shared by 13.1 and 13.2 (a restarted bot is sampled anew)."""
    pids = tuple(service.pids())
    assert pids, (f"{service.name} reports no process (a compose service's processes are not visible here; "
                  "use docker stats)")
    if pids not in samples:
        samples[pids] = await sample(list(pids))
    return samples[pids]


@pytest.mark.item("13.1")
def test_cpu_usage_normal(usage, evidence):
    evidence.update({"CPU": f"{usage['CPU']}%", "Sampled Seconds": usage["Sampled Seconds"]})
    assert usage["CPU"] < CPU_LIMIT, f"the bot uses {usage['CPU']}% CPU over {usage['Sampled Seconds']} s; " \
                                     f"normal is under {CPU_LIMIT:g}%: look for a busy loop or a retry storm in its logs"


@pytest.mark.item("13.2")
def test_memory_usage_normal(usage, evidence):
    evidence["RSS"] = f"{usage['RSS']} MB"
    assert usage["RSS"] < RSS_LIMIT, (f"the bot's resident memory is {usage['RSS']} MB; normal is under "
                                      f"{RSS_LIMIT:g} MB: look for a leak before it is killed")
