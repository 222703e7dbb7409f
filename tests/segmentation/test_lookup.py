"""Look-up tables: reading the formats in use, resolving --qsm-reference names."""

from __future__ import annotations

import pytest

from bids_app.labels import FREESURFER_NAMES, lookup_rows, read_lookup, resolve_labels


def test_reads_bids_dseg_tsv(tmp_path):
    path = tmp_path / "dseg.tsv"
    path.write_text("index\tname\tabbreviation\n1\tcsf\tCSF\n2\tgrey_matter\tGM\n")
    assert read_lookup(path) == {1: "csf", 2: "grey_matter"}


def test_reads_templateflow_and_fastsurfer_tables(tmp_path):
    tf = tmp_path / "tpl-X_atlas-HOSPA_dseg.tsv"
    tf.write_text("index\tlabel\n1\tLeft Thalamus\n")
    assert read_lookup(tf) == {1: "Left Thalamus"}
    fs = tmp_path / "FastSurfer_ColorLUT.tsv"
    fs.write_text("ID\tLabelName\tR\tG\tB\tA\n0\tUnknown\t0\t0\t0\t0\n17\tLeft-Hippocampus\t220\t216\t20\t0\n")
    assert read_lookup(fs) == {0: "Unknown", 17: "Left-Hippocampus"}


def test_reads_freesurfer_colour_table(tmp_path):
    path = tmp_path / "FreeSurferColorLUT.txt"
    path.write_text("# comment\n  0   Unknown  0 0 0 0\n 24   CSF   60 60 60 0\n")
    assert read_lookup(path) == {0: "Unknown", 24: "CSF"}


def test_header_without_name_column_is_an_error(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("index\tcolour\n1\tred\n")
    with pytest.raises(ValueError, match="no column"):
        read_lookup(path)


def test_resolve_names_indices_and_words():
    lookup = {1: "csf", 4: "Left-Lateral-Ventricle", 24: "CSF", 43: "Right-Lateral-Ventricle"}
    assert resolve_labels(["CSF"], lookup) == [1, 24]
    assert resolve_labels(["ventricle"], lookup) == [4, 43]
    assert resolve_labels(["43", "csf"], lookup) == [1, 24, 43]
    with pytest.raises(ValueError, match="not in the segmentation"):
        resolve_labels(["putamen"], lookup)


def test_builtin_freesurfer_names_cover_fastsurfer_dkt_labels():
    assert FREESURFER_NAMES[12] == "Left-Putamen"
    assert FREESURFER_NAMES[2035] == "ctx-rh-insula"
    assert sum(1 for i in FREESURFER_NAMES if 1000 < i < 1100) == 31
    assert lookup_rows({2: "b", 1: "a"}, present=[2]) == [{"index": 2, "name": "b"}]
