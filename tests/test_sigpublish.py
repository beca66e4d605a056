"""The tree's signature store, file by file: appends in place, swaps on removal, repairs, prunes.

release/sigpublish.update_store on a tree made here: which signatures each
build owns, what a reader can observe (signature-1..n always contiguous, a
directory replaced in one rename), what a republish rewrites (nothing).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from release.sigpublish import BUILDS, registries_d, store_dir, update_store
from release.sigstore import Entry
from tests.build_support import stamps

HOST = "registry.example.org"
REPO = "freebsd/freebsd-runtime"
D1, D2, SHARED = ("sha256:" + c * 64 for c in "123")


def sig(text: str) -> tuple[bytes, str]:
    data = f"signature {text}".encode()
    return data, hashlib.sha256(data).hexdigest()


def entries(*specs: tuple[str, str]) -> tuple[list[Entry], dict[str, bytes]]:
    """(digest, tag) pairs -> entries with made-up signature bytes, and those bytes by sha256."""
    out, sources = [], {}
    for digest, tag in specs:
        data, sha = sig(f"{digest} {tag}")
        out.append(Entry(HOST, REPO, digest, f"{HOST}/{REPO}:{tag}", sha))
        sources[sha] = data
    return out, sources


def snapshot(root: Path, suffix: str, date: str) -> tuple[str, dict]:
    """A published snapshot date (its BUILDINFO) and its owner record name."""
    day = root / "snapshots/OCI-IMAGES/15.0-CURRENT/amd64" / date
    day.mkdir(parents=True, exist_ok=True)
    if not (day / f"BUILDINFO-{suffix}.json").exists():
        (day / f"BUILDINFO-{suffix}.json").write_text("{}")
    return f"snapshot-15.0-CURRENT-{suffix}.json", {"kind": "snapshot", "version": "15.0-CURRENT", "suffix": suffix}


def listing(directory: Path) -> list[bytes]:
    files = sorted(directory.iterdir(), key=lambda p: int(p.name.split("-")[1]))
    assert [p.name for p in files] == [f"signature-{n}" for n in range(1, len(files) + 1)]
    return [p.read_bytes() for p in files]


def test_snapshots_add_share_and_take_away_their_signatures(tmp_path):
    root = tmp_path
    store = store_dir(root)
    one, s1 = entries((D1, "15.snap20241128"), (SHARED, "15.snap20241128"))
    two, s2 = entries((D2, "15.snap20241129"), (SHARED, "15.snap20241129"))
    update_store(root, snapshot(root, "a", "20241128"), one, s1)
    shared = store / HOST / f"freebsd/freebsd-runtime@sha256={'3' * 64}"
    first_file = (shared / "signature-1").stat().st_ino
    update_store(root, snapshot(root, "b", "20241129"), two, s2)
    assert listing(shared) == [sig(f"{SHARED} 15.snap20241128")[0], sig(f"{SHARED} 15.snap20241129")[0]]
    assert (shared / "signature-1").stat().st_ino == first_file          # appended, the first file untouched

    # publish prunes the first date: its signatures go, the shared directory is rebuilt and swapped in
    for p in (root / "snapshots/OCI-IMAGES/15.0-CURRENT/amd64/20241128").iterdir():
        p.unlink()
    (root / "snapshots/OCI-IMAGES/15.0-CURRENT/amd64/20241128").rmdir()
    directory_before = shared.stat().st_ino
    assert update_store(root, snapshot(root, "b", "20241129"), two, s2) == 2
    assert listing(shared) == [sig(f"{SHARED} 15.snap20241129")[0]]
    assert shared.stat().st_ino != directory_before                      # a new directory, not edited in place
    assert not (store / HOST / f"freebsd/freebsd-runtime@sha256={'1' * 64}").exists()
    assert sorted(p.name for p in (store / BUILDS).iterdir()) == ["snapshot-15.0-CURRENT-b.json"]
    assert not [p for p in store.rglob("*") if p.name.startswith(".partial-")]

    before = stamps(root)                                                # republishing: nothing rewritten
    assert update_store(root, snapshot(root, "b", "20241129"), two, s2) == 0
    assert stamps(root) == before


def test_release_signatures_stay_and_a_damaged_file_is_repaired(tmp_path):
    root = tmp_path
    store = store_dir(root)
    old, s_old = entries((D1, "14.2-RELEASE"))
    update_store(root, ("release-14.2-RELEASE-old.json", {"kind": "release", "version": "14.2-RELEASE"}), old, s_old)
    new, s_new = entries((D2, "14.2-RELEASE"))
    update_store(root, ("release-14.2-RELEASE-new.json", {"kind": "release", "version": "14.2-RELEASE"}), new, s_new)
    assert (store / HOST / f"freebsd/freebsd-runtime@sha256={'1' * 64}/signature-1").read_bytes() == \
        sig(f"{D1} 14.2-RELEASE")[0]                                    # a digest once released stays verifiable
    damaged = store / HOST / f"freebsd/freebsd-runtime@sha256={'2' * 64}/signature-1"
    damaged.write_bytes(damaged.read_bytes()[:5])
    update_store(root, ("release-14.2-RELEASE-new.json", {"kind": "release", "version": "14.2-RELEASE"}), new, s_new)
    assert listing(damaged.parent) == [sig(f"{D2} 14.2-RELEASE")[0]]
    owners = {json.loads(p.read_text())["signatures"][0]["digest"] for p in (store / BUILDS).iterdir()}
    assert owners == {D1, D2}


def test_registries_d_is_yaml_containers_reads():
    text = registries_d(HOST, [f"{HOST}/freebsd"], "https://download.example.org/signatures").decode()
    assert text.startswith("# containers-registries.d(5)")
    body = json.loads(text.split("\n", 1)[1])                          # JSON is YAML
    assert body == {"docker": {f"{HOST}/freebsd": {"lookaside": f"https://download.example.org/signatures/{HOST}"}}}
