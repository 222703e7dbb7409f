"""Premade pipelines (after QSMxT's, Stewart et al. 2022, doi:10.1002/mrm.29048): named sets of settings
that differ from ``default``."""

from __future__ import annotations

from ..errors import UsageError
from .settings import Settings

_BET_MASKING = dict(masking_algorithm="bet", two_pass=False, mask_erosions=[3], filling_algorithm="none")

PREMADES: dict[str, dict] = {
    # QSMxT v8 default, following the 2023 ISMRM QSM consensus (doi:10.1002/mrm.30006).
    "default": {},
    "gre": {},
    "epi": dict(
        threshold_value=[0.2],
        filling_algorithm="bet",
        mask_erosions=[3, 0],
        inhomogeneity_correction=True,
    ),
    "bet": dict(_BET_MASKING),
    "fast": dict(_BET_MASKING, bf_algorithm="vsharp"),
    "body": dict(
        threshold_value=[0.25],
        mask_erosions=[3, 0],
        bf_algorithm=None,
        qsm_algorithm="tgv",
        combine_phase=False,
    ),
    "nextqsm": dict(_BET_MASKING, bf_algorithm=None, qsm_algorithm="nextqsm"),
}

PREMADE_DESCRIPTIONS = {
    "default": "QSMxT default (GRE): phase-quality mask, two-pass, ROMEO B0 map, PDF, RTS",
    "gre": "suggested settings for 3D-GRE images (same as default)",
    "epi": "suggested settings for 3D-EPI images (human brain)",
    "bet": "BET masking, single pass (human brain)",
    "fast": "BET masking, V-SHARP and RTS (fast)",
    "body": "non-brain applications: phase-quality mask, TGV, no echo combination",
    "nextqsm": "NeXtQSM deep-learning background removal + inversion (human brain)",
}


def premade_settings(name: str) -> Settings:
    """Settings of premade ``name``."""
    if name not in PREMADES:
        raise UsageError(f"unknown premade {name!r}", hint=f"choose from {', '.join(PREMADES)}")
    return Settings(premade=name, **PREMADES[name])
