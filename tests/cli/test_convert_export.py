"""Command-line contract of qsmapp-convert and qsmapp-export: help, version, console scripts, usage errors."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bids_app.cli import convert, export


@pytest.mark.parametrize("module", [convert, export])
def test_help_and_version(module, capsys):
    assert module.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "Exit codes" in out and "--overwrite" in out
    assert module.main(["--version"]) == 0
    assert module.PROG in capsys.readouterr().out


@pytest.mark.parametrize("module", [convert, export])
def test_missing_or_bad_arguments_exit_64(module, capsys):
    assert module.main([]) == 64
    assert module.main(["a", "b", "--no-such-option"]) == 64
    err = capsys.readouterr().err
    assert "unrecognized arguments: --no-such-option" in err and len(err.strip().splitlines()) == 2


def test_no_auto_needs_rules(tmp_path, capsys):
    assert convert.main([str(tmp_path), str(tmp_path / "bids"), "--no-auto"]) == 64
    assert "--no-auto needs --rules" in capsys.readouterr().err


def test_nifti_input_needs_a_label(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.nii.gz").write_bytes(b"")
    assert convert.main([str(tmp_path / "in"), str(tmp_path / "bids")]) == 64
    assert "--participant-label is required" in capsys.readouterr().err


@pytest.mark.parametrize("script", ["qsmapp-convert", "qsmapp-export"])
def test_console_scripts_are_installed(script):
    path = Path(sys.executable).with_name(script)
    found = str(path) if path.exists() else shutil.which(script)
    if found is None:
        pytest.skip(f"{script} not installed (pip install -e .)")
    result = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and script in result.stdout
