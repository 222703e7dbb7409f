"""Write the Boutiques descriptor of ``qsmapp`` (docker/qsmapp.boutiques.json) from its argument parser.

    python docker/make_boutiques.py            # rewrite docker/qsmapp.boutiques.json
    python docker/make_boutiques.py --check    # exit 1 when the committed file differs from the parser
    bosh validate docker/qsmapp.boutiques.json # (pip install boutiques)

Every option of ``qsmapp --help`` becomes an input: its first flag, its help, its type (File for paths,
Number for int/float, Flag for switches, String otherwise), its choices, whether it takes a list. Options
that default to "the premade's value" (argparse.SUPPRESS) have no default-value. Platforms (CBRAIN,
Neurodesk/Boutiques tools, nipype's Boutiques interface) can wrap the app from this file alone.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bids_app import __version__  # noqa: E402
from bids_app.cli.parser import build_parser  # noqa: E402

DESCRIPTOR = REPO / "docker" / "qsmapp.boutiques.json"
_SKIP = (argparse._HelpAction, argparse._VersionAction)


def _listed(action) -> bool:
    """Shown in --help (hidden aliases such as --nprocs are left out)."""
    return not isinstance(action, _SKIP) and action.help != argparse.SUPPRESS


def _type(action) -> dict:
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._CountAction,
                           argparse._StoreConstAction)):
        return {"type": "Flag"}
    if action.nargs == "?" and action.const is not None and (action.metavar or "") == "on|off":
        return {"type": "String", "value-choices": ["on", "off"]}  # --flag, --flag on, --flag off
    kind = action.type
    if kind is int:
        return {"type": "Number", "integer": True}
    if kind is float:
        return {"type": "Number"}
    if kind is Path:
        return {"type": "File"}
    return {"type": "String"}


def _help(action) -> str:
    text = action.help or ""
    if "%(" in text:
        text = text % {"default": action.default, "prog": "qsmapp", "choices": action.choices}
    return re.sub(r"\s+", " ", text).strip()


def _boolean_optional(action) -> dict:
    """``--x/--no-x`` (default on): a Flag that turns it off, or on when its default is off."""
    negative = bool(action.default)
    flag = next(f for f in action.option_strings if f.startswith("--no-") == negative)
    dest = flag.lstrip("-").replace("-", "_")
    text = _help(action)
    return {"id": dest, "name": dest.replace("_", " "), "value-key": f"[{dest.upper()}]", "type": "Flag",
            "description": (f"do not: {text}" if negative else text), "command-line-flag": flag, "optional": True}


def _input(action) -> dict:
    if isinstance(action, argparse.BooleanOptionalAction):
        return _boolean_optional(action)
    key = action.dest.upper()
    entry = {"id": action.dest, "name": action.dest.replace("_", " "), "value-key": f"[{key}]"}
    entry.update(_type(action))
    description = _help(action)
    if description:
        entry["description"] = description
    if action.option_strings:
        entry["command-line-flag"] = action.option_strings[0]
        entry["optional"] = True
    else:
        entry["optional"] = False
    if action.choices is not None:
        entry["value-choices"] = [str(c) if entry["type"] == "String" else c for c in action.choices]
        if entry["type"] == "Number" and not all(isinstance(c, (int, float)) for c in action.choices):
            entry["type"] = "String"
            entry.pop("integer", None)
            entry["value-choices"] = [str(c) for c in action.choices]
    if action.nargs in ("+", "*") or isinstance(action.nargs, int) and action.nargs > 1:
        entry["list"] = True
        if isinstance(action.nargs, int):
            entry["min-list-entries"] = entry["max-list-entries"] = action.nargs
        elif action.nargs == "+":
            entry["min-list-entries"] = 1
    if (entry["type"] != "Flag" and action.default not in (None, argparse.SUPPRESS)
            and not isinstance(action.default, bool)):
        default = action.default
        entry["default-value"] = str(default) if isinstance(default, Path) else default
    return entry


def descriptor() -> dict:
    parser = build_parser()
    actions = [a for a in parser._actions if _listed(a)]
    inputs = [_input(a) for a in actions]
    if inputs[2]["id"] == "analysis_level":
        inputs[2]["value-choices"] = ["participant", "group"]
    groups = []
    for group in parser._action_groups:
        members = [_input(a)["id"] for a in group._group_actions if _listed(a) and a.option_strings]
        if members and group.title not in ("options", "optional arguments", "positional arguments"):
            groups.append({"id": re.sub(r"\W+", "_", group.title).strip("_").lower(), "name": group.title,
                           "members": members})
    return {
        "name": "qsmapp",
        "tool-version": __version__,
        "schema-version": "0.5",
        "author": "qsmapp developers",
        "url": "https://github.com/qsmapp/qsmapp",
        "description": re.sub(r"\s+", " ", parser.description).strip(),
        "command-line": "qsmapp " + " ".join(i["value-key"] for i in inputs),
        "container-image": {"type": "docker", "image": f"qsmapp:{__version__}", "entrypoint": True},
        "inputs": inputs,
        "groups": groups,
        "output-files": [{
            "id": "output_dir_out",
            "name": "derivatives dataset",
            "description": "the BIDS derivatives folder qsmapp writes (OUTPUT_DIR)",
            "path-template": "[OUTPUT_DIR]",
            "optional": False,
        }],
        "suggested-resources": {"cpu-cores": 4, "ram": 16, "walltime-estimate": 3600},
        "tags": {"domain": ["neuroinformatics", "mri", "qsm", "bids-app"]},
        "custom": {"generated-by": "docker/make_boutiques.py (regenerate: python docker/make_boutiques.py)"},
    }


def render() -> str:
    return json.dumps(descriptor(), indent=2) + "\n"


def main(argv=None) -> int:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--check", action="store_true", help="compare with the committed descriptor, write nothing")
    cli.add_argument("--out", type=Path, default=DESCRIPTOR)
    args = cli.parse_args(argv)
    text = render()
    if args.check:
        if not args.out.is_file() or args.out.read_text() != text:
            print(f"{args.out} is out of date with qsmapp's parser: run python docker/make_boutiques.py",
                  file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text)
    print(f"wrote {args.out} ({len(descriptor()['inputs'])} inputs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
