"""The qsmapp command line: BIDS App positionals, exit codes, clear messages, input left untouched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bids_app import __version__
from bids_app.cli.run import main
from tests.bids_factory import make_dataset, tree_digest, write_json

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args):
    return main([str(a) for a in args])


def test_version_comes_from_version_file(capsys):
    assert run_cli("--version") == 0
    assert capsys.readouterr().out.strip() == f"qsmapp {(REPO / 'version').read_text().strip()}"
    assert __version__ == (REPO / "version").read_text().strip()


def test_help_shows_bids_app_positionals(capsys):
    assert run_cli("--help") == 0
    out = capsys.readouterr().out
    for word in ("bids_dir", "output_dir", "analysis_level", "--participant-label", "--premade", "--n-procs"):
        assert word in out


@pytest.fixture
def dataset(tmp_path):
    return make_dataset(tmp_path / "bids", subjects=("01", "02"), echoes=3)


def expect_error(capsys, code, argv, *fragments):
    assert run_cli(*argv) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    error_lines = [line for line in err.splitlines() if line.startswith("qsmapp: error:")]
    assert len(error_lines) == 1, err
    for fragment in fragments:
        assert fragment in error_lines[0], error_lines[0]
    return error_lines[0]


def test_output_equal_to_input_is_usage_error(dataset, capsys):
    before = tree_digest(dataset)
    expect_error(capsys, 64, [dataset, dataset, "participant"], "must differ from BIDS_DIR")
    assert tree_digest(dataset) == before


def test_unknown_analysis_level(dataset, tmp_path, capsys):
    expect_error(capsys, 17, [dataset, tmp_path / "out", "session"], "unknown analysis level")


def test_bad_option_is_usage_error(dataset, tmp_path, capsys):
    expect_error(capsys, 64, [dataset, tmp_path / "out", "participant", "--premade", "nope"], "nope")
    expect_error(capsys, 64, [dataset, tmp_path / "out", "participant", "--no-such-option"], "unrecognized")


def test_missing_bids_dir(tmp_path, capsys):
    expect_error(capsys, 66, [tmp_path / "missing", tmp_path / "out", "participant"], "does not exist")


def test_unknown_participant_label(dataset, tmp_path, capsys):
    before = tree_digest(dataset)
    line = expect_error(capsys, 18, [dataset, tmp_path / "out", "participant", "--participant-label", "sub-07",
                                     "--skip-bids-validation"], "07")
    assert "available: 01, 02" in line
    assert tree_digest(dataset) == before


def test_no_phase_anywhere(tmp_path, capsys):
    bids = make_dataset(tmp_path / "bids", phase=False)
    expect_error(capsys, 66, [bids, tmp_path / "out", "participant", "--skip-bids-validation"], "phase")


def test_magnitude_only_allowed_for_relaxometry(tmp_path, capsys):
    bids = make_dataset(tmp_path / "bids", phase=False, echoes=3)
    assert run_cli(bids, tmp_path / "out", "participant", "--skip-bids-validation", "--outputs", "r2s",
                   "--dry-run") == 0
    assert "R2*" in capsys.readouterr().out


def test_phase_shape_differs_from_magnitude(tmp_path, capsys):
    bids = make_dataset(tmp_path / "bids")
    from tests.bids_factory import write_nifti
    import numpy as np

    write_nifti(bids / "sub-01/anat/sub-01_echo-2_part-phase_MEGRE.nii.gz", np.zeros((12, 12, 9)))
    before = tree_digest(bids)
    assert run_cli(bids, tmp_path / "out", "participant", "--skip-bids-validation", "--dry-run") == 65
    err = capsys.readouterr()
    assert "sub-01_echo-2_part-phase_MEGRE.nii.gz" in err.out + err.err
    assert "(12, 12, 9)" in err.out + err.err
    assert tree_digest(bids) == before


def test_missing_echo_time(tmp_path, capsys):
    bids = make_dataset(tmp_path / "bids")
    for part in ("mag", "phase"):
        sidecar = bids / f"sub-01/anat/sub-01_echo-2_part-{part}_MEGRE.json"
        data = json.loads(sidecar.read_text())
        del data["EchoTime"]
        sidecar.write_text(json.dumps(data))
    assert run_cli(bids, tmp_path / "out", "participant", "--skip-bids-validation", "--dry-run") == 65
    err = capsys.readouterr()
    assert "EchoTime is missing for sub-01_echo-2_part-mag_MEGRE.json" in err.out + err.err


def test_missing_field_strength_needs_override(tmp_path, capsys):
    bids = make_dataset(tmp_path / "bids", field_strength=None)
    assert run_cli(bids, tmp_path / "out", "participant", "--skip-bids-validation", "--dry-run") == 65
    assert "--b0-strength" in "".join(capsys.readouterr())
    assert run_cli(bids, tmp_path / "out", "participant", "--skip-bids-validation", "--dry-run",
                   "--b0-strength", "7") == 0
    assert "7.0 T" in capsys.readouterr().out


def test_truncated_uncompressed_nifti(tmp_path, capsys):
    bids = make_dataset(tmp_path / "bids", ext=".nii")
    path = bids / "sub-01/anat/sub-01_echo-1_part-phase_MEGRE.nii"
    path.write_bytes(path.read_bytes()[:1000])
    assert run_cli(bids, tmp_path / "out", "participant", "--skip-bids-validation", "--dry-run") == 65
    assert "truncated" in "".join(capsys.readouterr())


def test_unwritable_output_dir(dataset, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    expect_error(capsys, 73, [dataset, blocker / "out", "participant", "--skip-bids-validation",
                              "--participant-label", "01"], "cannot write")


def test_output_inside_bids_dir_but_not_derivatives(dataset, capsys):
    expect_error(capsys, 64, [dataset, dataset / "sub-01" / "out", "participant"], "derivatives")


def test_dry_run_lists_every_unit(tmp_path, capsys):
    bids = make_dataset(tmp_path / "bids", subjects=("01", "02"), sessions=("a", "b"), echoes=2, t1w=True)
    before = tree_digest(bids)
    assert run_cli(bids, tmp_path / "out", "participant", "--skip-bids-validation", "--dry-run") == 0
    out = capsys.readouterr().out
    for name in ("sub-01_ses-a", "sub-01_ses-b", "sub-02_ses-a", "sub-02_ses-b"):
        assert f"== {name} (MEGRE, 2 echoes)" in out
    assert "TE 4.00 ms" in out and "TE 8.00 ms" in out
    assert "B0 direction" in out and "obliquity" in out and "steps:" in out
    assert not (tmp_path / "out").exists()  # a dry run writes nothing
    assert tree_digest(bids) == before


def test_participant_and_session_filters(tmp_path, capsys):
    bids = make_dataset(tmp_path / "bids", subjects=("01", "02"), sessions=("a", "b"))
    assert run_cli(bids, tmp_path / "o", "participant", "--skip-bids-validation", "--dry-run",
                   "--participant_label", "02", "--session-label", "ses-b") == 0
    out = capsys.readouterr().out
    assert "== sub-02_ses-b" in out and "sub-01" not in out and "ses-a" not in out


def test_bids_filter_file(tmp_path, capsys):
    bids = make_dataset(tmp_path / "bids", acq="fast")
    make_dataset(bids, acq="slow")
    filters = write_json(tmp_path / "filters.json", {"gre": {"acquisition": "slow"}})
    assert run_cli(bids, tmp_path / "o", "participant", "--skip-bids-validation", "--dry-run",
                   "--bids-filter-file", filters) == 0
    out = capsys.readouterr().out
    assert "acq-slow" in out and "acq-fast" not in out


def test_config_file_round_trip(tmp_path, capsys):
    config = write_json(tmp_path / "settings.json", {"settings": {"qsm_algorithm": "tv", "bf_algorithm": "vsharp"}})
    bids = make_dataset(tmp_path / "bids")
    assert run_cli(bids, tmp_path / "o", "participant", "--skip-bids-validation", "--dry-run",
                   "--config-file", config, "--bf-algorithm", "lbv") == 0
    out = capsys.readouterr().out
    assert "inversion: tv" in out and "background removal: lbv" in out
    bad = write_json(tmp_path / "bad.json", {"qsm_algoritm": "tv"})
    expect_error(capsys, 64, [bids, tmp_path / "o", "participant", "--config-file", bad], "qsm_algoritm")


def test_in_process_calls_leave_no_log_handler_behind(tmp_path, capsys):
    import logging

    bids = make_dataset(tmp_path / "bids", subjects=("01",), echoes=2)
    root_handlers = list(logging.getLogger().handlers)
    for _ in range(2):
        assert run_cli(bids, tmp_path / "out", "participant", "--skip-bids-validation", "--dry-run") == 0
    assert logging.getLogger("qsmapp").handlers == [] and logging.getLogger("bids_app").handlers == []
    assert logging.getLogger().handlers == root_handlers
