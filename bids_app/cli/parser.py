"""Argument parser of ``qsmapp`` (BIDS Apps contract, Gorgolewski et al. 2017, doi:10.1371/journal.pcbi.1005209).

Options that are processing settings default to ``argparse.SUPPRESS`` so that only the options a
user actually typed override the premade and the ``--config-file``. Every hyphenated option also
accepts its QSMxT-style underscore spelling (``--two-pass`` and ``--two_pass``).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

from .. import __version__
from ..config import methods as M
from ..config import settings as S
from ..config.premades import PREMADE_DESCRIPTIONS, PREMADES
from ..errors import UsageError

SUPPRESS = argparse.SUPPRESS


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors exit 64 through :class:`UsageError` (not argparse's 2)."""

    def error(self, message):  # noqa: D401 - argparse API
        raise UsageError(f"{message}", hint="see `qsmapp --help`")


class _Removed(argparse.Action):
    """An option of earlier versions: a usage error that says why it went (never silently ignored)."""

    def __call__(self, parser, namespace, values, option_string=None):
        name = self.dest
        raise UsageError(f"{option_string} was removed: {S.REMOVED_SETTINGS[name]}", hint=f"drop {option_string}")


def parse_bool(text) -> bool:
    """on/off/true/false (any case); anything else is a usage error, never silently true."""
    value = str(text).strip().lower()
    if value in ("on", "true"):
        return True
    if value in ("off", "false"):
        return False
    raise argparse.ArgumentTypeError(f"expected on/off (or true/false), got {text!r}")


def _optional_float(text):
    return None if str(text).lower() in ("none", "off") else float(text)


def _bf_algorithm(text):
    return None if str(text).lower() in ("none", "off") else str(text)


def _add(group, name, **kwargs):
    """Add ``--name`` plus its underscore alias."""
    flags = [f"--{name}"]
    if "-" in name:
        flags.append(f"--{name.replace('-', '_')}")
    group.add_argument(*flags, **kwargs)


_RETYPED_DEFAULT = re.compile(r" \(default:? [^)]*\)")


def _setting(group, name, **kwargs):
    """A processing setting; its help ends with the default read from :class:`Settings` (never retyped)."""
    kwargs.setdefault("default", SUPPRESS)
    kwargs.setdefault("dest", name.replace("-", "_"))
    if kwargs["dest"] in _SETTING_NAMES and getattr(S.Settings(), kwargs["dest"]) is not None:
        kwargs["help"] = _RETYPED_DEFAULT.sub("", kwargs.get("help", "")) + _default(kwargs["dest"])
    _add(group, name, **kwargs)


def _flag(group, name, help):
    """A boolean setting written ``--name``, ``--name on`` or ``--name off``."""
    _setting(group, name, type=parse_bool, nargs="?", const=True, metavar="on|off", help=help)


def _default(setting: str) -> str:
    """`` (default X)`` of a setting, read from the Settings defaults (never retyped here)."""
    value = getattr(S.Settings(), setting)
    if isinstance(value, bool):
        text = "on" if value else "off"
    else:
        text = "none" if value is None else M.format_default(value)
    return f" (default {text})"


_SETTING_NAMES = {f.name for f in dataclasses.fields(S.Settings)}


def _choices(step: str, *extra) -> str:
    return "{" + ",".join(M.names(step) + extra) + "}"


def _registry_option(group, param: M.Param) -> None:
    """The option of one registry parameter: type, count and help (with its default) from the entry."""
    kind = float if isinstance(param.default, list) and any(isinstance(v, float) for v in param.default) \
        else (type(param.default[0]) if isinstance(param.default, list) else type(param.default))
    kwargs = dict(type=kind, metavar=param.metavar or "V")
    if isinstance(param.default, list):
        low, high = param.length or (1, None)
        kwargs["nargs"] = low if low == high else "+"
    methods = ", ".join(m.name for m in M.owners(param.setting))
    _setting(group, param.setting.replace("_", "-"), help=f"[{methods}] {param.help}", **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="qsmapp",
        description=(
            "qsmapp: quantitative susceptibility mapping (QSM), SWI, T2*/R2* maps and segmentation "
            "of GRE MRI in a BIDS dataset, as a BIDS App."
        ),
        epilog=(
            "Exit codes: 0 ok; 1 unspecified error; 16 dataset failed validation; 17 unknown analysis "
            "level; 18 selection matched nothing; 64 bad usage; 65 bad data; 66 no usable input; "
            "73 cannot create output."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("bids_dir", type=Path, help="root folder of the input BIDS dataset (read-only)")
    parser.add_argument(
        "output_dir",
        type=Path,
        help="output derivatives folder (conventionally BIDS_DIR/derivatives/qsmapp); must differ from BIDS_DIR",
    )
    parser.add_argument(
        "analysis_level",
        help="'participant' processes each acquisition; 'group' builds the template and group tables",
    )
    parser.add_argument("--version", action="version", version=f"qsmapp {__version__}")

    sel = parser.add_argument_group("selection of the data to process")
    _add(sel, "participant-label", nargs="+", metavar="LABEL", help="subject labels (with or without 'sub-')")
    _add(sel, "session-label", nargs="+", metavar="LABEL", help="session labels (with or without 'ses-')")
    _add(sel, "acquisition-label", nargs="+", metavar="LABEL", help="acq entity values to process")
    _add(sel, "run-label", nargs="+", metavar="LABEL", help="run entity values to process")
    _add(
        sel,
        "bids-filter-file",
        type=Path,
        metavar="FILE",
        help="JSON file of pybids queries, e.g. {\"gre\": {\"acquisition\": \"qsm\"}, \"t1w\": {\"run\": 1}}",
    )

    out = parser.add_argument_group("outputs and pipeline")
    _setting(out, "outputs", nargs="+", metavar="OUTPUT", help=f"outputs to produce: {', '.join(S.OUTPUT_CHOICES)}")
    _setting(
        out,
        "premade",
        metavar="NAME",
        help="premade pipeline to start from, then overridden option by option: "
        + "; ".join(f"{k}: {v}" for k, v in PREMADE_DESCRIPTIONS.items()),
    )

    mask = parser.add_argument_group("QSM masking")
    _flag(mask, "use-existing-masks", "use brain masks from a derivatives folder of BIDS_DIR when present")
    _setting(mask, "existing-masks-pipeline", metavar="PATTERN", help="derivatives folder name (glob) to take masks from")
    _setting(mask, "masking-algorithm", metavar="{threshold,bet}", help="threshold-based (needed for two-pass) or BET")
    _setting(mask, "masking-input", metavar="{phase,magnitude}", help="threshold the ROMEO phase-quality map or the magnitude")
    _flag(mask, "two-pass", "two-pass artefact reduction (Stewart et al. 2022)")
    _setting(mask, "threshold-algorithm", metavar="{otsu,gaussian}", help="automatic threshold method")
    _setting(mask, "threshold-value", nargs="+", type=float, metavar="V", help="fixed threshold: integer = absolute, 0-1 = histogram fraction; two values = per pass")
    _setting(mask, "threshold-algorithm-factor", nargs="+", type=float, metavar="F", help="factor(s) applied to the automatic threshold (one per pass)")
    _setting(mask, "filling-algorithm", metavar="{gaussian,morphological,both,bet,none}", help="hole filling of the threshold mask")
    _setting(mask, "mask-erosions", nargs="+", type=int, metavar="N", help="erosions per pass")
    _flag(mask, "add-bet", "OR an eroded BET mask into the filled mask")
    _setting(mask, "bet-fractional-intensity", type=float, metavar="F", help="BET fractional intensity")
    _flag(mask, "inhomogeneity-correction", "correct magnitude inhomogeneity before masking")

    phase = parser.add_argument_group("QSM phase processing")
    _add(phase, "obliquity-threshold", action=_Removed, nargs="?", metavar="DEG", default=SUPPRESS,
         help="removed: " + S.REMOVED_SETTINGS["obliquity_threshold"])
    _flag(phase, "combine-phase", "combine echoes into a B0 map (on) or average per-echo susceptibility maps (off)")
    _setting(phase, "unwrapping-algorithm", metavar=_choices("unwrapping"), help="phase unwrapping")
    _setting(phase, "bipolar-correction", metavar="{auto,on,off}",
             help="remove the odd/even echo phase of bipolar readouts (>= 3 equally spaced echoes); auto = when the "
                  "data show it")
    _setting(phase, "bf-algorithm", type=_bf_algorithm, metavar=_choices("background", "none"),
             help="background field removal")
    _setting(phase, "local-field-detrend", metavar="{auto,on,off}",
             help="subtract a low-order polynomial from the local field, for what background removal cannot take "
                  "out (the phase offset of single-echo data); auto = on for single-echo fields")
    _setting(phase, "local-field-detrend-order", type=int, metavar="N", help="degree of that polynomial")
    _setting(phase, "qsm-algorithm", metavar=_choices("inversion"), help="dipole inversion")
    _setting(phase, "qsm-reference", nargs="+", metavar="REF", help="'mean', 'none', or segmentation label names/indices (e.g. CSF)")
    _setting(phase, "b0-strength", type=_optional_float, metavar="TESLA", help="field strength when MagneticFieldStrength is missing from the sidecars")

    algo = parser.add_argument_group("algorithm parameters ([the methods that take them]; defaults from the "
                                     "method registry, bids_app/config/methods.py)")
    for param in M.parameters():
        _registry_option(algo, param)

    swi = parser.add_argument_group("SWI and T2*/R2*")
    _setting(swi, "swi-phase-scaling", metavar="{tanh,negative,positive}", help="SWI phase mask")
    _setting(swi, "swi-strength", type=float, metavar="S", help="SWI phase mask strength")
    _setting(swi, "swi-filter-sigma", nargs=3, type=float, metavar="SIGMA", help="SWI phase high-pass Gaussian sigma in voxels")
    _setting(swi, "swi-mip-slab", type=int, metavar="N", help="minIP slab thickness in slices")
    _setting(swi, "r2s-method", metavar=_choices("r2s"), help="R2*/T2* estimation")

    seg = parser.add_argument_group("segmentation and ROI analysis (--outputs seg analysis)")
    _setting(seg, "seg-backend", metavar="{auto,fastsurfer,atlas,tissue}",
             help="labels of the T1w: FastSurfer, a registered labelled template, or Atropos tissue classes; "
                  "auto = the first available in that order")
    _setting(seg, "seg-registration", metavar="{rigid,affine,syn}",
             help="T1w -> GRE registration: rigid, rigid+affine, or rigid+affine+SyN")
    _setting(seg, "seg-template", metavar="DIR|NAME",
             help="atlas backend: a labelled template folder (TemplateFlow layout: *_T1w.nii.gz, *_dseg.nii.gz, "
                  "*_dseg.tsv), or a template name in TEMPLATEFLOW_HOME (default MNI152NLin2009cAsym)")
    _setting(seg, "seg-atlas", metavar="NAME",
             help="which dseg of the template (its atlas- or desc- value, e.g. HOSPA); default: the first usable")

    grp = parser.add_argument_group("group level")
    _add(grp, "template-iterations", type=int, default=3, metavar="N",
         help="rounds of register-to-average (affine + SyN) when building the study template")
    _add(grp, "group-mni", action="store_true",
         help="also register the study template to MNI152NLin2009cAsym found in TEMPLATEFLOW_HOME (never downloaded)")

    ex = parser.add_argument_group("execution")
    _add(ex, "work-dir", type=Path, metavar="DIR", help="keep intermediate files here (default: a temporary folder, removed)")
    _add(ex, "n-procs", type=int, default=1, metavar="N", help="acquisition units processed in parallel")
    ex.add_argument("--nprocs", "--n-cpus", "--n_cpus", dest="n_procs", type=int, help=SUPPRESS)
    _add(ex, "omp-nthreads", type=int, metavar="N", help="threads per unit (default: CPUs / n-procs)")
    _add(ex, "mem", type=float, dest="mem_gb", metavar="GB", help="memory available; limits how many units run at once")
    _add(ex, "device", default="auto", choices=("auto", "cpu", "cuda"),
         help="device for FastSurfer and NeXtQSM (auto: a GPU when one is visible)")
    _add(ex, "nextqsm-weights", type=Path, metavar="DIR",
         help="folder of the NeXtQSM weights (default: $QSMAPP_NEXTQSM_WEIGHTS, then the container's)")
    _add(ex, "config-file", type=Path, metavar="FILE", help="settings JSON saved by an earlier run (OUTPUT_DIR/logs/...settings.json)")
    _add(ex, "skip-bids-validation", action="store_true", help="do not validate BIDS_DIR with bids-validator-deno")
    _add(ex, "stop-on-first-crash", action="store_true", help="stop at the first failing unit")
    ex.add_argument("--resume", dest="resume", action=argparse.BooleanOptionalAction, default=True,
                    help="skip units whose outputs are complete for the same settings")
    _add(ex, "dry-run", action="store_true", help="print the units found, their inputs and the steps that would run; process nothing")
    ex.add_argument("-v", "--verbose", action="count", default=0, help="more output (-vv: debug; tracebacks)")
    return parser


def premade_names():
    return tuple(PREMADES)
