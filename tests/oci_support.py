"""Validate emitted JSON against the OCI image-spec v1.1.1 schemas in tests/data/schemas.

The schemas are draft-04 and refer to each other both by their ``id`` URLs
and by relative file names (``defs.json#/...``) that resolve against the
referring schema's id, which lives under https://opencontainers.org/schema/
or .../schema/image/.  So every file is registered under both prefixes plus
its own id, in one registry.

Use the ``validate`` fixture (tests/conftest.py loads this module as a plugin)::

    def test_x(validate):
        validate(manifest, "manifest")      # "manifest" | "index" | "config" | "layout"
"""
from __future__ import annotations

import functools
import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest
from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from release import oci
from release.compress import Blob, open_blob_writer
from release.tarstream import TarEntry, TarStream

SCHEMA_SUBDIR = Path("schemas") / "oci-image-spec-v1.1.1"
PREFIXES = ("https://opencontainers.org/schema/", "https://opencontainers.org/schema/image/")
SCHEMA_FILES = {
    "manifest": "image-manifest-schema.json",
    "index": "image-index-schema.json",
    "config": "config-schema.json",
    "layout": "image-layout-schema.json",
    "descriptor": "content-descriptor.json",
}


@functools.cache
def load_validators(schema_dir: Path) -> dict[str, Draft4Validator]:
    """One draft-04 validator per document kind, sharing a registry of all schemas."""
    contents = {path.name: json.loads(path.read_text()) for path in sorted(schema_dir.glob("*.json"))}
    registry = Registry()
    for name, schema in contents.items():
        resource: Resource = DRAFT4.create_resource(schema)
        uris = [prefix + name for prefix in PREFIXES]
        if "id" in schema:
            uris.append(schema["id"])
        registry = registry.with_resources((uri, resource) for uri in uris)
    registry = registry.crawl()
    return {kind: Draft4Validator(contents[file], registry=registry,
                                  format_checker=Draft4Validator.FORMAT_CHECKER)
            for kind, file in SCHEMA_FILES.items()}


def check(schema_dir: Path, doc: dict, kind: str) -> None:
    """AssertionError listing every schema violation of *doc* as a *kind*."""
    validator = load_validators(schema_dir)[kind]
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        raise AssertionError(f"{kind} fails the OCI schema: " + "; ".join(
            f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors))


@pytest.fixture(scope="session")
def validate(test_data: Path) -> Callable[[dict, str], None]:
    schema_dir = test_data / SCHEMA_SUBDIR
    return functools.partial(check, schema_dir)


# --- small real images for layout/archive tests ---------------------------------------

def sample_layer(size: int, seed: int) -> bytes:
    """*size* deterministic bytes that compress like a layer: text-like runs, then binary noise."""
    rng = random.Random(seed)
    words = [bytes(rng.choices(range(97, 123), k=rng.randint(2, 9))) for _ in range(500)]
    text = b" ".join(rng.choice(words) for _ in range(size // 10))
    return (text + rng.randbytes(size))[:size]


EPOCH = 1732838400  # 2024-11-29T00:00:00Z


def file_entry(name: str, size: int, mode: int = 0o644) -> TarEntry:
    return TarEntry(name, "file", mode, 0, 0, "root", "wheel", EPOCH, size)


def dir_entry(name: str, mode: int = 0o755) -> TarEntry:
    return TarEntry(name, "dir", mode, 0, 0, "root", "wheel", EPOCH)


def write_layer(blobs_dir: Path, members: list[tuple[TarEntry, bytes | None]],
                media: str = "tar+gzip", **writer_options) -> Blob:
    """A layer blob from (entry, data) pairs, through the real tar and blob writers.

    *writer_options* go to open_blob_writer (gzip_block_size, threads ...).
    """
    with open_blob_writer(blobs_dir, media, gzip_level=6, zstd_level=3, **writer_options) as writer:
        tar = TarStream(writer)
        for entry, data in members:
            tar.add(entry, data)
        tar.close()
        return writer.finish()


def write_image(blobs_dir: Path, layers: list[Blob], *, architecture: str = "amd64", variant: str = "",
                cmd: list[str] | None = None) -> dict:
    """Config + manifest blobs for *layers* (compress.Blob list); the manifest descriptor."""
    config = oci.image_config(
        architecture=architecture, variant=variant, created=EPOCH, cmd=cmd or [],
        env=["PATH=/sbin:/bin:/usr/sbin:/usr/bin"], diff_ids=[b.diff_id for b in layers],
        history=[{"created_by": f"layer {i}", "comment": "test"} for i in range(len(layers))],
        labels={"org.freebsd.test": "yes"})
    config_desc = oci.write_json_blob(blobs_dir, config, oci.MEDIA_CONFIG)
    manifest = oci.image_manifest(config_desc, [b.descriptor() for b in layers],
                                  {"org.opencontainers.image.version": "14.2-RELEASE"})
    return oci.write_json_blob(blobs_dir, manifest)
