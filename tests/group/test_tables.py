"""Group ROI tables, plots and the group level's input handling (no registration: fast)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from bids_app.config import Settings
from bids_app.config.execution import ExecutionOptions, GroupOptions, Selection
from bids_app.errors import EXIT_NO_INPUT, NoInputError, NoMatchError
from bids_app.group.inputs import entities_from_name, entity_columns, find_group_units
from bids_app.group.plots import roi_distribution_plot
from bids_app.group.tables import LONG_COLUMNS, long_table, read_roistats, wide_table
from bids_app.pipeline.group import run_group

from ._helpers import read_tsv, simulate, tree_hashes, write_fake_outputs


def _run(root, out, **selection):
    return run_group(bids_dir=root, output_dir=out, settings=Settings(), selection=Selection(**selection),
                     options=ExecutionOptions(n_procs=1), command=["qsmapp", str(root), str(out), "group"],
                     group=GroupOptions(template_iterations=1))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = simulate(tmp_path_factory.mktemp("group_tables") / "bids", subjects=3)
    return root


def test_read_roistats_parses_types_and_na(tmp_path):
    path = tmp_path / "x_desc-qsm_roistats.tsv"
    path.write_text("index\tname\tnum_voxels\tmean\tstd\tmedian\tmin\tmax\n"
                    "4\tcaudate_left\t120\t0.05\t0.01\t0.049\t0.02\t0.09\n"
                    "5\tcaudate_right\t0\tn/a\tn/a\tn/a\tn/a\tn/a\n")
    rows = read_roistats(path)
    assert rows[0] == {"index": 4, "name": "caudate_left", "num_voxels": 120, "mean": 0.05, "std": 0.01,
                       "median": 0.049, "min": 0.02, "max": 0.09}
    assert rows[1]["mean"] is None and rows[1]["num_voxels"] == 0
    path.write_text("index\tname\tmean\n1\ta\t0.1\n")
    with pytest.raises(ValueError, match="num_voxels"):
        read_roistats(path)


def test_long_and_wide_tables_in_memory():
    stats = [{"index": 2, "name": "b", "num_voxels": 3, "mean": 0.2, "std": 0, "median": 0.2, "min": 0.2, "max": 0.2},
             {"index": 1, "name": "a", "num_voxels": 3, "mean": 0.1, "std": 0, "median": 0.1, "min": 0.1, "max": 0.1}]
    units = [({"subject": "01", "session": "x", "run": 1}, stats), ({"subject": "02"}, stats[:1])]
    rows = long_table(units)
    assert len(rows) == 3
    assert rows[0]["participant_id"] == "sub-01" and rows[0]["session_id"] == "ses-x" and rows[0]["run"] == "1"
    assert rows[2]["session_id"] is None and rows[2]["acq"] is None
    wide, columns = wide_table(rows)
    assert columns == ["participant_id", "session_id", "acq", "run", "a", "b"]  # ROIs by label index
    assert wide[0]["a"] == 0.1 and wide[0]["b"] == 0.2
    assert wide[1]["b"] == 0.2 and "a" not in wide[1]  # absent ROI → n/a when written
    assert entity_columns({"subject": "1", "acquisition": "qsm"})["acq"] == "qsm"
    assert entities_from_name("sub-1_ses-a_acq-x_run-2") == {"subject": "1", "session": "a", "acquisition": "x",
                                                           "run": "2"}


def test_group_tables_from_participant_tsvs_and_exit_66(dataset, tmp_path):
    out = tmp_path / "out"
    written = write_fake_outputs(dataset, out, ["01", "02", "03"], with_maps=["01"])
    before = tree_hashes(out)
    code = _run(dataset, out)
    # one unit with a QSM and a mask: no template, tables still written, exit 66
    assert code == EXIT_NO_INPUT
    group = out / "group"
    assert not (out / "tpl-study").exists()
    long_rows = read_tsv(group / "desc-qsm_roistats_long.tsv")
    assert list(long_rows[0]) == LONG_COLUMNS
    assert len(long_rows) == sum(len(r) for r in written.values())  # exactly units × labels
    assert {r["participant_id"] for r in long_rows} == {"sub-01", "sub-02", "sub-03"}
    assert all(r["session_id"] == "n/a" and r["acq"] == "n/a" and r["run"] == "n/a" for r in long_rows)
    wide_rows = read_tsv(group / "desc-qsm_roistats_wide.tsv")
    assert len(wide_rows) == 3
    for row in wide_rows:
        unit_rows = written[row["participant_id"]]
        assert len(row) == 4 + len({r["name"] for rows in written.values() for r in rows})
        present = {r["name"] for r in unit_rows}
        assert all(v == "n/a" for k, v in row.items() if k not in present and k not in long_rows[0])
        for stat in unit_rows:  # the wide table holds each participant TSV's mean (6 significant digits)
            assert math.isclose(float(row[stat["name"]]), stat["mean"], rel_tol=1e-5, abs_tol=1e-9)
    for name, column in (("desc-qsm_roistats_long.json", "mean"), ("desc-qsm_roistats_wide.json", "caudate_left")):
        sidecar = json.loads((group / name).read_text())
        assert sidecar[column]["Units"] == "ppm" and len(sidecar["Sources"]) == 3
        assert all(s.startswith("bids::sub-0") for s in sidecar["Sources"])
    png = (group / "desc-qsm_roistats_boxplot.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert b"<svg" in (group / "desc-qsm_roistats_boxplot.svg").read_bytes()[:500]
    assert (group / "README").is_file()
    assert not list(group.rglob("*.qsmapp-tmp*"))
    assert tree_hashes(out) == before  # participant outputs untouched
    summary = json.loads(next((out / "logs").glob("run-group-*_summary.json")).read_text())
    assert {u["unit"]: u["status"] for u in summary["units"]} == {"tables": "ok", "template": "failed"}


def test_participant_label_restricts_the_group(dataset, tmp_path):
    out = tmp_path / "out"
    write_fake_outputs(dataset, out, ["01", "02", "03"])
    assert _run(dataset, out, participant_label=["sub-01", "03"]) == EXIT_NO_INPUT
    rows = read_tsv(out / "group" / "desc-qsm_roistats_long.tsv")
    assert {r["participant_id"] for r in rows} == {"sub-01", "sub-03"}
    units = find_group_units(dataset, out, Selection(participant_label=["02"]))
    assert [u.name for u in units] == ["sub-02"] and units[0].magnitude.name.endswith("echo-1_part-mag_MEGRE.nii.gz")
    assert units[0].missing_for_template() == ["sub-02_Chimap.nii.gz", "sub-02_desc-brain_mask.nii.gz"]
    with pytest.raises(NoMatchError):
        _run(dataset, out, participant_label=["99"])


def test_sessions_fill_the_session_column(tmp_path):
    root = simulate(tmp_path / "bids", subjects=1, sessions=2)
    out = tmp_path / "out"
    write_fake_outputs(root, out, ["01"], sessions=("01", "02"))
    assert _run(root, out) == EXIT_NO_INPUT
    rows = read_tsv(out / "group" / "desc-qsm_roistats_wide.tsv")
    assert [r["session_id"] for r in rows] == ["ses-01", "ses-02"]


def test_no_participant_outputs_is_a_clear_error(dataset, tmp_path):
    empty = tmp_path / "out"
    empty.mkdir()
    with pytest.raises(NoInputError, match="no qsmapp participant outputs") as info:
        _run(dataset, empty)
    assert info.value.exit_code == EXIT_NO_INPUT
    assert not (empty / "group").exists()


def test_plot_skips_non_finite_values(tmp_path):
    rows = [{"index": 1, "name": "a", "mean": float("nan")}, {"index": 2, "name": "b", "mean": None}]
    assert roi_distribution_plot(rows, [tmp_path / "x.png"]) == []
    rows.append({"index": 3, "name": "c", "mean": 0.1})
    assert roi_distribution_plot(rows, [tmp_path / "x.png"]) == [tmp_path / "x.png"]
    assert np.frombuffer((tmp_path / "x.png").read_bytes()[:4], np.uint8)[1] == ord("P")


def test_dry_run_prints_the_plan_and_writes_nothing(dataset, tmp_path, capsys):
    out = tmp_path / "out"
    write_fake_outputs(dataset, out, ["01", "02"], with_maps=["01"])
    code = run_group(bids_dir=dataset, output_dir=out, settings=Settings(), selection=Selection(),
                     options=ExecutionOptions(dry_run=True), command=["qsmapp"], group=None)
    assert code == 0 and not (out / "group").exists()
    plan = capsys.readouterr().out
    assert "3 unit(s)" in plan and "sub-01: template yes" in plan and "sub-03: template no" in plan
