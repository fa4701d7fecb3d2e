"""Model tests: tiny models run fastest on one thread."""
import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield
