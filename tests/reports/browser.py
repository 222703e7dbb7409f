"""Headless Chromium for the report tests: find (or install) it, load a page, collect what the page did.

The page is loaded from a copy with a probe script first in ``<head>``: it records script errors,
``console.error`` calls and resources that failed to load, then, after the load event, whether every image
decoded, what each overlay toggle does, the text of every table with an ``id`` and every link. Chromium
prints the DOM after the load (``--dump-dom``), and the probe's JSON is read back from it.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_TIMEOUT_S = 55

PROBE = """<script id="__qsmapp_probe">
window.__problems = [];
window.addEventListener('error', function (e) {
  var t = e.target || {};
  window.__problems.push(t.src || t.href ? 'resource failed: ' + (t.src || t.href).slice(-100) : 'error: ' + e.message);
}, true);
(function () { var original = console.error; console.error = function () {
  window.__problems.push('console.error: ' + Array.prototype.join.call(arguments, ' ')); original.apply(console, arguments); }; })();
window.addEventListener('load', function () {
  var r = {problems: window.__problems, images: [], toggles: [], flicker: [], tables: {}, links: []};
  document.querySelectorAll('img').forEach(function (img) {
    r.images.push({file: img.dataset.file || img.getAttribute('src').slice(0, 60), ok: img.complete && img.naturalWidth > 0}); });
  document.querySelectorAll('figure.reportlet').forEach(function (fig) {
    var o = fig.querySelector('img.overlay'), b = fig.querySelector('button.toggle'), f = fig.querySelector('button.flicker');
    if (!o || !b) { return; }
    var v = function () { return getComputedStyle(o).visibility; };
    var before = v(); b.click(); var after = v(); b.click(); var back = v();
    r.toggles.push({id: fig.id, before: before, after: after, back: back});
    f.click(); var running = f.textContent; f.click(); r.flicker.push({id: fig.id, running: running, stopped: f.textContent, visible: v()});
  });
  document.querySelectorAll('table[id]').forEach(function (t) {
    r.tables[t.id] = Array.prototype.map.call(t.querySelectorAll('tbody tr'), function (tr) {
      return Array.prototype.map.call(tr.cells, function (td) { return td.textContent; }); }); });
  document.querySelectorAll('a[href]').forEach(function (a) { r.links.push(a.getAttribute('href')); });
  document.querySelectorAll('svg a').forEach(function (a) { r.links.push(a.getAttribute('href')); });
  var pre = document.createElement('pre'); pre.id = '__qsmapp_result'; pre.textContent = JSON.stringify(r);
  document.body.appendChild(pre);
});
</script>"""


def find_chromium() -> str | None:
    for name in NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def ensure_chromium() -> tuple[str | None, str]:
    """(path, "") or (None, why it is unavailable). Installs Debian's ``chromium`` when running as root with
    apt-get (unless ``QSMAPP_NO_BROWSER_INSTALL`` is set), within :data:`INSTALL_TIMEOUT_S`; an install that
    takes longer is left to finish in the background (never killed half-way) and the tests skip."""
    found = find_chromium()
    if found:
        return found, ""
    if os.environ.get("QSMAPP_NO_BROWSER_INSTALL"):
        return None, "no chromium on PATH and QSMAPP_NO_BROWSER_INSTALL is set"
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        return None, "no chromium on PATH (install Debian's chromium: apt-get install chromium)"
    command = (f"{apt} install -y -qq --no-install-recommends chromium || "
               f"({apt} update -qq && {apt} install -y -qq --no-install-recommends chromium)")
    process = subprocess.Popen(["sh", "-c", command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, start_new_session=True)
    try:
        process.wait(timeout=INSTALL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None, f"installing chromium took more than {INSTALL_TIMEOUT_S} s (left running); run the tests again"
    found = find_chromium()
    return (found, "") if found else (None, "apt-get install chromium failed (no network or package?)")


def _run(chromium: str, *arguments: str, timeout: int = 90) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="qsmapp-chromium-") as profile:
        return subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                               "--disable-extensions", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
                               *arguments], capture_output=True, text=True, timeout=timeout)


def probe_page(chromium: str, page: Path) -> dict:
    """Load ``page`` (through a probed copy in the same folder) and return the probe's findings."""
    page = Path(page)
    text = page.read_text()
    probed = page.with_name(f".probe-{page.name}")
    probed.write_text(text.replace("<head>", "<head>" + PROBE, 1))
    try:
        result = _run(chromium, "--virtual-time-budget=4000", "--dump-dom", probed.resolve().as_uri())
    finally:
        probed.unlink(missing_ok=True)
    start = result.stdout.find('<pre id="__qsmapp_result">')
    if start < 0:
        raise AssertionError(f"the page did not finish loading in chromium: {result.stderr[-2000:]}")
    end = result.stdout.find("</pre>", start)
    return json.loads(html.unescape(result.stdout[start + len('<pre id="__qsmapp_result">'):end]))


def screenshot(chromium: str, page: Path, target: Path, *, width: int = 1280, height: int = 2400) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    _run(chromium, "--hide-scrollbars", f"--window-size={width},{height}", f"--screenshot={target.resolve()}",
         Path(page).resolve().as_uri())
    if not target.is_file():
        raise AssertionError(f"chromium wrote no screenshot {target}")
    return target


def artifacts_dir() -> Path:
    """Where screenshots go: ``$QSMAPP_TEST_ARTIFACTS``, else ``test-artifacts/`` in the repository."""
    folder = Path(os.environ.get("QSMAPP_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder
