"""Labelled templates are found in local folders only, with clear errors otherwise."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from bids_app.errors import UsageError
from bids_app.segmentation.templates import find_template, load_template


def _image(path, data):
    nib.save(nib.Nifti1Image(np.asarray(data), np.diag([2.0, 2.0, 2.0, 1.0])), str(path))


@pytest.fixture
def template_dir(tmp_path):
    folder = tmp_path / "tpl-Test"
    folder.mkdir()
    _image(folder / "tpl-Test_res-02_T1w.nii.gz", np.ones((4, 4, 4), np.float32))
    _image(folder / "tpl-Test_res-01_T1w.nii.gz", np.ones((8, 8, 8), np.float32))
    _image(folder / "tpl-Test_res-01_atlas-Other_dseg.nii.gz", np.full((8, 8, 8), 5, np.int16))
    (folder / "tpl-Test_atlas-Other_dseg.tsv").write_text("index\tname\n5\tother\n")
    _image(folder / "tpl-Test_res-01_atlas-HOSPA_dseg.nii.gz", np.full((8, 8, 8), 2, np.int16))
    (folder / "tpl-Test_atlas-HOSPA_dseg.tsv").write_text("index\tname\n0\tbackground\n2\tthalamus\n")
    _image(folder / "tpl-Test_res-01_atlas-NoTable_dseg.nii.gz", np.zeros((8, 8, 8), np.int16))
    return folder


def test_picks_finest_t1w_and_preferred_atlas(template_dir):
    template = load_template(template_dir)
    assert template.t1w.shape == (8, 8, 8)
    assert template.name == "Test/HOSPA"
    assert template.lookup == {2: "thalamus"}  # background dropped


def test_explicit_atlas(template_dir):
    assert load_template(template_dir, atlas="other").lookup == {5: "other"}
    with pytest.raises(UsageError, match="NoTable|no dseg"):
        load_template(template_dir, atlas="NoTable")


def test_found_by_name_in_templateflow_home(template_dir, monkeypatch):
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(template_dir.parent))
    assert find_template("Test") == template_dir
    assert find_template(str(template_dir)) == template_dir


def test_missing_template_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(tmp_path))
    with pytest.raises(UsageError) as excinfo:
        find_template(None)
    assert "MNI152NLin2009cAsym" in str(excinfo.value) and str(tmp_path) in str(excinfo.value)
    assert "--seg-template" in excinfo.value.hint
    monkeypatch.delenv("TEMPLATEFLOW_HOME")
    with pytest.raises(UsageError, match="not set"):
        find_template("Anything")
    with pytest.raises(UsageError, match="no such folder"):
        find_template("./does/not/exist")


def test_templateflow_placeholders_are_not_templates(tmp_path, monkeypatch):
    # A TemplateFlow home initialised by the templateflow client holds a zero-byte file for every template
    # file not downloaded; qsmapp never downloads, so such a folder is "not found", with the reason.
    folder = tmp_path / "tpl-MNI152NLin2009cAsym"
    folder.mkdir()
    for name in ("tpl-MNI152NLin2009cAsym_res-01_T1w.nii.gz", "tpl-MNI152NLin2009cAsym_res-01_atlas-HOSPA_dseg.nii.gz"):
        (folder / name).write_bytes(b"")
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(tmp_path))
    with pytest.raises(UsageError, match="zero-byte placeholders"):
        find_template(None)


def test_the_package_never_imports_templateflow():
    # templateflow's API downloads missing files (see the comment in pyproject.toml): the lookup is local
    import ast
    from pathlib import Path

    import bids_app

    for path in Path(bids_app.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] == "templateflow" for n in names), path
