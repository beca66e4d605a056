"""FreeBSD's own image recipe on this pipeline's packages: the peer column of bench/build.py.

bench/make-oci-image.sh is release/scripts/make-oci-image.sh transcribed for
Linux.  run_recipe() runs it for every flavour of every architecture, parents
first, each image on the packages the pipeline's layer of that flavour
installs (its lock's package set, from the same package cache): serially
(one architecture after the other), or with every architecture's family at
once, as `make -j` would run the per-architecture release targets.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
if str(PROJECT) not in sys.path:
    sys.path.insert(0, str(PROJECT))

from release.cache import PackageCache  # noqa: E402
from release.records import PackageSet  # noqa: E402
from release.workspace import Workspace  # noqa: E402

SCRIPT = Path(__file__).resolve().parent / "make-oci-image.sh"


def family_commands(work: Path, release: str, arch: str, chain: list[tuple[str, str, list[str]]],
                    out: Path) -> list[tuple[list[str], dict]]:
    """The script's invocations for one architecture: (flavour, parent, Cmd) in build order."""
    ws, cache = Workspace(work), PackageCache(work / "cache" / "packages")
    commands = []
    for flavour, parent, cmd in chain:
        packages = PackageSet.load(ws.packages_json(release, arch, flavour)).packages
        argv = ["sh", str(SCRIPT), str(out / arch), flavour, parent, arch, str(out / arch / f"{flavour}.txz"),
                *(str(cache.path_for(p.sum)) for p in packages)]
        commands.append((argv, {**os.environ, "OCI_CMD": " ".join(cmd)}))
    return commands


def _run_family(commands: list[tuple[list[str], dict]], errors: list) -> None:
    for argv, env in commands:
        proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if proc.returncode:
            errors.append(f"{' '.join(argv[2:7])}: {proc.stderr.strip()[-500:]}")
            return


def run_recipe(work: Path, release: str, arches: list[str], chain: list[tuple[str, str, list[str]]],
               out: Path, parallel: bool) -> dict:
    """Wall time of the recipe over every family, and the archives it wrote."""
    shutil.rmtree(out, ignore_errors=True)
    families = []
    for arch in arches:
        (out / arch).mkdir(parents=True)
        families.append(family_commands(work, release, arch, chain, out))
    errors: list[str] = []
    t0 = time.monotonic()
    if parallel:
        threads = [threading.Thread(target=_run_family, args=(f, errors)) for f in families]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:
        for f in families:
            _run_family(f, errors)
    wall = time.monotonic() - t0
    if errors:
        raise SystemExit("FreeBSD's recipe failed: " + "; ".join(errors))
    archives = sorted(out.glob("*/*.txz"))
    return {"wall": wall, "archives": len(archives), "bytes": sum(a.stat().st_size for a in archives)}
