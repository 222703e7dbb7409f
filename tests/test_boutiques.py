"""The Boutiques descriptor (docker/qsmapp.boutiques.json) matches qsmapp's parser and is valid Boutiques."""

from __future__ import annotations

import importlib.util
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bids_app.cli.parser import build_parser

REPO = Path(__file__).resolve().parents[1]
DESCRIPTOR = REPO / "docker" / "qsmapp.boutiques.json"
REGENERATE = "python docker/make_boutiques.py"


def _generator():
    spec = importlib.util.spec_from_file_location("make_boutiques", REPO / "docker" / "make_boutiques.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_descriptor_is_up_to_date_with_the_parser():
    committed = DESCRIPTOR.read_text()
    assert committed == _generator().render(), (
        f"{DESCRIPTOR.relative_to(REPO)} is out of date with qsmapp's options: regenerate it with `{REGENERATE}` "
        "and commit it")


def _bosh():
    pytest.importorskip("boutiques", reason="pip install -c constraints.txt '.[test]' installs boutiques")
    beside = Path(sys.executable).with_name("bosh")
    executable = str(beside) if beside.is_file() else shutil.which("bosh")
    if executable is None:
        pytest.skip("boutiques is importable but its `bosh` command is not on PATH")
    return [executable]


def test_descriptor_validates_with_boutiques():
    result = subprocess.run([*_bosh(), "validate", str(DESCRIPTOR)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_boutiques_command_line_is_one_qsmapp_accepts(tmp_path):
    """`bosh exec simulate` composes a command line from an invocation; qsmapp's parser reads it back."""
    invocation = {"bids_dir": "/bids", "output_dir": "/out", "analysis_level": "participant",
                  "participant_label": ["01", "02"], "n_procs": 2, "outputs": ["qsm", "r2s"], "two_pass": "off",
                  "skip_bids_validation": True, "no_resume": True}
    path = tmp_path / "invocation.json"
    path.write_text(json.dumps(invocation))
    result = subprocess.run([*_bosh(), "exec", "simulate", str(DESCRIPTOR), "-i", str(path)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(l for l in result.stdout.splitlines() if l.strip().startswith("qsmapp "))
    words = shlex.split(line)
    assert words[0] == "qsmapp"
    namespace = build_parser().parse_args(words[1:])
    assert str(namespace.bids_dir) == "/bids" and namespace.analysis_level == "participant"
    assert namespace.participant_label == ["01", "02"] and namespace.n_procs == 2
    assert namespace.skip_bids_validation is True and namespace.resume is False
    assert namespace.two_pass is False
