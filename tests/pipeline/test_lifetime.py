"""Process lifetime, locking and crash safety of a participant run (real subprocesses, tiny data).

Every subprocess runs in its own session and is killed with its whole process group in a ``finally``;
waits are bounded polls, never assertions about how long something took.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from bids_app.cli.run import main
from bids_app.derivatives.atomic import TEMP_MARKER
from bids_app.pipeline.locking import UnitLock, lock_path
from tests.bids_factory import make_dataset

REPO = Path(__file__).resolve().parents[2]
FAST = ["--skip-bids-validation", "--two-pass", "off", "--masking-input", "magnitude", "--threshold-value", "0.1",
        "--qsm-algorithm", "tkd"]
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and POSIX signals")


@pytest.fixture
def bids(tmp_path):
    return make_dataset(tmp_path / "bids", subjects=("01", "02"), echoes=3, shape=(24, 24, 16))


def _start(bids_dir, out, *extra):
    command = [sys.executable, "-m", "bids_app", str(bids_dir), str(out), "participant", *FAST, *map(str, extra)]
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _children(pid) -> set:
    found = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found |= {int(x) for x in (task / "children").read_text().split()}
        except OSError:
            pass
    return found


def _alive(pid) -> bool:
    """A process that exists and is not a zombie (a zombie has exited; only its parent has not reaped it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _wait_for(condition, timeout=90.0, every=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return False


def _units_started(out, names=("sub-01", "sub-02")):
    def started():
        logs = [out / "logs" / "units" / f"{name}.log" for name in names]
        return all(p.is_file() and "load" in p.read_text() for p in logs)
    return started


def _kill_group(process):
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait(timeout=30)


def _no_sidecar_without_image(out):
    for sidecar in out.glob("sub-*/**/anat/*.json"):
        image = sidecar.with_name(sidecar.name[: -len(".json")] + ".nii.gz")
        assert image.is_file() or sidecar.name.endswith(("_roistats.json",)), f"{sidecar} has no image"


def test_kill_9_of_the_parent_leaves_no_worker_and_no_late_record(bids, tmp_path):
    out = tmp_path / "out"
    process = _start(bids, out, "--n-procs", "2")
    try:
        assert _wait_for(_units_started(out)), "the units never started"
        workers = _children(process.pid)
        assert len(workers) >= 2
        os.kill(process.pid, signal.SIGKILL)
        killed_at = time.time()
        process.wait(timeout=30)
        assert _wait_for(lambda: not any(_alive(p) for p in workers), timeout=20), "workers outlived the parent"
        time.sleep(0.5)  # anything a surviving worker would still write lands now
        for record in (out / "logs" / "units").glob("*_MEGRE.json"):
            assert record.stat().st_mtime < killed_at, f"{record} written after the parent's death"
        _no_sidecar_without_image(out)
    finally:
        _kill_group(process)
    # the next run takes over the stale locks, removes what the killed one left, and completes
    assert main([str(bids), str(out), "participant", *FAST]) == 0
    assert not list(out.rglob(f"*{TEMP_MARKER}*")) and not list((out / "logs" / "units").glob("*.lock"))
    assert not [p for p in Path(tempfile.gettempdir()).glob(f"qsmapp-*-{process.pid}-*")]


@pytest.mark.parametrize("signum, code, n_procs", [(signal.SIGTERM, 143, 2), (signal.SIGINT, 130, 2),
                                                   (signal.SIGTERM, 143, 1)])
def test_signal_stops_all_units_cleans_up_and_writes_the_summary(bids, tmp_path, signum, code, n_procs):
    out = tmp_path / "out"
    process = _start(bids, out, "--n-procs", n_procs)
    try:
        assert _wait_for(_units_started(out, ("sub-01", "sub-02")[:n_procs])), "the units never started"
        workers = _children(process.pid)
        os.kill(process.pid, signum)
        output, _ = process.communicate(timeout=60)
        assert process.returncode == code, output
        assert "Traceback" not in output and f"interrupted by {signal.Signals(signum).name}" in output
        # (the multiprocessing resource tracker, a child too, exits when it sees its parent gone)
        assert _wait_for(lambda: not any(_alive(p) for p in workers), timeout=20), "a child outlived the run"
        summary = json.loads(next((out / "logs").glob("run-*_summary.json")).read_text())
        assert {u["status"] for u in summary["units"]} == {"interrupted"}
        assert not list(out.rglob(f"*{TEMP_MARKER}*")) and not list((out / "logs" / "units").glob("*.lock"))
        assert not list((out / "logs" / "units").glob("*_MEGRE.json"))
        assert not [p for p in Path(tempfile.gettempdir()).glob(f"qsmapp-*-{process.pid}-*")]
        _no_sidecar_without_image(out)
    finally:
        _kill_group(process)


def test_a_locked_unit_is_refused_and_left_alone(bids, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([str(bids), str(out), "participant", *FAST, "--participant-label", "01"]) == 0
    chimap = out / "sub-01/anat/sub-01_Chimap.nii.gz"
    before = {p: p.stat().st_mtime_ns for p in out.glob("sub-01/anat/*")}
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from bids_app.pipeline.locking import UnitLock; "
         "UnitLock(sys.argv[1], 'sub-01', 'other-run').acquire(); print('locked', flush=True); time.sleep(120)",
         str(out)], cwd=REPO, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        capsys.readouterr()
        code = main([str(bids), str(out), "participant", *FAST, "--qsm-algorithm", "rts", "--no-resume"])
        err = capsys.readouterr().err
        assert code == 73
        assert f"sub-01 is being processed by qsmapp run other-run (pid {holder.pid}" in err
        assert {p: p.stat().st_mtime_ns for p in out.glob("sub-01/anat/*")} == before  # untouched
        assert (out / "sub-02/anat/sub-02_Chimap.nii.gz").is_file()  # the other unit ran
        record = json.loads((out / "logs/units/sub-02_MEGRE.json").read_text())
        assert json.loads(chimap.with_name("sub-01_Chimap.json").read_text())["EstimationAlgorithm"] == "tkd"
        assert record["outputs"]
    finally:
        _kill_group(holder)
    # its owner gone, the lock is stale: the next run takes it over
    assert main([str(bids), str(out), "participant", *FAST, "--participant-label", "01", "--qsm-algorithm", "rts"]) == 0
    assert json.loads((out / "sub-01/anat/sub-01_Chimap.json").read_text())["EstimationAlgorithm"] == "rts"
    assert not lock_path(out, "sub-01").exists()


def test_two_concurrent_runs_on_one_unit_never_mix_outputs(bids, tmp_path):
    """The second run refuses the unit the first holds; the first's record describes its own files."""
    out = tmp_path / "out"
    first = _start(bids, out, "--participant-label", "01")
    try:
        assert _wait_for(lambda: lock_path(out, "sub-01").is_file()), "the first run never locked its unit"
        second = subprocess.run([sys.executable, "-m", "bids_app", str(bids), str(out), "participant", *FAST,
                                 "--participant-label", "01", "--qsm-algorithm", "rts"],
                                cwd=REPO, capture_output=True, text=True, timeout=120)
        output, _ = first.communicate(timeout=120)
    finally:
        _kill_group(first)
    assert first.returncode == 0, output
    if second.returncode == 0:  # the first had finished already: then the second redid it, alone
        expected = "rts"
    else:
        assert second.returncode == 73 and "is being processed by" in second.stderr, second.stderr
        assert "Traceback" not in second.stderr
        expected = "tkd"
    sidecar = json.loads((out / "sub-01/anat/sub-01_Chimap.json").read_text())
    assert sidecar["EstimationAlgorithm"] == expected
    record = json.loads((out / "logs/units/sub-01_MEGRE.json").read_text())
    assert all((out / p).is_file() for p in record["outputs"])


def test_rerun_with_other_settings_replaces_the_output_set(bids, tmp_path):
    out = tmp_path / "out"
    assert main([str(bids), str(out), "participant", *FAST, "--participant-label", "01", "--outputs", "qsm",
                 "fieldmap"]) == 0
    assert (out / "sub-01/anat/sub-01_desc-local_fieldmap.nii.gz").is_file()
    assert main([str(bids), str(out), "participant", *FAST, "--participant-label", "01"]) == 0
    names = {p.name for p in (out / "sub-01/anat").iterdir()}
    assert not any("fieldmap" in n for n in names)  # not left beside a set it does not belong to
    record = json.loads((out / "logs/units/sub-01_MEGRE.json").read_text())
    assert {Path(p).name for p in record["outputs"]} >= {n for n in names if n.endswith((".nii.gz", ".json"))}
    # the unit log of both runs: every line says which process wrote it
    lines = (out / "logs/units/sub-01.log").read_text().splitlines()
    assert lines and all(f"[pid {os.getpid()}]" in line for line in lines)


def test_lock_file_names_its_owner(tmp_path):
    lock = UnitLock(tmp_path, "sub-01", "run-x").acquire()
    try:
        owner = json.loads(lock.path.read_text())
        assert owner["pid"] == os.getpid() and owner["run_id"] == "run-x" and owner["host"] and owner["started"]
        from bids_app.errors import UnitLockedError

        with pytest.raises(UnitLockedError):  # flock is per open file: a second holder is refused
            UnitLock(tmp_path, "sub-01", "run-y").acquire()
    finally:
        lock.release()
    assert not lock.path.exists()
