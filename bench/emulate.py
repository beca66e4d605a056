"""What running the image's own programs costs, against the built-ins (run as root).

    python bench/emulate.py [--reps 5] [--scale 640] [--keep DIR]

1. One step done three ways: the built-in pwd_mkdb (release.install.pwd_mkdb:
   /etc/passwd plus pwd.db and spwd.db from the image's master.passwd), and the
   same /etc/passwd made by an awk script in a busybox-static image, once
   natively (amd64) and once under qemu-aarch64-static (aarch64).  For the
   script: the run alone (a root already on disk) and the whole session
   (materialise the root, snapshot, run, diff, record the effects in the layer).
2. The fixed overhead of a session on a realistic-size flavour: the demo
   release at bench/genrepo.py's default scale is built up to its minimal
   layer, then the minimal image's root is materialised from the three layer
   blobs, snapshotted twice (before and after a run that changes nothing) and
   removed — time and bytes written.

Busybox comes from Debian's busybox-static packages (`apt-get download`,
arm64 needs `dpkg --add-architecture arm64 && apt-get update` first).
"""
from __future__ import annotations

import argparse
import functools
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import toml

PROJECT = Path(__file__).resolve().parent.parent
if str(PROJECT) not in sys.path:
    sys.path.insert(0, str(PROJECT))

from release.demo.generate import generate_demo, src_files  # noqa: E402
from release.emulate import Emulation, Executor, Job, choose_method  # noqa: E402
from release.install import pwd_mkdb  # noqa: E402
from release.rootfs import LayerBlob, materialise, snapshot  # noqa: E402
from release.tree import LayerTree, ParentView  # noqa: E402

MB = 1_000_000
SDE = 1732838400
DEB_ARCH = {"amd64": "amd64", "aarch64": "arm64"}
AWK = ("awk -F: '!/^[ \\t]*#/ && NF == 10 { print $1 \":*:\" $3 \":\" $4 \":\" $8 \":\" $9 \":\" $10 }' "
       "/etc/master.passwd > /etc/passwd")


def busybox(cache: Path, arch: str) -> bytes:
    out = cache / arch / "bin" / "busybox"
    if not out.is_file():
        debs = cache / "debs"
        debs.mkdir(parents=True, exist_ok=True)
        subprocess.run(["apt-get", "download", f"busybox-static:{DEB_ARCH[arch]}"], cwd=debs, check=True,
                       capture_output=True)
        deb = sorted(debs.glob(f"busybox-static_*_{DEB_ARCH[arch]}.deb"))[-1]
        subprocess.run(["dpkg-deb", "-x", str(deb), str(cache / arch)], check=True)
    return out.read_bytes()


def busybox_layer(path: Path, binary: bytes, master: bytes, group: bytes) -> LayerBlob:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        def add(name: str, kind: bytes, data: bytes = b"", mode: int = 0o644, link: str = "") -> None:
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.mtime, ti.linkname, ti.size = kind, mode, SDE, link, len(data)
            tar.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
        add("bin", tarfile.DIRTYPE, mode=0o755)
        add("bin/busybox", tarfile.REGTYPE, binary, 0o555)
        for applet in ("sh", "awk"):
            add(f"bin/{applet}", tarfile.SYMTYPE, link="busybox")
        add("etc", tarfile.DIRTYPE, mode=0o755)
        add("etc/master.passwd", tarfile.REGTYPE, master, 0o600)
        add("etc/group", tarfile.REGTYPE, group)
    return LayerBlob(path, "application/vnd.oci.image.layer.v1.tar", "sha256:bench")


def median_time(fn, reps: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def awk_session(emulation: Emulation, parent: ParentView, tmp: Path) -> bytes:
    """One emulated session running AWK over the parent's passwd files; the /etc/passwd it leaves."""
    with tempfile.TemporaryFile(dir=tmp) as spool:
        tree = LayerTree(parent, spool)
        emulation.session(tree, [Job("awk", ["/bin/sh", "-c", AWK], {}, 600)], "bench")
        return tree.read("/etc/passwd")


def step_table(tmp: Path, cache: Path, reps: int) -> list[str]:
    files = src_files()
    master, group = files["etc/master.passwd"], files["etc/group"]
    parent = ParentView(files={"/etc/master.passwd": master, "/etc/group": group})

    def builtin() -> bytes:
        with tempfile.TemporaryFile(dir=tmp) as spool:
            tree = LayerTree(parent, spool)
            pwd_mkdb(tree, {"source": "/etc/master.passwd", "directory": "/etc", "v7_passwd": True}, "bench")
            return tree.read("/etc/passwd")
    t_builtin, reference = median_time(builtin, reps)
    lines = [f"{'step':<44} {'run only s':>10} {'session s':>10} {'x built-in':>10} {'same bytes':>10}",
             f"{'pwd_mkdb built-in (passwd + pwd.db + spwd.db)':<44} {'':>10} {t_builtin:10.4f} {1:10.1f} {'-':>10}"]
    for arch in ("amd64", "aarch64"):
        method = choose_method(arch)
        ex = Executor(method, sde=SDE)
        blob = busybox_layer(tmp / f"{arch}.tar", busybox(cache, arch), master, group)
        with materialise(tmp / "roots", [blob]) as root, ex.prepared(root.path):
            t_run, _ = median_time(functools.partial(ex.run, root.path, ["/bin/sh", "-c", AWK], env={}, timeout=600,
                                                     label="awk"), reps)
        emulation = Emulation(ex, tmp / "roots", [blob], SDE)
        t_session, passwd = median_time(functools.partial(awk_session, emulation, parent, tmp), reps)
        label = f"awk passwd, {arch} ({method.kind})"
        lines.append(f"{label:<44} {t_run:10.4f} {t_session:10.4f} {t_session / t_builtin:10.1f} "
                     f"{str(passwd == reference):>10}")
    return lines


def realistic_table(tmp: Path, scale: float) -> list[str]:
    t0 = time.perf_counter()
    generate_demo(tmp / "demo", arches=("amd64",), abi_major=14, repos={"base_release_2": "14.2"},
                  scale=scale, pkg_level=3)
    cfg = toml.loads((PROJECT / "config.toml").read_text())
    demo = cfg["releases"]["demo"]
    demo.update(demo=False, arches=["amd64"], mirror=f"file://{tmp}/demo/pkgbase/${{ABI}}/${{REPO}}",
                src_url=f"file://{tmp}/demo/src.git")
    cfg["releases"] = {"bench": demo}
    config = tmp / "bench.toml"
    config.write_text(toml.dumps(cfg))
    work = tmp / "work"
    subprocess.run([sys.executable, "-m", "doit", "-f", str(PROJECT / "dodo.py"), f"config={config}",
                    f"workdir={work}", "layer:bench:amd64:minimal"], check=True, stdout=subprocess.DEVNULL)
    t_build = time.perf_counter() - t0
    blobs = []
    for flavour in ("static", "dynamic", "minimal"):
        record = json.loads((work / "build/bench/amd64" / flavour / "layer.json").read_text())
        blobs.append(LayerBlob(work / "blobs/sha256" / record["digest"][7:], record["media_type"], record["digest"]))
    t0 = time.perf_counter()
    with materialise(tmp / "roots", blobs) as root:
        t_mat = time.perf_counter() - t0
        t1 = time.perf_counter()
        before = snapshot(root.path, hashes=root.hashes)
        t_before = time.perf_counter() - t1
        t1 = time.perf_counter()
        snapshot(root.path, known=before)
        t_after = time.perf_counter() - t1
        t_remove0 = time.perf_counter()
    t_remove = time.perf_counter() - t_remove0
    files = sum(1 for n in before.values() if n.kind == "file")
    size = sum(n.size for n in before.values())
    return [f"minimal flavour at scale {scale:g}: {len(before)} paths, {files} files, {size / MB:.1f} MB "
            f"(generated and built in {t_build:.1f} s)",
            f"{'session overhead part':<44} {'s':>10} {'MB written':>10}",
            f"{'materialise (3 layer blobs, gzip)':<44} {t_mat:10.2f} {root.bytes_written / MB:10.1f}",
            f"{'snapshot before (hashes from extraction)':<44} {t_before:10.2f} {0:10.1f}",
            f"{'snapshot after (nothing changed)':<44} {t_after:10.2f} {0:10.1f}",
            f"{'remove the root':<44} {t_remove:10.2f} {0:10.1f}",
            f"{'total':<44} {t_mat + t_before + t_after + t_remove:10.2f} {root.bytes_written / MB:10.1f}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="emulate.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--scale", type=float, default=640, help="bench/genrepo.py scale of the realistic flavour")
    parser.add_argument("--keep", type=Path, help="work (and cache busybox) in this directory and keep it")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("emulate.py: needs root (the sandbox maps the image's users to their own ids)", file=sys.stderr)
        return 2
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="bench-emulate-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        for line in step_table(tmp, tmp / "busybox", args.reps):
            print(line)
        print()
        for line in realistic_table(tmp, args.scale):
            print(line)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
