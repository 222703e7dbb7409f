"""Resume: a unit whose outputs are complete for the same settings is not processed again.

After a unit's outputs are all written, a completion record (JSON, written atomically and last) lists
them with the settings fingerprint and qsmapp version. A record is trusted only if it matches the
current settings and every listed file exists, so a run killed mid-way is redone.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from .. import __version__
from ..derivatives.atomic import atomic_write_text


def record_path(output_dir, unit_name: str, suffix: str) -> Path:
    return Path(output_dir) / "logs" / "units" / f"{unit_name}_{suffix}.json"


def is_complete(output_dir, unit_name, suffix, fingerprint) -> bool:
    path = record_path(output_dir, unit_name, suffix)
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if record.get("fingerprint") != fingerprint or record.get("version") != __version__:
        return False
    root = Path(output_dir)
    return all((root / relative).is_file() for relative in record.get("outputs", []))


def mark_complete(output_dir, unit_name, suffix, fingerprint, outputs, timings, notes=()) -> Path:
    root = Path(output_dir)
    record = {
        "unit": unit_name,
        "fingerprint": fingerprint,
        "version": __version__,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "outputs": sorted(str(Path(p).resolve().relative_to(root.resolve())) for p in outputs),
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "notes": list(notes),
    }
    return atomic_write_text(record_path(root, unit_name, suffix), json.dumps(record, indent=2) + "\n")


def forget(output_dir, unit_name, suffix) -> None:
    record_path(output_dir, unit_name, suffix).unlink(missing_ok=True)
