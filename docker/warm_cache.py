"""Build-time helper of the container: fill the numba (and matplotlib) caches with one small run.

    NUMBA_CACHE_DIR=... MPLCONFIGDIR=... python warm_cache.py WORK_DIR

Simulates a one-participant example dataset on a small grid and runs the participant level with every
output (QSM, SWI, T2*/R2*, atlas segmentation on the phantom's template, ROI tables): each numba kernel is
compiled once, for the types the pipeline uses, into NUMBA_CACHE_DIR. Fails if the run fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    work = Path((argv or sys.argv[1:])[0])
    bids, out = work / "bids", work / "out"
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, QSMAPP_PER_RUN_DIRS="0")
    bin_dir = Path(sys.executable).parent  # the venv's scripts, whether or not it is on PATH
    start = time.monotonic()
    subprocess.run([str(bin_dir / "qsmapp-simulate"), str(bids), "--subjects", "1", "--echoes", "3", "--matrix", "64", "64", "48"],
                   check=True, env=env)
    subprocess.run([str(bin_dir / "qsmapp"), str(bids), str(out), "participant", "--outputs", "qsm", "swi", "t2s", "r2s", "seg",
                    "analysis", "--seg-template", str(bids / "derivatives" / "ground-truth" / "tpl-phantom"),
                    "--skip-bids-validation", "--n-procs", "1"], check=True, env=env)
    cache = Path(os.environ["NUMBA_CACHE_DIR"])
    files = [p for p in cache.rglob("*") if p.is_file()]
    print(f"warm cache: {len(files)} files, {sum(p.stat().st_size for p in files) / 1e6:.1f} MB in {cache} "
          f"({time.monotonic() - start:.0f} s)")
    if not files:
        raise SystemExit("warm cache: numba wrote nothing")
    return 0


if __name__ == "__main__":
    sys.exit(main())
