"""The window's cleanup: every maintenance broadcast 6.3 started is stopped at the end of the run, whatever
failed (what 6.3 hands 10.1 goes through the checklist's `hands`/`reads`, not through here)."""
import pytest


@pytest.fixture(scope="session")
async def broadcasts():
    started: list = []
    yield started
    for sending in started:
        await sending.stop()
