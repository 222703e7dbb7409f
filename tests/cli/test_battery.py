"""Hostile and careless input: each case gets its documented exit code and one clear message (issue 14).

Every case also asserts that the message is not ``unexpected error`` (kept for real bugs only), that
no traceback is printed, and, where it matters, that the input dataset is left byte-identical.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bids_app.cli.run import main
from tests.bids_factory import make_dataset, tree_digest, write_json, write_nifti

FAST = ["--skip-bids-validation", "--two-pass", "off", "--masking-input", "magnitude", "--threshold-value", "0.1",
        "--qsm-algorithm", "tkd"]


def run(capsys, code, argv, *fragments):
    """Run ``qsmapp argv``; check the exit code, that every fragment is in stderr, and no bug report."""
    capsys.readouterr()
    got = main([str(a) for a in argv])
    captured = capsys.readouterr()
    err = captured.err
    assert got == code, err
    assert "unexpected error" not in err and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err
    return captured


@pytest.fixture
def bids(tmp_path):
    return make_dataset(tmp_path / "bids", subjects=("01", "02"), echoes=3)


# --- 1. ownership of OUTPUT_DIR --------------------------------------------------------------------------
def test_another_pipelines_derivatives_are_refused(bids, capsys):
    other = bids / "derivatives" / "fmriprep"
    write_json(other / "dataset_description.json", {"Name": "fmriprep", "DatasetType": "derivative",
                                                    "GeneratedBy": [{"Name": "fMRIPrep"}]})
    write_json(other / "sub-01" / "anat" / "sub-01_Chimap.json", {"mine": True})
    before = tree_digest(bids)
    run(capsys, 64, [bids, other, "participant", *FAST], "not a qsmapp derivatives dataset", "fMRIPrep",
        "derivatives/qsmapp")
    assert tree_digest(bids) == before


def test_the_derivatives_folder_itself_is_refused(bids, capsys):
    (bids / "derivatives").mkdir()
    run(capsys, 64, [bids, bids / "derivatives", "participant", *FAST], "derivatives/ folder of BIDS_DIR")
    assert list((bids / "derivatives").iterdir()) == []


def test_a_non_empty_folder_without_description_is_refused(bids, tmp_path, capsys):
    out = tmp_path / "data"
    out.mkdir()
    (out / "results.csv").write_text("precious\n")
    run(capsys, 64, [bids, out, "participant", *FAST], "no dataset_description.json")
    assert [p.name for p in out.iterdir()] == ["results.csv"]


def test_empty_folder_and_own_output_are_accepted(bids, tmp_path, capsys):
    out = tmp_path / "empty"
    out.mkdir()
    run(capsys, 0, [bids, out, "participant", *FAST, "--participant-label", "01"])
    run(capsys, 0, [bids, out, "participant", *FAST, "--participant-label", "01"])  # its own output again
    # a folder inside it is not a derivatives dataset of its own
    run(capsys, 64, [bids, out / "sub-01", "participant", *FAST], "not a qsmapp derivatives dataset")


# --- 5. typed, validated settings ------------------------------------------------------------------------
@pytest.mark.parametrize("config, fragment", [
    ({"rts_max_iter": "abc"}, '"rts_max_iter" in --config-file'),
    ({"two_pass": "maybe"}, '"two_pass" in --config-file'),
    ({"mask_erosions": [1, 2, 3]}, '"mask_erosions" in --config-file'),
    ({"pdf_tol": -1}, '"pdf_tol" in --config-file'),
])
def test_bad_config_values_are_usage_errors_naming_the_key(bids, tmp_path, capsys, config, fragment):
    path = write_json(tmp_path / "settings.json", config)
    run(capsys, 64, [bids, tmp_path / "out", "participant", *FAST, "--config-file", path], fragment)
    assert not (tmp_path / "out").exists()


def test_config_values_are_parsed_to_their_types(bids, tmp_path, capsys):
    path = write_json(tmp_path / "settings.json", {"two_pass": "off", "mask_erosions": 2})
    out = run(capsys, 0, [bids, tmp_path / "out", "participant", "--skip-bids-validation", "--dry-run",
                          "--config-file", path]).out
    assert "two-pass" not in out and "erosions [2]" in out


@pytest.mark.parametrize("option", [["--rts-max-iter", "0"], ["--pdf-tol", "-1"], ["--mem", "0"], ["--mem", "-4"],
                                    ["--swi-mip-slab", "0"], ["--two-pass", "yes"], ["--tgv-iterations", "-5"],
                                    ["--omp-nthreads", "0"], ["--bet-fractional-intensity", "2"]])
def test_bad_option_values_are_usage_errors_naming_the_option(bids, tmp_path, capsys, option):
    run(capsys, 64, [bids, tmp_path / "out", "participant", *FAST, *option], option[0])
    assert not (tmp_path / "out").exists()


# --- 6. input guards -------------------------------------------------------------------------------------
def _header_bomb(path: Path, shape):
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.float32)
    header.set_qform(np.eye(4), code=1)
    header.set_sform(np.eye(4), code=1)
    header["vox_offset"] = 352
    path.write_bytes(gzip.compress(header.binaryblock + b"\0" * 4 + bytes(1_000_000)))


@pytest.mark.parametrize("shape", [(900, 900, 900), (4000, 4000, 4000)])
def test_header_size_bomb_is_refused_before_loading(bids, tmp_path, capsys, shape):
    target = bids / "sub-02/anat/sub-02_echo-2_part-phase_MEGRE.nii.gz"
    _header_bomb(target, shape)
    before = tree_digest(bids)
    run(capsys, 65, [bids, tmp_path / "out", "participant", *FAST], str(target), "gzip file can hold")
    assert (tmp_path / "out/sub-01/anat/sub-01_Chimap.nii.gz").is_file()  # the other unit ran
    assert tree_digest(bids) == before


def test_memory_limit_refuses_a_unit_that_cannot_fit(tmp_path, capsys):
    bids = make_dataset(tmp_path / "bids", echoes=2, shape=(64, 64, 48))
    run(capsys, 65, [bids, tmp_path / "out", "participant", *FAST, "--mem", "0.01", "--dry-run"],
        "more than --mem 0.01", "64x64x48")


def _geometry_case(bids, mutate):
    """Rewrite one image with its raw header fields changed by ``mutate`` (nibabel would fix them on save)."""
    path = bids / "sub-01/anat/sub-01_echo-1_part-mag_MEGRE.nii.gz"
    image = nib.load(str(path))
    header = image.header.copy()
    header["vox_offset"] = 352
    mutate(header)
    data = np.asarray(image.dataobj, dtype=header.get_data_dtype())
    path.write_bytes(gzip.compress(header.binaryblock + b"\0" * 4 + data.tobytes(order="F")))
    return path


def test_zero_pixdim_with_qform_only_is_a_data_error(bids, tmp_path, capsys):
    def zero(header):
        header["sform_code"] = 0
        header["qform_code"] = 1
        header["pixdim"][1] = 0.0

    path = _geometry_case(bids, zero)
    err = run(capsys, 65, [bids, tmp_path / "out", "participant", *FAST, "--dry-run"], str(path), "pixdim").err
    assert "should be non-zero" not in err  # nibabel's own warning is not printed (once per load, before)


def test_nan_affine_is_a_data_error_naming_the_file_once(bids, tmp_path, capsys):
    def nan(header):
        header["sform_code"] = 1
        header["srow_x"][3] = np.nan

    path = _geometry_case(bids, nan)
    err = run(capsys, 65, [bids, tmp_path / "out", "participant", *FAST, "--dry-run"], str(path), "non-finite").err
    assert f"than {path.name}" not in err  # never compares a file with itself


def test_blank_phase_and_magnitude_are_data_errors(bids, tmp_path, capsys):
    for echo in (1, 2, 3):
        write_nifti(bids / f"sub-01/anat/sub-01_echo-{echo}_part-phase_MEGRE.nii.gz", np.zeros((12, 12, 8)))
        write_nifti(bids / f"sub-02/anat/sub-02_echo-{echo}_part-mag_MEGRE.nii.gz", np.zeros((12, 12, 8)))
    err = run(capsys, 65, [bids, tmp_path / "out", "participant", *FAST], "every phase voxel is 0",
              "every magnitude voxel is 0").err
    assert "threshold-algorithm-factor" not in err


def test_mixed_phase_units_are_rescaled_per_echo_with_a_note(tmp_path):
    from bids_app.bids.checks import check_unit
    from bids_app.bids.discovery import discover_units
    from bids_app.bids.loading import load_gre
    from bids_app.config.execution import Selection

    bids = make_dataset(tmp_path / "bids", echoes=3, magnitude=False)
    clean = np.asarray(nib.load(str(bids / "sub-01/anat/sub-01_echo-2_part-phase_MEGRE.nii.gz")).dataobj)
    # echo 2 exported as 12-bit integers 0..4095, the others in radians
    stored = np.clip(np.round((clean + np.pi) / (2 * np.pi) * 4096), 0, 4095)
    write_nifti(bids / "sub-01/anat/sub-01_echo-2_part-phase_MEGRE.nii.gz", stored, dtype=np.int16)
    unit = discover_units(bids, Selection())[0]
    data = load_gre(check_unit(unit, needs_phase=True, needs_field_strength=True), need_magnitude=False)
    difference = np.angle(np.exp(1j * (data.phase[..., 1] - clean)))
    assert np.abs(difference).max() < 2 * np.pi / 4096 * 2  # the quantisation, not a squashed echo
    assert np.allclose(data.phase[..., 0], np.asarray(nib.load(str(unit.echoes[0].phase)).dataobj), atol=1e-6)
    assert any("echo 2" in note and "on its own" in note for note in data.notes)


# --- 7. unit isolation at discovery ----------------------------------------------------------------------
def test_duplicate_echo_index_fails_that_unit_only(bids, tmp_path, capsys):
    anat = bids / "sub-02/anat"
    for ext in (".nii.gz", ".json"):
        (anat / f"sub-02_echo-01_part-mag_MEGRE{ext}").write_bytes((anat / f"sub-02_echo-1_part-mag_MEGRE{ext}").read_bytes())
    captured = run(capsys, 65, [bids, tmp_path / "out", "participant", *FAST, "--dry-run"],
                   "two magnitude files for echo 1", "echo-01 and echo-1 are the same echo")
    assert "== sub-01 (MEGRE, 3 echoes)" in captured.out


def test_malformed_sidecar_fails_that_unit_only(bids, tmp_path, capsys):
    sidecar = bids / "sub-02/anat/sub-02_echo-2_part-phase_MEGRE.json"
    sidecar.write_text('{"EchoTime": 0.008,')
    before = tree_digest(bids)
    run(capsys, 65, [bids, tmp_path / "out", "participant", *FAST], f"cannot read the sidecar {sidecar}")
    assert (tmp_path / "out/sub-01/anat/sub-01_Chimap.nii.gz").is_file()
    summary = json.loads(next((tmp_path / "out/logs").glob("run-*_summary.json")).read_text())
    assert {u["unit"]: u["status"] for u in summary["units"]} == {"sub-01": "ok", "sub-02": "failed"}
    assert tree_digest(bids) == before


def test_symlink_loop_does_not_stop_the_run(bids, tmp_path, capsys):
    os.symlink("..", bids / "sub-02/anat/loop")
    captured = run(capsys, 0, [bids, tmp_path / "out", "participant", "--skip-bids-validation", "--dry-run"])
    assert "== sub-01 (MEGRE, 3 echoes)" in captured.out and "== sub-02 (MEGRE, 3 echoes)" in captured.out


# --- 11. user errors that used to be "unexpected" --------------------------------------------------------
def test_unknown_entity_in_the_gre_filter_is_a_usage_error(bids, tmp_path, capsys):
    path = write_json(tmp_path / "filter.json", {"gre": {"acquisitionn": "qsm"}})
    run(capsys, 64, [bids, tmp_path / "out", "participant", *FAST, "--bids-filter-file", path], "acquisitionn")


def test_filter_path_that_is_a_folder_is_a_usage_error(bids, tmp_path, capsys):
    run(capsys, 64, [bids, tmp_path / "out", "participant", *FAST, "--bids-filter-file", tmp_path], "is a folder")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_image_says_permission_denied(bids, tmp_path, capsys):
    path = bids / "sub-02/anat/sub-02_echo-1_part-phase_MEGRE.nii.gz"
    path.chmod(0)
    try:
        err = run(capsys, 65, [bids, tmp_path / "out", "participant", *FAST, "--dry-run"], "permission denied").err
        assert "corrupt or truncated" not in err
    finally:
        path.chmod(0o644)


def test_permission_error_is_named_as_such(bids, tmp_path, capsys, monkeypatch):
    """The same as above wherever the tests run (root included): the loader is made to refuse one file."""
    from bids_app.bids import checks

    target = bids / "sub-02/anat/sub-02_echo-1_part-phase_MEGRE.nii.gz"
    real_load = checks.nib.load

    def load(filename, *args, **kwargs):
        if Path(filename) == target:
            raise PermissionError(13, "Permission denied", str(filename))
        return real_load(filename, *args, **kwargs)

    monkeypatch.setattr(checks.nib, "load", load)
    err = run(capsys, 65, [bids, tmp_path / "out", "participant", *FAST, "--dry-run"],
              f"cannot read {target}: permission denied", "readable by the user").err
    assert "corrupt or truncated" not in err


# --- 12. provenance of symlinked inputs ------------------------------------------------------------------
def test_symlinked_inputs_keep_bids_uris(tmp_path):
    from bids_app.derivatives.writer import DerivativesWriter

    bids = make_dataset(tmp_path / "bids")
    annex = bids / ".git/annex/objects"
    annex.mkdir(parents=True)
    image = bids / "sub-01/anat/sub-01_echo-1_part-mag_MEGRE.nii.gz"
    image.rename(annex / "KEY")
    os.symlink(annex / "KEY", image)
    writer = DerivativesWriter(tmp_path / "out", bids_dir=bids)
    assert writer.source_uri(image) == "bids:raw:sub-01/anat/sub-01_echo-1_part-mag_MEGRE.nii.gz"


# --- 8. group level skips unreadable maps -----------------------------------------------------------------
def test_group_skips_a_unit_whose_map_is_truncated(tmp_path, caplog):
    from bids_app.group.inputs import GroupUnit
    from bids_app.pipeline.group import _usable_units

    units = []
    for subject in ("01", "02", "03"):
        anat = tmp_path / f"sub-{subject}/anat"
        unit = GroupUnit(entities={"subject": subject}, anat_dir=anat,
                         magnitude=write_nifti(tmp_path / f"raw-{subject}.nii.gz", np.ones((8, 8, 8))))
        write_nifti(unit.chimap, np.random.default_rng(0).normal(size=(8, 8, 8)))
        write_nifti(unit.mask, np.ones((8, 8, 8)), dtype=np.uint8)
        units.append(unit)
    truncated = units[1].chimap
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    with caplog.at_level("WARNING", logger="qsmapp"):
        usable = _usable_units(units)
    assert [u.name for u in usable] == ["sub-01", "sub-03"]
    assert str(truncated) in caplog.text and "skipped for the template" in caplog.text


def test_validator_failure_text_is_one_clean_line():
    from bids_app.interfaces.bids_validator import tool_message

    text = ("\x1b[31merror\x1b[39m: Uncaught (in promise) NotFound: No such file\n"
            "    at Object.readDir (ext:deno_fs/30_fs.js:152:14)\n    at file:///x/main.js:3:9\n")
    assert tool_message(text) == "error: Uncaught (in promise) NotFound: No such file"


# --- 4. disk full during a run -----------------------------------------------------------------------------
def test_disk_full_is_exit_73_with_the_path_and_a_summary(bids, tmp_path, capsys, monkeypatch):
    import errno

    from bids_app.derivatives import writer as writer_module

    real_save, calls = writer_module.nib.save, []

    def save(image, filename):
        calls.append(filename)
        if len(calls) > 1:  # the first map fits, the second does not
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(image, filename)

    monkeypatch.setattr(writer_module.nib, "save", save)
    out = tmp_path / "out"
    run(capsys, 73, [bids, out, "participant", *FAST, "--participant-label", "01"], "No space left on device",
        str(out / "sub-01/anat/sub-01_desc-brain_mask.nii.gz"), "free space")
    summary = json.loads(next((out / "logs").glob("run-*_summary.json")).read_text())
    assert summary["units"][0]["exit_code"] == 73
    for sidecar in out.glob("sub-01/anat/*.json"):
        assert sidecar.with_name(sidecar.name.replace(".json", ".nii.gz")).is_file(), sidecar
    assert not (out / "logs/units/sub-01_MEGRE.json").exists()


def test_unreadable_participant_folder_is_that_units_failure(bids, tmp_path, capsys, monkeypatch):
    """(Simulated: the tests may run as root, who reads any folder.) The folder pybids cannot list."""
    from bids_app.bids import discovery

    real_walk = os.walk

    def walk(top, **kwargs):
        for folder, dirs, names in real_walk(top, **kwargs):
            if Path(folder).name == "sub-03":
                kwargs["onerror"](PermissionError(13, "Permission denied", folder))
                dirs[:] = []
                continue
            yield folder, dirs, names

    (bids / "sub-03" / "anat").mkdir(parents=True)
    monkeypatch.setattr(discovery.os, "walk", walk)
    captured = run(capsys, 65, [bids, tmp_path / "out", "participant", "--skip-bids-validation", "--dry-run"],
                   f"cannot read the folder {bids / 'sub-03'}: Permission denied")
    assert "== sub-01" in captured.out and "== sub-02" in captured.out and "!! sub-03" in captured.out


def test_option_named_in_the_users_spelling(bids, tmp_path, capsys):
    run(capsys, 64, [bids, tmp_path / "out", "participant", *FAST, "--rts_max_iter", "0"], "--rts_max_iter: 0")
