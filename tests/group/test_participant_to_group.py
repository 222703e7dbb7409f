"""Participant level with segmentation and ROI analysis, then the group level, through the CLI: the group
tables hold exactly what the participant tables hold (no synthetic inputs), and the template-space labels
exist."""

from __future__ import annotations

import csv

import pytest

from bids_app.cli.run import main
from tests.group._helpers import simulate

pytest.importorskip("ants")


def _rows(path):
    with open(path) as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def test_participant_seg_analysis_then_group(tmp_path):
    root = simulate(tmp_path / "bids", subjects=2, matrix=(40, 48, 36), voxel=(4.0, 4.0, 4.0), seed=5)
    out = root / "derivatives" / "qsmapp"
    template = root / "derivatives" / "ground-truth" / "tpl-phantom"
    common = [str(root), str(out)]
    assert main([*common, "participant", "--skip-bids-validation", "--n-procs", "2", "--outputs", "qsm", "r2s",
                 "seg", "analysis", "--seg-template", str(template), "--seg-registration", "rigid"]) == 0
    assert main([*common, "group", "--n-procs", "2", "--template-iterations", "1"]) == 0
    group = out / "group"
    long_rows = _rows(group / "desc-qsm_roistats_long.tsv")
    per_unit = {u: _rows(out / u / "anat" / f"{u}_desc-qsm_roistats.tsv") for u in ("sub-01", "sub-02")}
    assert len(long_rows) == sum(len(rows) for rows in per_unit.values())
    for row in long_rows:
        source = next(r for r in per_unit[row["participant_id"]] if r["index"] == row["index"])
        assert row["name"] == source["name"] and row["mean"] == source["mean"]
        assert row["session_id"] == "n/a"
    wide = {r["participant_id"]: r for r in _rows(group / "desc-qsm_roistats_wide.tsv")}
    assert float(wide["sub-02"]["putamen_left"]) == pytest.approx(
        float(next(r["mean"] for r in per_unit["sub-02"] if r["name"] == "putamen_left")), rel=1e-5)
    assert (group / "desc-r2s_roistats_long.tsv").is_file()
    tpl = out / "tpl-study"
    assert (tpl / "tpl-study_res-01_dseg.nii.gz").is_file() and (tpl / "tpl-study_res-01_desc-mean_Chimap.nii.gz").is_file()
    citations = sorted((out / "logs").glob("run-group-*_citations.md"))[-1].read_text()
    assert "doi:10.1016/j.neuroimage.2009.09.062" in citations
