"""Processing settings: every choice that changes an output map.

Settings are resolved in this order: the premade's values, then a ``--config-file`` (a settings file
that a previous run saved under ``OUTPUT_DIR/logs/``), then options given on the command line.
Execution options (threads, work directory, ...) are not settings: they never change results and are
not part of the resume fingerprint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError

OUTPUT_CHOICES = ("qsm", "swi", "t2s", "r2s", "seg", "analysis", "fieldmap", "quality")
MASKING_ALGORITHMS = ("threshold", "bet")
MASKING_INPUTS = ("phase", "magnitude")
THRESHOLD_ALGORITHMS = ("otsu", "gaussian")
FILLING_ALGORITHMS = ("gaussian", "morphological", "both", "bet", "none")
UNWRAPPING_ALGORITHMS = ("romeo", "laplacian")
BF_ALGORITHMS = ("pdf", "vsharp", "lbv", "pdf_lbv", "resharp", "sharp", "ismv")
AUTO_ON_OFF = ("auto", "on", "off")
QSM_ALGORITHMS = ("rts", "tv", "tkd", "tikhonov", "tgv", "nextqsm")
R2S_METHODS = ("arlo", "numart2s", "loglinear", "nonlinear")
SWI_PHASE_SCALINGS = ("tanh", "negative", "positive")
SEG_BACKENDS = ("auto", "fastsurfer", "atlas", "tissue")
SEG_REGISTRATIONS = ("rigid", "affine", "syn")

# Algorithms that solve unwrapping + background removal + inversion together.
COMBINED_ALGORITHMS = ("tgv", "nextqsm")


@dataclass
class Settings:
    """All processing settings, with the ``default`` premade's values."""

    outputs: list = field(default_factory=lambda: ["qsm"])
    premade: str = "default"
    # --- masking -------------------------------------------------------------------------------
    masking_algorithm: str = "threshold"
    masking_input: str = "phase"
    two_pass: bool = True
    threshold_algorithm: str = "otsu"
    threshold_value: list | None = None
    threshold_algorithm_factor: list = field(default_factory=lambda: [1.5, 1.3])
    filling_algorithm: str = "both"
    mask_erosions: list = field(default_factory=lambda: [2, 0])
    add_bet: bool = False
    bet_fractional_intensity: float = 0.5
    use_existing_masks: bool = False
    existing_masks_pipeline: str = "*"
    inhomogeneity_correction: bool = False
    # --- phase processing ----------------------------------------------------------------------
    obliquity_threshold: float = 10.0
    combine_phase: bool = True
    bipolar_correction: str = "auto"  # odd/even echo phase of bipolar readouts: auto = when detected
    unwrapping_algorithm: str = "romeo"
    bf_algorithm: str | None = "pdf"
    local_field_detrend: str = "auto"  # polynomial detrend of the local field: auto = single-echo fields
    local_field_detrend_order: int = 2
    qsm_algorithm: str = "rts"
    qsm_reference: list = field(default_factory=lambda: ["mean"])
    b0_strength: float | None = None
    # --- algorithm parameters ------------------------------------------------------------------
    vsharp_threshold: float = 0.05
    pdf_tol: float = 1e-3
    tkd_threshold: float = 0.19
    tikhonov_lambda: float = 0.09
    rts_delta: float = 0.15
    rts_mu: float = 1e5
    rts_rho: float = 10.0
    rts_tol: float = 1e-4
    rts_max_iter: int = 20
    rts_lsmr_iter: int = 12
    tv_lambda: float = 1e-3
    tv_tol: float = 1e-3
    tv_max_iter: int = 250
    tgv_alphas: list = field(default_factory=lambda: [0.0015, 0.0005])
    tgv_iterations: int = 1000
    tgv_erosions: int = 3
    # --- SWI and T2*/R2* -----------------------------------------------------------------------
    swi_phase_scaling: str = "tanh"
    swi_strength: float = 4.0
    swi_filter_sigma: list = field(default_factory=lambda: [4.0, 4.0, 0.0])
    swi_mip_slab: int = 7
    r2s_method: str = "arlo"
    # --- segmentation --------------------------------------------------------------------------
    seg_backend: str = "auto"
    seg_registration: str = "affine"  # T1w → GRE: rigid, rigid + affine, or rigid + affine + SyN
    seg_template: str | None = None  # labelled template folder, or a TemplateFlow name in TEMPLATEFLOW_HOME
    seg_atlas: str | None = None  # which dseg of the template (atlas-/desc- value); default: the first usable

    # ------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        """Short hash of the settings; a unit's outputs are reused only if it matches."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def replace(self, **changes) -> "Settings":
        return dataclasses.replace(self, **changes)

    def validate(self) -> "Settings":
        """Check choices and combinations; raise :class:`UsageError` with the fix."""
        _choice("outputs", self.outputs, OUTPUT_CHOICES, many=True)
        _choice("masking-algorithm", self.masking_algorithm, MASKING_ALGORITHMS)
        _choice("masking-input", self.masking_input, MASKING_INPUTS)
        _choice("threshold-algorithm", self.threshold_algorithm, THRESHOLD_ALGORITHMS)
        _choice("filling-algorithm", self.filling_algorithm, FILLING_ALGORITHMS)
        _choice("unwrapping-algorithm", self.unwrapping_algorithm, UNWRAPPING_ALGORITHMS)
        if self.bf_algorithm is not None:
            _choice("bf-algorithm", self.bf_algorithm, BF_ALGORITHMS)
        _choice("qsm-algorithm", self.qsm_algorithm, QSM_ALGORITHMS)
        _choice("bipolar-correction", self.bipolar_correction, AUTO_ON_OFF)
        _choice("local-field-detrend", self.local_field_detrend, AUTO_ON_OFF)
        if self.local_field_detrend_order not in range(0, 5):
            raise UsageError("--local-field-detrend-order must be an integer from 0 to 4 (default 2)")
        _choice("r2s-method", self.r2s_method, R2S_METHODS)
        _choice("swi-phase-scaling", self.swi_phase_scaling, SWI_PHASE_SCALINGS)
        _choice("seg-backend", self.seg_backend, SEG_BACKENDS)
        _choice("seg-registration", self.seg_registration, SEG_REGISTRATIONS)
        if self.two_pass and self.masking_algorithm != "threshold":
            raise UsageError(
                "two-pass artefact reduction needs threshold masking",
                hint="use --masking-algorithm threshold or --two-pass off",
            )
        for name in ("threshold_algorithm_factor", "mask_erosions", "threshold_value"):
            values = getattr(self, name)
            if values is not None and not 1 <= len(values) <= 2:
                raise UsageError(f"--{name.replace('_', '-')} takes one value, or two (one per pass)")
        if any(e < 0 for e in self.mask_erosions):
            raise UsageError("--mask-erosions must be >= 0")
        if not 0 < self.bet_fractional_intensity < 1:
            raise UsageError("--bet-fractional-intensity must be between 0 and 1 (default 0.5)")
        if self.b0_strength is not None and not 0 < self.b0_strength <= 30:
            raise UsageError("--b0-strength is in tesla and must be in (0, 30], e.g. 3 or 7")
        if self.qsm_algorithm not in COMBINED_ALGORITHMS and self.bf_algorithm is None:
            raise UsageError(
                f"--qsm-algorithm {self.qsm_algorithm} needs a background field removal step",
                hint="set --bf-algorithm pdf|vsharp|lbv, or use tgv which removes it itself",
            )
        for extra in ("fieldmap", "quality"):
            if extra in self.outputs and "qsm" not in self.outputs:
                raise UsageError(f"--outputs {extra} is an intermediate map of the QSM pipeline: it needs qsm too",
                                 hint=f"add: --outputs qsm {extra}")
        if "analysis" in self.outputs and not {"qsm", "seg"} <= set(self.outputs):
            raise UsageError("--outputs analysis needs qsm and seg too", hint="add: --outputs qsm seg analysis")
        return self

    @property
    def reference_labels(self) -> list | None:
        """The label names/indices of ``--qsm-reference``, or None for mean/none referencing."""
        if [r.lower() for r in map(str, self.qsm_reference)] in (["mean"], ["none"]):
            return None
        return list(self.qsm_reference)

    @property
    def needs_segmentation(self) -> bool:
        return "seg" in self.outputs or ("qsm" in self.outputs and self.reference_labels is not None)

    def per_pass(self, name: str, pass_index: int):
        """Value of a one-or-two-valued setting for pass 0 (filled mask) or pass 1 (reliable mask)."""
        values = getattr(self, name)
        if values is None:
            return None
        return values[min(pass_index, len(values) - 1)]


def _choice(option, value, choices, many=False):
    values = value if many else [value]
    for item in values:
        if item not in choices:
            raise UsageError(
                f"--{option}: invalid choice {item!r}", hint=f"choose from {', '.join(choices)}"
            )


def load_settings_file(path) -> dict:
    """Read a settings JSON (as saved in ``OUTPUT_DIR/logs/``) and return the known fields.

    Unknown keys raise :class:`UsageError` so that a typo never silently falls back to a default.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"--config-file {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"--config-file {path} is not valid JSON: {exc}") from None
    if isinstance(data, dict) and "settings" in data and isinstance(data["settings"], dict):
        data = data["settings"]
    if not isinstance(data, dict):
        raise UsageError(f"--config-file {path} must hold a JSON object of settings")
    known = {f.name for f in dataclasses.fields(Settings)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UsageError(
            f"--config-file {path}: unknown setting(s) {', '.join(unknown)}",
            hint="see `qsmapp --help` for the setting names (with _ instead of -)",
        )
    return data
