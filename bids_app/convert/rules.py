"""The rule file: ``dcm2bids``' configuration format, read and matched without dcm2bids.

A rule file is a dcm2bids (v3) configuration::

    {
      "descriptions": [
        {"datatype": "anat", "suffix": "MEGRE", "custom_entities": "acq-qsm",
         "criteria": {"SeriesDescription": "*Field Mapping*", "ImageType": ["ORIGINAL", "PRIMARY", "*"]}},
        {"datatype": "anat", "suffix": "T1w", "criteria": {"ProtocolName": "*MPRAGE*"}}
      ]
    }

``criteria`` keys are sidecar fields (dcm2niix's JSON), plus ``SidecarFilename`` (the name of the
sidecar). A string is a shell-style pattern (``*``, ``?``, ``[...]``; a regular expression when the file
says ``"search_method": "re"``; case-insensitive with ``"case_sensitive": false``); a list matches a
list field element by element (same length); a number must be equal; ``{"any": [...]}`` matches when
one of the alternatives does; ``{"lt"|"le"|"gt"|"ge": x}``, ``{"btw"|"btwe": [a, b]}`` compare numbers
(``btw`` excludes, ``btwe`` includes the bounds). ``custom_entities`` is ``"acq-x_run-2"`` or a list of
``key-value`` strings; ``sidecar_changes`` sets or replaces sidecar fields (``EchoTime``,
``MagneticFieldStrength``... for NIfTI files without a sidecar). dcm2bids' other keys (``id``,
``dcm2niixOptions``, ``post_op``...) are accepted and ignored.

qsmapp reads the ``suffix`` as: ``MEGRE`` / ``T2starw`` — a GRE image (echo index from the echo times,
``part-`` from ``custom_entities`` or from the image type); ``T1w`` — the T1w; anything else — the
image is copied under ``datatype/`` with that suffix. A series matched by two descriptions is skipped
(as in dcm2bids), with a line naming them.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError

_ENTITY = re.compile(r"^([a-z]+)-([A-Za-z0-9]+)$")
_COMPARATORS = ("lt", "le", "gt", "ge", "btw", "btwe")


@dataclass(frozen=True)
class Rule:
    """One ``descriptions`` entry.

    Attributes
    ----------
    index : int
        1-based position in the file (how messages name it), or ``id`` when given.
    datatype, suffix : str
    entities : dict
        ``custom_entities`` as ``{"acq": "qsm", ...}``.
    criteria : dict
    sidecar_changes : dict
    """

    index: int
    name: str
    datatype: str
    suffix: str
    entities: dict = field(default_factory=dict)
    criteria: dict = field(default_factory=dict)
    sidecar_changes: dict = field(default_factory=dict)


@dataclass
class RuleSet:
    """The rules of one file and how to match them."""

    rules: list
    source: Path | None = None
    search_method: str = "fnmatch"
    case_sensitive: bool = True

    def matches(self, sidecar: dict, filename: str) -> list:
        """The rules whose criteria all match this sidecar."""
        return [rule for rule in self.rules if self._match_rule(rule, sidecar, filename)]

    # -- matching -------------------------------------------------------------------------------
    def _match_rule(self, rule: Rule, sidecar: dict, filename: str) -> bool:
        for key, pattern in rule.criteria.items():
            value = filename if key == "SidecarFilename" else sidecar.get(key)
            if value is None or not self._match(value, pattern):
                return False
        return True

    def _match(self, value, pattern) -> bool:
        if isinstance(pattern, dict):
            if "any" in pattern:
                return any(self._match(value, alternative) for alternative in pattern["any"])
            return _compare_number(value, pattern)
        if isinstance(pattern, list):
            if not isinstance(value, list) or len(value) != len(pattern):
                return False
            return all(self._match(v, p) for v, p in zip(value, pattern))
        if isinstance(pattern, bool) or isinstance(value, bool):
            return value == pattern
        if isinstance(pattern, (int, float)):
            try:
                return abs(float(value) - float(pattern)) <= 1e-9 * max(1.0, abs(float(pattern)))
            except (TypeError, ValueError):
                return False
        if isinstance(value, list):  # a string pattern against a list field: the joined list (dcm2niix's form)
            value = "\\".join(str(v) for v in value)
        text, pattern = str(value), str(pattern)
        if not self.case_sensitive:
            text, pattern = text.lower(), pattern.lower()
        if self.search_method == "re":
            return re.search(pattern, text) is not None
        return fnmatch.fnmatchcase(text, pattern)


def _compare_number(value, pattern: dict) -> bool:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    for op, bound in pattern.items():
        if op in ("btw", "btwe"):
            low, high = (float(b) for b in bound)
            ok = low < number < high if op == "btw" else low <= number <= high
        else:
            bound = float(bound)
            ok = {"lt": number < bound, "le": number <= bound, "gt": number > bound, "ge": number >= bound}[op]
        if not ok:
            return False
    return True


def _entities(value, where: str) -> dict:
    if value is None or value == "":
        return {}
    parts = value if isinstance(value, list) else str(value).split("_")
    entities = {}
    for part in parts:
        part = str(part).strip()
        if not part:
            continue
        match = _ENTITY.match(part)
        if match:
            entities[match.group(1)] = match.group(2)
        elif not re.fullmatch(r"[a-z]+", part):  # dcm2bids' bare names ("echo") take the value from the sidecar
            raise UsageError(f"{where}: custom_entities item {part!r} is not 'key-value' (letters/digits)",
                             hint="write e.g. \"acq-qsm_run-1\"")
    return entities


def load_rules(path) -> RuleSet:
    """Read a dcm2bids configuration file.

    Raises
    ------
    UsageError
        The file is missing, not JSON, or a description lacks ``datatype``/``suffix``/``criteria``
        (exit 64, naming the file and the entry).
    """
    path = Path(path)
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"rule file {path} does not exist", hint="give a dcm2bids configuration (JSON)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"rule file {path} is not valid JSON: {exc}", hint="fix the file") from None
    if not isinstance(config, dict) or not isinstance(config.get("descriptions"), list):
        raise UsageError(f"rule file {path} has no 'descriptions' list",
                         hint="use dcm2bids' format: {\"descriptions\": [{\"datatype\": ..., \"suffix\": ..., "
                              "\"criteria\": {...}}]}")
    method = str(config.get("search_method", "fnmatch"))
    if method not in ("fnmatch", "re"):
        raise UsageError(f"rule file {path}: search_method {method!r} is not 'fnmatch' or 're'")
    rules = []
    for number, entry in enumerate(config["descriptions"], start=1):
        where = f"rule file {path}, description {number}"
        if not isinstance(entry, dict):
            raise UsageError(f"{where} is not an object")
        missing = [k for k in ("datatype", "suffix", "criteria") if k not in entry]
        if missing:
            raise UsageError(f"{where} lacks {', '.join(missing)}", hint="each description needs datatype, suffix, criteria")
        if not isinstance(entry["criteria"], dict) or not entry["criteria"]:
            raise UsageError(f"{where}: criteria must be a non-empty object")
        for key, pattern in entry["criteria"].items():
            if isinstance(pattern, dict) and not ("any" in pattern or set(pattern) <= set(_COMPARATORS)):
                raise UsageError(f"{where}: criterion {key} uses unknown keys {sorted(pattern)}",
                                 hint=f"use 'any' or one of {', '.join(_COMPARATORS)}")
        changes = entry.get("sidecar_changes") or entry.get("sidecarChanges") or {}
        rules.append(Rule(index=number, name=str(entry.get("id", number)), datatype=str(entry["datatype"]),
                          suffix=str(entry["suffix"]),
                          entities=_entities(entry.get("custom_entities", entry.get("customEntities")), where),
                          criteria=dict(entry["criteria"]), sidecar_changes=dict(changes)))
    return RuleSet(rules=rules, source=path, search_method=method,
                   case_sensitive=bool(config.get("case_sensitive", True)))
