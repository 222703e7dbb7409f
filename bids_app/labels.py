"""Look-up tables of segmentation labels: index → name.

Read from a BIDS/TemplateFlow ``*_dseg.tsv`` (columns ``index`` and ``name``, or ``label``), from a
FreeSurfer-style colour table (``index name R G B A`` text lines, or FastSurfer's ``*_ColorLUT.tsv``), or
taken from the built-in FreeSurfer names of the labels FastSurfer writes to ``aparc.DKTatlas+aseg``.
"""

from __future__ import annotations

import csv
from pathlib import Path

__all__ = ["FREESURFER_NAMES", "read_lookup", "resolve_labels", "lookup_rows"]

# FreeSurferColorLUT names of the subcortical (aseg) labels and the DKT-31 cortical parcels.
_ASEG = {
    0: "Unknown", 2: "Left-Cerebral-White-Matter", 3: "Left-Cerebral-Cortex", 4: "Left-Lateral-Ventricle",
    5: "Left-Inf-Lat-Vent", 7: "Left-Cerebellum-White-Matter", 8: "Left-Cerebellum-Cortex",
    10: "Left-Thalamus", 11: "Left-Caudate", 12: "Left-Putamen", 13: "Left-Pallidum", 14: "3rd-Ventricle",
    15: "4th-Ventricle", 16: "Brain-Stem", 17: "Left-Hippocampus", 18: "Left-Amygdala", 24: "CSF",
    26: "Left-Accumbens-area", 28: "Left-VentralDC", 30: "Left-vessel", 31: "Left-choroid-plexus",
    41: "Right-Cerebral-White-Matter", 42: "Right-Cerebral-Cortex", 43: "Right-Lateral-Ventricle",
    44: "Right-Inf-Lat-Vent", 46: "Right-Cerebellum-White-Matter", 47: "Right-Cerebellum-Cortex",
    49: "Right-Thalamus", 50: "Right-Caudate", 51: "Right-Putamen", 52: "Right-Pallidum",
    53: "Right-Hippocampus", 54: "Right-Amygdala", 58: "Right-Accumbens-area", 60: "Right-VentralDC",
    62: "Right-vessel", 63: "Right-choroid-plexus", 77: "WM-hypointensities", 85: "Optic-Chiasm",
}
_DKT31 = {
    2: "caudalanteriorcingulate", 3: "caudalmiddlefrontal", 5: "cuneus", 6: "entorhinal", 7: "fusiform",
    8: "inferiorparietal", 9: "inferiortemporal", 10: "isthmuscingulate", 11: "lateraloccipital",
    12: "lateralorbitofrontal", 13: "lingual", 14: "medialorbitofrontal", 15: "middletemporal",
    16: "parahippocampal", 17: "paracentral", 18: "parsopercularis", 19: "parsorbitalis",
    20: "parstriangularis", 21: "pericalcarine", 22: "postcentral", 23: "posteriorcingulate",
    24: "precentral", 25: "precuneus", 26: "rostralanteriorcingulate", 27: "rostralmiddlefrontal",
    28: "superiorfrontal", 29: "superiorparietal", 30: "superiortemporal", 31: "supramarginal",
    34: "transversetemporal", 35: "insula",
}
FREESURFER_NAMES = {
    **_ASEG,
    **{1000 + k: f"ctx-lh-{v}" for k, v in _DKT31.items()},
    **{2000 + k: f"ctx-rh-{v}" for k, v in _DKT31.items()},
}


def read_lookup(path) -> dict:
    """Read a look-up table file into ``{index: name}``.

    Accepts tab-separated tables with a header naming an index column (``index``, ``ID``, ``No.``) and
    a name column (``name``, ``label``, ``LabelName``), and FreeSurfer colour tables (whitespace
    separated ``index name R G B A`` lines, ``#`` comments).
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise ValueError(f"{path}: empty look-up table")
    first = lines[0].split("\t") if "\t" in lines[0] else lines[0].split()
    if not first[0].strip().lstrip("-").isdigit():  # a header row
        rows = list(csv.DictReader(lines, delimiter="\t" if "\t" in lines[0] else " ", skipinitialspace=True))
        index_key = _column(rows, ("index", "id", "no.", "label_index", "labelindex"), path)
        name_key = _column(rows, ("name", "label", "labelname", "label_name", "structure"), path)
        return {int(float(r[index_key])): str(r[name_key]).strip() for r in rows if r.get(index_key, "").strip()}
    table = {}
    for line in lines:
        fields = line.split()
        if len(fields) >= 2 and fields[0].lstrip("-").isdigit():
            table[int(fields[0])] = fields[1]
    return table


def _column(rows, candidates, path) -> str:
    keys = {k.strip().lower(): k for k in (rows[0].keys() if rows else [])}
    for candidate in candidates:
        if candidate in keys:
            return keys[candidate]
    raise ValueError(f"{path}: no column among {candidates} in the header {list(keys)}")


def resolve_labels(references, lookup: dict) -> list:
    """Label indices of ``--qsm-reference`` items: indices, or names matched without regard to case.

    A name matches every label whose name equals it, or (for names like ``CSF`` or ``Ventricle``)
    every label whose name contains it as a ``-``/``_``-separated word.

    Raises
    ------
    ValueError
        An item matches no label (the message lists the available names).
    """
    indices = []
    for item in references:
        text = str(item).strip()
        if text.lstrip("-").isdigit():
            indices.append(int(text))
            continue
        wanted = text.lower()
        exact = [i for i, n in lookup.items() if n.lower() == wanted]
        words = [i for i, n in lookup.items() if wanted in n.lower().replace("_", "-").split("-")]
        matched = exact or words
        if not matched:
            names = ", ".join(sorted({n for i, n in lookup.items() if i != 0}))
            raise ValueError(f"reference label {text!r} is not in the segmentation's labels ({names})")
        indices.extend(matched)
    return sorted(set(indices))


def lookup_rows(lookup: dict, present=None) -> list:
    """Rows for a ``dseg.tsv`` (``index``, ``name``), for the labels in ``present`` when given."""
    keep = None if present is None else {int(i) for i in present}
    return [{"index": i, "name": n} for i, n in sorted(lookup.items()) if keep is None or i in keep]
