import pytest

from tests.realdata import SHARED_DATA


@pytest.fixture
def shared_data():
    """Folder of the external reference data; tests using it skip cleanly when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data not found at {SHARED_DATA} (set QSMAPP_SHARED_DATA)")
    return SHARED_DATA


_ABSENT = ("not available", "not found", "not in ")


def pytest_terminal_summary(terminalreporter):
    """One clear line when reference data are absent: which tests did not check against them, and why."""
    skipped = terminalreporter.stats.get("skipped", [])
    absent = [r for r in skipped if any(word in str(r.longrepr) for word in _ABSENT)]
    if absent:
        terminalreporter.write_line(
            f"reference data absent: {len(absent)} test(s) skipped without checking against reference data "
            f"(looked in {SHARED_DATA}; set QSMAPP_SHARED_DATA to the folder that holds them)", yellow=True)
