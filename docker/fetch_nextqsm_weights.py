"""Build-time helper of the container: put the NeXtQSM weights into a folder (never used at run time).

    python fetch_nextqsm_weights.py DEST            # download nextqsm-weights.tar from OSF project zqfdc
    python fetch_nextqsm_weights.py DEST --tar FILE # or use an archive downloaded beforehand
    python fetch_nextqsm_weights.py DEST --from-dir DIR  # or a folder holding the weight files

The archive's weight files are extracted flat into DEST (whatever folders the archive uses), then the
files qsmapp needs are checked. Needs ``osfclient`` only for the download.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

OSF_PROJECT = "zqfdc"
ARCHIVE = "nextqsm-weights.tar"
REQUIRED = ("zdir_calc-HRbf-rmse-weights.weights.h5", "zdir_calc-HR-vn-nets.weights.h5", "zdir_calc-HR-vn-lambdas.npy")


def download(target: Path) -> Path:
    import osfclient

    project = osfclient.OSF().project(OSF_PROJECT)
    remote = next((f for f in project.storage().files if f.name == ARCHIVE), None)
    if remote is None:
        raise SystemExit(f"{ARCHIVE} not found in OSF project {OSF_PROJECT}")
    with open(target, "wb") as handle:
        remote.write_to(handle)
    return target


def extract_flat(archive: Path, dest: Path) -> list:
    """Extract the regular files of ``archive`` whose names qsmapp uses (or params.json) into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    wanted = set(REQUIRED) | {"params.json"}
    written = []
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            name = Path(member.name).name
            if member.isfile() and name in wanted:
                with tar.extractfile(member) as source, open(dest / name, "wb") as target:
                    shutil.copyfileobj(source, target)
                written.append(name)
    missing = [n for n in REQUIRED if not (dest / n).is_file()]
    if missing:
        raise SystemExit(f"{archive} lacks {', '.join(missing)}")
    return written


def copy_flat(folder: Path, dest: Path) -> list:
    """Copy the files of ``folder`` (any depth) whose names qsmapp uses (or params.json) into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    wanted = set(REQUIRED) | {"params.json"}
    written = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name in wanted:
            shutil.copyfile(path, dest / path.name)
            written.append(path.name)
    missing = [n for n in REQUIRED if not (dest / n).is_file()]
    if missing:
        raise SystemExit(f"{folder} lacks {', '.join(missing)}")
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--tar", type=Path, help="use this archive instead of downloading it")
    source.add_argument("--from-dir", type=Path, help="use the weight files in this folder")
    args = parser.parse_args(argv)
    if args.from_dir:
        written = copy_flat(args.from_dir, args.dest)
        print(f"NeXtQSM weights in {args.dest}: {', '.join(sorted(written))}")
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        archive = args.tar or download(Path(scratch) / ARCHIVE)
        written = extract_flat(archive, args.dest)
    print(f"NeXtQSM weights in {args.dest}: {', '.join(sorted(written))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
