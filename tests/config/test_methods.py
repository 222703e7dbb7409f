"""The method registry: every entry reaches the CLI, the settings, the sidecar, the dry run and the citations."""

from __future__ import annotations

import inspect
import re
import sys

import pytest

from bids_app.citations import CITATIONS
from bids_app.cli.parser import build_parser
from bids_app.config import Settings, methods, premade_settings
from bids_app.config.settings import RANGES, coerce_value
from bids_app.errors import UsageError
from bids_app.pipeline.plan import citation_keys, qsm_steps, resolve_qsm

ENTRIES = [pytest.param(m, id=f"{m.step}-{m.name}") for m in methods.METHODS]


def _help_of(option: str) -> str:
    parser = build_parser()
    for action in parser._actions:
        if option in action.option_strings:
            return " ".join(action.help.split())
    raise AssertionError(f"no command-line option {option}")


def _settings_for(method) -> Settings:
    """Settings that run ``method`` in its step (with what that needs)."""
    changes = {methods.STEPS[method.step]: method.name, "outputs": ["qsm", "r2s"]}
    if method.step == "background":
        changes["qsm_algorithm"] = "rts"
    return Settings(**changes).validate()


@pytest.mark.parametrize("method", ENTRIES)
def test_entry_function_takes_its_parameters(method):
    function = method.resolve()
    signature = inspect.signature(function)
    for param in method.params:
        assert param.argument in signature.parameters, (method.name, param.argument)
    for keyword in (method.fixed or {}):
        assert keyword in signature.parameters
    assert method.citations and all(key in CITATIONS for key in method.citations)


@pytest.mark.parametrize("method", ENTRIES)
def test_entry_reaches_cli_with_its_default(method):
    choices = _help_of("--" + methods.STEPS[method.step].replace("_", "-"))
    usage = build_parser().format_usage()
    assert re.search(r"\{[^}]*\b" + re.escape(method.name) + r"\b", usage), method.name
    assert choices
    defaults = Settings()
    for param in method.params:
        assert getattr(defaults, param.setting) == param.default
        help_text = _help_of(param.option)
        assert f"(default {methods.format_default(param.default)})" in help_text, help_text
        assert method.name in help_text
        # the value the option parses to is what the function receives
        args = build_parser().parse_args(["in", "out", "participant", param.option,
                                          *methods.format_default(param.default).split()])
        assert getattr(args, param.setting) == param.default


@pytest.mark.parametrize("method", [m for m in ENTRIES if m.values[0].step in ("background", "inversion")])
def test_entry_sidecar_records_only_its_parameters_and_reference(method):
    settings = _settings_for(method)
    plan = resolve_qsm(settings, 4)
    sidecar = plan.sidecar(settings)
    ran = [m for m in plan.ran()]
    assert method in ran
    expected = {}
    for m in ran:
        expected.update(m.parameters(settings))
    recorded = {k: v for k, v in sidecar["Parameters"].items()
                if k not in ("local_field_detrend", "local_field_detrend_order", "bipolar_correction")}
    assert recorded == expected
    # no parameter of a method that did not run
    others = {p.setting for m in methods.METHODS if m not in ran for p in m.params} - set(expected)
    assert not others & set(sidecar["Parameters"])
    if method.step == "inversion":
        assert sidecar["EstimationAlgorithm"] == method.name
        assert sidecar["EstimationReference"] == CITATIONS[method.citations[0]]
    else:
        assert sidecar["BackgroundFieldRemoval"] == method.name


@pytest.mark.parametrize("method", [m for m in ENTRIES if m.values[0].step in ("background", "inversion",
                                                                               "unwrapping")])
def test_entry_dry_run_names_it_and_citations_cite_it(method):
    settings = _settings_for(method)
    steps = "\n".join(qsm_steps(settings, 4))
    assert method.name in steps and method.title in steps, steps
    keys = citation_keys(settings)
    assert set(method.citations) <= set(keys)


@pytest.mark.parametrize("method", ENTRIES)
def test_reference_doi_is_in_the_function_docstring(method):
    """The docstring of each method cites the paper the sidecar and citations file cite (no stale DOIs)."""
    function = method.resolve()
    doi = CITATIONS[method.citations[0]].rsplit("doi:", 1)[-1]
    text = (function.__doc__ or "") + (sys.modules[function.__module__].__doc__ or "")
    assert doi in text, (method.name, doi)


def test_registry_ranges_feed_validation_before_any_unit():
    for param in methods.parameters():
        if param.range is not None:
            assert RANGES[param.setting] is param.range
    with pytest.raises(UsageError, match="tkd-threshold"):
        coerce_value("tkd_threshold", 0)
    with pytest.raises(UsageError, match="tgv-alphas"):
        coerce_value("tgv_alphas", [0.001])


def test_shared_setting_has_one_default():
    for param in methods.parameters():
        owners = methods.owners(param.setting)
        values = {repr(p.default) for m in owners for p in m.params if p.setting == param.setting}
        assert len(values) == 1, param.setting


# --- the contradictions of the review, each pinned -------------------------------------------------

def test_tgv_alphas_help_order_matches_the_function():
    """The function takes ``alpha = (α₀, α₁)``; the option must document the same order."""
    from bids_app.algorithms.inversion import tgv

    assert "(α₀, α₁)" in tgv.__doc__
    help_text = _help_of("--tgv-alphas")
    assert help_text.index("alpha0") < help_text.index("alpha1")
    assert "alpha1 alpha0" not in help_text


def test_nextqsm_cites_the_unwrapping_and_offset_removal_it_uses():
    settings = premade_settings("nextqsm").validate()
    keys = citation_keys(settings)
    assert {"nextqsm", "romeo", "mcpc3ds"} <= set(keys)
    assert "pdf" not in keys  # background removal is the network's
    assert resolve_qsm(settings, 4).unwrapping == "romeo"


def test_swi_and_r2s_cite_the_methods_they_run():
    keys = citation_keys(Settings(outputs=["swi"]).validate())
    assert "ghiglia_romero" in keys and "laplacian" not in keys
    for name, key in (("loglinear", "weighted_loglinear"), ("nonlinear", "levenberg_marquardt"),
                      ("arlo", "arlo"), ("numart2s", "numart2s")):
        keys = citation_keys(Settings(outputs=["r2s"], r2s_method=name).validate())
        assert key in keys and (name == "arlo" or "arlo" not in keys)


def test_tikhonov_docstring_cites_the_l2_paper():
    from bids_app.algorithms import inversion

    assert "10.1002/jmri.24365" in inversion.tikhonov.__doc__
    assert "10.1002/mrm.25029" not in inversion.tikhonov.__doc__


def test_per_echo_tgv_records_no_unwrapping():
    settings = premade_settings("body").validate()
    plan = resolve_qsm(settings, 4)
    assert plan.unwrapping is None and plan.field == "wrapped"
    assert "romeo" not in plan.sidecar(settings)["UnwrappingAlgorithm"]
    assert "romeo" not in plan.citation_keys()
    # combined echoes: the B0 map is unwrapped with ROMEO, and that is recorded
    combined = Settings(qsm_algorithm="tgv", bf_algorithm=None).validate()
    assert resolve_qsm(combined, 4).sidecar(combined)["UnwrappingAlgorithm"] == "romeo"


def test_tgv_with_a_background_setting_does_not_record_it():
    settings = Settings(qsm_algorithm="tgv").validate()  # bf_algorithm stays pdf: not run
    sidecar = resolve_qsm(settings, 4).sidecar(settings)
    assert sidecar["BackgroundFieldRemoval"] != "pdf" and "pdf_tol" not in sidecar["Parameters"]


def test_existing_mask_turns_two_pass_off():
    settings = Settings(use_existing_masks=True).validate()
    assert resolve_qsm(settings, 4, existing_mask=True).two_pass is False
    assert resolve_qsm(settings, 4, existing_mask=False).two_pass is True
    assert "qsmxt" not in resolve_qsm(settings, 4, existing_mask=True).citation_keys()
    assert any("existing mask" in s for s in qsm_steps(settings, 4, existing_mask=True))


def test_every_setting_option_shows_the_settings_default():
    """Help defaults are read from Settings, never retyped (a default changed in one place shows everywhere)."""
    defaults = Settings()
    parser = build_parser()
    checked = 0
    for action in parser._actions:
        value = getattr(defaults, action.dest, None) if action.dest in Settings.__dataclass_fields__ else None
        if value is None:
            continue
        text = ("on" if value else "off") if isinstance(value, bool) else methods.format_default(value)
        help_text = " ".join(action.help.split())
        assert help_text.endswith(f"(default {text})"), (action.dest, help_text)
        assert help_text.count("(default") == 1, help_text
        checked += 1
    assert checked > 30
