"""qsmapp: a BIDS App for quantitative susceptibility mapping and related GRE contrasts.

The version string has a single source, the repository's ``version`` file; it reaches the installed
package through the distribution metadata (``pyproject.toml`` reads it at build time).
"""

from __future__ import annotations

from pathlib import Path


def _read_version() -> str:
    source_tree_file = Path(__file__).resolve().parent.parent / "version"
    if source_tree_file.is_file():  # editable install or a run from the source tree
        return source_tree_file.read_text().strip()
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("qsmapp")
    except PackageNotFoundError:  # pragma: no cover - not installed and no source tree
        return "0+unknown"


__version__ = _read_version()
__all__ = ["__version__"]
