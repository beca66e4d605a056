"""``${NAME}`` substitution in configuration strings (URLs, tags, paths).

One implementation for the config loader, the steps and the push tags.  Unknown
names are left as they are: pkg(8) expands its own ``${ABI}`` in base.conf.
"""
from __future__ import annotations

import re

_VAR = re.compile(r"\$\{([A-Z_]+)\}")


def expand(template: str, variables: dict[str, str]) -> str:
    """Substitute ${NAME} from *variables*; unknown names are left for pkg(8) (e.g. ${ABI} in base.conf)."""
    return _VAR.sub(lambda m: variables.get(m.group(1), m.group(0)), template)


def names(template: str) -> set[str]:
    """The ${NAME}s a template uses."""
    return set(_VAR.findall(template))
