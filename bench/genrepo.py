"""Generate a realistic-size pkgbase repository and src tree for benchmarks.

    python bench/genrepo.py OUTDIR [--scale N] [--arches amd64,aarch64] [--release R --toolchain]

This is the demo release (release/demo) with its binaries scaled up: at the
default scale the minimal flavour's packages (with the static and dynamic
ones under it) hold about 60 MB, with libc, libcrypto and the runtime tools
at sizes and compressibility close to FreeBSD 14.2's.  Output is
deterministic, so two benchmark machines download and build the same bytes.

After generating, the catalogue is read back (signature checked) and each
flavour of the chosen release in config.toml is resolved the way a build
resolves it, to print what every layer holds:

    flavour  parent  packages  uncompressed  compressed  ratio  cumulative

Packages are written with zstd level 3 by default rather than pkg's 19: the
level barely changes their size on this kind of content (about 2.6x against
2.8x) but makes generation take seconds instead of a minute.  Pass
--pkg-level 19 to reproduce pkg's own output exactly.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from collections.abc import Sequence

PROJECT = Path(__file__).resolve().parent.parent
if str(PROJECT) not in sys.path:
    sys.path.insert(0, str(PROJECT))

from release import config as config_mod  # noqa: E402
from release.demo.inputs import demo_flavours  # noqa: E402
from release.planner import demo_release  # noqa: E402
from release.catalogue import open_catalogue  # noqa: E402
from release.demo.content import DEFAULT_VERSION  # noqa: E402
from release.demo.matrix import TOOLCHAIN_FAMILY  # noqa: E402
from release.demo.generate import KEY_NAME, DemoInfo, generate_demo  # noqa: E402
from release.errors import ReleaseError  # noqa: E402
from release.demo.repowriter import fingerprint_file  # noqa: E402
from release.solver import Universe, solve  # noqa: E402

# The nominal table of demo binaries totals ~24 MB for the minimal closure but
# lists only part of FreeBSD-runtime's several hundred files; 2.5x brings the
# total to the real flavour's ~60 MB (libc and libcrypto then come out larger
# than FreeBSD's, capped at 8 MB per file).
DEFAULT_SCALE = 640
DEFAULT_PKG_LEVEL = 3
MB = 1_000_000


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="genrepo.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir", type=Path, help="demo root to write (src.git, pkgbase/...)")
    parser.add_argument("--scale", type=float, default=DEFAULT_SCALE,
                        help=f"binary size scale (1 = the small demo; default {DEFAULT_SCALE})")
    parser.add_argument("--arches", default="amd64,aarch64", help="comma-separated TARGET_ARCHes")
    parser.add_argument("--pkg-level", type=int, default=DEFAULT_PKG_LEVEL,
                        help=f"zstd level of the packages (pkg uses 19; default {DEFAULT_PKG_LEVEL})")
    parser.add_argument("--config", type=Path, default=PROJECT / "config.toml",
                        help="release matrix whose flavours are reported")
    parser.add_argument("--release", default="demo",
                        help="release of --config whose ABI, repository and flavours are used")
    parser.add_argument("--version", default=DEFAULT_VERSION, help="package version (default %(default)s)")
    parser.add_argument("--toolchain", action="store_true",
                        help="also the packages of 15.x's notoolchain and toolchain flavours, and report "
                             "them (with a 15.x release: --release current)")
    return parser.parse_args(argv)


def catalogue_rows(info: DemoInfo, arch: str, repo: str) -> dict[str, dict]:
    """The repository's catalogue, verified against the demo key, as solver rows."""
    path = info.repositories[(arch, repo)]
    with tempfile.TemporaryDirectory() as trust:
        (Path(trust) / "trusted").mkdir()
        (Path(trust) / "trusted" / KEY_NAME).write_bytes(fingerprint_file(info.pubkey_pem))
        catalogue = open_catalogue(path / "packagesite.pkg", f"{path}/packagesite.pkg",
                                   signature_type="fingerprints", fingerprints=Path(trust))
    return {name: dict(entry.raw) for name, entry in catalogue.entries.items()}


def flavour_table(rows: dict[str, dict], label: str, release: config_mod.Release,
                  names: Sequence[str] | None = None) -> list[str]:
    """One line per flavour (as the demo src defines the release's family, or the flavours *names*): what its
    layer adds, and the running total."""
    plan = [(f.name, f.parent, tuple(dict(release.packages).get(f.name, f.packages)))
            for f in demo_flavours(release.branch, names)]
    resolved = solve(Universe(rows, label), plan)
    lines = [f"{'flavour':<12} {'parent':<10} {'packages':>8} {'uncompressed':>13} {'compressed':>11} "
             f"{'ratio':>6} {'cumulative':>11}"]
    total = 0
    for name, parent, _ in plan:
        packages = resolved[name]["packages"]
        flat = sum(p["flatsize"] for p in packages)
        packed = sum(p["pkgsize"] for p in packages)
        total += flat
        lines.append(f"{name:<12} {parent or '-':<10} {len(packages):>8} {flat / MB:>10.1f} MB "
                     f"{packed / MB:>8.1f} MB {flat / max(packed, 1):>6.2f} {total / MB:>8.1f} MB")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    arches = tuple(a for a in args.arches.split(",") if a)
    try:
        cfg = config_mod.load(args.config)
        if args.release not in cfg.releases:
            print(f"{args.config.name}: no release {args.release!r}", file=sys.stderr)
            return 2
        release = cfg.releases[args.release]
        demo = demo_release(release)
        started = time.monotonic()
        info = generate_demo(args.outdir, arches=arches, abi_major=demo.abi_major,
                             repos={demo.repo: args.version}, scale=args.scale, pkg_level=args.pkg_level,
                             toolchain=args.toolchain)
        elapsed = time.monotonic() - started
        print(f"{args.outdir}: {'generated ' + ', '.join(info.written) if info.written else 'up to date'} "
              f"in {elapsed:.1f} s (scale {args.scale:g}, zstd level {args.pkg_level})")
        for (arch, repo) in sorted(info.repositories):
            label = f"FreeBSD:{demo.abi_major}:{arch}/{repo}"
            rows = catalogue_rows(info, arch, repo)
            flat = sum(r["flatsize"] for r in rows.values())
            packed = sum(r["pkgsize"] for r in rows.values())
            print(f"\n{label}: {len(rows)} packages, {flat / MB:.1f} MB uncompressed, "
                  f"{packed / MB:.1f} MB compressed")
            for line in flavour_table(rows, label, release, TOOLCHAIN_FAMILY if args.toolchain else None):
                print("  " + line)
    except ReleaseError as e:
        print(str(e), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
