"""QC reports and IQMs on the example dataset: a good unit passes, deliberately broken ones are flagged in
the IQM tables, the participant pages and the group page; the derivatives validate after the group level."""

from __future__ import annotations

import json
import re
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from bids_app.reports.iqm_io import read_iqm_table

EXPECTED = {"sub-01": set(), "sub-02": {"mask_volume_ratio"}, "sub-03": {"residual_field_ppb"},
            "sub-04": {"registration_similarity"}}


def _warnings(out: Path, unit: str) -> set:
    rows = read_iqm_table(out / unit / "anat" / f"{unit}_desc-qc_iqms.tsv")
    return {r["metric"] for r in rows if r["flag"] == "warning"}


def test_iqms_flag_each_broken_unit_and_not_the_good_one(scenario):
    out = scenario["out"]
    found = {unit: _warnings(out, unit) for unit in EXPECTED}
    assert found["sub-01"] == set(), found
    for unit, expected in EXPECTED.items():
        assert expected <= found[unit], (unit, found[unit])
    sidecar = json.loads((out / "sub-01/anat/sub-01_desc-qc_iqms.json").read_text())
    assert sidecar["Warnings"] == [] and sidecar["Values"]["snr"] > 20
    assert {r["roi"] for r in sidecar["DeepGreyROIs"]["qsm"]} >= {"putamen", "globus_pallidus", "caudate"}


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.rows, self._row, self._cell, self._in = {}, {}, None, None, []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids[attrs["id"]] = attrs
        if tag == "table" and "id" in attrs:
            self._in.append(attrs["id"])
            self.rows[attrs["id"]] = []
        elif tag == "tr" and self._in:
            self._row = {"attrs": attrs, "cells": []}
        elif tag == "td" and self._row is not None:
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self._row["cells"].append(self._cell)
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._row["cells"]:
                self.rows[self._in[-1]].append(self._row)
            self._row = None
        elif tag == "table" and self._in:
            self._in.pop()

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def _parse(path: Path) -> _Collect:
    parser = _Collect()
    parser.feed(path.read_text())
    return parser


def test_participant_pages_show_flags_methods_and_figures(scenario):
    out = scenario["out"]
    for unit, expected in EXPECTED.items():
        page = out / f"{unit}.html"
        text = page.read_text()
        parsed = _parse(page)
        table = [r["cells"] for r in parsed.rows[f"{unit}-iqms"]]
        tsv = read_iqm_table(out / unit / "anat" / f"{unit}_desc-qc_iqms.tsv")
        assert table == [[r[c] for c in ("label", "value", "units", "flag", "rule", "meaning")] for r in tsv]
        warnings_box = text[text.index(f'id="{unit}-warnings"'):text.index("</div>", text.index(f'id="{unit}-warnings"'))]
        if expected:
            assert "IQM warning(s)" in warnings_box
        else:
            assert "No IQM warnings" in warnings_box
        for key in ("qsm", "mask", "dseg", "swi", "r2s", "localfield", "quality"):
            assert f"{unit}-{key}" in parsed.ids, (unit, key)
        assert "src=\"http" not in text and "href=\"http" not in text  # nothing from the network
        methods = text[text.index(f'id="{unit}-methods"'):]
        assert "doi:10.1002/mrm.28563" in methods and "PDF" in methods and "RTS" in methods
        assert "neurological convention" in text
    assert "existing mask" in (out / "sub-02.html").read_text()


def test_failed_units_are_listed(tmp_path):
    from bids_app.reports.qc import write_subject_report

    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "run-1_summary.json").write_text(json.dumps({"units": [
        {"unit": "sub-07_run-1", "status": "failed", "message": "bad data: echo 3 truncated"}]}))
    page = write_subject_report(tmp_path, "07").read_text()
    assert "sub-07_run-1" in page and "echo 3 truncated" in page and 'data-status="failed"' in page


def test_group_page_flags_the_broken_units_and_links_to_them(scenario):
    out = scenario["out"]
    parsed = _parse(out / "group" / "group.html")
    status = {r["attrs"]["data-unit"]: r["cells"][1] for r in parsed.rows["units"]}
    assert status == {"sub-01": "ok", "sub-02": "warning", "sub-03": "warning", "sub-04": "warning"}
    text = (out / "group" / "group.html").read_text()
    for unit, expected in EXPECTED.items():
        for metric in expected:
            row = text[text.index(f"data-metric='{metric}'"):]
            row = row[:row.index("</tr>")]
            assert f'href="../{unit}.html#{unit}" class="outlier-link"' in row, (unit, metric)
    assert 'href="../sub-01.html#sub-01" class="outlier-link"' not in text
    assert "id='roi-qsm'" in text and "id='roi-r2s'" in text and "id='template'" in text


def _ignored_by(patterns, relative: str) -> bool:
    import fnmatch

    parts = relative.strip("/").split("/")
    for pattern in patterns:
        bare = pattern.rstrip("/")
        if fnmatch.fnmatch(parts[-1], bare) or fnmatch.fnmatch(relative.strip("/"), bare) or bare in parts[:-1] \
                or any(fnmatch.fnmatch("/".join(parts[:i + 1]), bare) for i in range(len(parts))):
            return True
    return False


def test_every_level_validates_after_the_group_level(scenario):
    from bids_app.derivatives.writer import BIDSIGNORE
    from bids_app.interfaces.bids_validator import errors_of, run_validator, validator_executable

    if validator_executable() is None:
        pytest.skip("bids-validator-deno not installed")
    bids, out = scenario["bids"], scenario["out"]
    assert (out / "group").is_dir()
    assert errors_of(run_validator(out, "--datasetTypes", "derivative")) == []
    assert errors_of(run_validator(bids / "derivatives" / "ground-truth", "--datasetTypes", "derivative")) == []
    assert errors_of(run_validator(bids)) == []
    nested = errors_of(run_validator(bids, "-r"), nested=True)
    # bids-validator 3.0.2 does not read the .bidsignore of a nested dataset in -r mode (it prunes the dot
    # files below the root before loading them): every error left there must be a file that the nested
    # dataset's own .bidsignore lists (and qsmapp's is BIDSIGNORE)
    assert (out / ".bidsignore").read_text().split() == BIDSIGNORE
    ignores = {f"/derivatives/{d.name}/": (d / ".bidsignore").read_text().split()
               for d in (bids / "derivatives").iterdir() if (d / ".bidsignore").is_file()}
    unexplained = [e for e in nested if not _ignored_by(ignores.get(e.get("dataset"), []), e.get("location", ""))]
    assert unexplained == []
    assert {e["dataset"] for e in nested} <= {"/derivatives/qsmapp/", "/derivatives/ground-truth/"}
    # the template (TemplateFlow layout) and the maps in template space are valid BIDS on their own: -r
    # flags none of them (only suffixes BIDS lacks: swi, and TemplateFlow's template_description.json)
    ours = {e["location"] for e in nested if e["dataset"] == "/derivatives/qsmapp/"}
    template_space = [p for p in [*out.glob("tpl-study/*"), *out.glob("sub-*/anat/*_space-study_*")]
                      if "_swi." not in p.name and p.name != "template_description.json"]
    assert len(template_space) >= 4 * 2 * 4 + 2 * 6
    assert not ours & {"/" + p.relative_to(out).as_posix() for p in template_space}


def test_report_of_a_full_size_unit_is_small_and_fast(tmp_path):
    """Figures, IQMs and the page of one 256×256×176 unit: < 5 MB and < 10 s of CPU."""
    from bids_app.derivatives import DerivativesWriter
    from bids_app.pipeline import resume
    from bids_app.reports.iqm import unit_iqms
    from bids_app.reports.iqm_io import write_iqms
    from bids_app.reports.qc import render_unit_figures, write_subject_report

    shape, rng = (256, 256, 176), np.random.default_rng(0)
    x, y, z = np.ogrid[:256, :256, :176]
    r = ((x - 128) / 80.0) ** 2 + ((y - 128) / 100.0) ** 2 + ((z - 88) / 70.0) ** 2
    mask, head = r < 1, r < 1.3
    tes = [0.004, 0.01, 0.016, 0.022]
    magnitude = np.stack([np.where(head, 100 * np.exp(-25 * te), 0) + np.abs(rng.normal(0, 2, shape))
                          for te in tes], -1).astype(np.float32)
    labels = np.where(mask, 1 + (x // 16) % 12 + 0 * y + 0 * z, 0).astype(np.int16)
    maps = dict(chi=np.where(mask, rng.normal(0, 0.05, shape), 0).astype(np.float32),
                local_field=np.where(mask, rng.normal(0, 0.02, shape), 0).astype(np.float32),
                quality=np.clip(rng.normal(0.8, 0.1, shape), 0, 1).astype(np.float32),
                r2star=np.where(mask, 25 + rng.normal(0, 3, shape), 0).astype(np.float32))

    class Unit:
        name, subject, session = "sub-01", "01", None

    start = time.process_time()
    files = render_unit_figures(tmp_path / "sub-01" / "figures", "sub-01", voxel_size=(1, 1, 1), affine=np.eye(4),
                                mask=mask, magnitude=magnitude[..., 0], swi=magnitude[..., 0], labels=labels, **maps)
    values, rois = unit_iqms(voxel_size=(1, 1, 1), b0_dir=(0, 0, 1), echo_times=tes, field_strength=3.0,
                             magnitude=magnitude, mask=mask, labels=labels,
                             lookup={i: f"region {i}" for i in range(1, 13)}, **maps)
    written, _ = write_iqms(DerivativesWriter(tmp_path), Unit, values, rois)
    resume.mark_complete(tmp_path, "sub-01", "MEGRE", "x", [*files, *written], {"all": 1.0})
    page = write_subject_report(tmp_path, "01")
    cpu = time.process_time() - start
    assert cpu < 10.0, f"{cpu:.1f} s of CPU"
    assert page.stat().st_size < 5e6, f"{page.stat().st_size / 1e6:.1f} MB"
    assert len(re.findall(r'<img class="base"', page.read_text())) == 7
