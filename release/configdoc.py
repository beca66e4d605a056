"""docs/configuration.md, generated from the settings table and the step registry.

Every key of config.toml is documented once, where it is declared
(release.configschema.SCHEMA), and every step option where its kind is
(release.steps); this module renders both as the configuration reference, and
a test fails when the committed file differs from what it renders (mkosi's
settings table, which generates its documentation, is the model).

    python -m release.configdoc > docs/configuration.md
"""
from __future__ import annotations

import json
import sys

from .configschema import REQUIRED, SCHEMA, SECTIONS
from .steps import PHASES, REGISTRY
from .steps import REQUIRED as STEP_REQUIRED

PHASE_TEXT = {"before-packages": "before the flavour's packages are installed",
              "after-packages": "after the flavour's packages are installed",
              "executor": "after everything else, running the image's own programs (native or QEMU user mode)"}
assert set(PHASE_TEXT) == set(PHASES)


def _value(value: object) -> str:
    """A default as TOML spells it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_value(v)}" for k, v in value.items()) + " }" if value else "{}"
    return str(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _default(value: object, required: object) -> str:
    return "required" if value is required else f"`{_cell(_value(value))}`"


def render() -> str:
    lines = ["# config.toml reference", "",
             "Generated from the settings table (`release/configschema.py`) and the step kinds",
             "(`release/steps/`) by `python -m release.configdoc > docs/configuration.md`; a test fails",
             "when this file is stale. Strings may use `${WORKDIR}`, `${PROJECT}`, `${ABI}`, `${ARCH}`,",
             "`${REPO}`, `${MAJOR}` and `${RELEASE}`.", ""]
    for section, settings in SCHEMA.items():
        title = section.replace(".*", ".<name>")
        lines += [f"## `[{title}]`", "", SECTIONS[section], "",
                  "| key | type | default | meaning | example |", "| --- | --- | --- | --- | --- |"]
        for s in settings:
            lines.append(f"| `{s.key}` | {_cell(s.type)} | {_default(s.default, REQUIRED)} | {_cell(s.doc)} | "
                         f"`{_cell(s.key + ' = ' + s.example)}` |")
        lines.append("")
    lines += ["## Step kinds", "",
              "A flavour's `steps` is a list of tables, each with a `kind` and that kind's options;",
              "options with a default may be left out.", ""]
    for kind in REGISTRY.values():
        lines += [f"### `{kind.name}`", "", f"{kind.doc} Runs {PHASE_TEXT[kind.phase]}.", ""]
        if kind.options:
            lines += ["| option | type | default | meaning |", "| --- | --- | --- | --- |"]
            lines += [f"| `{o.name}` | {o.type} | {_default(o.default, STEP_REQUIRED)} | {_cell(o.doc)} |"
                      for o in kind.options]
            lines.append("")
        lines += ["Example:", "", "```toml", f"steps = [{kind.example}]", "```", ""]
    return "\n".join(lines)


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
