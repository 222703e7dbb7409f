"""Processing settings: every choice that changes an output map.

Settings are resolved in this order: the premade's values, then a ``--config-file`` (a settings file
that a previous run saved under ``OUTPUT_DIR/logs/``), then options given on the command line.
Execution options (threads, work directory, ...) are not settings: they never change results and are
not part of the resume fingerprint.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError
from . import methods as M
from .methods import Range  # noqa: F401 - part of this module's interface

OUTPUT_CHOICES = ("qsm", "swi", "t2s", "r2s", "seg", "analysis", "fieldmap", "quality")
MASKING_ALGORITHMS = ("threshold", "bet")
MASKING_INPUTS = ("phase", "magnitude")
THRESHOLD_ALGORITHMS = ("otsu", "gaussian")
FILLING_ALGORITHMS = ("gaussian", "morphological", "both", "bet", "none")
UNWRAPPING_ALGORITHMS = M.names("unwrapping")
BF_ALGORITHMS = M.names("background")
AUTO_ON_OFF = ("auto", "on", "off")
QSM_ALGORITHMS = M.names("inversion")
R2S_METHODS = M.names("r2s")
SWI_PHASE_SCALINGS = ("tanh", "negative", "positive")
SEG_BACKENDS = ("auto", "fastsurfer", "atlas", "tissue")
SEG_REGISTRATIONS = ("rigid", "affine", "syn")

# Inversions that remove the background field themselves (TGV also unwraps when run per echo).
COMBINED_ALGORITHMS = tuple(m.name for m in M.methods("inversion") if "background" in m.replaces)


def _registry_fields(namespace) -> None:
    """Add one field per parameter of the method registry (:mod:`bids_app.config.methods`) to a class body."""
    for p in M.parameters():
        namespace["__annotations__"][p.setting] = p.annotation
        namespace[p.setting] = (field(default_factory=functools.partial(list, p.default))
                                if isinstance(p.default, list) else p.default)


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
    combine_phase: bool = True
    bipolar_correction: str = "auto"  # odd/even echo phase of bipolar readouts: auto = when detected
    unwrapping_algorithm: str = "romeo"
    bf_algorithm: str | None = "pdf_lbv"
    local_field_detrend: str = "auto"  # polynomial detrend of the local field: auto = single-echo fields
    local_field_detrend_order: int = 2
    qsm_algorithm: str = "rts"
    qsm_reference: list = field(default_factory=lambda: ["mean"])
    b0_strength: float | None = None
    # --- algorithm parameters: one field per parameter of the method registry ---------------------
    _registry_fields(locals())
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
        """Check every value's type and range, then choices and combinations; raise :class:`UsageError`.

        Returns the settings with each value parsed to its declared type (``"off"`` → ``False``, ``2`` →
        ``[2]`` for a per-pass list); errors name the command-line option.
        """
        self = dataclasses.replace(self, **coerce_values(self.to_dict(), spelling=cli_spelling))
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


# --- types and ranges -------------------------------------------------------------------------------
# The type of every field is its annotation; what an annotation cannot say is given here: the type of a
# list's items when its default is empty or None (otherwise the default's items say it), how many items
# a list takes, and the range of numbers. A field missing from these tables is still type-checked.
_ITEM_TYPES = {"threshold_value": float, "outputs": str, "qsm_reference": str}
_LENGTHS = {"swi_filter_sigma": (3, 3), "threshold_value": (1, 2),
            "threshold_algorithm_factor": (1, 2), "mask_erosions": (1, 2), "outputs": (1, None),
            "qsm_reference": (1, None), **{p.setting: p.length for p in M.parameters() if p.length}}


_POSITIVE, _FRACTION, _AT_LEAST_1, _NON_NEGATIVE = M.POSITIVE, M.FRACTION, M.AT_LEAST_1, M.NON_NEGATIVE
RANGES = {
    "threshold_value": _NON_NEGATIVE, "threshold_algorithm_factor": _POSITIVE, "mask_erosions": _NON_NEGATIVE,
    "bet_fractional_intensity": _FRACTION, 
    "local_field_detrend_order": Range(0, 4), "b0_strength": Range(0, 30, low_open=True),
    "swi_strength": _POSITIVE, "swi_filter_sigma": _NON_NEGATIVE, "swi_mip_slab": _AT_LEAST_1,
    **{p.setting: p.range for p in M.parameters() if p.range is not None},  # the method registry's ranges
}
_TRUE, _FALSE = ("on", "true"), ("off", "false")


def cli_spelling(name: str) -> str:
    """How the command line spells setting ``name``: ``--two-pass``."""
    return f"--{name.replace('_', '-')}"


def config_spelling(path) -> typing.Callable[[str], str]:
    """How a ``--config-file`` spells setting ``name``: ``"two_pass" in --config-file FILE``."""
    return lambda name: f'"{name}" in --config-file {path}'


@functools.lru_cache(maxsize=None)
def field_types() -> dict:
    """Field name → (scalar type, item type or None for scalars, None allowed), from the annotations."""
    hints = typing.get_type_hints(Settings)
    result = {}
    for f in dataclasses.fields(Settings):
        hint = hints[f.name]
        args = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union \
            else ()
        optional = type(None) in args
        base = next((a for a in args if a is not type(None)), hint) if args else hint
        base = typing.get_origin(base) or base
        item = None
        if base is list:
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            kinds = {type(v) for v in default or []}
            item = _ITEM_TYPES.get(f.name) or (kinds.pop() if len(kinds) == 1 else str)
            if item is int and any(isinstance(v, float) for v in default or []):
                item = float
        result[f.name] = (base, item, optional)
    return result


def _finite_number(value):
    """``value`` (a number or its text) as a finite int/float, or None; booleans are not numbers here."""
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return value


def _scalar(value, kind, name, spelling):
    where = spelling(name)
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower() if isinstance(value, str) else None
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise UsageError(f"{where}: {value!r} is not a boolean", hint="use on/off (or true/false)")
    if kind is int:
        number = _finite_number(value)
        if number is None or number != int(number):
            raise UsageError(f"{where}: {value!r} is not a whole number", hint="give an integer, e.g. 2")
        return int(number)
    if kind is float:
        number = _finite_number(value)
        if number is None:
            raise UsageError(f"{where}: {value!r} is not a number", hint="give a finite number, e.g. 0.5")
        return float(number)
    if kind is str:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise UsageError(f"{where}: {value!r} is not a text value")
        return str(value)
    return value  # a type these rules do not know: left to the field's own checks


def coerce_value(name: str, value, spelling=cli_spelling):
    """Parse ``value`` of setting ``name`` to its declared type and check its length and range.

    Raises
    ------
    UsageError
        The value has the wrong type (``"off"`` for a number), length or range; the message names the
        setting in ``spelling(name)`` (the user's spelling) and says what is allowed.
    """
    types_ = field_types()
    if name not in types_:
        raise UsageError(f"{spelling(name)}: unknown setting", hint="see `qsmapp --help`")
    kind, item, optional = types_[name]
    where = spelling(name)
    if value is None or (optional and isinstance(value, str) and value.strip().lower() == "none"):
        if optional:
            return None
        raise UsageError(f"{where} needs a value (it cannot be null/none)")
    if kind is list:
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        low, high = _LENGTHS.get(name, (0, None))
        if len(items) < low or (high is not None and len(items) > high):
            count = f"{low}" if low == high else (f"{low} to {high}" if high else f"at least {low}")
            raise UsageError(f"{where} takes {count} value(s), got {len(items)}",
                             hint="one per pass" if high == 2 and low == 1 else None)
        parsed = [_scalar(v, item, name, spelling) for v in items]
    else:
        if isinstance(value, (list, tuple)):
            raise UsageError(f"{where} takes one value, got a list {list(value)!r}")
        parsed = [_scalar(value, kind, name, spelling)]
    allowed = RANGES.get(name)
    if allowed is not None:
        for v in parsed:
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v not in allowed:
                raise UsageError(f"{where}: {v:g} is out of range", hint=f"it must be {allowed.describe()}")
    return parsed if kind is list else parsed[0]


def coerce_values(values: dict, spelling=cli_spelling) -> dict:
    """:func:`coerce_value` for every item of ``values`` (a partial or full settings dict)."""
    return {name: coerce_value(name, value, spelling) for name, value in values.items()}


def _choice(option, value, choices, many=False):
    values = value if many else [value]
    for item in values:
        if item not in choices:
            raise UsageError(
                f"--{option}: invalid choice {item!r}", hint=f"choose from {', '.join(choices)}"
            )


# Settings of earlier versions that no longer exist, and why (a saved settings file may still hold them).
REMOVED_SETTINGS = {
    "obliquity_threshold": "qsmapp does not resample oblique data to an axial grid; it passes each image's B0 "
                           "direction (from the affine) to background removal and inversion, which is exact at "
                           "any obliquity",
}


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
    for name, reason in REMOVED_SETTINGS.items():
        if name in data:
            logging.getLogger("qsmapp").warning("--config-file %s: %r is ignored: %s", path, name, reason)
            data = {k: v for k, v in data.items() if k != name}
    known = {f.name for f in dataclasses.fields(Settings)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UsageError(
            f"--config-file {path}: unknown setting(s) {', '.join(unknown)}",
            hint="see `qsmapp --help` for the setting names (with _ instead of -)",
        )
    return coerce_values(data, spelling=config_spelling(path))
