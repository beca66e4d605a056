"""The image's own accounts: names and ids from its /etc/master.passwd and /etc/group.

Owners in layers are numeric ids looked up here, never through the build host's
user database; emulated commands' files get names back the same way.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from .errors import LayerError


def entries(text: bytes | None) -> list[tuple[str, int]]:
    """(name, id) of each account line, in file order (comments and odd lines skipped)."""
    out = []
    for line in (text or b"").decode("utf-8", "replace").splitlines():
        f = line.split(":")
        if len(f) >= 3 and not line.startswith("#") and f[2].isdigit():
            out.append((f[0], int(f[2])))
    return out


def name_to_id(master_passwd: bytes | None, group: bytes | None) -> tuple[dict[str, int], dict[str, int]]:
    """Name -> id for users and groups; the first line for a name wins (as getpwnam finds it)."""
    tables: tuple[dict[str, int], dict[str, int]] = ({"root": 0}, {"wheel": 0})
    for table, text in zip(tables, (master_passwd, group), strict=True):
        for name, ident in entries(text):
            table.setdefault(name, ident)
    return tables


def id_to_name(text: bytes | None, zero: str) -> dict[int, str]:
    """Id -> the first name with it (getpwuid's answer); id 0 is *zero* when the file has none."""
    out: dict[int, str] = {}
    for name, ident in entries(text):
        out.setdefault(ident, name)
    out.setdefault(0, zero)
    return out


_FILES = {"user": "/etc/master.passwd", "group": "/etc/group"}


K = TypeVar("K", str, int)
V = TypeVar("V", str, int)


def lookup(table: Mapping[K, V], key: K, what: str, where: str) -> V:
    """*key* (a name or an id) of a "user" or "group" table, or one line naming where it was needed.

    The one home of the "not in the image's accounts" error: the layer writer,
    the image root on disk and emulated commands' files all meet it.
    """
    try:
        return table[key]
    except KeyError:
        subject = f"{what} {key!r} is not in" if isinstance(key, str) else f"{what} id {key} has no name in"
        raise LayerError(f"{where}: {subject} the image's {_FILES[what]}") from None
