"""Dataset validation with ``bids-validator-deno`` (offline; installed from PyPI with qsmapp)."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

from ..errors import ValidationError

LOGGER = logging.getLogger("qsmapp")
_TIMEOUT_S = 600
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_STACK_LINE = re.compile(r"^\s*at\s+\S.*(\(|:\d+:\d+)")  # "    at fn (file:///...:12:3)" (JavaScript)


def tool_message(text: str, limit: int = 300) -> str:
    """The validator's own failure text as one clean line: no colour codes, no JavaScript stack frames."""
    lines = [_ANSI.sub("", line).strip() for line in str(text).splitlines()]
    lines = [line for line in lines if line and not _STACK_LINE.match(line)]
    message = " ".join(lines)
    return message if len(message) <= limit else message[: limit - 3] + "..."


def validator_executable() -> str | None:
    """``bids-validator-deno`` next to the running Python (venv) or on PATH."""
    beside = Path(sys.executable).with_name("bids-validator-deno")
    if beside.is_file():
        return str(beside)
    return shutil.which("bids-validator-deno")


def run_validator(bids_dir) -> dict:
    """Run the validator and return its JSON report (``issues`` list)."""
    executable = validator_executable()
    if executable is None:
        raise ValidationError(
            "bids-validator-deno is not installed, so BIDS_DIR cannot be validated",
            hint="pip install bids-validator-deno, or pass --skip-bids-validation",
        )
    try:
        process = subprocess.run(
            [executable, "--format", "json", "--ignoreWarnings", str(bids_dir)],
            capture_output=True, text=True, timeout=_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise ValidationError(f"bids-validator-deno did not finish within {_TIMEOUT_S} s",
                              hint="pass --skip-bids-validation") from None
    try:
        return json.loads(process.stdout)
    except json.JSONDecodeError:
        raise ValidationError(
            f"bids-validator-deno failed on {bids_dir}: {tool_message(process.stderr or process.stdout)}",
            hint="pass --skip-bids-validation to run without validation",
        ) from None


def errors_of(report: dict) -> list:
    issues = report.get("issues", {}).get("issues", [])
    return [i for i in issues if str(i.get("severity", "")).lower() == "error"]


def validate_dataset(bids_dir) -> None:
    """Raise :class:`ValidationError` (exit 16) when BIDS_DIR has BIDS errors."""
    LOGGER.info("validating %s with bids-validator-deno (skip with --skip-bids-validation)", bids_dir)
    errors = errors_of(run_validator(bids_dir))
    if errors:
        codes = sorted({e.get("code", "?") for e in errors})
        first = errors[0]
        where = first.get("location", "")
        raise ValidationError(
            f"{bids_dir} is not a valid BIDS dataset: {len(errors)} error(s) ({', '.join(codes)}), "
            f"e.g. {first.get('code')} at {where}",
            hint="run bids-validator-deno on it for details, fix the dataset, or pass --skip-bids-validation",
        )
