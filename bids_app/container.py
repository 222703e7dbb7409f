"""What the qsmapp container holds, and its per-run writable folders.

The image records what was baked in at build time in ``$QSMAPP_MANIFEST`` (``/opt/qsmapp/manifest.json``,
written by ``docker/write_manifest.py``): versions, checksums, and ``missing``, the inputs the build could
not bake in (FastSurfer, its checkpoints, the NeXtQSM weights, the TemplateFlow templates). Outside the
container there is no manifest and every function here is a no-op.

With ``QSMAPP_PER_RUN_DIRS=1`` (set by the image) each run gets its own HOME, numba and matplotlib cache
folders under the temporary folder (mode 0700), seeded from the image's read-only warm cache
(``$QSMAPP_CACHE_SEED``) and removed at exit: Apptainer shares the host's ``/tmp`` between users and jobs,
so fixed folders such as ``/tmp/numba`` would belong to whoever ran first.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from pathlib import Path

from . import __version__
from .errors import UsageError

MANIFEST_ENV = "QSMAPP_MANIFEST"
_PRIVATE = (("HOME", "home"), ("NUMBA_CACHE_DIR", "numba"), ("MPLCONFIGDIR", "matplotlib"))
_WHAT = {
    "fastsurfer": "FastSurfer (--seg-backend fastsurfer)",
    "fastsurfer_checkpoints": "FastSurfer's checkpoints (--seg-backend fastsurfer)",
    "nextqsm_weights": "the NeXtQSM weights (--qsm-algorithm nextqsm, --premade nextqsm)",
    "templateflow": "the TemplateFlow templates (--seg-backend atlas without --seg-template, group --group-mni)",
    "numba_cache": "a warm numba cache (the first run of each container compiles its kernels)",
}
_NAME = {
    "fastsurfer": "FastSurfer", "fastsurfer_checkpoints": "FastSurfer's checkpoints",
    "nextqsm_weights": "the NeXtQSM weights", "templateflow": "the TemplateFlow templates",
}
_REBUILD = {
    "fastsurfer": "--fastsurfer DIR_OR_ARCHIVE",
    "fastsurfer_checkpoints": "--fastsurfer-checkpoints DIR",
    "nextqsm_weights": "--nextqsm-weights DIR_OR_ARCHIVE, or pass --nextqsm-weights DIR at run time",
    "templateflow": "--templateflow DIR, or mount a TemplateFlow folder and set TEMPLATEFLOW_HOME",
}


def read_manifest(environ=None) -> dict | None:
    """The image's manifest, or None outside the container (or when it cannot be read)."""
    environ = os.environ if environ is None else environ
    path = environ.get(MANIFEST_ENV)
    if not path:
        return None
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def missing_hint(component: str, environ=None) -> str:
    """A sentence saying that this image was built without ``component``, or '' when it has it (or no image)."""
    manifest = read_manifest(environ)
    if not manifest or component not in manifest.get("missing", ()):
        return ""
    how = _REBUILD.get(component, "")
    return (f"this qsmapp image was built without {_NAME.get(component, component)} (its manifest: "
            f"{environ_or(environ)}); rebuild it with docker/build.sh {how}".rstrip())


def environ_or(environ=None) -> str:
    return (os.environ if environ is None else environ).get(MANIFEST_ENV, "")


def version_report(environ=None) -> str:
    """``qsmapp --version --verbose``: the version, and what the container holds and lacks."""
    lines = [f"qsmapp {__version__}"]
    manifest = read_manifest(environ)
    if manifest is None:
        lines.append("not in the qsmapp container (no manifest): FastSurfer, NeXtQSM weights and templates are "
                     "found through FASTSURFER_HOME, QSMAPP_NEXTQSM_WEIGHTS and TEMPLATEFLOW_HOME")
        return "\n".join(lines)
    packages = manifest.get("packages", {})
    lines.append(f"image built {manifest.get('built', '?')}, Python {manifest.get('python', '?')}, "
                 f"extra {manifest.get('extra', '?')}, constraints.txt {manifest.get('constraints_sha256', '?')}")
    lines.append("packages: " + ", ".join(f"{name} {packages[name]}" for name in
                                          ("numpy", "scipy", "numba", "antspyx", "nibabel", "tensorflow-cpu",
                                           "tensorflow", "templateflow") if name in packages))
    fastsurfer = manifest.get("fastsurfer", {})
    if fastsurfer.get("installed"):
        checkpoints = fastsurfer.get("checkpoints") or {}
        lines.append(f"FastSurfer {fastsurfer.get('version', '?')} ({fastsurfer.get('commit', '?')}), torch "
                     f"{fastsurfer.get('torch', '?')}, {len(checkpoints)} checkpoint(s)")
    weights = manifest.get("nextqsm_weights", {})
    lines.append(f"NeXtQSM weights: {len(weights.get('files', {}))} file(s) in {weights.get('dir', '?')}")
    templates = manifest.get("templateflow", {})
    lines.append(f"TemplateFlow: {len(templates.get('files', {}))} file(s) in {templates.get('home', '?')}")
    cache = manifest.get("numba_cache", {})
    lines.append(f"numba cache: {cache.get('files', 0)} file(s), compiled for CPU {cache.get('cpu', '?')}")
    missing = manifest.get("missing", [])
    if missing:
        lines.append("MISSING from this image: " + "; ".join(_WHAT.get(m, m) for m in missing))
    else:
        lines.append("missing: nothing")
    lines.append(f"manifest: {environ_or(environ)}")
    return "\n".join(lines)


def check_temp_dir() -> str:
    """The temporary folder; a usage error with the container hint when none is writable."""
    try:
        return tempfile.gettempdir()
    except FileNotFoundError:
        raise UsageError(
            f"no writable temporary folder (TMPDIR={os.environ.get('TMPDIR', '')!r}, /tmp, /var/tmp, the working "
            "folder are all read-only)",
            hint="with a read-only container add a writable /tmp: docker/podman run --read-only --tmpfs /tmp, "
                 "apptainer run --containall (or a writable -B DIR:/tmp); else set TMPDIR to a writable folder",
        ) from None


def setup_private_dirs(environ=None) -> Path | None:
    """Give this run its own HOME and caches under the temporary folder (only with QSMAPP_PER_RUN_DIRS=1).

    Returns the run's folder (removed at exit), or None when private folders are off (outside the container).
    Must run before numba or matplotlib is imported: both read their folder from the environment then.
    """
    environ = os.environ if environ is None else environ
    if environ.get("QSMAPP_PER_RUN_DIRS", "0") in ("", "0"):
        return None
    check_temp_dir()
    run_dir = Path(tempfile.mkdtemp(prefix=f"qsmapp-{os.getuid()}-"))  # mode 0700, unique per run
    seed = environ.get("QSMAPP_CACHE_SEED")
    for variable, name in _PRIVATE:
        folder = run_dir / name
        source = Path(seed) / name if seed else None
        if source is not None and source.is_dir():
            # copyfile, not copy2: the copies are the user's and writable, whatever the image's modes
            shutil.copytree(source, folder, copy_function=shutil.copyfile)
        else:
            folder.mkdir()
        environ[variable] = str(folder)
    atexit.register(shutil.rmtree, run_dir, True)
    return run_dir


