import pytest

from tests.reports.scenario import build_scenario


@pytest.fixture(scope="session")
def scenario(tmp_path_factory):
    """One good and three broken units through the participant and group levels (see scenario.py)."""
    pytest.importorskip("ants")
    with pytest.MonkeyPatch.context() as patch:
        result = build_scenario(tmp_path_factory.mktemp("qc"), monkeypatch=patch)
    assert all(code == 0 for code in result["codes"].values()), result["codes"]
    return result


@pytest.fixture(scope="session")
def chromium():
    from tests.reports.browser import ensure_chromium

    path, why = ensure_chromium()
    if path is None:
        pytest.skip(f"browser tests need headless Chromium: {why}")
    return path
