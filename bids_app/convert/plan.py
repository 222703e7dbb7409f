"""From converted series to BIDS files: which image goes where, and why.

Decisions, in order:

1. a series matched by one rule takes that rule's datatype, suffix and entities (two matches: skipped);
   unmatched series are recognised automatically unless ``auto`` is off;
2. phase-difference and Hz field-map series are never converted as GRE phase (one line each says why),
   nor are the magnitudes of those field-map acquisitions (same series number or protocol, or a
   Siemens ``gre_field_mapping`` sequence) when no per-echo phase comes with them;
3. GRE images are grouped into acquisitions by protocol name, rule entities and geometry (shape and
   affine): echoes split across series meet there, as do Siemens magnitude and phase series;
4. within an acquisition the echo index follows the sorted echo times; a repeated (part, echo time)
   starts a new run (in series-number order); real + imaginary pairs give magnitude and phase when
   the acquisition has no magnitude/phase of its own;
5. suffix ``MEGRE`` for several echoes, ``T2starw`` (no ``echo-``) for one.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from ..bids.entities import NAME_OF, filename_prefix
from . import series as kinds
from .rules import RuleSet
from .series import Series
from .sources import bids_label

GRE_SUFFIXES = ("MEGRE", "T2starw")
_GRE_PARTS = (kinds.MAGNITUDE, kinds.PHASE, kinds.REAL, kinds.IMAGINARY)


@dataclass
class Target:
    """One BIDS image to write.

    Attributes
    ----------
    path : str
        Path relative to BIDS_DIR, without extension (``sub-01/anat/sub-01_echo-1_part-mag_MEGRE``).
    operation : str
        ``copy`` (the converted image as it is), ``phase`` (phase rescaled to radians when needed),
        ``complex-mag`` / ``complex-phase`` (from ``sources`` = [real, imaginary]).
    sources : list of Series
    sidecar : dict
        The sidecar to write (the source's, with ``Units`` etc. added by the writer).
    reason : str
        Why this file, for ``--dry-run``.
    """

    path: str
    operation: str
    sources: list
    sidecar: dict
    reason: str
    part: str | None = None


@dataclass
class Plan:
    targets: list = field(default_factory=list)
    skipped: list = field(default_factory=list)  # (Series, reason)
    notes: list = field(default_factory=list)

    @property
    def gre_targets(self) -> list:
        return [t for t in self.targets if t.path.endswith(GRE_SUFFIXES)]

    @property
    def fieldmap_lines(self) -> list:
        return [reason for s, reason in self.skipped if s.kind in (kinds.PHASEDIFF, kinds.FIELDMAP_HZ)]


@dataclass
class _Candidate:
    series: Series
    role: str  # "gre", "T1w", "other"
    part: str | None = None
    rule: object = None
    datatype: str = "anat"
    suffix: str | None = None
    entities: dict = field(default_factory=dict)


def _geometry_key(series: Series):
    if series.nifti is None:
        return None
    import nibabel as nib

    image = nib.load(str(series.nifti))
    return tuple(image.shape[:3]), tuple(np.round(image.affine, 2).ravel().tolist())


def _is_fieldmap_sequence(series: Series) -> bool:
    details = str(series.get("PulseSequenceDetails", "")).lower()
    name = str(series.get("SequenceName", "")).lower()
    return details.endswith("gre_field_mapping") or bool(re.match(r"^\*?fm\d", name))


def _prefix(subject: str, session: str | None, entities: dict) -> str:
    named = {"subject": subject, "session": session}
    named.update({NAME_OF.get(k, k): v for k, v in entities.items() if k not in ("sub", "ses")})
    return filename_prefix(named)


def _folder(subject: str, session: str | None, datatype: str) -> str:
    return f"sub-{subject}/" + (f"ses-{session}/" if session else "") + datatype


def build_plan(series_list, *, subject: str, session: str | None = None, rules: RuleSet | None = None,
               auto: bool = True) -> Plan:
    """Decide the BIDS file of every series (see the module docstring for the rules).

    Parameters
    ----------
    series_list : list of Series
        The converted images (dcm2niix's output, or a NIfTI folder).
    subject, session : str
        BIDS labels (letters and digits).
    rules : RuleSet or None
        The rule file.
    auto : bool
        Recognise series no rule matches (default); False converts only what the rules match.

    Returns
    -------
    Plan
    """
    plan = Plan()
    candidates = []
    for series in series_list:
        candidate = _classify(series, rules, auto, plan)
        if candidate is not None:
            candidates.append(candidate)

    fieldmaps = [s for s, _ in plan.skipped if s.kind in (kinds.PHASEDIFF, kinds.FIELDMAP_HZ)]
    gre = [c for c in candidates if c.role == "gre"]
    groups = defaultdict(list)
    for candidate in gre:
        key = (candidate.entities.get("acq"), candidate.entities.get("run"), candidate.series.protocol,
               candidate.suffix, _geometry_key(candidate.series))
        groups[key].append(candidate)

    kept_groups = []
    for key, members in groups.items():
        parts = {m.part for m in members}
        has_phase = bool(parts & {kinds.PHASE, kinds.REAL, kinds.IMAGINARY})
        auto_only = all(m.rule is None for m in members)
        if auto_only and not has_phase:
            related = [f for f in fieldmaps if any(f.series_number == m.series.series_number
                                                   or (f.protocol and f.protocol == m.series.protocol)
                                                   for m in members)]
            if related or any(_is_fieldmap_sequence(m.series) for m in members):
                for m in members:
                    what = f"of field-map series {related[0].series_number}" if related else "of a field-map sequence"
                    plan.skipped.append((m.series, f"{m.series.label}: magnitude {what} without per-echo phase: "
                                                   "not converted (a rule with suffix MEGRE converts it anyway)"))
                continue
        kept_groups.append((key, members))

    numbers = {f.series_number for f in fieldmaps}
    for index, (series, reason) in enumerate(plan.skipped):
        if series.kind == kinds.OTHER and series.series_number in numbers:
            plan.skipped[index] = (series, f"{series.label}: image of field-map series {series.series_number} "
                                           "(no per-echo phase): not converted")

    auto_acq = sum(1 for key, members in kept_groups if key[0] is None) > 1
    used_acq = set()
    for key, members in sorted(kept_groups, key=lambda item: min(m.series.series_number for m in item[1])):
        entities = dict(members[0].entities)
        if auto_acq and "acq" not in entities:
            label = bids_label(members[0].series.protocol) or f"series{members[0].series.series_number}"
            while label in used_acq:
                label += "x"
            entities["acq"] = label
        if "acq" in entities:
            used_acq.add(entities["acq"])
        _plan_gre_group(members, entities, subject, session, plan)

    t1 = [c for c in candidates if c.role == "T1w"]
    _plan_simple(t1, subject, session, plan, suffix="T1w")
    others = [c for c in candidates if c.role == "other"]
    _plan_simple(others, subject, session, plan, suffix=None)
    plan.skipped.sort(key=lambda item: (item[0].series_number, item[0].name))
    return plan


def _classify(series: Series, rules, auto, plan) -> _Candidate | None:
    matched = rules.matches(series.sidecar, series.sidecar_path.name if series.sidecar_path else series.name + ".json") \
        if rules else []
    if len(matched) > 1:
        names = ", ".join(str(r.name) for r in matched)
        plan.skipped.append((series, f"{series.label}: matches several rule descriptions ({names}): skipped "
                                     "(make their criteria exclusive)"))
        return None
    rule = matched[0] if matched else None
    if rule is not None and rule.sidecar_changes:
        series.sidecar = {**series.sidecar, **rule.sidecar_changes}
    reason = series.reason_not_usable()
    if reason is not None:
        plan.skipped.append((series, reason))
        return None
    if rule is None and not auto:
        plan.skipped.append((series, f"{series.label}: matches no rule (automatic recognition is off): skipped"))
        return None
    if series.nifti is None:
        plan.skipped.append((series, f"{series.label}: no image beside the sidecar: skipped"))
        return None
    kind = series.kind
    if rule is not None:
        entities = {k: v for k, v in rule.entities.items() if k not in ("sub", "ses")}
        if rule.suffix in GRE_SUFFIXES:
            part = entities.pop("part", None) or kind
            part = {"magnitude": kinds.MAGNITUDE, "imaginary": kinds.IMAGINARY}.get(part, part)
            if part not in _GRE_PARTS:
                part = kinds.MAGNITUDE
            entities.pop("echo", None)
            return _Candidate(series, "gre", part=part, rule=rule, datatype=rule.datatype, suffix=rule.suffix,
                              entities=entities)
        role = "T1w" if rule.suffix == "T1w" else "other"
        return _Candidate(series, role, rule=rule, datatype=rule.datatype, suffix=rule.suffix, entities=entities)
    if kind in _GRE_PARTS:
        if series.volumes > 1:
            plan.skipped.append((series, f"{series.label}: {series.volumes} volumes in one image (a time series?): "
                                         "skipped (a rule can name it)"))
            return None
        return _Candidate(series, "gre", part=kind)
    if kind == kinds.T1W:
        return _Candidate(series, "T1w")
    plan.skipped.append((series, f"{series.label}: not a GRE magnitude/phase/real/imaginary image nor a T1w: "
                                 "skipped (write a rule to convert it)"))
    return None


def _plan_gre_group(members, entities, subject, session, plan) -> None:
    no_te = [m for m in members if m.series.echo_time is None]
    for m in no_te:
        plan.skipped.append((m.series, f"{m.series.label}: no EchoTime in its sidecar: skipped "
                                       "(add it with a rule's sidecar_changes)"))
    members = [m for m in members if m.series.echo_time is not None]
    if not members:
        return
    echo_times = sorted({round(m.series.echo_time, 6) for m in members})
    # runs: the k-th occurrence of each (part, echo time) in series-number order
    by_part = defaultdict(list)
    for m in sorted(members, key=lambda m: (m.series.series_number, m.series.echo_time, m.series.name)):
        by_part[m.part].append(m)
    runs = defaultdict(dict)  # run index -> {(part, te): member}
    for part, items in by_part.items():
        seen = defaultdict(int)
        for m in items:
            te = round(m.series.echo_time, 6)
            runs[seen[te]][(part, te)] = m
            seen[te] += 1
    suffix = members[0].suffix or ("MEGRE" if len(echo_times) > 1 else "T2starw")
    if not {m.part for m in members} & {kinds.PHASE, kinds.REAL, kinds.IMAGINARY}:
        plan.notes.append(f"{members[0].series.label}: magnitude only (no phase): qsmapp can map T2*/R2* from it, "
                          "not QSM or SWI")
    datatype = members[0].datatype
    for run_index in sorted(runs):
        found = runs[run_index]
        run_entities = dict(entities)
        if len(runs) > 1 and "run" not in run_entities:
            run_entities["run"] = str(run_index + 1)
        for te in echo_times:
            echo = echo_times.index(te) + 1
            mag, phase = found.get((kinds.MAGNITUDE, te)), found.get((kinds.PHASE, te))
            real, imag = found.get((kinds.REAL, te)), found.get((kinds.IMAGINARY, te))
            outputs = []
            if mag is not None:
                outputs.append(("mag", "copy", [mag.series], "magnitude image"))
            if phase is not None:
                outputs.append(("phase", "phase", [phase.series], "phase image"))
            if real is not None and imag is not None:
                if mag is None:
                    outputs.append(("mag", "complex-mag", [real.series, imag.series], "|real + i imaginary|"))
                if phase is None:
                    outputs.append(("phase", "complex-phase", [real.series, imag.series], "angle(real + i imaginary)"))
                if mag is not None and phase is not None:
                    plan.notes.append(f"{real.series.label} and {imag.series.label}: real/imaginary not needed "
                                      "(magnitude and phase are there)")
            elif real is not None or imag is not None:
                lone = real or imag
                plan.skipped.append((lone.series, f"{lone.series.label}: {lone.part} image without its "
                                                  f"{'imaginary' if real else 'real'} partner at TE "
                                                  f"{te * 1e3:.4g} ms: skipped"))
            for part, operation, sources, what in outputs:
                name_entities = dict(run_entities)
                if suffix == "MEGRE" or len(echo_times) > 1:
                    name_entities["echo"] = str(echo)
                name_entities["part"] = part
                stem = f"{_folder(subject, session, datatype)}/{_prefix(subject, session, name_entities)}_{suffix}"
                why = (f"{what} of {' + '.join(s.label for s in sources)}, TE {te * 1e3:.4g} ms → echo {echo} of "
                       f"{len(echo_times)}" + (f", run {run_index + 1}" if len(runs) > 1 else "")
                       + (f" (rule {members[0].rule.name})" if members[0].rule else ""))
                sidecar = dict(sources[0].sidecar)
                if operation.startswith("complex"):
                    sidecar["ImageType"] = [t for t in sidecar.get("ImageType", []) if t not in ("REAL", "R")]
                plan.targets.append(Target(stem, operation, sources, sidecar, why, part=part))
            missing = [p for p, m in (("magnitude", mag or (real and imag)), ("phase", phase or (real and imag))) if not m]
            if len(missing) == 1 and (mag or phase or real or imag):
                plan.notes.append(f"{_prefix(subject, session, run_entities)} echo {echo}: no {missing[0]} image")


def _plan_simple(candidates, subject, session, plan, *, suffix) -> None:
    groups = defaultdict(list)
    for c in sorted(candidates, key=lambda c: (c.series.series_number, c.series.name)):
        groups[(c.datatype, c.suffix or suffix, tuple(sorted(c.entities.items())))].append(c)
    for (datatype, name_suffix, entity_items), members in groups.items():
        for number, c in enumerate(members, start=1):
            entities = dict(entity_items)
            if len(members) > 1 and "run" not in entities:
                entities["run"] = str(number)
            stem = f"{_folder(subject, session, datatype)}/{_prefix(subject, session, entities)}_{name_suffix}"
            why = f"{c.series.label}" + (f" (rule {c.rule.name})" if c.rule else " (recognised as T1w)")
            plan.targets.append(Target(stem, "copy", [c.series], dict(c.series.sidecar), why))
