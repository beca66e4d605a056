"""FreeBSD's install-time tools, run once per distinct input: outputs kept by input digest.

pwd_mkdb, services_mkdb, cap_mkdb and certctl rehash (release.builtins) are
pure functions of their inputs, but in Python they cost up to a few tenths of
a second each (services_mkdb hashes a few thousand keys into a db(3) file),
and every architecture, flavour and release of a build feeds them the same
master.passwd, services, login.conf and certificates.  Builtins runs a tool
once per distinct input and keeps what it made under
``<work>/cache/builtins/<key>.json``, where the key is the sha256 of

- the tool and its options (byte order, layout ...),
- the sha256 of every input file,
- the digest of the code of release/builtins (so a changed implementation
  never meets an output of the old one).

Entries are written whole (temporary name, then rename) and carry the digest
of their outputs; an entry that is damaged or does not match it is computed
again, never trusted.  Like the package cache, the store is shared
by every task and process of the work directory: equal keys mean equal bytes.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .builtins.entries import Entry
from .fsutil import atomic_write, canonical_json, identity

if TYPE_CHECKING:
    from .builtins.pwdmkdb import PwdDatabases

Outputs = dict[str, bytes]


@functools.lru_cache(maxsize=1)
def code_identity() -> str:
    """sha256 over the source of release/builtins (the tools' implementation)."""
    here = Path(__file__).resolve().parent / "builtins"
    return identity([(p.name, hashlib.sha256(p.read_bytes()).hexdigest()) for p in sorted(here.glob("*.py"))])


class Builtins:
    """The tools, cached under *directory* (None: computed every time)."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = Path(directory) if directory is not None else None

    def pwd_mkdb(self, master_passwd: bytes, **options: Any) -> PwdDatabases:
        """pwd_mkdb -p: passwd, pwd.db and spwd.db (builtins.pwdmkdb.PwdDatabases)."""
        from .builtins.pwdmkdb import PwdDatabases, pwd_mkdb

        def run() -> Outputs:
            dbs = pwd_mkdb(master_passwd, **options)
            return {"passwd": dbs.passwd, "pwd_db": dbs.pwd_db, "spwd_db": dbs.spwd_db}
        out = self._cached("pwd_mkdb", options, {"master.passwd": master_passwd}, run)
        return PwdDatabases(passwd=out["passwd"], pwd_db=out["pwd_db"], spwd_db=out["spwd_db"])

    def services_mkdb(self, services: bytes, byte_order: str) -> bytes:
        from .builtins.servicesmkdb import services_mkdb
        return self._cached("services_mkdb", {"byte_order": byte_order}, {"services": services},
                            lambda: {"db": services_mkdb(services, byte_order)})["db"]

    def cap_mkdb(self, source: bytes, byte_order: str) -> bytes:
        from .builtins.capmkdb import cap_mkdb
        return self._cached("cap_mkdb", {"byte_order": byte_order}, {"source": source},
                            lambda: {"db": cap_mkdb(source, byte_order)})["db"]

    def certctl_rehash(self, trusted: Mapping[str, bytes], untrusted: Mapping[str, bytes],
                       **options: Any) -> list[Entry]:
        """certctl rehash's entries (builtins.certctl.rehash, the same options) for these certificate stores."""
        from .builtins import certctl

        def run() -> Outputs:
            entries = certctl.rehash(trusted, untrusted, **options)
            return {"entries": canonical_json([_entry_json(e) for e in entries])}
        inputs = {f"trusted/{n}": d for n, d in trusted.items()} | {f"untrusted/{n}": d for n, d in untrusted.items()}
        out = self._cached("certctl_rehash", {**options, "trusted": sorted(trusted), "untrusted": sorted(untrusted)},
                           inputs, run)
        return [_entry_from_json(e) for e in json.loads(out["entries"])]

    def _cached(self, tool: str, options: dict[str, Any], inputs: Mapping[str, bytes],
                run: Callable[[], Outputs]) -> Outputs:
        if self.directory is None:
            return run()
        key = identity({"tool": tool, "code": code_identity(), "options": options,
                        "inputs": {n: hashlib.sha256(d).hexdigest() for n, d in sorted(inputs.items())}})
        path = self.directory / f"{key}.json"
        found = _read(path)
        if found is not None:
            return found
        out = run()
        atomic_write(path, canonical_json({"outputs": {n: base64.b64encode(d).decode() for n, d in out.items()},
                                           "sha256": _digest(out)}))
        return out


UNCACHED = Builtins()


def _digest(outputs: Outputs) -> str:
    return identity({n: hashlib.sha256(d).hexdigest() for n, d in outputs.items()})


def _read(path: Path) -> Outputs | None:
    """A cached entry's outputs, or None when it is absent or damaged (then they are computed again)."""
    try:
        doc = json.loads(path.read_bytes())
        out = {n: base64.b64decode(v, validate=True) for n, v in doc["outputs"].items()}
        return out if _digest(out) == doc["sha256"] else None
    except (OSError, ValueError, TypeError, AttributeError, KeyError):
        return None


def _entry_json(e: Entry) -> dict[str, Any]:
    return {"path": e.path, "kind": e.kind, "mode": e.mode, "uname": e.uname, "gname": e.gname,
            "data": base64.b64encode(e.data).decode(), "target": e.target, "mtime": e.mtime}


def _entry_from_json(doc: dict[str, Any]) -> Entry:
    return Entry(doc["path"], doc["kind"], doc["mode"], doc["uname"], doc["gname"],
                 data=base64.b64decode(doc["data"]), target=doc["target"], mtime=doc["mtime"])
