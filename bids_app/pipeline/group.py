"""Group level (SPEC §5 Group level): study template and ROI statistics across participants."""

from __future__ import annotations

from ..errors import NoInputError


def run_group(*, bids_dir, output_dir, settings, selection, options, command) -> int:
    if not (output_dir / "dataset_description.json").is_file():
        raise NoInputError(
            f"{output_dir} holds no qsmapp participant outputs",
            hint="run the participant level first: qsmapp BIDS_DIR OUTPUT_DIR participant",
        )
    raise NoInputError(
        "the group level (template and group statistics) is not available in this version",
        hint="it is being built; run the participant level for now",
    )
