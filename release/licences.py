"""Licences: pkg's licence names as SPDX expressions, for packages and for whole images.

One table and one set of rules, used by the SBOM (each package, and the image as
a whole) and by the image's ``org.opencontainers.image.licenses`` annotation, so
the two always agree.  pkg's names come from the ports framework
(Mk/bsd.licenses.db); those with no SPDX identifier become ``LicenseRef-<name>``.
"""
from __future__ import annotations

import re

# pkg(8) / ports license names -> SPDX license list identifiers (or expressions).
SPDX_LICENSES = {
    "AGPLv3": "AGPL-3.0-only", "AGPLv3+": "AGPL-3.0-or-later", "APACHE10": "Apache-1.0",
    "APACHE11": "Apache-1.1", "APACHE20": "Apache-2.0", "ART10": "Artistic-1.0", "ART20": "Artistic-2.0",
    "ARTPERL10": "Artistic-1.0-Perl", "BSD0CLAUSE": "0BSD", "BSD2CLAUSE": "BSD-2-Clause",
    "BSD3CLAUSE": "BSD-3-Clause", "BSD4CLAUSE": "BSD-4-Clause", "BSL": "BSL-1.0", "CC0-1.0": "CC0-1.0",
    "CDDL": "CDDL-1.0", "ClArtistic": "ClArtistic", "EPL": "EPL-1.0", "GPLv1": "GPL-1.0-only",
    "GPLv1+": "GPL-1.0-or-later", "GPLv2": "GPL-2.0-only", "GPLv2+": "GPL-2.0-or-later",
    "GPLv3": "GPL-3.0-only", "GPLv3+": "GPL-3.0-or-later",
    "GPLv3RLE": "GPL-3.0-only WITH GCC-exception-3.1", "GPLv3RLE+": "GPL-3.0-or-later WITH GCC-exception-3.1",
    "ISCL": "ISC", "LGPL20": "LGPL-2.0-only", "LGPL20+": "LGPL-2.0-or-later", "LGPL21": "LGPL-2.1-only",
    "LGPL21+": "LGPL-2.1-or-later", "LGPL3": "LGPL-3.0-only", "LGPL3+": "LGPL-3.0-or-later",
    "MIT": "MIT", "MPL10": "MPL-1.0", "MPL11": "MPL-1.1", "MPL20": "MPL-2.0", "NCSA": "NCSA",
    "OFL10": "OFL-1.0", "OFL11": "OFL-1.1", "OPENSSL": "OpenSSL", "OpenSSL": "OpenSSL",
    "PostgreSQL": "PostgreSQL", "PSFL": "PSF-2.0", "RUBY": "Ruby", "UNLICENSE": "Unlicense",
    "WTFPL": "WTFPL", "ZLIB": "Zlib", "ZPL21": "ZPL-2.1",
}
# pkg's licenselogic: "single"/"and"/"or" (older manifests: "multi" = and, "dual" = or).
_LOGIC = {"single": " AND ", "and": " AND ", "multi": " AND ", "or": " OR ", "dual": " OR "}
ID_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")


def license_id(name: str) -> str:
    """SPDX identifier (or WITH expression) for a pkg license name; LicenseRef-<name> when unknown."""
    return SPDX_LICENSES.get(name) or "LicenseRef-" + (ID_UNSAFE.sub("-", name).strip("-") or "unknown")


def license_expression(licenses: list[str] | None, logic: str | None) -> str:
    """pkg's licenses + licenselogic as one SPDX expression; NOASSERTION when none is given."""
    ids = sorted({license_id(n) for n in licenses or []})
    if not ids:
        return "NOASSERTION"
    if len(ids) == 1:
        return ids[0]
    joiner = _LOGIC.get((logic or "single").lower(), " AND ")
    return joiner.join(f"({i})" if " " in i else i for i in ids)


def image_license(expressions: list[str]) -> str:
    """AND of several packages' expressions (the image's license): AND-chains flattened, OR kept whole."""
    atoms: set[str] = set()
    for expression in expressions:
        if " OR " in expression:
            atoms.add(expression)
        elif expression != "NOASSERTION":
            atoms.update(atom.strip("()") for atom in expression.split(" AND "))
    parts = sorted(atoms)
    if not parts:
        return "NOASSERTION"
    if len(parts) == 1:
        return parts[0]
    return " AND ".join(f"({p})" if " " in p else p for p in parts)
