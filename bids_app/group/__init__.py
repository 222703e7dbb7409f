"""Group level of qsmapp: study GRE template, maps in template space, group ROI tables and plots.

``inputs`` finds participant outputs and raw magnitudes; ``template`` builds the study template (antspyx);
``tables`` and ``plots`` gather the ROI statistics. :func:`bids_app.pipeline.group.run_group` runs them.
"""

from .inputs import GroupUnit, find_group_units, participant_outputs_exist
from .tables import long_table, read_roistats, wide_table
from .template import TemplateResult, build_template, ncc, normalise_intensity, to_template

__all__ = ["GroupUnit", "TemplateResult", "build_template", "find_group_units", "long_table", "ncc",
           "normalise_intensity", "participant_outputs_exist", "read_roistats", "to_template", "wide_table"]
