import logging
import time

from bids_app.pipeline.progress import UnitProgress


def test_long_steps_log_periodic_lines(monkeypatch, caplog):
    monkeypatch.setenv("QSMAPP_HEARTBEAT_S", "0.05")
    progress = UnitProgress("sub-01", logger=logging.getLogger("qsmapp.test"))
    with caplog.at_level(logging.INFO, logger="qsmapp.test"):
        with progress.step("registration"):
            time.sleep(0.18)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "[sub-01] registration ..."
    assert sum("registration: still running" in line for line in lines) >= 2
    assert lines[-1].startswith("[sub-01] registration done")
    assert "registration" in progress.timings


def test_no_heartbeat_when_disabled(monkeypatch, caplog):
    monkeypatch.setenv("QSMAPP_HEARTBEAT_S", "0")
    progress = UnitProgress("sub-01", logger=logging.getLogger("qsmapp.test"))
    with caplog.at_level(logging.INFO, logger="qsmapp.test"):
        with progress.step("quick"):
            time.sleep(0.05)
    assert not any("still running" in r.getMessage() for r in caplog.records)
