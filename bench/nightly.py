"""Nightly rebuild costs: no-op, one changed package, against a cold build — side by side in one run.

    python bench/nightly.py [--scale 1] [--arches amd64,aarch64] [--keep DIR]

On config.toml's whole release matrix served from the demo data (bench/genrepo's
generator; --scale makes its binaries realistic-size), the 15.x releases with
their notoolchain and toolchain images too:

1. a first nightly (cold: every snapshot release built and published);
2. a no-op nightly: nothing changed upstream (goal: at most 1 s, zero files rewritten);
3. a one-package change: the src branch of current (main) advances by an unrelated
   commit and FreeBSD-runtime is bumped in its amd64 repository; the nightly after it;
4. a cold build of the same release (current) with a warm package cache.

For each: wall time, tasks run, files and bytes (re)written in the work
directory and the published tree (the doit state database and the work
directory lock excluded: they record the run itself).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
if str(PROJECT) not in sys.path:
    sys.path.insert(0, str(PROJECT))

from release import config as config_mod  # noqa: E402
from release.demo.generate import bump_package  # noqa: E402
from release.demo.inputs import generate_tree  # noqa: E402
from release.planner import demo_release  # noqa: E402
from release.demo.matrix import matrix_config  # noqa: E402
from release.demo.srcrepo import advance_branch  # noqa: E402
from release.fsutil import read_json  # noqa: E402
from release.matrix import resolve  # noqa: E402
from release.workspace import Workspace  # noqa: E402

MB = 1_000_000
CHANGED = "current"             # config.toml's main branch: 15.0-CURRENT


def snapshot(*roots: Path) -> dict[Path, tuple[int, int, int]]:
    files = {}
    for root in roots:
        for p in root.rglob("*"):
            if p.is_file() and not p.is_symlink() and p.name not in (".doit.db", ".lock") \
                    and "/git/" not in str(p) and "/demo/" not in str(p.relative_to(root.parent)):
                st = p.stat()
                files[p] = (st.st_ino, st.st_mtime_ns, st.st_size)
    return files


def rewritten(before: dict, after: dict) -> tuple[int, int]:
    """Files (re)written, and their bytes; a file published as a hardlink of a build output counts once."""
    changed = [p for p, v in after.items() if before.get(p) != v]
    inodes = {after[p][0]: after[p][2] for p in changed}
    return len(changed), sum(inodes.values())


def doit(config: Path, work: Path, *tasks: str) -> tuple[float, int]:
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "doit", "-f", str(PROJECT / "dodo.py"), f"config={config}",
                           f"workdir={work}", *tasks], capture_output=True, text=True)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"doit {' '.join(tasks)} failed:\n{proc.stderr}")
    return wall, sum(1 for line in proc.stdout.splitlines() if line.startswith(".  "))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nightly.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1)
    parser.add_argument("--arches", default="amd64,aarch64")
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    args = parser.parse_args(argv)
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-nightly-"))
    root.mkdir(parents=True, exist_ok=True)
    arches = args.arches.split(",")
    try:
        served, tree, work = root / "served", root / "tree", root / "work"
        config = matrix_config(PROJECT / "config.toml", root / "config.toml", publish_root=tree,
                               arches=arches, served=served, toolchain=True)
        cfg = config_mod.load(config)
        generate_tree(served, [demo_release(r) for r in cfg.releases.values()], scale=args.scale, toolchain=True)
        rows = []
        t, n = doit(config, work, "nightly")
        rows.append(("first nightly (cold, every snapshot release)", t, n, None))
        before = snapshot(work, tree)
        t, n = doit(config, work, "nightly")
        rows.append(("no-op nightly (nothing changed upstream)", t, n, rewritten(before, snapshot(work, tree))))

        r = resolve(cfg, Workspace(work)).release(CHANGED)
        src = read_json(work / f"state/{CHANGED}/src.json")
        advance_branch(served / "src.git", r.branch, {"sys/kern/kern_fork.c": b"bench\n"},
                       time=src["time"] + 86400, message="sys: an unrelated change")
        bump_package(served, arch=arches[0], abi_major=r.abi_major, repo=r.repo, name="FreeBSD-runtime",
                     version="15.0p1", change=b"\n# changed\n")
        before = snapshot(work, tree)
        t_change, n = doit(config, work, "nightly")
        rows.append(("nightly after one changed package (+1 src commit)", t_change, n,
                     rewritten(before, snapshot(work, tree))))

        cold = root / "cold"
        shutil.copytree(work / "cache", cold / "cache")          # warm package cache, nothing else
        before = snapshot(cold)
        t_cold, n = doit(config, cold, f"build:{CHANGED}")
        rows.append((f"cold build of {CHANGED} (warm package cache)", t_cold, n, rewritten(before, snapshot(cold))))
        report(args, rows, t_change / t_cold)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


def report(args, rows: list, ratio: float) -> None:
    print(f"matrix from config.toml on demo data, scale {args.scale:g}, arches {args.arches}, cpus {os.cpu_count()}")
    print()
    print(f"{'run':<52} {'wall s':>7} {'tasks':>6} {'files':>6} {'MB written':>11}")
    for name, t, n, w in rows:
        files, size = w if w else ("", 0)
        print(f"{name:<52} {t:7.2f} {n:6d} {str(files):>6} {size / MB if w else float('nan'):11.2f}")
    print()
    print(f"one-package-change nightly / cold build of the same release: {ratio:.2f}")


if __name__ == "__main__":
    sys.exit(main())
