"""Can I rebuild it?  Rebuild a release from its locks in a scratch directory and compare.

verify_release() pins a copy of the configuration to the release's lock files
(exact packages, and the src commit they record), seeds a scratch work
directory with hardlinks of the locked packages and of the src mirror (so no
byte is downloaded again), runs the same `doit build:<release>` there, and
compares every archive, CHECKSUM file, OCI layout, index, manifest, config and
layer blob with the build being verified.  Each difference is reported on its
own line; for an archive, the member (blob) that differs is named.
"""
from __future__ import annotations

import hashlib
import lzma
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import toml

from .cache import PackageCache
from .errors import ReleaseError
from .fsutil import read_json
from .names import CHECKSUM_FILES
from .oci import reachable_blobs
from .plans import RebuildPlan
from .records import Lock
from .workspace import Workspace, claim_workdir

DODO = Path(__file__).resolve().parent.parent / "dodo.py"


class VerifyError(ReleaseError):
    """The rebuild differs from the build being verified."""

    def __init__(self, release: str, problems: list[str]):
        self.problems = problems
        super().__init__(f"{release}: the rebuild differs in {len(problems)} place(s): {problems[0]}"
                         + (f" (and {len(problems) - 1} more, listed above)" if len(problems) > 1 else ""))


def rebuild_and_compare(plan: RebuildPlan, say: Callable[[str], None] = print) -> dict[str, Any]:
    ws = plan.workspace
    release = plan.release
    scratch = ws.verify_dir(release)
    shutil.rmtree(scratch, ignore_errors=True)
    work = scratch / "work"
    config = _pinned_config(plan, scratch)
    claim_workdir(work)                     # a work directory of its own before it is seeded
    _seed(plan, Workspace(work))
    say(f"rebuilding {release} from its locks in {work}")
    proc = subprocess.run([sys.executable, "-m", "doit", "-f", str(DODO), f"config={config}", f"workdir={work}",
                           f"build:{release}"], capture_output=True, text=True)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or ["no output"]
        raise ReleaseError(f"{release}: the rebuild from the locks failed: {lines[-1]}")
    problems = compare_builds(plan, ws, Workspace(work))
    for p in problems:
        say(p)
    if problems:
        raise VerifyError(release, problems)
    say(f"{release}: rebuild identical: {len(plan.arches)} architecture(s), {len(plan.flavours)} flavour(s)")
    return {"identical": True}


def _pinned_config(plan: RebuildPlan, scratch: Path) -> Path:
    """The configuration, with the release pinned to copies of its current lock files."""
    ws = plan.workspace
    pinned = scratch / "locks"
    pinned.mkdir(parents=True)
    for arch in plan.arches:
        shutil.copyfile(ws.lock(plan.release, arch), pinned / f"{arch}.json")
    data = toml.loads(Path(plan.config).read_text())
    data["releases"] = {plan.release: dict(data["releases"][plan.release], lock=str(pinned))}
    path = scratch / "config.toml"
    path.write_text(toml.dumps(data))
    return path


def _seed(plan: RebuildPlan, scratch: Workspace) -> None:
    """Hardlink the locked packages and the src mirror into the scratch work directory."""
    ws = plan.workspace
    for arch in plan.arches:
        for p in Lock.load(ws.lock(plan.release, arch)).packages():
            source = PackageCache(ws.cache()).path_for(p.sum)
            dest = PackageCache(scratch.cache()).path_for(p.sum)
            if source.is_file() and not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                _link_or_copy(source, dest)
    mirror = plan.src.mirror
    if mirror.is_dir():
        target = scratch.root / mirror.relative_to(ws.root)
        shutil.copytree(mirror, target, copy_function=_link_or_copy)


def _link_or_copy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def compare_builds(plan: RebuildPlan, a: Workspace, b: Workspace) -> list[str]:
    """Every difference between build *a* (verified) and *b* (rebuild), one line each."""
    release = plan.release
    problems: list[str] = []
    for files in plan.files:
        arch = files.arch
        for flavour in plan.flavours:
            for record, path_of in (("layer", a.layer_json), ("image", a.image_json)):
                other = b.layer_json if record == "layer" else b.image_json
                ka = _digest_of(path_of(release, arch, flavour), record)
                kb = _digest_of(other(release, arch, flavour), record)
                if ka != kb:
                    problems.append(f"{release} {arch} {flavour}: {record} {ka or 'missing'} rebuilt as "
                                    f"{kb or 'missing'}")
        da, db = a.arch_dir(release, arch), b.arch_dir(release, arch)
        for name in [*files.names, *CHECKSUM_FILES]:
            problems += _compare_file(da / name, db / name)
    for flavour in plan.flavours:
        problems += _compare_layout(a.layout_dir(release, flavour), b.layout_dir(release, flavour))
    return problems


def _digest_of(path: Path, record: str) -> str | None:
    try:
        doc = read_json(path)
    except (OSError, ValueError):
        return None
    digest: str = doc["digest"] if record == "layer" else doc["manifest"]["digest"]
    return digest


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _compare_file(published: Path, rebuilt: Path) -> list[str]:
    if not published.is_file():
        return [f"{published}: missing from the build being verified"]
    if not rebuilt.is_file():
        return [f"{published.name}: not produced by the rebuild"]
    if _sha256(published) == _sha256(rebuilt):
        return []
    if published.suffix != ".txz":
        return [f"{published.name}: differs from the rebuild"]
    inner = _archive_differences(published, rebuilt)
    return [f"{published.name}: {d}" for d in inner] or [f"{published.name}: archive bytes differ"]


def _members(path: Path) -> dict[str, str] | str:
    """Member name -> sha256 of its bytes; or what is damaged, naming the member it belongs to."""
    try:
        out = {}
        with tarfile.open(path, "r:xz") as tar:
            for m in tar:
                if m.isfile():
                    h = hashlib.sha256()
                    src = tar.extractfile(m)
                    assert src is not None      # a regular file
                    while chunk := src.read(1 << 20):
                        h.update(chunk)
                    out[m.name] = h.hexdigest()
        return out
    except (tarfile.TarError, EOFError, OSError, lzma.LZMAError) as e:
        return _damaged_stream(path) or f"not a readable archive ({e.__class__.__name__}: {e})"


def _damaged_stream(path: Path) -> str | None:
    """Our archives are one xz stream per blob: find the stream that fails and the member it starts with."""
    with open(path, "rb") as f:
        pending = b""
        while True:
            d = lzma.LZMADecompressor(lzma.FORMAT_XZ)
            head = b""
            try:
                while not d.eof:
                    chunk = pending or f.read(1 << 14)      # small pieces: the member header decodes first
                    pending = b""
                    if not chunk:
                        raise EOFError("archive ends inside an xz stream")
                    for i in range(0, len(chunk), 1 << 14):
                        data = d.decompress(chunk[i:i + (1 << 14)])
                        head += data[:512 - len(head)] if len(head) < 512 else b""
                        if d.eof:
                            pending = d.unused_data + chunk[i + (1 << 14):]
                            break
            except (lzma.LZMAError, EOFError) as e:
                name = head[:100].split(b"\0", 1)[0].decode(errors="replace") if len(head) >= 512 else "?"
                return f"{name}: damaged ({e})"
            if not pending:
                pending = f.read(1 << 20)
                if not pending:
                    return None


def _archive_differences(published: Path, rebuilt: Path) -> list[str]:
    a, b = _members(published), _members(rebuilt)
    if isinstance(a, str):
        return [a]
    if isinstance(b, str):
        return [f"the rebuild's archive is {b}"]
    out = []
    for name in sorted(set(a) | set(b)):
        if a.get(name) != b.get(name):
            if name.startswith("blobs/sha256/") and a.get(name) and a[name] != name.rsplit("/", 1)[1]:
                out.append(f"{name}: content does not match its digest (sha256 {a[name]})")
            elif name not in a:
                out.append(f"{name}: only in the rebuild")
            elif name not in b:
                out.append(f"{name}: not in the rebuild")
            else:
                out.append(f"{name}: differs from the rebuild")
    return out


def _compare_layout(a: Path, b: Path) -> list[str]:
    try:
        ia, ib = read_json(a / "index.json"), read_json(b / "index.json")
    except (OSError, ValueError) as e:
        return [f"{a}: layout unreadable ({e})"]
    if ia != ib:
        return [f"{a.name} layout: index.json differs ({ia['manifests'][0]['digest']} rebuilt as "
                f"{ib['manifests'][0]['digest']})"]
    problems = []
    for digest, _size in reachable_blobs(b / "blobs" / "sha256", ib):
        blob = a / "blobs" / "sha256" / digest[7:]
        if not blob.is_file():
            problems.append(f"{a.name} layout: {digest} missing")
        elif _sha256(blob) != digest[7:]:
            problems.append(f"{a.name} layout: {digest} content does not match its digest")
    return problems
