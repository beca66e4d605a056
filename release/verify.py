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
from pathlib import Path
from typing import Callable

import toml

from .cache import PackageCache
from .config import Config
from .errors import ReleaseError
from .fsutil import read_json
from .image import arch_dir, archive_name, layout_dir, sbom_name
from .oci import reachable_blobs
from .prepare import locked_packages, require_lock
from .sources import mirror_for
from .workspace import Workspace

DODO = Path(__file__).resolve().parent.parent / "dodo.py"


class VerifyError(ReleaseError):
    """The rebuild differs from the build being verified."""

    def __init__(self, release: str, problems: list[str]):
        self.problems = problems
        super().__init__(f"{release}: the rebuild differs in {len(problems)} place(s): {problems[0]}"
                         + (f" (and {len(problems) - 1} more, listed above)" if len(problems) > 1 else ""))


def verify_release(cfg: Config, release: str, say: Callable[[str], None] = print) -> dict:
    ws = Workspace.of(cfg)
    r = cfg.release(release)
    scratch = ws.root / "verify" / release
    shutil.rmtree(scratch, ignore_errors=True)
    work = scratch / "work"
    config = _pinned_config(cfg, release, scratch)
    _seed(cfg, release, ws, Workspace(work))
    say(f"rebuilding {release} from its locks in {work}")
    proc = subprocess.run([sys.executable, "-m", "doit", "-f", str(DODO), f"config={config}", f"workdir={work}",
                           f"build:{release}"], capture_output=True, text=True)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or ["no output"]
        raise ReleaseError(f"{release}: the rebuild from the locks failed: {lines[-1]}")
    problems = compare_builds(cfg, release, ws, Workspace(work))
    for p in problems:
        say(p)
    if problems:
        raise VerifyError(release, problems)
    say(f"{release}: rebuild identical: {len(r.arches)} architecture(s), {len(r.flavours)} flavour(s)")
    return {"identical": True}


def _pinned_config(cfg: Config, release: str, scratch: Path) -> Path:
    """The configuration, with *release* pinned to copies of its current lock files."""
    ws = Workspace.of(cfg)
    pinned = scratch / "locks"
    pinned.mkdir(parents=True)
    for arch in cfg.release(release).arches:
        shutil.copyfile(ws.lock(release, arch), pinned / f"{arch}.json")
    data = toml.loads(cfg.path.read_text())
    data["releases"] = {release: dict(data["releases"][release], lock=str(pinned))}
    path = scratch / "config.toml"
    path.write_text(toml.dumps(data))
    return path


def _seed(cfg: Config, release: str, ws: Workspace, scratch: Workspace) -> None:
    """Hardlink the locked packages and the src mirror into the scratch work directory."""
    r = cfg.release(release)
    for arch in r.arches:
        for p in locked_packages(require_lock(ws, release, arch)):
            source = PackageCache(ws.cache()).path_for(p["sum"])
            dest = PackageCache(scratch.cache()).path_for(p["sum"])
            if source.is_file() and not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                _link_or_copy(source, dest)
    mirror = mirror_for(cfg, r).path
    if mirror.is_dir():
        target = scratch.root / mirror.relative_to(ws.root)
        shutil.copytree(mirror, target, copy_function=_link_or_copy)


def _link_or_copy(src, dst) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def compare_builds(cfg: Config, release: str, a: Workspace, b: Workspace) -> list[str]:
    """Every difference between build *a* (verified) and *b* (rebuild), one line each."""
    r = cfg.release(release)
    problems: list[str] = []
    for arch in r.arches:
        for flavour in r.flavours:
            for record in ("layer.json", "image.json"):
                pa, pb = a.flavour(release, arch, flavour) / record, b.flavour(release, arch, flavour) / record
                ka = _digest_of(pa, record)
                kb = _digest_of(pb, record)
                if ka != kb:
                    problems.append(f"{release} {arch} {flavour}: {record[:-5]} {ka or 'missing'} rebuilt as "
                                    f"{kb or 'missing'}")
        da, db = arch_dir(a, release, arch), arch_dir(b, release, arch)
        archives = [archive_name(cfg, release, arch, f) for f in r.flavours]
        names = archives + [sbom_name(n) for n in archives] + ["CHECKSUM.SHA256", "CHECKSUM.SHA512"]
        for name in names:
            problems += _compare_file(da / name, db / name)
    for flavour in r.flavours:
        problems += _compare_layout(layout_dir(a, release, flavour), layout_dir(b, release, flavour))
    return problems


def _digest_of(path: Path, record: str) -> str | None:
    try:
        doc = read_json(path)
    except (OSError, ValueError):
        return None
    return doc["digest"] if record == "layer.json" else doc["manifest"]["digest"]


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
