"""Provenance that works from anywhere: absolute paths, one Sources convention, group settings, no lock files."""

from __future__ import annotations

import json
import os
import shlex

from bids_app.derivatives import DerivativesWriter
from bids_app.derivatives.provenance import absolute_paths, write_run_provenance


class _Settings:
    def to_dict(self):
        return {"seg_template": "tpl", "premade": "default", "outputs": ["qsm"]}


def test_reproduce_line_and_settings_hold_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bids").mkdir()
    (tmp_path / "tpl").mkdir()
    paths = write_run_provenance("out", run_id="1", settings=_Settings(),
                                 command=["qsmapp", "bids", "out", "participant", "--seg-template", "tpl"],
                                 results=[], citations=[], extra_settings={"template_iterations": 2})
    reproduce = paths["command"].read_text().splitlines()[-1]
    words = shlex.split(reproduce)
    assert words[1] == str(tmp_path / "bids") and words[5] == str(tmp_path / "tpl")
    assert words[-1] == str(tmp_path / "out" / "logs" / "run-1_settings.json")
    recorded = json.loads(paths["settings"].read_text())
    assert recorded["settings"]["seg_template"] == str(tmp_path / "tpl")
    assert recorded["group"] == {"template_iterations": 2}
    assert absolute_paths(["qsmapp", "--premade", "fast"]) == ["qsmapp", "--premade", "fast"]


def test_sources_use_bids_uris_for_both_datasets(tmp_path):
    bids = tmp_path / "bids"
    writer = DerivativesWriter(bids / "derivatives" / "qsmapp", bids_dir=bids)
    assert writer.source_uri(bids / "sub-01/anat/x.nii.gz") == "bids:raw:sub-01/anat/x.nii.gz"
    assert writer.source_uri(writer.root / "sub-01/anat/y.nii.gz") == "bids::sub-01/anat/y.nii.gz"
    assert writer.source_uri(tmp_path / "elsewhere.nii.gz").startswith("file:///")


def test_root_lookup_leaves_no_lock_file(tmp_path):
    from bids_app.pipeline.segmentation import merge_root_lookup

    merge_root_lookup(tmp_path / "dseg.tsv", {1: "csf"})
    merge_root_lookup(tmp_path / "dseg.tsv", {2: "wm"})
    assert sorted(os.listdir(tmp_path)) == ["dseg.tsv"]
    assert (tmp_path / "dseg.tsv").read_text() == "index\tname\n1\tcsf\n2\twm\n"
