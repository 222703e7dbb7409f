"""Build-time helper of the container: write /opt/qsmapp/manifest.json, what the image holds and lacks.

    python write_manifest.py OUT.json --fastsurfer STATUS.json --constraints constraints.txt --extra nextqsm \
        --version 0.1.0

Records the qsmapp version, the Python and package versions of /opt/venv, the sha256 of constraints.txt, and
for each baked-in input (TemplateFlow templates, NeXtQSM weights, FastSurfer and its checkpoints, the warm
numba cache) whether it is there, where it came from and the checksums of its files. ``missing`` lists what
the image lacks; ``qsmapp --version --verbose`` prints it and qsmapp names it when a step needs it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

TEMPLATEFLOW_HOME = Path("/opt/templateflow")
NEXTQSM_WEIGHTS = Path("/opt/nextqsm/weights")
NUMBA_CACHE = Path("/opt/qsmapp/cache/numba")
MNI = "MNI152NLin2009cAsym"  # the atlas backend's default template and the group level's MNI target
NEXTQSM_REQUIRED = ("zdir_calc-HRbf-rmse-weights.weights.h5", "zdir_calc-HR-vn-nets.weights.h5",
                    "zdir_calc-HR-vn-lambdas.npy")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def files_of(folder: Path, pattern: str = "*") -> dict:
    return {p.relative_to(folder).as_posix(): sha256(p) for p in sorted(folder.rglob(pattern)) if p.is_file()}


def build_manifest(args) -> dict:
    packages = {d.metadata["Name"].lower().replace("_", "-"): d.version for d in metadata.distributions()}
    templates = files_of(args.templateflow, "*.nii.gz") | files_of(args.templateflow, "*.tsv")
    weights = files_of(args.nextqsm_weights)
    fastsurfer = json.loads(args.fastsurfer.read_text()) if args.fastsurfer else {"installed": False}
    cache = [p for p in args.numba_cache.rglob("*") if p.is_file()] if args.numba_cache.is_dir() else []
    manifest = {
        "name": "qsmapp",
        "version": args.version,
        "built": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "python": platform.python_version(),
        "extra": args.extra,
        "constraints_sha256": sha256(args.constraints),
        "packages": {k: packages[k] for k in sorted(packages)},
        "templateflow": {"home": str(args.templateflow), "files": templates,
                         "present": any(name.startswith(f"tpl-{MNI}/") for name in templates)},
        "nextqsm_weights": {"dir": str(args.nextqsm_weights),
                            "present": all(n in weights for n in NEXTQSM_REQUIRED), "files": weights},
        "fastsurfer": fastsurfer,
        "numba_cache": {"dir": str(args.numba_cache), "files": len(cache), "numba": packages.get("numba"),
                        "cpu": _cpu_name()},
    }
    missing = []
    if not manifest["templateflow"]["present"]:
        missing.append("templateflow")
    if not manifest["nextqsm_weights"]["present"]:
        missing.append("nextqsm_weights")
    if not fastsurfer.get("installed"):
        missing.append("fastsurfer")
    elif not fastsurfer.get("checkpoints"):
        missing.append("fastsurfer_checkpoints")
    if not cache:
        missing.append("numba_cache")
    manifest["missing"] = missing
    return manifest


def _cpu_name() -> str:
    try:
        import llvmlite.binding as llvm

        return llvm.get_host_cpu_name()
    except Exception:  # pragma: no cover - numba absent
        return "unknown"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--fastsurfer", type=Path, help="status file written by stage_fastsurfer.sh")
    parser.add_argument("--constraints", type=Path, required=True)
    parser.add_argument("--extra", default="nextqsm")
    parser.add_argument("--version", required=True)
    parser.add_argument("--templateflow", type=Path, default=TEMPLATEFLOW_HOME)
    parser.add_argument("--nextqsm-weights", type=Path, default=NEXTQSM_WEIGHTS)
    parser.add_argument("--numba-cache", type=Path, default=NUMBA_CACHE)
    args = parser.parse_args(argv)
    manifest = build_manifest(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"manifest {args.out}: missing {', '.join(manifest['missing']) or 'nothing'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
