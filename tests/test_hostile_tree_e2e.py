"""A download tree whose existing contents are hostile, through `doit publish` and `doit verify-tree`.

Publish never follows a symlink it did not create and never deletes outside
the tree: a foreign entry where it expects its own is one line and exit
status 2, and whatever the foreign entry points at stays untouched.  And
verify-tree accepts the signed snapshot tree publish just made.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import toml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.hostile_support import ARCH, RELEASE, Hostile, hostile_release
from tests.pipeline_support import doit, error_lines

VERSION = "15.0-CURRENT"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Hostile, Path]:
    """A snapshot release, signed, built once; each test publishes a copy of its work directory."""
    root = tmp_path_factory.mktemp("tree-input")
    key = ec.generate_private_key(ec.SECP256R1())
    (root / "release.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    (root / "release.pub").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    h = hostile_release(root, {}, release={"kind": "snapshot", "version": VERSION})
    config = toml.loads(h.config.read_text())
    config["signing"] = {"key": str(root / "release.key"), "public_key": str(root / "release.pub")}
    h.config.write_text(toml.dumps(config))
    doit(h.config, h.work, f"build:{RELEASE}")
    return h, root


def publish(h: Hostile, tmp: Path, tree: Path, *tasks: str):
    work = tmp / "work"
    if not work.exists():
        shutil.copytree(h.work, work, symlinks=True)
    return doit(h.config, work, *(tasks or (f"publish:{RELEASE}",)), check=False,
                env={"RELEASE_PUBLISH_ROOT": str(tree)})


def build_date(h: Hostile) -> str:
    return json.loads((h.work / "state" / RELEASE / "src.json").read_text())["build_date"]


def arch_dir(tree: Path) -> Path:
    return tree / "snapshots" / "OCI-IMAGES" / VERSION / ARCH


def victim(tmp: Path) -> tuple[Path, dict[str, bytes]]:
    """A directory outside the tree with files a confused publish would overwrite or delete."""
    target = tmp / "victim"
    target.mkdir()
    files = {".partial-precious": b"swept by mistake?\n", "CHECKSUM.SHA256": b"not yours\n", "notes": b"keep\n"}
    for name, data in files.items():
        (target / name).write_bytes(data)
    return target, files


def untouched(target: Path, files: dict[str, bytes]) -> bool:
    return sorted(p.name for p in target.iterdir()) == sorted(files) and \
        all((target / n).read_bytes() == d for n, d in files.items())


def one_line(proc) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    [line] = error_lines(proc)
    return line


def test_verify_tree_accepts_the_signed_snapshot_tree_publish_just_made(built, tmp_path: Path) -> None:
    h, _ = built
    tree = tmp_path / "tree"
    assert publish(h, tmp_path, tree).returncode == 0
    day = arch_dir(tree) / build_date(h)
    assert any(p.name.endswith(".sig") and p.name.startswith("CHECKSUM.SHA256-") for p in day.iterdir())
    proc = publish(h, tmp_path, tree, "verify-tree")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith(f"{tree}: 1 published directory verified")


@pytest.mark.parametrize("date", ["today", "20000101"])       # the build's own date, or an old one to prune
def test_a_symlinked_date_directory_is_refused_and_its_target_untouched(built, tmp_path: Path, date: str) -> None:
    h, _ = built
    tree = tmp_path / "tree"
    target, files = victim(tmp_path)
    day = arch_dir(tree) / (build_date(h) if date == "today" else date)
    day.parent.mkdir(parents=True)
    day.symlink_to(target)
    assert one_line(publish(h, tmp_path, tree)) == (
        f"publish:{RELEASE}: {day}: a symlink (to {target}) where publish expects its own directory; "
        "refusing to follow or replace it")
    assert untouched(target, files)


@pytest.mark.parametrize("where", ["Latest", "date"])
def test_a_foreign_symlink_among_the_published_files_is_refused(built, tmp_path: Path, where: str) -> None:
    h, _ = built
    tree = tmp_path / "tree"
    assert publish(h, tmp_path, tree).returncode == 0
    target, files = victim(tmp_path)
    if where == "Latest":           # publish makes links there, but only ../<date>/<file> ones
        link, aim, wanted = arch_dir(tree) / "Latest" / "BUILDINFO.json", target / "notes", "link to ../<date>/<file>"
    else:                           # and none at all in a date directory
        day = arch_dir(tree) / build_date(h)
        link = next(p for p in day.iterdir() if p.name.startswith("CHECKSUM.SHA256-") and p.name.endswith(".sig"))
        aim, wanted = target / "CHECKSUM.SHA256", "file"
    link.unlink()
    link.symlink_to(aim)
    assert one_line(publish(h, tmp_path, tree)) == (
        f"publish:{RELEASE}: {link}: a symlink (to {aim}) where publish expects its own {wanted}; "
        "refusing to follow or replace it")
    assert untouched(target, files)


def test_a_file_where_the_tree_needs_a_directory_is_one_line(built, tmp_path: Path) -> None:
    h, _ = built
    tree = tmp_path / "tree"
    (tree / "snapshots" / "OCI-IMAGES").mkdir(parents=True)
    (tree / "snapshots" / "OCI-IMAGES" / VERSION).write_text("a file\n")
    assert one_line(publish(h, tmp_path, tree)) == (
        f"publish:{RELEASE}: {tree / 'snapshots' / 'OCI-IMAGES' / VERSION}: a file where publish expects its own "
        "directory; refusing to follow or replace it")
    root_file = tmp_path / "not-a-tree"
    root_file.write_text("x\n")
    assert one_line(publish(h, tmp_path, root_file)) == (
        f"publish:{RELEASE}: {root_file}: the publish root is not a directory")
