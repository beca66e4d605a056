"""Target code that tries to escape, through `doit build` with scripts = "emulate" and a run step.

The attacker's package ships a shell script run as its post-install script and
as a `run` step.  It tries what got out of the old chroot (mount proc, write
on the host through /proc/<pid>/root) and everything near it: mounting
anything, a nested user namespace to get capabilities back, mknod, a
descriptor of the host leaked into the build, /proc/1/root, the network (a
server of the test on the host's loopback), chroot.  Every attempt records
whether it worked in the image itself, so the layer shows the verdicts; the
host shows nothing at all.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from release.demo.pkgtar import Member
from tests.build_support import read_layer
from tests.emulation_support import TIME, need_root, shell_members
from tests.hostile_support import ARCH, RELEASE, hostile_release
from tests.httpserver import RepoServer
from tests.pipeline_support import doit

APPLETS = ("mount", "unshare", "mknod", "nc", "chroot", "id")
ATTACKS = ("mount-proc", "proc-pid-root", "mount-tmpfs", "mount-bind", "nested-userns", "mknod", "leaked-fd",
           "proc-1-root", "network", "chroot")

ATTACK = """\
#!/bin/sh
# $1: where the verdicts go (inside the image); nothing here may reach {host}
r=$1
mkdir -p $r /proc /mnt
verdict() {{ if [ "$2" = 0 ]; then echo escaped > $r/$1; else echo refused > $r/$1; fi; }}
mount -t proc proc /proc 2>/dev/null; verdict mount-proc $?
ok=1
for p in /proc/[0-9]*; do
    echo escaped 2>/dev/null > $p/root{host} && ok=0
done
verdict proc-pid-root $ok
mount -t tmpfs none /mnt 2>/dev/null; verdict mount-tmpfs $?
mount --bind / /mnt 2>/dev/null; verdict mount-bind $?
unshare -r -m sh -c 'mount -t tmpfs none /mnt' 2>/dev/null; verdict nested-userns $?
mknod /dev/sda b 8 0 2>/dev/null; verdict mknod $?
(echo escaped >&{fd}) 2>/dev/null; verdict leaked-fd $?
(echo escaped > /proc/1/root{host}) 2>/dev/null; verdict proc-1-root $?
(echo "GET /page HTTP/1.0" | nc 127.0.0.1 {port} > $r/page) 2>/dev/null; verdict network $?
chroot / true 2>/dev/null; verdict chroot $?
id > $r/id
exit 0
"""


@pytest.mark.parametrize("arch", [ARCH])
def test_target_code_cannot_reach_the_host(tmp_path: Path, busybox: dict, arch: str) -> None:
    need_root()
    host = tmp_path / "host"
    host.mkdir()
    victim = host / "escaped"                       # what any successful attempt would create
    leaked = host / "leaked.log"                    # a host file the build holds open, leaked to doit
    (host / "page").write_text("you reached the host\n")
    with RepoServer(host) as server, open(leaked, "ab") as leak:
        os.set_inheritable(leak.fileno(), True)
        script = ATTACK.format(host=victim, fd=leak.fileno(), port=server.port)
        base = shell_members(busybox[arch]) + [Member(f"/bin/{a}", "symlink", 0o755, target="busybox", mtime=TIME)
                                               for a in APPLETS]
        evil = [Member("/usr/share/evil/attack.sh", "file", 0o755, data=script.encode(), mtime=TIME),
                Member("/usr/share/evil", "dir", 0o755, mtime=TIME)]
        h = hostile_release(tmp_path / "in", {"FreeBSD-evil": evil}, base=base,
                            scripts={"FreeBSD-evil": {"post-install": "/bin/sh /usr/share/evil/attack.sh "
                                                                      "/var/db/attacks/script"}},
                            top={"scripts": "emulate", "steps": [
                                {"kind": "run", "timeout": 120,
                                 "command": ["/bin/sh", "/usr/share/evil/attack.sh", "/var/db/attacks/run"]}]})
        proc = doit(h.config, h.work, f"build:{RELEASE}", pass_fds=(leak.fileno(),), check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert server.requests == []                # the host's loopback was never reached
    assert not victim.exists() and leaked.read_bytes() == b""
    assert sorted(p.name for p in host.iterdir()) == ["leaked.log", "page"]
    digest = (h.work / "build" / RELEASE / arch / "top" / "layer.json").read_text().split('"digest": "sha256:')[1][:64]
    layer = read_layer((h.work / "blobs" / "sha256" / digest).read_bytes())
    for where in ("script", "run"):
        verdicts = {a: layer.data.get(f"var/db/attacks/{where}/{a}", b"missing").decode().strip() for a in ATTACKS}
        assert verdicts == dict.fromkeys(ATTACKS, "refused"), (where, verdicts)
        assert layer.data[f"var/db/attacks/{where}/id"].startswith(b"uid=0(root) gid=0(wheel)")
