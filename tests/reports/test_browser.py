"""The reports in headless Chromium: no script errors, no missing resource, every image decodes, the overlay
toggles and flicker work, the IQM table shows the TSV, every link resolves; screenshots are saved to
``test-artifacts/`` (or ``$QSMAPP_TEST_ARTIFACTS``). Skipped, with the reason, when Chromium is unavailable."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

from bids_app.reports.iqm_io import read_iqm_table
from tests.reports.browser import artifacts_dir, probe_page, screenshot

UNITS = ("sub-01", "sub-02", "sub-03", "sub-04")


def _check_links(page: Path, links: list) -> None:
    for link in links:
        target, _, anchor = link.partition("#")
        if not target:
            assert f'id="{anchor}"' in page.read_text() or f"id='{anchor}'" in page.read_text(), link
            continue
        assert not target.startswith(("http:", "https:", "//")), f"network link {link}"
        path = page.parent / unquote(target)
        assert path.is_file(), f"{page.name}: broken link {link}"
        if anchor:
            assert f'id="{anchor}"' in path.read_text(), f"{page.name}: missing anchor {link}"


def test_participant_pages_in_chromium(scenario, chromium):
    out = scenario["out"]
    shots = artifacts_dir()
    for unit in UNITS:
        page = out / f"{unit}.html"
        result = probe_page(chromium, page)
        assert result["problems"] == [], (unit, result["problems"])
        assert len(result["images"]) >= 10 and all(i["ok"] for i in result["images"]), result["images"]
        assert len(result["toggles"]) >= 6
        for toggle in result["toggles"]:
            assert (toggle["before"], toggle["after"], toggle["back"]) == ("visible", "hidden", "visible"), toggle
        for flicker in result["flicker"]:
            assert (flicker["running"], flicker["stopped"], flicker["visible"]) == ("stop flicker", "flicker",
                                                                                    "visible"), flicker
        tsv = read_iqm_table(out / unit / "anat" / f"{unit}_desc-qc_iqms.tsv")
        shown = result["tables"][f"{unit}-iqms"]
        assert shown == [[r[c] for c in ("label", "value", "units", "flag", "rule", "meaning")] for r in tsv]
        _check_links(page, result["links"])
        screenshot(chromium, page, shots / f"report-{unit}.png")


def test_group_page_in_chromium(scenario, chromium):
    page = scenario["out"] / "group" / "group.html"
    result = probe_page(chromium, page)
    assert result["problems"] == []
    assert {row[0] for row in result["tables"]["units"]} == set(UNITS)
    assert any(link == "../sub-02.html#sub-02" for link in result["links"])
    _check_links(page, result["links"])
    screenshot(chromium, page, artifacts_dir() / "report-group.png", height=2200)


def test_the_probe_sees_a_missing_image(tmp_path, chromium):
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>"
                    "<img src='missing.png' alt='x'><script>undefinedFunction()</script></body></html>")
    result = probe_page(chromium, page)
    assert any("missing.png" in p for p in result["problems"])
    assert any("undefinedFunction" in p for p in result["problems"])
    assert result["images"] == [{"file": "missing.png", "ok": False}]
