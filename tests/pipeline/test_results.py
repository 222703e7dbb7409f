"""The typed stage results of the participant level and the ROI analysis that reads them."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np
import pytest

from bids_app.pipeline import participant, segmentation
from bids_app.pipeline.progress import UnitProgress
from bids_app.pipeline.results import UnitMaps


def test_merge_keeps_maps_and_appends_files():
    chi = np.ones((2, 2, 2), np.float32)
    a = UnitMaps(chi=chi, written=("a.nii.gz",))
    b = UnitMaps(r2star=np.zeros((2, 2, 2), np.float32), written=("b.nii.gz",))
    merged = a.merge(b)
    assert merged.chi is chi and merged.r2star is b.r2star and merged.swi is None
    assert merged.written == ("a.nii.gz", "b.nii.gz")
    with pytest.raises(AttributeError):  # frozen: stages cannot change each other's results
        merged.chi = None


def _task(outputs):
    return SimpleNamespace(info=SimpleNamespace(unit=SimpleNamespace(name="sub-01")),
                           settings=SimpleNamespace(outputs=list(outputs)))


def test_roi_analysis_says_why_it_skips(caplog, monkeypatch):
    progress = UnitProgress("sub-01")
    maps = UnitMaps(chi=np.ones((2, 2, 2), np.float32), mask=np.ones((2, 2, 2), bool))
    with caplog.at_level(logging.WARNING):
        assert participant._roi_analysis(_task(["qsm", "seg", "analysis"]), None, maps, None, progress) == []
    assert "ROI analysis skipped: no segmentation" in caplog.text

    tables = {}
    monkeypatch.setattr(segmentation, "roistats_outputs",
                        lambda task, writer, seg, maps, mask, progress: tables.update(maps) or ["t.tsv"])
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # R2* requested but not made (one echo): named, not silent
        written = participant._roi_analysis(_task(["qsm", "seg", "analysis", "r2s"]), None, maps, object(), progress)
    assert written == ["t.tsv"] and set(tables) == {"qsm"}
    assert "ROI statistics of r2s skipped: no R2* map" in caplog.text


def test_roi_analysis_without_the_qsm_map_is_an_error():
    with pytest.raises(RuntimeError, match="needs the QSM map"):
        participant._roi_analysis(_task(["qsm", "seg", "analysis"]), None, UnitMaps(), object(), UnitProgress("sub-01"))
