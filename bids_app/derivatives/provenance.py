"""Provenance of a run under ``OUTPUT_DIR/logs/``: settings (re-loadable), command, citations, summary."""

from __future__ import annotations

import json
import platform
import shlex
from pathlib import Path

from .. import __version__
from ..citations import format_citations
from .atomic import atomic_write_text


def write_run_provenance(output_dir, *, run_id, settings, command, results, citations) -> dict:
    logs = Path(output_dir) / "logs"
    paths = {
        "settings": logs / f"run-{run_id}_settings.json",
        "command": logs / f"run-{run_id}_command.txt",
        "citations": logs / f"run-{run_id}_citations.md",
        "summary": logs / f"run-{run_id}_summary.json",
    }
    atomic_write_text(paths["settings"], json.dumps({"qsmapp_version": __version__,
                                                     "settings": settings.to_dict()}, indent=2) + "\n")
    reproduce = shlex.join([*command, "--config-file", str(paths["settings"])])
    atomic_write_text(paths["command"], f"# command as run\n{shlex.join(command)}\n"
                      f"# to reproduce with exactly these settings\n{reproduce}\n")
    atomic_write_text(paths["citations"], format_citations(citations))
    summary = {
        "qsmapp_version": __version__,
        "python": platform.python_version(),
        "units": [{"unit": r.name, "status": r.status, "seconds": round(r.seconds, 2),
                   "message": r.message, "exit_code": r.exit_code, "notes": r.notes} for r in results],
    }
    atomic_write_text(paths["summary"], json.dumps(summary, indent=2) + "\n")
    return paths
