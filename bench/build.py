"""Cold build of a realistic-size release family, against its floor and FreeBSD's own recipe, in one run.

    python bench/build.py [--family toolchain|minimal] [--scale N] [--arches amd64,aarch64]
                          [--jobs N] [--rounds N] [--no-recipe] [--xz-floor] [--keep DIR]

1. generates the family's repository (release/demo at a realistic scale):
   "toolchain" (default) is FreeBSD 15's static, dynamic, runtime, notoolchain
   and toolchain images at real size (scale 256: the toolchain layer holds
   1.15 GB); "minimal" is 14.x's static, dynamic and minimal at scale 640;
2. warms the package cache (fetch, lock, download);
3. builds cold, each time with one `doit build` in a fresh process: -n 1 and
   -n --jobs (default: the CPU count), recording wall time, the time of each
   stage's tasks, peak RSS of any process of the run and the bytes read and
   written; the archives of every build must be byte-identical.  It does so
   in --rounds rounds (default 3), spread over the run: before FreeBSD's
   recipe, between its serial and its parallel run, and after.  A build is a
   sample of half a minute of the machine's speed, the recipe a run of many
   minutes; on a shared machine the two drift apart, so the tables show the
   round with the median total of each mode and list every round's total;
4. times writing /var/db/pkg/local.sqlite for every flavour that ships pkg,
   the way the layer task writes it, against the layer stage of the same build;
5. runs FreeBSD's recipe (bench/make-oci-image.sh, bench/recipe.py) on the
   same packages: serially, then with every architecture's family at once;
6. measures the floor on this run's own inputs and outputs, one thread:
   decompressing every package once, gzip -6 of each distinct layer once, and
   the xz "store" wrapping of each distinct archive blob once (the format this
   project writes); with --xz-floor also xz -6 of each distinct blob once.

Everything is printed as tables; ratios are of figures measured in this run.
Other processes on the machine are accounted for: each phase reports the CPU
time the rest of the machine used while it ran (from /proc/stat).
"""
from __future__ import annotations

import argparse
import functools
import gzip
import hashlib
import json
import lzma
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import toml
import zstandard

PROJECT = Path(__file__).resolve().parent.parent
for path in (PROJECT, PROJECT / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from recipe import run_recipe  # noqa: E402

from release.archive import xz_store_stream  # noqa: E402
from release.cache import PackageCache  # noqa: E402
from release.compress import available_cpus  # noqa: E402
from release.demo.generate import generate_demo  # noqa: E402

STAGES = ("layer", "image", "index", "sbom", "archive", "checksum")
MB = 1_000_000
CHUNK = 1 << 20
RELEASE = "bench"


@dataclass(frozen=True)
class Family:
    flavours: tuple[str, ...]
    branch: str             # the demo src branch: its newvers.sh says the version, its src the images
    abi_major: int
    repo: str               # where pkg.FreeBSD.org would publish that branch's pkgbase
    version: str            # the packages' version
    scale: float
    toolchain: bool


FAMILIES = {
    # main is 15.0-CURRENT; its Makefile.oci builds static, dynamic and runtime, and its
    # release/tools/oci-image-{notoolchain,toolchain}.conf define the other two
    "toolchain": Family(("static", "dynamic", "runtime", "notoolchain", "toolchain"), "main", 15, "base_latest",
                        "15.0", 256, True),
    "minimal": Family(("static", "dynamic", "minimal"), "releng/14.2", 14, "base_release_2", "14.2", 640, False),
}

RUNNER = """
import json, resource, sys, time
from doit.cmd_base import DodoTaskLoader
from doit.doit_cmd import DoitMain

t0 = time.monotonic()
code = DoitMain(DodoTaskLoader()).run(["-f", sys.argv[1], "run", *sys.argv[3:]])
wall = time.monotonic() - t0
# Peak resident set of any process of the run, read once at the end: this process's own and the largest
# of its waited-for children's (doit's workers at -n 2).  Polling /proc from a thread of this process
# instead would take CPU and the GIL from the build it measures.  ru_maxrss survives exec(), so this
# process is started by a shell that forks it (run_doit), not by the large bench process itself.
rss_kb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
             resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
io_ = dict(line.split(": ") for line in open("/proc/self/io").read().splitlines())
json.dump({"code": code, "wall": wall, "rss_kb": rss_kb,
           "read": int(io_["rchar"]), "written": int(io_["wchar"])}, open(sys.argv[2], "w"))
"""


# --------------------------------------------------------------------------- the machine

def cpu_jiffies() -> tuple[int, int]:
    """(busy, total) clock ticks of every CPU since boot (/proc/stat)."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def own_cpu() -> float:
    """CPU seconds of this process and its waited-for children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class Phase:
    """Wall time of a phase, and the CPU time the rest of the machine used meanwhile."""

    def __enter__(self) -> Phase:
        self.busy0, self.total0 = cpu_jiffies()
        self.own0, self.t0 = own_cpu(), time.monotonic()
        return self

    def __exit__(self, *exc) -> None:
        busy, total = cpu_jiffies()
        tick = os.sysconf("SC_CLK_TCK")
        self.wall = time.monotonic() - self.t0
        self.cpu = own_cpu() - self.own0
        self.others = max(0.0, (busy - self.busy0) / tick - self.cpu)
        self.available = (total - self.total0) / tick

    def load(self) -> str:
        return f"{self.others:.1f} of {self.available:.1f} CPU-s ({100 * self.others / max(self.available, 1e-9):.0f}%)"


# --------------------------------------------------------------------------- the build

def write_config(root: Path, family: Family, arches: list[str]) -> Path:
    cfg = toml.loads((PROJECT / "config.toml").read_text())
    release = cfg["releases"]["demo"]
    release.pop("version", None)                # the branch's newvers.sh says it
    release.update(demo=False, arches=arches, mirror=f"file://{root}/demo/pkgbase/${{ABI}}/${{REPO}}",
                   src_url=f"file://{root}/demo/src.git", branch=family.branch, flavours=list(family.flavours))
    cfg["releases"] = {RELEASE: release}
    path = root / "bench.toml"
    path.write_text(toml.dumps(cfg))
    return path


def run_doit(config: Path, work: Path, tasks: list[str], out: Path) -> dict:
    """Run doit on *tasks* in a fresh process; wall time, peak RSS, bytes, per-task times, machine load."""
    times = out.with_suffix(".tasks.json")
    env = {**os.environ, "RELEASE_CONFIG": str(config), "RELEASE_WORKDIR": str(work),
           "RELEASE_TASK_TIMES": str(times)}
    with Phase() as phase:
        # sh forks the runner (not exec: a command follows), so its ru_maxrss starts from sh's size, not ours
        subprocess.run(["sh", "-c", '"$@"; exit $?', "sh", sys.executable, "-c", RUNNER, str(PROJECT / "dodo.py"),
                        str(out), *tasks], env=env, check=True, stdout=subprocess.DEVNULL)
    result = json.loads(out.read_text())
    result["tasks"] = json.loads(times.read_text()) if times.exists() else {}
    result["load"], result["cpu"] = phase.load(), phase.cpu
    if result["code"] != 0:
        raise SystemExit(f"doit {' '.join(tasks)} failed")
    return result


def clean(work: Path) -> None:
    """Back to a cold build with a warm package cache: keep packages, catalogues, locks and src only."""
    for sub in ("blobs", "out", "layers", "cache/xz", "cache/meta", "cache/builtins", "tmp"):
        shutil.rmtree(work / sub, ignore_errors=True)
    for record in [*(work / "build").rglob("*.json")]:
        if record.name != "packages.json":      # the lock's per-flavour package sets stay
            record.unlink()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def archive_sums(work: Path) -> dict[str, str]:
    return {p.name: file_sha256(p) for p in sorted((work / "out" / RELEASE).glob("*/*.txz"))}


def family_chain(config: Path, work: Path, family: Family) -> list[tuple[str, str, list[str]]]:
    """(flavour, parent, Cmd) of the family as the build resolved it from the release's src."""
    from release.config import load
    from release.matrix import resolve
    from release.workspace import Workspace
    m = resolve(load(config, workdir=work), Workspace(work))
    return [(f, m.flavour(RELEASE, f).parent or "", list(m.flavour(RELEASE, f).cmd)) for f in family.flavours]


def pkgdb_time(config: Path, work: Path, arches: list[str], flavours: tuple[str, ...]) -> dict:
    """Seconds spent writing local.sqlite for each layer that has one, as the layer stage does it."""
    from release.config import load
    from release.layer import read_inputs
    from release.matrix import resolve
    from release.pkgmeta import write_pkgdb_entry
    from release.planner import layer_plan
    from release.tree import LayerTree, ParentView
    from release.workspace import Workspace
    m = resolve(load(config, workdir=work), Workspace(work))
    out = {"layers": 0, "packages": 0, "seconds": 0.0}
    for arch in arches:
        for flavour in flavours:
            plan = layer_plan(m, RELEASE, arch, flavour)
            if not plan.pkgdb:
                continue
            inputs = read_inputs(plan)
            ws = plan.workspace
            with tempfile.TemporaryFile(dir=ws.tmp()) as spool:
                tree = LayerTree(ParentView(), spool)
                out["seconds"] += timed(functools.partial(
                    write_pkgdb_entry, ws, tree, list(inputs.pkgdb_packages), schema=plan.pkgdb.schema,
                    time=inputs.src.source_date_epoch, repository=plan.pkgdb.repository, metas={}))
            out["layers"] += 1
            out["packages"] += len(inputs.pkgdb_packages)
    return out


# --------------------------------------------------------------------------- the floor

def timed(fn) -> float:
    t0 = time.monotonic()
    fn()
    return time.monotonic() - t0


def chunks(path: Path):
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def floor(work: Path, arches: list[str], flavours: tuple[str, ...], scratch: Path, xz_floor: bool) -> dict:
    """The unavoidable work, on this run's own inputs and outputs, one thread, streamed."""
    packages = {}
    for a in arches:
        lock = json.loads((work / f"locks/{RELEASE}/{a}.json").read_text())
        for flavour in lock["flavours"].values():
            for p in flavour["packages"]:
                packages[p["sum"]] = p
    cache = PackageCache(work / "cache" / "packages")
    paths = [cache.path_for(s) for s in packages]

    def decompress() -> None:
        for path in paths:
            with open(path, "rb") as f, zstandard.ZstdDecompressor().stream_reader(f) as r:
                while r.read(CHUNK):
                    pass
    layers = {json.loads((work / f"build/{RELEASE}/{a}/{f}/layer.json").read_text())["digest"]
              for a in arches for f in flavours}
    blobs = [work / "blobs/sha256" / d[7:] for d in sorted(layers)]
    tars = []
    for n, blob in enumerate(blobs):         # uncompressed copies, so compressing reads no gzip
        tars.append(scratch / f"layer-{n}.tar")
        with gzip.open(blob, "rb") as src, open(tars[-1], "wb") as dst:
            shutil.copyfileobj(src, dst, CHUNK)

    def compress_layers() -> None:
        for tar in tars:
            c = zlib.compressobj(6, zlib.DEFLATED, 31)
            for chunk in chunks(tar):
                c.compress(chunk)
            c.flush()

    def xz_store() -> None:
        for blob in blobs:
            for _ in xz_store_stream(chunks(blob)):
                pass

    def xz_each_blob() -> None:
        for blob in blobs:
            c = lzma.LZMACompressor(format=lzma.FORMAT_XZ, preset=6)
            for chunk in chunks(blob):
                c.compress(chunk)
            c.flush()
    sizes = [t.stat().st_size for t in tars]
    out = {"packages": len(paths), "package_bytes": sum(p.stat().st_size for p in paths),
           "layers": len(blobs), "layer_bytes": sum(sizes), "largest_layer": max(sizes),
           "blob_bytes": sum(b.stat().st_size for b in blobs)}
    with Phase() as phase:
        out.update(decompress=timed(decompress), compress=timed(compress_layers), xz_store=timed(xz_store))
    out["load"], out["cpu"] = phase.load(), phase.cpu
    out["xz"] = timed(xz_each_blob) if xz_floor else None
    for tar in tars:
        tar.unlink()
    return out


# --------------------------------------------------------------------------- the run

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="build.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", choices=sorted(FAMILIES), default="toolchain")
    parser.add_argument("--scale", type=float, help="binary size scale (default: the family's)")
    parser.add_argument("--arches", default="amd64,aarch64")
    parser.add_argument("--jobs", type=int, default=available_cpus(),
                        help="doit -n of the parallel build (default: the CPU count)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="cold builds of each mode, spread over the run; the median is reported")
    parser.add_argument("--no-recipe", action="store_true", help="skip FreeBSD's recipe")
    parser.add_argument("--xz-floor", action="store_true",
                        help="also time xz -6 of every distinct blob (minutes at toolchain size)")
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    family = FAMILIES[args.family]
    scale = args.scale or family.scale
    arches = args.arches.split(",")
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-build-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        t_gen = timed(lambda: generate_demo(root / "demo", arches=arches, abi_major=family.abi_major,
                                            repos={family.repo: family.version}, branches=(family.branch,),
                                            scale=scale, pkg_level=3, toolchain=family.toolchain))
        config = write_config(root, family, arches)
        work = root / "work"
        run_doit(config, work, [f"download:{RELEASE}:{a}" for a in arches], root / "warm.json")
        rounds: dict[str, list[dict]] = {"serial": [], "parallel": []}

        def build_round() -> None:
            for mode, jobs in (("serial", []), ("parallel", ["-n", str(args.jobs)])):
                clean(work)
                run = run_doit(config, work, [*jobs, f"build:{RELEASE}"], root / f"{mode}.json")
                run["archives"] = archive_sums(work)
                rounds[mode].append(run)

        build_round()
        pkgdb = pkgdb_time(config, work, arches, family.flavours)
        archive_bytes = sum(p.stat().st_size for p in (work / "out" / RELEASE).glob("*/*.txz"))
        recipes = {}
        if not args.no_recipe:
            chain = family_chain(config, work, family)
            for mode in ("serial", "parallel"):
                with Phase() as phase:
                    recipes[mode] = run_recipe(work, RELEASE, arches, chain, root / "recipe", mode == "parallel")
                recipes[mode]["load"], recipes[mode]["cpu"] = phase.load(), phase.cpu
                if mode == "serial" and len(rounds["serial"]) < args.rounds - 1:
                    build_round()
            shutil.rmtree(root / "recipe", ignore_errors=True)
        while len(rounds["serial"]) < args.rounds:
            build_round()           # the last leaves the work directory built for the floor
        serial, parallel = median_run(rounds["serial"]), median_run(rounds["parallel"])
        serial["rounds"], parallel["rounds"] = rounds["serial"], rounds["parallel"]
        fl = floor(work, arches, family.flavours, root, args.xz_floor)
        report(args, family, scale, t_gen, serial, parallel, recipes, fl, archive_bytes, pkgdb)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


def median_run(runs: list[dict]) -> dict:
    """The run with the median total (the lower middle of an even count)."""
    return sorted(runs, key=lambda r: r["wall"])[(len(runs) - 1) // 2]


def stage_time(run: dict, stage: str) -> float:
    return sum(v for k, v in run["tasks"].items() if k.split(":", 1)[0] == stage)


def report(args, family: Family, scale: float, t_gen: float, serial: dict, parallel: dict, recipes: dict,
           fl: dict, archive_bytes: int, pkgdb: dict) -> None:
    n = f"-n {args.jobs}"
    print(f"family {args.family} ({', '.join(family.flavours)}), scale {scale:g}, arches {args.arches}, "
          f"{available_cpus()} CPUs: {fl['packages']} packages ({fl['package_bytes'] / MB:.1f} MB compressed), "
          f"{fl['layers']} distinct layers ({fl['layer_bytes'] / MB:.1f} MB uncompressed, the largest "
          f"{fl['largest_layer'] / MB:.1f} MB; {fl['blob_bytes'] / MB:.1f} MB gzip), "
          f"{len(serial['archives'])} archives ({archive_bytes / MB:.1f} MB); repository generated in {t_gen:.1f} s")
    print()
    print(f"cold build, warm package cache    {'-n 1':>8} {n:>8}   (task seconds; {n} tasks overlap)")
    for stage in STAGES:
        print(f"  {stage:<32} {stage_time(serial, stage):8.2f} {stage_time(parallel, stage):8.2f}")
    print(f"  {'total (wall)':<32} {serial['wall']:8.2f} {parallel['wall']:8.2f}")
    print(f"  {'CPU seconds (every process)':<32} {serial['cpu']:8.2f} {parallel['cpu']:8.2f}")
    print(f"  {'peak RSS of any process, MB':<32} {serial['rss_kb'] / 1024:8.1f} {parallel['rss_kb'] / 1024:8.1f}")
    print(f"  {'read / written, MB':<32} {serial['read'] / MB:8.0f} {serial['written'] / MB:8.0f}  (-n 1)")
    print(f"  {'rest of the machine meanwhile':<32} {serial['load']:>17} | {parallel['load']}")
    every = [r["archives"] for r in serial["rounds"] + parallel["rounds"]]
    walls = [", ".join(f"{r['wall']:.2f}" for r in run["rounds"]) for run in (serial, parallel)]
    print(f"  {'total (wall) of each round':<32} {walls[0]} | {walls[1]}  (the median is above)")
    print(f"  archives of every build ({len(every)}: -n 1 and {n}, every round) byte-identical: "
          f"{all(a == every[0] for a in every)}")
    print(f"  local.sqlite of {pkgdb['layers']} layers ({pkgdb['packages']} packages), written again alone: "
          f"{pkgdb['seconds']:.2f} s, {100 * pkgdb['seconds'] / max(stage_time(serial, 'layer'), 1e-9):.1f}% "
          "of the -n 1 layer stage")
    print()
    floor_written = fl["decompress"] + fl["compress"] + fl["xz_store"]
    print(f"floor, one thread                          {'s':>8}   (rest of the machine: {fl['load']})")
    print(f"  {'decompress every package once':<40} {fl['decompress']:8.2f}")
    print(f"  {'gzip -6 each distinct layer once':<40} {fl['compress']:8.2f}")
    print(f"  {'xz store each distinct blob once':<40} {fl['xz_store']:8.2f}")
    print(f"  {'floor of the format written':<40} {floor_written:8.2f}   ({fl['cpu']:.2f} CPU-s)")
    if fl["xz"] is not None:
        print(f"  {'xz -6 each distinct blob once':<40} {fl['xz']:8.2f}")
    print()
    if recipes:
        print(f"FreeBSD's recipe (bench/make-oci-image.sh), same packages   {'serial':>8} {'parallel':>8}")
        print(f"  {'wall s':<58} {recipes['serial']['wall']:8.1f} {recipes['parallel']['wall']:8.1f}")
        print(f"  {'CPU seconds':<58} {recipes['serial']['cpu']:8.1f} {recipes['parallel']['cpu']:8.1f}")
        print(f"  {'archives MB':<58} {recipes['serial']['bytes'] / MB:8.1f} {recipes['parallel']['bytes'] / MB:8.1f}")
        print(f"  rest of the machine meanwhile: {recipes['serial']['load']} | {recipes['parallel']['load']}")
        print()
    print(f"{'ratio':<56} {'-n 1':>6} {n:>6}  target")
    print(f"  {'total / floor of the format written (one thread)':<54} {serial['wall'] / floor_written:6.2f} "
          f"{parallel['wall'] / floor_written:6.2f}  <= 1.3 (-n 1), <= 0.75 ({n})")
    if recipes:
        print(f"  {'FreeBSD recipe / total (serial/-n 1, parallel/' + n + ')':<54} "
              f"{recipes['serial']['wall'] / serial['wall']:6.1f} {recipes['parallel']['wall'] / parallel['wall']:6.1f}"
              f"  >= 15")
    if fl["xz"] is not None:
        floor_xz = fl["decompress"] + fl["compress"] + fl["xz"]
        print(f"  {'total / floor with xz -6 of every blob':<54} {serial['wall'] / floor_xz:6.2f} "
              f"{parallel['wall'] / floor_xz:6.2f}")


if __name__ == "__main__":
    sys.exit(main())
