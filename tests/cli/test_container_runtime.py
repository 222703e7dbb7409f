"""In the container: per-run private HOME/caches seeded from the warm cache, the temp-dir hint, the manifest."""

from __future__ import annotations

import importlib.util
import json
import os
import stat
import tempfile
from pathlib import Path

import pytest

from bids_app import container
from bids_app.cli.run import main

REPO = Path(__file__).resolve().parents[2]


def _writer():
    spec = importlib.util.spec_from_file_location("write_manifest", REPO / "docker" / "write_manifest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def manifest(tmp_path):
    """A manifest as docker/write_manifest.py writes it for an offline build (no FastSurfer, weights, MNI)."""
    (tmp_path / "constraints.txt").write_text("numpy==2.3.5\n")
    (tmp_path / "tf" / "tpl-phantom").mkdir(parents=True)
    (tmp_path / "tf" / "tpl-phantom" / "tpl-phantom_T1w.nii.gz").write_bytes(b"x")
    (tmp_path / "weights").mkdir()
    (tmp_path / "numba" / "x").mkdir(parents=True)
    (tmp_path / "numba" / "x" / "f.nbi").write_bytes(b"i")
    status = tmp_path / "fastsurfer.json"
    status.write_text(json.dumps({"installed": False, "reason": "FASTSURFER_SOURCE=none"}))
    out = tmp_path / "manifest.json"
    assert _writer().main([str(out), "--fastsurfer", str(status), "--constraints", str(tmp_path / "constraints.txt"),
                           "--version", "0.1.0", "--templateflow", str(tmp_path / "tf"), "--nextqsm-weights",
                           str(tmp_path / "weights"), "--numba-cache", str(tmp_path / "numba")]) == 0
    return out


def test_manifest_lists_what_the_image_lacks(manifest):
    data = json.loads(manifest.read_text())
    assert data["missing"] == ["templateflow", "nextqsm_weights", "fastsurfer"]  # phantom only: no MNI
    assert data["constraints_sha256"].startswith("sha256:") and data["numba_cache"]["files"] == 1
    assert data["templateflow"]["files"]["tpl-phantom/tpl-phantom_T1w.nii.gz"].startswith("sha256:")


def test_version_verbose_prints_the_manifest(manifest, monkeypatch, capsys):
    monkeypatch.setenv(container.MANIFEST_ENV, str(manifest))
    assert main(["--version", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("qsmapp ") and "MISSING from this image" in out and "NeXtQSM weights" in out
    assert str(manifest) in out
    monkeypatch.delenv(container.MANIFEST_ENV)
    assert main(["--version", "-v"]) == 0
    assert "not in the qsmapp container" in capsys.readouterr().out


def test_a_step_that_needs_a_missing_input_says_the_image_lacks_it(manifest, monkeypatch, tmp_path):
    from bids_app.errors import UsageError
    from bids_app.interfaces.fastsurfer import find_fastsurfer
    from bids_app.interfaces.nextqsm.weights import find_weights

    monkeypatch.setenv(container.MANIFEST_ENV, str(manifest))
    with pytest.raises(UsageError) as error:
        find_weights(tmp_path / "weights")
    assert "built without the NeXtQSM weights" in str(error.value)
    with pytest.raises(UsageError) as error:
        find_fastsurfer({"FASTSURFER_HOME": str(tmp_path / "fs"), container.MANIFEST_ENV: str(manifest)})
    assert "built without FastSurfer" in str(error.value) and "docker/build.sh --fastsurfer" in str(error.value)


def test_private_dirs_per_run_seeded_from_the_warm_cache(tmp_path, monkeypatch):
    """Apptainer shares the host's /tmp: a /tmp/numba made by another user must not be used."""
    seed = tmp_path / "seed"
    (seed / "numba" / "sub").mkdir(parents=True)
    (seed / "numba" / "sub" / "kernel.nbi").write_bytes(b"index")
    (seed / "numba" / "sub" / "kernel.nbi").chmod(0o444)
    (seed / "matplotlib").mkdir()
    foreign = tmp_path / "numba-of-another-user"
    foreign.mkdir(mode=0o555)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    environ = {"QSMAPP_PER_RUN_DIRS": "1", "QSMAPP_CACHE_SEED": str(seed), "NUMBA_CACHE_DIR": str(foreign),
               "HOME": "/tmp/home", "MPLCONFIGDIR": "/tmp/matplotlib"}
    first = container.setup_private_dirs(environ)
    numba_dir = Path(environ["NUMBA_CACHE_DIR"])
    assert numba_dir.parent == first and first.parent == tmp_path / "tmp"
    assert stat.S_IMODE(first.stat().st_mode) == 0o700
    copied = numba_dir / "sub" / "kernel.nbi"
    assert copied.read_bytes() == b"index" and os.access(copied, os.W_OK)  # the user's, writable
    assert Path(environ["HOME"]).is_dir() and Path(environ["MPLCONFIGDIR"]).parent == first
    second = container.setup_private_dirs(dict(environ))
    assert second != first  # per run
    assert container.setup_private_dirs({"NUMBA_CACHE_DIR": "/x"}) is None  # off outside the container


def test_no_writable_temp_dir_says_how_to_fix_it(monkeypatch, tmp_path, capsys):
    def no_temp():
        raise FileNotFoundError("No usable temporary directory found")

    monkeypatch.setattr(tempfile, "gettempdir", no_temp)
    code = main([str(tmp_path / "bids"), str(tmp_path / "out"), "participant"])
    err = capsys.readouterr().err
    assert code == 64 and "Traceback" not in err
    assert "no writable temporary folder" in err and "--tmpfs /tmp" in err and "--containall" in err
