"""Method registry: one entry per method of every processing step.

Each :class:`Method` names the function that runs it, its parameters (each a :class:`Param`: the
setting that holds it, the function's keyword, the pipeline default, the valid range and the help
text), its citation keys (:mod:`bids_app.citations`) and the steps it performs itself. Everything
else derives from these entries: the :class:`~bids_app.config.settings.Settings` fields of the
parameters, the command-line choices, options and help (with the defaults read from here), the
range checks before any unit starts, the dispatch in :mod:`bids_app.pipeline.qsm`, the sidecar
``Parameters`` (only those of the methods that ran), ``EstimationReference`` and the citations file.

Adding a method: write the function, add one :class:`Method` below, and test it. The defaults of
the pipeline live here (one line per parameter); they may differ from the library defaults in the
function signatures, which serve direct callers of :mod:`bids_app.algorithms`.

This module imports no algorithm code: functions are named ``"module:attribute"`` and imported only
when a method runs.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Range:
    """An interval of allowed numbers; ``low_open``/``high_open`` exclude the bound itself."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value) -> bool:
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            return False
        return True

    def describe(self) -> str:
        low = None if self.low is None else f"{'>' if self.low_open else '>='} {self.low:g}"
        high = None if self.high is None else f"{'<' if self.high_open else '<='} {self.high:g}"
        return " and ".join(x for x in (low, high) if x)


POSITIVE = Range(0, None, low_open=True)
FRACTION = Range(0, 1, low_open=True, high_open=True)
AT_LEAST_1 = Range(1)
NON_NEGATIVE = Range(0)


@dataclass(frozen=True)
class Param:
    """One parameter of a method: Settings field ``setting`` → keyword ``argument`` of the function."""

    setting: str
    argument: str
    default: object
    help: str
    range: Range | None = None
    length: tuple | None = None  # (min, max) items of a list parameter
    metavar: str | tuple | None = None
    to_argument: Callable | None = None  # setting value → function argument (default: unchanged)
    describe: Callable | None = None  # setting value → what sidecars and the dry run record (default: unchanged)

    @property
    def annotation(self) -> type:
        return type(self.default)

    @property
    def option(self) -> str:
        return "--" + self.setting.replace("_", "-")


@dataclass(frozen=True)
class Method:
    """One method of one step."""

    step: str  # a key of STEPS
    name: str  # the value of the step's setting (``--qsm-algorithm rts``)
    function: str  # "package.module:function"
    title: str  # human-readable name (dry run, sidecars)
    citations: tuple  # keys of bids_app.citations.CITATIONS; the first is the EstimationReference
    params: tuple = ()
    replaces: tuple = ()  # other steps this method performs itself (they do not run separately)
    fixed: dict | None = None  # keyword arguments always passed (not settings)

    def resolve(self) -> Callable:
        module, _, attribute = self.function.partition(":")
        return getattr(importlib.import_module(module), attribute)

    def arguments(self, settings) -> dict:
        """Keyword arguments of the function from ``settings`` (plus the fixed ones)."""
        kwargs = dict(self.fixed or {})
        for p in self.params:
            value = getattr(settings, p.setting)
            kwargs[p.argument] = p.to_argument(value) if p.to_argument else value
        return kwargs

    def parameters(self, settings) -> dict:
        """``{setting: value}`` of this method's parameters: what a sidecar records."""
        return {p.setting: p.describe(getattr(settings, p.setting)) if p.describe else getattr(settings, p.setting)
                for p in self.params}

    def __call__(self, *args, settings, **kwargs):
        return self.resolve()(*args, **self.arguments(settings), **kwargs)


# The settings that choose the method of each step.
STEPS = {
    "unwrapping": "unwrapping_algorithm",
    "background": "bf_algorithm",
    "inversion": "qsm_algorithm",
    "r2s": "r2s_method",
}

def _zero_is_auto(value):
    """A setting of 0 means "let the function choose" (its ``None``)."""
    return None if value == 0 else value


def _describe_rts_mu(value):
    """Sidecar text of ``rts_mu``: 0 is the automatic, noise-dependent weight."""
    return "auto: min(1e5, 1.5e-3 ppm² / σ²), σ the local field's noise (Immerkær)" if value == 0 else value


_BG = "bids_app.algorithms.background:"
_INV = "bids_app.algorithms.inversion:"
_R2S = "bids_app.algorithms.relaxometry:r2star"

METHODS: tuple[Method, ...] = (
    # --- phase unwrapping (of each echo, or of all echoes for the B0 map) ---------------------------
    Method("unwrapping", "romeo", "bids_app.algorithms.echoes:b0_map", "ROMEO region growing", ("romeo",)),
    Method("unwrapping", "laplacian", "bids_app.algorithms.unwrap:laplacian",
           "Laplacian unwrapping (least squares, DCT Poisson solver)", ("laplacian", "ghiglia_romero")),
    # --- background field removal -------------------------------------------------------------------
    Method("background", "pdf", _BG + "pdf", "projection onto dipole fields", ("pdf",), params=(
        Param("pdf_tol", "tol", 1e-3, "PDF conjugate-gradient tolerance (1e-5 gives the same accuracy at "
              "~100x the time)", FRACTION, metavar="TOL"),)),
    Method("background", "vsharp", _BG + "vsharp", "V-SHARP", ("vsharp", "sharp"), params=(
        Param("vsharp_threshold", "threshold", 0.05, "V-SHARP TSVD threshold", FRACTION, metavar="T"),)),
    Method("background", "lbv", _BG + "lbv", "Laplacian boundary value", ("lbv",)),
    Method("background", "pdf_lbv", _BG + "pdf_lbv", "mean of PDF and LBV", ("pdf", "lbv"), params=(
        Param("pdf_tol", "pdf_tol", 1e-3, "PDF conjugate-gradient tolerance (1e-5 gives the same accuracy at "
              "~100x the time)", FRACTION, metavar="TOL"),)),
    Method("background", "resharp", _BG + "resharp", "RESHARP", ("resharp",)),
    Method("background", "sharp", _BG + "sharp", "SHARP", ("sharp",)),
    Method("background", "ismv", _BG + "ismv", "iterative spherical mean value", ("ismv",)),
    Method("background", "smv", _BG + "smv", "SMV high-pass (no deconvolution)", ("sharp",), params=(
        Param("smv_radius", "radius", 5.0, "SMV sphere radius in mm", POSITIVE, metavar="MM"),)),
    # --- dipole inversion ---------------------------------------------------------------------------
    Method("inversion", "rts", _INV + "rts", "rapid two-step (RTS)", ("rts",), params=(
        Param("rts_delta", "delta", 0.15, "RTS ill-conditioned cone threshold", FRACTION, metavar="D"),
        Param("rts_mu", "mu", 0.0, "RTS step-2 data-consistency weight (1/ppm²) against TV; 0 = from the "
              "local field's noise, min(1e5, 1.5e-3 / σ²)", NON_NEGATIVE, metavar="MU", to_argument=_zero_is_auto,
              describe=_describe_rts_mu),
        Param("rts_rho", "rho", 10.0, "RTS ADMM penalty", POSITIVE, metavar="RHO"),
        Param("rts_tol", "tol", 1e-4, "RTS tolerance", FRACTION, metavar="TOL"),
        Param("rts_max_iter", "max_iter", 20, "RTS iterations", AT_LEAST_1, metavar="N"),
        Param("rts_lsmr_iter", "lsmr_iterations", 8, "RTS step-1 LSMR iterations, its regularisation by early "
              "stopping", AT_LEAST_1, metavar="N"),
    )),
    Method("inversion", "tv", _INV + "tv", "TV-ADMM", ("tv",), params=(
        Param("tv_lambda", "lam", 1e-3, "TV-ADMM regularisation weight", POSITIVE, metavar="L"),
        Param("tv_tol", "tol", 1e-3, "TV-ADMM tolerance", FRACTION, metavar="TOL"),
        Param("tv_max_iter", "max_iter", 250, "TV-ADMM iterations", AT_LEAST_1, metavar="N"),
    )),
    Method("inversion", "tkd", _INV + "tkd", "truncated k-space division", ("tkd",), params=(
        Param("tkd_threshold", "threshold", 0.19, "TKD truncation threshold", Range(0, 1, low_open=True),
              metavar="T"),)),
    Method("inversion", "tikhonov", _INV + "tikhonov", "closed-form L2 (Tikhonov, gradient penalty)",
           ("tikhonov",), params=(
               Param("tikhonov_lambda", "lam", 0.09, "Tikhonov regularisation weight", POSITIVE, metavar="L"),)),
    Method("inversion", "tgv", _INV + "tgv", "TGV-QSM (from wrapped phase)", ("tgv",), params=(
        Param("tgv_alphas", "alpha", [0.0015, 0.0005], "TGV weights alpha0 alpha1: alpha0 on the symmetrised "
              "gradient of w, alpha1 on |grad chi - w|", POSITIVE, length=(2, 2), metavar=("ALPHA0", "ALPHA1"),
              to_argument=tuple),
        Param("tgv_iterations", "iterations", 1000, "TGV iterations", AT_LEAST_1, metavar="N"),
        Param("tgv_erosions", "erosions", 3, "TGV mask erosions", NON_NEGATIVE, metavar="N"),
    ), replaces=("background",)),  # and unwrapping, when it runs on each echo's wrapped phase
    Method("inversion", "nextqsm", "bids_app.interfaces.nextqsm:nextqsm", "NeXtQSM (U-Net background removal + "
           "variational inversion)", ("nextqsm",), replaces=("background",)),
    # --- T2*/R2* ------------------------------------------------------------------------------------
    Method("r2s", "arlo", _R2S, "ARLO", ("arlo",), fixed={"method": "arlo"}),
    Method("r2s", "numart2s", _R2S, "NumART2*", ("numart2s",), fixed={"method": "numart2s"}),
    Method("r2s", "loglinear", _R2S, "weighted log-linear least squares (weights S^2)", ("weighted_loglinear",),
           fixed={"method": "loglinear"}),
    Method("r2s", "nonlinear", _R2S, "mono-exponential least squares (Levenberg-Marquardt)",
           ("levenberg_marquardt",), fixed={"method": "nonlinear"}),
)


def names(step: str) -> tuple:
    """The method names of ``step``, in registry order."""
    return tuple(m.name for m in METHODS if m.step == step)


def get(step: str, name: str) -> Method:
    for m in METHODS:
        if m.step == step and m.name == name:
            return m
    raise ValueError(f"{name!r} is not a {step} method; choose from {', '.join(names(step))}")


def methods(step: str | None = None) -> tuple:
    return tuple(m for m in METHODS if step is None or m.step == step)


def parameters() -> tuple:
    """Every distinct parameter (one per setting; a setting shared by two methods appears once)."""
    seen = {}
    for m in METHODS:
        for p in m.params:
            seen.setdefault(p.setting, p)
    return tuple(seen.values())


def owners(setting: str) -> tuple:
    """The methods that take ``setting``."""
    return tuple(m for m in METHODS if any(p.setting == setting for p in m.params))


def format_default(value) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(format_default(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
