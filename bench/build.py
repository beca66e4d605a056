"""Cold build of a realistic-size release with a warm package cache, against its floor.

    python bench/build.py [--scale 640] [--arches amd64,aarch64] [--keep DIR]

1. generates the realistic-size repository (bench/genrepo.py's generator:
   runtime-flavour packages of tens of MB of binary-like content);
2. warms the package cache (fetch, lock, download);
3. builds cold with one `doit build` in a fresh process, recording its wall
   time, peak RSS and the bytes it read and wrote (/proc/self/io rchar/wchar),
   and per stage (layer, image, index, archive, checksum) the time of its tasks
   (the project's reporter writes task times when RELEASE_TASK_TIMES is set);
4. times writing /var/db/pkg/local.sqlite for every flavour that ships pkg,
   the way the layer task writes it (manifests and @config texts from the
   layer metadata), against the layer stage of the same build;
5. measures, in the same run, the floor: decompressing every package once,
   compressing each distinct layer once with the configured compressor, and
   xz-compressing each distinct archive byte once (what any .txz of these
   bytes costs when its blobs are really xz-compressed) — plus the floor of the
   format this project writes, where already-gzipped layers are wrapped in xz
   "store" streams instead.

Everything is printed as one table; ratios are against the floors of the same run.
"""
from __future__ import annotations

import argparse
import gzip
import json
import lzma
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import toml
import zstandard

PROJECT = Path(__file__).resolve().parent.parent
if str(PROJECT) not in sys.path:
    sys.path.insert(0, str(PROJECT))

from release.archive import xz_store_stream  # noqa: E402
from release.demo.generate import generate_demo  # noqa: E402

STAGES = ("layer", "image", "index", "sbom", "archive", "checksum")
MB = 1_000_000
RUNNER = """
import json, os, re, sys, threading, time
from doit.cmd_base import DodoTaskLoader
from doit.doit_cmd import DoitMain

peak = {"kb": 0}
done = threading.Event()

def watch():
    # peak resident set of any process of this run: this one and doit's workers (VmHWM)
    me = str(os.getpid())
    while not done.is_set():
        for pid in os.listdir("/proc"):
            try:
                status = open(f"/proc/{pid}/status").read()
            except OSError:
                continue
            if pid == me or re.search(r"PPid:\\s+" + me + r"\\b", status):
                m = re.search(r"VmHWM:\\s+(\\d+)", status)
                if m:
                    peak["kb"] = max(peak["kb"], int(m.group(1)))
        time.sleep(0.005)

threading.Thread(target=watch, daemon=True).start()
t0 = time.monotonic()
code = DoitMain(DodoTaskLoader()).run(["-f", sys.argv[1], "run", *sys.argv[3:]])
wall = time.monotonic() - t0
done.set()
io_ = dict(line.split(": ") for line in open("/proc/self/io").read().splitlines())
# not getrusage(): Linux carries ru_maxrss over exec(), so it would report the forking parent's size
json.dump({"code": code, "wall": wall, "rss_kb": peak["kb"],
           "read": int(io_["rchar"]), "written": int(io_["wchar"])}, open(sys.argv[2], "w"))
"""


def write_config(root: Path, arches: list[str]) -> Path:
    cfg = toml.loads((PROJECT / "config.toml").read_text())
    demo = cfg["releases"]["demo"]
    demo.update(demo=False, arches=arches, mirror=f"file://{root}/demo/pkgbase/${{ABI}}/${{REPO}}",
                src_url=f"file://{root}/demo/src.git")
    cfg["releases"] = {"bench": demo}
    path = root / "bench.toml"
    path.write_text(toml.dumps(cfg))
    return path


def run_doit(config: Path, work: Path, tasks: list[str], out: Path) -> dict:
    """Run doit on *tasks* in a fresh process; wall time, peak RSS, bytes and per-task times."""
    times = out.with_suffix(".tasks.json")
    env = {**os.environ, "RELEASE_CONFIG": str(config), "RELEASE_WORKDIR": str(work),
           "RELEASE_TASK_TIMES": str(times)}
    subprocess.run([sys.executable, "-c", RUNNER, str(PROJECT / "dodo.py"), str(out), *tasks], env=env,
                   check=True, stdout=subprocess.DEVNULL)
    result = json.loads(out.read_text())
    result["tasks"] = json.loads(times.read_text()) if times.exists() else {}
    if result["code"] != 0:
        raise SystemExit(f"doit {' '.join(tasks)} failed")
    return result


def clean(work: Path) -> None:
    """Back to a cold build with a warm package cache: keep packages, catalogues and locks only."""
    for sub in ("blobs", "out", "layers", "cache/xz", "cache/meta", "tmp"):
        shutil.rmtree(work / sub, ignore_errors=True)
    for record in [*(work / "build").rglob("*.json")]:
        if record.name != "packages.json":      # the lock's per-flavour package sets stay
            record.unlink()


def timed(fn) -> float:
    t0 = time.monotonic()
    fn()
    return time.monotonic() - t0


def floor(work: Path, arches: list[str], flavours: list[str]) -> dict:
    """The unavoidable work, measured on this run's own inputs and outputs."""
    locks = [json.loads((work / f"locks/bench/{a}.json").read_text()) for a in arches]
    packages = {}
    for lock in locks:
        for flavour in lock["flavours"].values():
            for p in flavour["packages"]:
                packages[p["sum"]] = p
    cache = work / "cache/packages"
    paths = [next(cache.rglob(f"{(s[2:] if s.startswith('2$') else s)}.pkg")) for s in packages]

    def decompress() -> None:
        for path in paths:
            with open(path, "rb") as f, zstandard.ZstdDecompressor().stream_reader(f) as r:
                while r.read(1 << 20):
                    pass
    layers = {json.loads((work / f"build/bench/{a}/{f}/layer.json").read_text())["digest"]
              for a in arches for f in flavours}
    blobs = [work / "blobs/sha256" / d[7:] for d in sorted(layers)]
    raw = [gzip.decompress(b.read_bytes()) for b in blobs]

    def compress_layers() -> None:
        for data in raw:
            c = zlib.compressobj(6, zlib.DEFLATED, 31)
            c.compress(data)
            c.flush()
    compressed = [b.read_bytes() for b in blobs]

    def xz_each_byte() -> None:
        for data in compressed:
            lzma.compress(data, preset=6)

    def xz_store() -> None:
        for data in compressed:
            for _ in xz_store_stream([data]):
                pass
    return {"packages": len(paths), "package_bytes": sum(p.stat().st_size for p in paths),
            "layers": len(blobs), "layer_bytes": sum(len(r) for r in raw),
            "decompress": timed(decompress), "compress": timed(compress_layers),
            "xz": timed(xz_each_byte), "xz_store": timed(xz_store)}


def pkgdb_time(config: Path, work: Path, arches: list[str], flavours: list[str]) -> dict:
    """Seconds spent writing local.sqlite for each layer that has one, as the layer stage does it."""
    from release.config import load
    from release.layer import read_inputs
    from release.pkgmeta import write_pkgdb_entry
    from release.planner import layer_plan
    from release.tree import LayerTree, ParentView
    cfg = load(config, workdir=work)
    out = {"layers": 0, "packages": 0, "seconds": 0.0}
    for arch in arches:
        for flavour in flavours:
            plan = layer_plan(cfg, "bench", arch, flavour)
            if not plan.pkgdb:
                continue
            inputs = read_inputs(plan)
            ws = plan.workspace
            with tempfile.TemporaryFile(dir=ws.tmp()) as spool:
                tree = LayerTree(ParentView(), spool)
                out["seconds"] += timed(lambda: write_pkgdb_entry(
                    ws, tree, list(inputs.pkgdb_packages), schema=plan.pkgdb.schema,
                    time=inputs.src.source_date_epoch, repository=plan.pkgdb.repository, metas={}))
            out["layers"] += 1
            out["packages"] += len(inputs.pkgdb_packages)
    return out


def report_pkgdb(build: dict, pkgdb: dict) -> None:
    layer = sum(v for k, v in build["tasks"].items() if k.split(":", 1)[0] == "layer")
    print()
    print(f"{'pkg database':<48} {'s':>8} {'of layer stage':>15}")
    print(f"{'local.sqlite, ' + str(pkgdb['layers']) + ' layers, ' + str(pkgdb['packages']) + ' packages':<48} "
          f"{pkgdb['seconds']:8.2f} {100 * pkgdb['seconds'] / layer:14.1f}%")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="build.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=640)
    parser.add_argument("--arches", default="amd64,aarch64")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="doit -n for the cold build (default: the CPU count)")
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    args = parser.parse_args(argv)
    arches = args.arches.split(",")
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-build-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        t_gen = timed(lambda: generate_demo(root / "demo", arches=arches, abi_major=14,
                                            repos={"base_release_2": "14.2"}, scale=args.scale, pkg_level=3))
        config = write_config(root, arches)
        work = root / "work"
        flavours = ["static", "dynamic", "minimal"]
        run_doit(config, work, [f"download:bench:{a}" for a in arches], root / "warm.json")
        clean(work)
        build = run_doit(config, work, ["build:bench"], root / "build.json")
        archives = sorted((work / "out/bench").glob("*/*.txz"))
        serial = {a: a.read_bytes() for a in archives}
        clean(work)
        parallel = run_doit(config, work, ["-n", str(args.jobs), "build:bench"], root / "parallel.json")
        same = all(a.read_bytes() == data for a, data in serial.items())
        del serial
        pkgdb = pkgdb_time(config, work, arches, flavours)
        fl = floor(work, arches, flavours)       # last: it holds whole layers in memory
        report(args, t_gen, build, parallel, same, fl, archives)
        report_pkgdb(build, pkgdb)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


def report(args, t_gen: float, build: dict, parallel: dict, same: bool, fl: dict, archives: list[Path]) -> None:
    total = build["wall"]
    print(f"scale {args.scale:g}, arches {args.arches}: {fl['packages']} packages "
          f"({fl['package_bytes'] / MB:.1f} MB compressed), {fl['layers']} distinct layers "
          f"({fl['layer_bytes'] / MB:.1f} MB uncompressed), {len(archives)} archives "
          f"({sum(a.stat().st_size for a in archives) / MB:.1f} MB); repository generated in {t_gen:.1f} s")
    print()
    print("cold build, one doit process (-n 1):")
    print(f"{'stage':<36} {'s':>8}")
    staged = 0.0
    for stage in STAGES:
        t = sum(v for k, v in build["tasks"].items() if k.split(":", 1)[0] == stage)
        staged += t
        print(f"{stage:<36} {t:8.2f}")
    print(f"{'fetch checks, doit, interpreter':<36} {total - staged:8.2f}")
    print(f"{'total':<36} {total:8.2f}")
    print(f"peak RSS {build['rss_kb'] / 1024:.1f} MB, read {build['read'] / MB:.1f} MB, "
          f"written {build['written'] / MB:.1f} MB")
    print(f"same cold build with doit -n {args.jobs}: {parallel['wall']:.2f} s wall, peak RSS of any process "
          f"{parallel['rss_kb'] / 1024:.1f} MB, archives byte-identical to the -n 1 build: {same}")
    print()
    floor_txz = fl["decompress"] + fl["compress"] + fl["xz"]
    floor_store = fl["decompress"] + fl["compress"] + fl["xz_store"]
    print(f"{'floor part':<46} {'s':>8}")
    print(f"{'decompress every package once':<46} {fl['decompress']:8.2f}")
    print(f"{'gzip -6 each distinct layer once':<46} {fl['compress']:8.2f}")
    print(f"{'xz -6 each distinct archive byte once':<46} {fl['xz']:8.2f}")
    print(f"{'xz store each distinct archive byte once':<46} {fl['xz_store']:8.2f}")
    print()
    print(f"{'ratio':<48} {'-n 1':>6} {'-n ' + str(args.jobs):>6}")
    print(f"{'total / floor with xz -6 of every archive blob':<48} {total / floor_txz:6.2f} "
          f"{parallel['wall'] / floor_txz:6.2f}  (floor {floor_txz:.2f} s)")
    print(f"{'total / floor of the format written (xz store)':<48} {total / floor_store:6.2f} "
          f"{parallel['wall'] / floor_store:6.2f}  (floor {floor_store:.2f} s)")


if __name__ == "__main__":
    sys.exit(main())
