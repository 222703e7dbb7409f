import pytest

from tests.realdata import SHARED_DATA


@pytest.fixture
def shared_data():
    """Folder of the external reference data; tests using it skip cleanly when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data not found at {SHARED_DATA} (set QSMAPP_SHARED_DATA)")
    return SHARED_DATA
