"""Snapshot signatures live and die with their snapshots: three nightlies, keep = 2.

15.0-CURRENT (amd64) is built, pushed to Debian's docker-registry on
127.0.0.1 and published nightly, with the OpenPGP key from the environment;
the branch moves a day between nightlies.  Each snapshot's tags
(15.snap, 15.snap<YYYYMMDD>) are signed into the tree's store; when publish
prunes the oldest date, the signatures only that snapshot brought go with it,
and the rest stay contiguous.  The store's default lookaside is the tree's
own file:// path, which skopeo follows; verify-tree checks the snapshot
directories' .asc signatures and the store.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import toml

from release import openpgp, sigstore
from release.sigpublish import store_registries
from tests.conftest import need_tool
from tests.pipeline_support import demo_matrix_config, doit
from tests.registry_support import RegistryServer
from tests.test_nightly import REL, advance, src_head, tree_dir


def identities(store: Path, public_key: bytes) -> dict[str, list[str]]:
    """Lookaside directory -> the identities its signature-1..n name, checked with the release key."""
    out = {}
    with openpgp.open_verifier(public_key, "release key") as verifier:
        for host in store_registries(store):
            for directory in sigstore.lookaside_dirs(store, host):
                rel = directory.relative_to(store / host).as_posix()
                repository, _, tail = rel.rpartition("@")
                files = sorted(directory.iterdir(), key=lambda f: int(f.name.split("-")[1]))
                assert [f.name for f in files] == [f"signature-{n}" for n in range(1, len(files) + 1)]
                out[rel] = [sigstore.check_signature(verifier, f.read_bytes(), host, repository,
                                                     tail.replace("=", ":", 1), rel).docker_reference
                            for f in files]
    return out


def test_snapshot_signatures_are_pruned_with_their_dates(release_keys, tmp_path):
    tree = tmp_path / "tree"
    config = demo_matrix_config(tmp_path / "config.toml", publish_root=tree, keep=2, arches=["amd64"], only=[REL])
    work = tmp_path / "work"
    public = release_keys.release.public.read_bytes()
    with RegistryServer(tmp_path / "registry") as registry:
        data = toml.loads(config.read_text())
        data["registries"] = {"test": {"url": registry.url, "namespace": "freebsd"}}
        data["signing"].update(openpgp_public_key=str(release_keys.release.public))
        config.write_text(toml.dumps(data))
        dates = []
        for days in (0, 1, 2):
            if days:
                advance(work, days=days, message=f"sys: change {days}")
            doit(config, work, "nightly", env=release_keys.env())
            dates.append(src_head(work)["build_date"])
            if days == 1:
                kept = identities(tree / "signatures", public)
        store = tree / "signatures"
        final = identities(store, public)
        host = registry.host
        named = {i.rsplit(":", 1)[1] for ids in final.values() for i in ids}
        assert named == {"15.snap", f"15.snap{dates[1]}", f"15.snap{dates[2]}"}     # the first date's are gone
        assert f"15.snap{dates[0]}" in {i.rsplit(":", 1)[1] for ids in kept.values() for i in ids}
        assert sorted(p.name for p in (store / "builds").iterdir()) == sorted(
            f"snapshot-15.0-CURRENT-{s}.json" for s in [json.loads(p.read_text())["suffix"] for p in
                                                (store / "builds").iterdir()])
        assert len(list((store / "builds").iterdir())) == 2
        assert sorted(p.name for p in tree_dir(tree).iterdir() if p.name[0].isdigit()) == dates[1:]
        latest = tree_dir(tree) / "Latest"
        assert (latest / "CHECKSUM.SHA256.asc").resolve().name == \
            f"CHECKSUM.SHA256-{src_head(work)['suffix']}.asc"
        assert "published directories verified" in doit(config, work, "verify-tree").stdout

        # the registries.d publish wrote names the store as file://, and skopeo follows it
        yaml = store / "registries.d" / f"{host.replace(':', '_')}.yaml"
        assert f'"lookaside": "{store.resolve().as_uri()}/{host}"' in yaml.read_text()
        proc = subprocess.run([need_tool("skopeo", "skopeo"), "--policy", str(store / "policy.json"),
                               "--registries.d", str(store / "registries.d"), "--override-os", "freebsd",
                               "--override-arch", "amd64", "copy", "--remove-signatures", "--src-tls-verify=false",
                               f"docker://{host}/freebsd/freebsd-runtime:15.snap{dates[2]}",
                               f"oci:{tmp_path / 'copy'}:x"], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        proc = subprocess.run([need_tool("skopeo", "skopeo"), "--policy", str(store / "policy.json"),
                               "--registries.d", str(store / "registries.d"), "--override-os", "freebsd",
                               "--override-arch", "amd64", "copy", "--remove-signatures", "--src-tls-verify=false",
                               f"docker://{host}/freebsd/freebsd-runtime:15.snap{dates[0]}",
                               f"oci:{tmp_path / 'copy'}:y"], capture_output=True, text=True, timeout=300)
        assert proc.returncode != 0 and "Source image rejected" in proc.stderr   # pruned with its snapshot
