"""What the window's items hand each other within one run."""
import pytest


@pytest.fixture(scope="session")
async def window():
    """6.3 leaves its background maintenance broadcast here for 10.1 to stop; stopped at the end regardless."""
    shared: dict = {}
    yield shared
    if shared.get("broadcast"):
        await shared["broadcast"].stop()
