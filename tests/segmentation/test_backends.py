"""Backend choice, and the tissue backend (BET + N4 + Atropos) against the phantom's tissue labels."""

from __future__ import annotations

import numpy as np
import pytest

from bids_app.segmentation import available_backend, segment_t1w
from bids_app.simulate.dataset import write_template
from bids_app.simulate.phantom import grid_affine, label_index, make_head
from bids_app.simulate.signal import simulate_t1w

pytest.importorskip("ants")


def test_auto_prefers_fastsurfer_then_template_then_tissue(tmp_path, monkeypatch):
    monkeypatch.delenv("FASTSURFER_HOME", raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(tmp_path))
    assert available_backend("auto", template=None) == "tissue"
    write_template(tmp_path / "tpl-phantom", shape=(40, 48, 36), voxel_size=(4.0, 4.0, 4.0))
    assert available_backend("auto", template="phantom") == "atlas"
    home = tmp_path / "fs"
    home.mkdir()
    (home / "run_fastsurfer.sh").write_text("#!/bin/bash\n")
    monkeypatch.setenv("FASTSURFER_HOME", str(home))
    assert available_backend("auto", template="phantom") == "fastsurfer"
    assert available_backend("tissue", template=None) == "tissue"


def test_tissue_classes_match_the_phantom(tmp_path):
    head = make_head(shape=(80, 96, 72), voxel_size=(2.0, 2.0, 2.0), rng=np.random.default_rng(4))
    affine = grid_affine(head.labels.shape, head.voxel_size)
    t1w = simulate_t1w(head, rng=np.random.default_rng(5))
    result = segment_t1w(t1w, affine, backend="tissue", work_dir=tmp_path, brain_mask=head.brain_mask)
    assert result.backend == "tissue" and result.lookup == {1: "CSF", 2: "GM", 3: "WM"}
    white = head.labels == label_index("white_matter")
    grey = np.isin(head.labels, [label_index("grey_matter")])
    csf = head.labels == label_index("csf")
    dice = {name: 2 * ((result.labels == k) & truth).sum() / ((result.labels == k).sum() + truth.sum())
            for name, k, truth in (("CSF", 1, csf), ("GM", 2, grey), ("WM", 3, white))}
    assert dice["WM"] > 0.85 and dice["GM"] > 0.6 and dice["CSF"] > 0.6, dice
