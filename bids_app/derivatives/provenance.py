"""Provenance of a run under ``OUTPUT_DIR/logs/``: settings (re-loadable), command, citations, summary."""

from __future__ import annotations

import json
import platform
import shlex
from pathlib import Path

from .. import __version__
from ..citations import format_citations
from .atomic import atomic_write_text


PATH_OPTIONS = {"--seg-template", "--work-dir", "--config-file", "--bids-filter-file", "--nextqsm-weights"}


def absolute_paths(command: list) -> list:
    """The command with BIDS_DIR, OUTPUT_DIR and the values of path options made absolute (when they exist),
    so that the reproduce line works from any directory."""
    made = []
    for index, argument in enumerate(command):
        text = str(argument)
        is_path = index in (1, 2) or (index > 0 and str(command[index - 1]).split("=")[0] in PATH_OPTIONS)
        if is_path and text and not text.startswith("-") and Path(text).exists():
            text = str(Path(text).resolve())
        elif "=" in text and text.split("=")[0] in PATH_OPTIONS and Path(text.split("=", 1)[1]).exists():
            text = f"{text.split('=')[0]}={Path(text.split('=', 1)[1]).resolve()}"
        made.append(text)
    return made


PATH_SETTINGS = ("seg_template",)  # settings that may name a file or folder (else a name, e.g. a TemplateFlow id)


def _absolute_settings(settings: dict) -> dict:
    """Settings with a relative path that exists made absolute."""
    fixed = dict(settings)
    for key in PATH_SETTINGS:
        value = fixed.get(key)
        if isinstance(value, str) and value and Path(value).exists():
            fixed[key] = str(Path(value).resolve())
    return fixed


def write_run_provenance(output_dir, *, run_id, settings, command, results, citations, extra_settings=None) -> dict:
    """``extra_settings`` (e.g. the group level's template options) are recorded next to the settings."""
    logs = Path(output_dir).resolve() / "logs"
    paths = {
        "settings": logs / f"run-{run_id}_settings.json",
        "command": logs / f"run-{run_id}_command.txt",
        "citations": logs / f"run-{run_id}_citations.md",
        "summary": logs / f"run-{run_id}_summary.json",
    }
    recorded = {"qsmapp_version": __version__, "settings": _absolute_settings(settings.to_dict())}
    if extra_settings:
        recorded["group"] = dict(extra_settings)
    atomic_write_text(paths["settings"], json.dumps(recorded, indent=2) + "\n")
    reproduce = shlex.join([*absolute_paths(command), "--config-file", str(paths["settings"])])
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
