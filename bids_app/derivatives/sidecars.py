"""Sidecar fields common to every map of an acquisition unit (the derivatives layer)."""

from __future__ import annotations


def base_sidecar(info, writer, *, parts=("magnitude", "phase")) -> dict:
    """Sidecar fields common to every map of unit ``info``; ``Sources`` lists the input files of ``parts``."""
    sources = [getattr(e, part) for e in info.unit.echoes for part in parts if getattr(e, part) is not None]
    sidecar = {
        "Sources": [writer.source_uri(p) for p in dict.fromkeys(sources)],
        "SkullStripped": False,
        "EchoTime": list(info.echo_times),
        "B0Direction": list(info.b0_dir),
        "Obliquity": round(info.obliquity, 3),
        "GeneratedBy": [writer.generated_by()],
    }
    if info.field_strength is not None:
        sidecar["MagneticFieldStrength"] = info.field_strength
    return sidecar
