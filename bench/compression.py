"""Compare layer and archive compressors on one realistic layer, side by side.

    python bench/compression.py [--input TARFILE] [--megabytes N]

Without --input, a deterministic tar (release.tarstream) of this host's ELF
files under /usr/lib/x86_64-linux-gnu and /usr/bin stands in for a FreeBSD
base layer (N MB, default 100).  Every row goes through the project's own
code paths (compress.open_blob_writer, archive.xz_store_stream) or liblzma
as archive.py uses it.  MB/s is over each method's own input (the gzip'ed
tar for the "xz over gzip" rows); the ratio is against the plain tar.
"""
from __future__ import annotations

import argparse
import io
import lzma
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from release.archive import xz_store_stream  # noqa: E402
from release.compress import ISAL_LEVELS, open_blob_writer  # noqa: E402
from release.tarstream import TarEntry, TarStream  # noqa: E402

SOURCES = ("/usr/lib/x86_64-linux-gnu", "/usr/bin")
MB = 1e6


def stand_in_layer(limit: int) -> bytes:
    """A tar of up to *limit* bytes of ELF files, in sorted path order."""
    paths = []
    for top in SOURCES:
        for root, dirs, files in os.walk(top):
            dirs.sort()
            paths.extend(os.path.join(root, f) for f in sorted(files))
    out = io.BytesIO()
    tar = TarStream(out)
    for path in paths:
        if os.path.islink(path) or not os.path.isfile(path):
            continue
        with open(path, "rb") as f:
            if f.read(4) != b"\x7fELF":
                continue
            data = f.read()
        data = b"\x7fELF" + data
        if out.tell() + len(data) > limit:
            continue  # one huge shared object should not end the sample early
        tar.add(TarEntry(path.lstrip("/"), "file", 0o755, 0, 0, "root", "wheel", 0, len(data)), data)
    tar.close()
    return out.getvalue()


def via_blob_writer(media: str, **levels) -> Callable[[bytes], bytes]:
    def run(data: bytes) -> bytes:
        with tempfile.TemporaryDirectory() as tmp:
            with open_blob_writer(Path(tmp), media, **levels) as writer:
                for offset in range(0, len(data), 1 << 20):
                    writer.write(data[offset:offset + (1 << 20)])
                blob = writer.finish()
            return (Path(tmp) / blob.digest[7:]).read_bytes()
    return run


def xz(preset: int) -> Callable[[bytes], bytes]:
    return lambda data: lzma.compress(data, format=lzma.FORMAT_XZ, preset=preset)


def xz_store(data: bytes) -> bytes:
    return b"".join(xz_store_stream([data[i:i + (1 << 20)] for i in range(0, len(data), 1 << 20)]))


def measure(name: str, func: Callable[[bytes], bytes], data: bytes, tar_size: int) -> bytes:
    start = time.perf_counter()
    out = func(data)
    seconds = time.perf_counter() - start
    print(f"{name:<28} {len(data) / MB:8.1f} {len(out) / MB:8.1f} {len(out) / tar_size:7.3f} "
          f"{len(data) / MB / seconds:9.1f} {seconds:7.2f}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, help="an uncompressed layer tar")
    parser.add_argument("--megabytes", type=int, default=100, help="size of the stand-in layer")
    args = parser.parse_args()
    data = args.input.read_bytes() if args.input else stand_in_layer(args.megabytes * 1_000_000)
    print(f"{'method':<28} {'in MB':>8} {'out MB':>8} {'ratio':>7} {'MB/s':>9} {'s':>7}")
    gz = {}
    for level in (1, 6, 9):
        gz[level] = measure(f"gzip -{level} (zlib)", via_blob_writer(
            "tar+gzip", gzip_level=level, zstd_level=3, gzip_engine="zlib"), data, len(data))
    for isal_level in range(4):
        level = min(k for k, v in ISAL_LEVELS.items() if v == isal_level)
        measure(f"gzip isal {isal_level} (gzip_level {level})", via_blob_writer(
            "tar+gzip", gzip_level=level, zstd_level=3, gzip_engine="isal"), data, len(data))
    for level in (3, 19):
        measure(f"zstd -{level} (1 thread)", via_blob_writer(
            "tar+zstd", gzip_level=6, zstd_level=level), data, len(data))
    measure("xz -6 over tar", xz(6), data, len(data))
    measure("xz -6 over gzip -6", xz(6), gz[6], len(data))
    measure("xz -0 over gzip -6", xz(0), gz[6], len(data))
    measure("xz store over gzip -6", xz_store, gz[6], len(data))


if __name__ == "__main__":
    main()
