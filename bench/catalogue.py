"""Memory of the fetch and lock steps on a very large catalogue, this tree against a baseline, in one run.

    python bench/catalogue.py [--entries 300000] [--baseline REV] [--keep DIR]

1. writes a signed pkg repository whose data catalogue holds --entries
   packages shaped like pkgbase's (about 0.8 kB of manifest each: description,
   dependencies, shared libraries, annotations), and a src tree trusting its key;
2. runs `doit fetch:<r>:amd64` (signature check, validation, catalogue.json)
   and `doit lock:<r>:amd64` (catalogue.json read back, closure solved) as
   separate processes and takes each one's peak RSS from wait4(2);
3. with --baseline, does the same with the project as it was at git revision
   REV (unpacked with `git archive`) on a work directory of its own, and
   prints both side by side with their ratio.
"""
from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import toml

PROJECT = Path(__file__).resolve().parent.parent
if str(PROJECT) not in sys.path:
    sys.path.insert(0, str(PROJECT))

from release.demo.generate import signing_key_pem, src_files  # noqa: E402
from release.demo.srcrepo import make_src_repo  # noqa: E402
from release.demo.repowriter import write_repository  # noqa: E402

RELEASE = "catalogue"
TIME = 1732838400
MB = 1 << 20


def entry(i: int) -> dict:
    name = f"FreeBSD-pkg{i:06d}"
    row = {"name": name, "origin": "base", "version": "14.2p1",
           "comment": f"Generated package {i} of a very large catalogue", "maintainer": "re@FreeBSD.org",
           "www": "https://www.FreeBSD.org", "abi": "FreeBSD:14:amd64", "arch": "freebsd:14:x86:64", "prefix": "/",
           "sum": hashlib.sha256(name.encode()).hexdigest(), "flatsize": 1000 + i, "path": f"All/{name}-14.2p1.pkg",
           "repopath": f"All/{name}-14.2p1.pkg", "licenselogic": "single", "licenses": ["BSD2CLAUSE"],
           "pkgsize": 500 + i, "desc": f"{name}: " + "a description long enough to look like a real one. " * 3,
           "categories": ["base"], "shlibs_required": ["libc.so.7", f"libpkg{max(i - 1, 0):06d}.so.1"],
           "shlibs_provided": [f"libpkg{i:06d}.so.1"], "annotations": {"FreeBSD_version": "1402000"}}
    if i:
        row["deps"] = {f"FreeBSD-pkg{i - 1:06d}": {"origin": "base", "version": "14.2p1"}}
    return row


def write_inputs(root: Path, entries: int) -> None:
    """The repository and the src tree."""
    make_src_repo(root / "src.git", {"releng/14.2": src_files()}, time=TIME)
    repo = root / "pkgbase" / "FreeBSD:14:amd64" / "base_release_2"
    repo.mkdir(parents=True)
    write_repository(repo, [entry(i) for i in range(entries)], signing_key=signing_key_pem(),
                     signature_type="fingerprints", packing_format="tzst", formats=("data",), mtime=TIME)


def write_config(tree: Path, root: Path, dest: Path) -> Path:
    """*tree*'s own config.toml with one flavour and the release served from *root*."""
    config = toml.loads((tree / "config.toml").read_text())
    config["flavours"] = {"base": {"packages": ["FreeBSD-pkg000010"], "cmd": ["/bin/sh"]}}
    config["releases"] = {RELEASE: {"version": "14.2-CATALOGUE", "branch": "releng/14.2", "repo": "base_release_2",
                                    "abi_major": 14, "arches": ["amd64"], "flavours": ["base"],
                                    "mirror": (root / "pkgbase").as_uri() + "/${ABI}/${REPO}",
                                    "src_url": (root / "src.git").as_uri(),
                                    "source": "https://git.freebsd.org/src.git"}}
    dest.write_text(toml.dumps(config))
    return dest


# wait4(2)'s peak RSS counts what a forked child shared with its parent before exec: measure from
# a small helper process, not from this one (which holds the generated catalogue's memory).
_HELPER = ("import os, subprocess, sys; p = subprocess.Popen(sys.argv[2:], cwd=sys.argv[1], stdout=subprocess.DEVNULL, "
           "stderr=subprocess.PIPE); err = p.stderr.read(); _, s, r = os.wait4(p.pid, 0); "
           "print(r.ru_maxrss, os.waitstatus_to_exitcode(s)); sys.stderr.write(err.decode()[-2000:])")


def measured(dodo: Path, config: Path, work: Path, task: str) -> tuple[float, float]:
    """(peak RSS in MiB, wall seconds) of one `doit <task>` process."""
    argv = [sys.executable, "-m", "doit", "-f", str(dodo), f"config={config}", f"workdir={work}", task]
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", _HELPER, str(dodo.parent), *argv], capture_output=True, text=True)
    elapsed = time.monotonic() - t0
    maxrss, status = proc.stdout.split()
    if status != "0":
        raise SystemExit(f"{task} ({dodo.parent}) failed: {proc.stderr}")
    return int(maxrss) / 1024, elapsed


def run_tree(dodo: Path, config: Path, work: Path) -> dict[str, tuple[float, float]]:
    # the src first (tasks are made from the fetched src), so that the measured fetch is the catalogue's
    subprocess.run([sys.executable, "-m", "doit", "-f", str(dodo), f"config={config}", f"workdir={work}",
                    "config-check"], cwd=dodo.parent, check=True, stdout=subprocess.DEVNULL)
    return {step: measured(dodo, config, work, f"{step}:{RELEASE}:amd64") for step in ("fetch", "lock")}


def baseline_tree(rev: str, dest: Path) -> Path:
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(PROJECT), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest / "dodo.py"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="catalogue.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=300_000)
    parser.add_argument("--baseline", help="git revision to measure side by side (e.g. main)")
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    args = parser.parse_args(argv)
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="bench-catalogue-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.monotonic()
        write_inputs(tmp / "inputs", args.entries)
        payload = sum(p.stat().st_size for p in (tmp / "inputs" / "pkgbase").rglob("data.pkg"))
        print(f"{args.entries} entries, data.pkg {payload / MB:.1f} MiB compressed "
              f"(written in {time.monotonic() - t0:.0f} s)")
        trees = {"this tree": PROJECT / "dodo.py"}
        if args.baseline:
            trees[f"baseline {args.baseline}"] = baseline_tree(args.baseline, tmp / "baseline")
        results = {label: run_tree(dodo, write_config(dodo.parent, tmp / "inputs", tmp / f"config-{n}.toml"),
                                   tmp / f"work-{n}") for n, (label, dodo) in enumerate(trees.items())}
        labels = list(results)
        head = f"{'step':<8}" + "".join(f" {label + ' MiB':>22} {'s':>7}" for label in labels)
        print(head + (f" {'ratio':>7}" if len(labels) == 2 else ""))
        for step in ("fetch", "lock"):
            line = f"{step:<8}" + "".join(f" {results[label][step][0]:22.0f} {results[label][step][1]:7.1f}"
                                          for label in labels)
            if len(labels) == 2:
                line += f" {results[labels[0]][step][0] / results[labels[1]][step][0]:7.2f}"
            print(line)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
