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


# --- progress of long steps (bids_app.progress) ----------------------------------------------------
import io  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from bids_app.progress import Progress, eta_seconds, format_duration, render_bar  # noqa: E402


class _Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_eta_is_the_mean_rate_times_what_is_left():
    assert eta_seconds(25, 100, 10.0) == pytest.approx(30.0)
    assert eta_seconds(1, 4, 7.0) == pytest.approx(21.0)
    assert eta_seconds(0, 100, 10.0) is None  # nothing done: no rate yet
    assert eta_seconds(5, None, 10.0) is None  # no total
    assert eta_seconds(100, 100, 10.0) == 0.0
    assert format_duration(7) == "0:07" and format_duration(725) == "12:05" and format_duration(3723) == "1:02:03"
    assert format_duration(None) == "?"
    assert render_bar(0.5, width=10) == "[#####.....]" and render_bar(2.0, width=4) == "[####]"


def test_progress_without_a_terminal_logs_periodic_lines_with_an_eta(caplog):
    clock, stream = _Clock(), io.StringIO()
    progress = Progress("[sub-01] inversion (rts)", 10, unit="iterations", logger=logging.getLogger("qsmapp.test"),
                        stream=stream, interval=10, clock=clock)
    with caplog.at_level(logging.INFO, logger="qsmapp.test"):
        for done in range(1, 11):
            clock.now += 4.0  # 4 s per iteration: a line every 10 s, after iterations 3, 5/6, 8
            progress.callback(done, 10)
        progress.close()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert lines[0] == "[sub-01] inversion (rts): 3/10 iterations (30%), 12 s elapsed, about 28 s left"
    assert stream.getvalue() == ""  # no bar on a pipe or file


def test_progress_on_a_terminal_draws_one_line_and_clears_it():
    clock, stream = _Clock(), _Terminal()
    progress = Progress("[sub-01] TGV", 200, stream=stream, interval=0, clock=clock)
    clock.now += 10.0
    progress.update(50)
    drawn = stream.getvalue()
    assert drawn.startswith("\r\x1b[K[sub-01] TGV [######..................] 50/200  25%")
    assert "0:10 elapsed, ETA 0:30" in drawn and "\n" not in drawn
    progress.close()
    assert stream.getvalue().endswith("\r\x1b[K")


def test_registration_progress_has_no_eta(caplog):
    clock = _Clock()
    progress = Progress("[sub-01] T1w → GRE", unit="levels", logger=logging.getLogger("qsmapp.test"),
                        stream=io.StringIO(), interval=1, clock=clock, eta=False)
    with caplog.at_level(logging.INFO, logger="qsmapp.test"):
        clock.now += 5
        progress.update(1, 3, note="rigid (1/3): stage 1/1 (Euler3DTransform), level 2/3, iteration 7/500")
    (line,) = [r.getMessage() for r in caplog.records]
    assert line == ("[sub-01] T1w → GRE: 1/3 levels (33%), 5 s elapsed; rigid (1/3): stage 1/1 (Euler3DTransform), "
                    "level 2/3, iteration 7/500")


def test_step_reports_the_iterations_of_an_algorithm(monkeypatch, caplog):
    from bids_app.algorithms.inversion import rts

    monkeypatch.setenv("QSMAPP_HEARTBEAT_S", "0.01")
    shape = (24, 24, 24)
    field = np.random.default_rng(0).normal(0, 0.01, shape).astype(np.float32)
    mask = np.zeros(shape, bool)
    mask[4:-4, 4:-4, 4:-4] = True
    calls = []
    progress = UnitProgress("sub-01", logger=logging.getLogger("qsmapp.test"))
    with caplog.at_level(logging.INFO, logger="qsmapp.test"):
        with progress.step("inversion (rts)", unit="iterations") as bar:
            def callback(done, total):
                calls.append((done, total))
                bar.callback(done, total)
                time.sleep(0.02)  # slow enough for the heartbeat to see the progress
            rts(field, mask, voxel_size=(1, 1, 1), max_iter=8, tol=1e-12, callback=callback)
    assert calls == [(i, 8) for i in range(1, 9)]
    progress_lines = [r.getMessage() for r in caplog.records if "iterations (" in r.getMessage()]
    assert progress_lines and progress_lines[0].startswith("[sub-01] inversion (rts): ")


def test_unit_counter_ignores_resumed_units_in_its_eta(caplog):
    from bids_app.execution import UnitResult, _UnitCounter

    clock = _Clock()
    counter = _UnitCounter(4, "participant units", clock=clock)
    with caplog.at_level(logging.INFO, logger="qsmapp"):
        assert counter.add(UnitResult("sub-01", "skipped")) == "participant units: 1/4 unit(s) done"
        clock.now += 60
        assert counter.add(UnitResult("sub-02", "ok")) == "participant units: 2/4 unit(s) done, about 120 s left"
        clock.now += 60
        assert counter.add(UnitResult("sub-03", "ok")).endswith("3/4 unit(s) done, about 60 s left")
        assert counter.add(UnitResult("sub-04", "failed")) == "participant units: 4/4 unit(s) done"
    assert _UnitCounter(1).add(UnitResult("sub-01", "ok")) is None  # one unit: its own lines say it all


def test_summary_says_resumed():
    from bids_app.execution import UnitResult, summary_table

    table = summary_table([UnitResult("sub-01", "skipped", message="complete already"),
                           UnitResult("sub-02", "skipped", message="complete already")])
    assert "2 unit(s): 0 ok, 2 resumed (complete already" in table and "resumed " in table.splitlines()[2]


VERBOSE_ANTS = """Stage 0
  iterations = 100x50x0
*** Running AffineTransform registration ***
DIAGNOSTIC,Iteration,metricValue,convergenceValue,ITERATION_TIME_INDEX,SINCE_LAST
 2DIAGNOSTIC,     1, -1.1e+00, inf, 9.2e-03, 9.2e-03,
 2DIAGNOSTIC,     2, -1.2e+00, inf, 9.5e-03, 3.6e-04,
DIAGNOSTIC,Iteration,metricValue,convergenceValue,ITERATION_TIME_INDEX,SINCE_LAST
 2DIAGNOSTIC,     1, -1.3e+00, inf, 9.2e-03, 9.2e-03,
DIAGNOSTIC,Iteration,metricValue,convergenceValue,ITERATION_TIME_INDEX,SINCE_LAST
  Elapsed time (stage 0): 2.2e-01
Stage 1
  iterations = 40x20x0
*** Running SyN registration (varianceForUpdateField = 3.0e+00) ***
XXDIAGNOSTIC,Iteration,metricValue,convergenceValue,ITERATION_TIME_INDEX,SINCE_LAST
 1DIAGNOSTIC,     7, -6.1e-01, inf, 5.8e-01, 1.0e-01,
"""


def test_ants_verbose_output_becomes_stage_level_and_iteration():
    from bids_app.interfaces.ants_progress import AntsLogParser

    seen = []

    class Recorder:
        def update(self, done, total, note=""):
            seen.append((done, total, note))

    parser = AntsLogParser(Recorder(), n_stages=2, prefix="syn: ")
    for line in VERBOSE_ANTS.splitlines():
        parser.feed(line)
    assert seen[0] == (0, 5, "syn: stage 1/2 (AffineTransform), level 1/2, iteration 0/100")  # SyN: 3 levels
    # until it starts
    assert seen[2] == (0, 5, "syn: stage 1/2 (AffineTransform), level 1/2, iteration 2/100")
    assert seen[3] == (1, 5, "syn: stage 1/2 (AffineTransform), level 2/2, iteration 0/50")
    assert all("level 3" not in note for _, _, note in seen)  # the header of the 0-iteration level is skipped
    assert seen[-1] == (2, 4, "syn: stage 2/2 (SyN), level 1/2, iteration 7/40")


def test_a_followed_registration_reports_while_it_runs_and_gives_the_same_transforms(monkeypatch, tmp_path):
    """Above PROGRESS_MIN_VOXELS a registration runs in a child process (antspyx holds the GIL): same result."""
    pytest.importorskip("ants")
    import ants

    from bids_app.interfaces import ants as wrapper

    monkeypatch.setattr(wrapper, "PROGRESS_MIN_VOXELS", 0)
    x, y, z = np.mgrid[:32, :32, :32]
    # an ellipsoid with an off-centre blob, smoothed: no rotation maps it onto itself (a plain ellipsoid let
    # one in-process run settle on a 30° rotation that overlaps it almost as well)
    from scipy import ndimage

    fixed = ((((x - 16) / 10.0) ** 2 + ((y - 16) / 8.0) ** 2 + ((z - 16) / 9.0) ** 2) < 1).astype(np.float32)
    fixed += 2.0 * (((x - 21) ** 2 + (y - 11) ** 2 + (z - 19) ** 2) < 9)
    fixed = ndimage.gaussian_filter(fixed, 1.0).astype(np.float32)
    moving = np.roll(fixed, 2, axis=0)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    notes = []

    class Recorder:
        def update(self, done, total, note=""):
            notes.append(note)

    followed = wrapper.register(fixed, affine, moving, affine, kind="rigid", out_prefix=tmp_path / "a_",
                                progress=Recorder(), progress_note="rigid: ")
    plain = wrapper.register(fixed, affine, moving, affine, kind="rigid", out_prefix=tmp_path / "b_")
    assert notes and all(n.startswith("rigid: stage 1/1 (Euler3DTransform), level ") for n in notes)
    assert any("iteration" in n for n in notes)
    a = np.asarray(ants.read_transform(followed.forward[0]).parameters)
    b = np.asarray(ants.read_transform(plain.forward[0]).parameters)
    # both find the 4 mm shift; they differ only by ANTs' own run-to-run spread (threaded metric sums: up to
    # ~0.1 mm between two in-process runs of this small case)
    assert abs(a[9]) == pytest.approx(4.0, abs=0.2) and abs(b[9]) == pytest.approx(4.0, abs=0.2)
    identity = np.eye(3).ravel()  # within ~6° (threaded metric sums differ run to run: up to 4.6° seen on this
    # 32³ toy); the wrong minimum of the plain ellipsoid was 30°
    assert np.allclose(a[:9], identity, atol=0.1) and np.allclose(b[:9], identity, atol=0.1)
    assert np.allclose(a, b, atol=0.2)
    assert not list(tmp_path.glob("*progress_*"))  # the child's images and result are removed


def test_single_pass_premade_never_says_pass_1(caplog):
    from bids_app.config import premade_settings
    from bids_app.pipeline.qsm import reconstruct
    from tests.pipeline.test_qsm import ECHO_TIMES  # noqa: F401  (the same simulated acquisition)

    data, info = _small_case()
    logger = logging.getLogger("qsmapp.test")
    with caplog.at_level(logging.INFO, logger="qsmapp.test"):
        reconstruct(data, info, premade_settings("bet").validate(), UnitProgress("sub-01", logger=logger))
        single = [r.getMessage() for r in caplog.records]
        caplog.clear()
        reconstruct(data, info, premade_settings("default").validate(), UnitProgress("sub-01", logger=logger))
        double = [r.getMessage() for r in caplog.records]
    assert any("inversion (rts) ..." in m for m in single)
    assert not any("pass 1" in m or "pass 2" in m for m in single)
    assert any("pass 1: inversion" in m for m in double) and any("pass 2: inversion" in m for m in double)


def _small_case():
    from bids_app.algorithms.geometry import b0_direction
    from bids_app.bids.checks import UnitInfo
    from bids_app.bids.discovery import AcquisitionUnit, Echo
    from bids_app.bids.loading import GreData
    from bids_app.simulate.phantom import grid_affine, make_head
    from bids_app.simulate.signal import simulate_gre
    from tests.pipeline.test_qsm import ECHO_TIMES

    head = make_head(shape=(40, 48, 36), voxel_size=(4.0, 4.0, 4.0), rng=np.random.default_rng(0))
    affine = grid_affine(head.labels.shape, head.voxel_size)
    magnitude, phase, _ = simulate_gre(head, echo_times=ECHO_TIMES, affine=affine, snr=150,
                                       rng=np.random.default_rng(1))
    unit = AcquisitionUnit(entities={"subject": "01"}, suffix="MEGRE",
                           echoes=[Echo(index=i + 1, echo_time=t) for i, t in enumerate(ECHO_TIMES)])
    info = UnitInfo(unit=unit, shape=head.labels.shape, affine=affine, voxel_size=head.voxel_size,
                    echo_times=ECHO_TIMES, field_strength=3.0, b0_dir=b0_direction(affine), obliquity=0.0)
    return GreData(magnitude=magnitude, phase=phase, notes=[]), info
