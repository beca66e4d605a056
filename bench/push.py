"""Pushing a release to a registry: our client against `skopeo copy`, side by side in one run.

    python bench/push.py [--scale 640] [--arches amd64,aarch64] [--work DIR]

1. builds the embedded demo release and a realistic-size one (bench/genrepo.py's
   generator at --scale, built the way bench/build.py builds it) with one
   `doit build:<release>` each; with --work an earlier run's directory is
   reused and doit only checks that everything is up to date;
2. for each release, on fresh local registries (distribution's
   `docker-registry` on 127.0.0.1, plain http):
   - our push of every flavour's multi-arch index (parents first, children
     mounting their parents' layers), then the same push again;
   - `skopeo copy --all --preserve-digests oci:<layout>:<ref> docker://...` of
     the same layouts into a fresh repository name, then the same copy again
     through a counting proxy, to see the bytes skopeo sends when everything
     is already there;
3. prints wall times, their ratio (ours / skopeo) and the blob bytes uploaded.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
if str(PROJECT) not in sys.path:
    sys.path.insert(0, str(PROJECT))

from build import write_config  # noqa: E402  (bench/build.py: the realistic release's config)
from release.demo.generate import generate_demo  # noqa: E402
from release.registry import Registry  # noqa: E402
from tests.registry_support import FaultProxy, RegistryServer  # noqa: E402

FLAVOURS = ("static", "dynamic", "minimal")
SIBLINGS = {"static": (), "dynamic": ("freebsd-static",), "minimal": ("freebsd-static", "freebsd-dynamic")}
MB = 1_000_000


def tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SystemExit(f"{name} not found: apt-get install {package}")
    return path


def doit(config: Path, work: Path, task: str) -> float:
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "doit", "-f", str(PROJECT / "dodo.py"), f"config={config}",
                    f"workdir={work}", task], check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - t0


def build_releases(root: Path, scale: float, arches: list[str]) -> list[tuple[str, Path]]:
    """(release name, work directory) of the demo and the realistic release, built."""
    demo_work = root / "demo-work"
    t_demo = doit(PROJECT / "config.toml", demo_work, "build:demo")
    generate_demo(root / "demo", arches=arches, abi_major=14, repos={"base_release_2": "14.2"}, scale=scale,
                  pkg_level=3)
    t_bench = doit(write_config(root, arches), root / "work", "build:bench")
    print(f"built: demo in {t_demo:.1f} s, realistic (scale {scale:g}) in {t_bench:.1f} s")
    return [("demo", demo_work), ("bench", root / "work")]


def layouts(work: Path, release: str) -> dict[str, tuple[Path, dict]]:
    """flavour -> (layout directory, its index descriptor with the ref.name annotation)."""
    out = {}
    for flavour in FLAVOURS:
        layout = work / "out" / release / "oci" / flavour
        (desc,) = json.loads((layout / "index.json").read_text())["manifests"]
        out[flavour] = (layout, desc)
    return out


def our_push(url: str, work: Path, images: dict) -> tuple[float, int, int]:
    """Wall time, blob bytes uploaded and requests of one push of every flavour by a fresh client."""
    t0 = time.monotonic()
    with Registry(url) as registry:
        for flavour, (_, desc) in images.items():
            registry.push_index_tree(f"freebsd-{flavour}", work / "blobs" / "sha256", desc,
                                     tags=["bench"], mount_from=SIBLINGS[flavour])
        return time.monotonic() - t0, registry.stats.bytes_uploaded, registry.stats.requests


def skopeo_push(skopeo: str, host: str, images: dict) -> float:
    t0 = time.monotonic()
    for flavour, (layout, desc) in images.items():
        ref = desc["annotations"]["org.opencontainers.image.ref.name"]
        subprocess.run([skopeo, "copy", "--quiet", "--all", "--preserve-digests", "--dest-tls-verify=false",
                        f"oci:{layout}:{ref}", f"docker://{host}/skopeo/freebsd-{flavour}:bench"],
                       check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - t0


def measure(release: str, work: Path, base: Path, binary: str, skopeo: str) -> dict:
    images = layouts(work, release)
    blobs = {p.name for layout, _ in images.values() for p in (layout / "blobs" / "sha256").iterdir()}
    size = sum((work / "blobs" / "sha256" / name).stat().st_size for name in blobs)
    row = {"release": release, "blobs": len(blobs), "bytes": size}
    with RegistryServer(base / f"{release}-ours", binary=binary) as ours:
        row["ours"], row["ours_bytes"], _ = our_push(ours.url, work, images)
        row["ours2"], row["ours2_bytes"], row["ours2_requests"] = our_push(ours.url, work, images)
    with RegistryServer(base / f"{release}-skopeo", binary=binary) as theirs:
        row["skopeo"] = skopeo_push(skopeo, theirs.host, images)
        with FaultProxy(theirs.url) as proxy:            # nothing injected: it only counts
            row["skopeo2"] = skopeo_push(skopeo, proxy.host, images)
            sent = [r for r in proxy.log() if "/blobs/uploads/" in r.path]
            row["skopeo2_bytes"] = sum(r.body_bytes for r in sent)
            row["skopeo2_requests"] = len(proxy.log())
    return row


def report(rows: list[dict]) -> None:
    print()
    print(f"{'release':<8} {'blobs':>5} {'MB':>7} | {'ours s':>7} {'skopeo s':>8} {'ratio':>6} | "
          f"{'ours MB up':>10} | {'2nd: ours s':>11} {'skopeo s':>8} | {'ours B up':>9} {'skopeo B up':>11} "
          f"| {'requests ours':>13} {'skopeo':>6}")
    for r in rows:
        print(f"{r['release']:<8} {r['blobs']:>5} {r['bytes'] / MB:>7.1f} | {r['ours']:>7.2f} "
              f"{r['skopeo']:>8.2f} {r['ours'] / r['skopeo']:>6.2f} | {r['ours_bytes'] / MB:>10.1f} | "
              f"{r['ours2']:>11.2f} {r['skopeo2']:>8.2f} | {r['ours2_bytes']:>9} {r['skopeo2_bytes']:>11} "
              f"| {r['ours2_requests']:>13} {r['skopeo2_requests']:>6}")
    print()
    print("first push: every flavour's index into an empty registry; ratio = ours / skopeo (below 1: ours is "
          "faster).\nsecond push: the same again; skopeo's through a counting proxy (its time includes the "
          "proxy), bytes are request bodies sent to upload URLs.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="push.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=640, help="realistic release's binary scale")
    parser.add_argument("--arches", default="amd64,aarch64")
    parser.add_argument("--work", type=Path, help="build (or reuse) the releases in this directory and keep it")
    args = parser.parse_args(argv)
    binary = tool("docker-registry", "docker-registry")
    skopeo = tool("skopeo", "skopeo")
    root = args.work or Path(tempfile.mkdtemp(prefix="bench-push-"))
    root.mkdir(parents=True, exist_ok=True)
    registries = Path(tempfile.mkdtemp(prefix="bench-push-registries-"))
    try:
        releases = build_releases(root, args.scale, args.arches.split(","))
        report([measure(release, work, registries, binary, skopeo) for release, work in releases])
    finally:
        shutil.rmtree(registries, ignore_errors=True)
        if not args.work:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
