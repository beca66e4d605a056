"""FreeBSD's real pkg(8), run on this Linux host against image roots and repositories.

The binaries (pkg main = 2.8.99.1 and 1.21.3, built for Debian 12) live in
../shared/tools/pkg/<version>/bin/pkg; the project cannot contain them.  A test
that needs one skips outside CI only when ../shared is absent and fails in CI
(tests/conftest.py's rule); `tools/setup.sh test` installs their runtime
libraries (libarchive13 libbsd0 libssl3 zlib1g).

Everything here keeps pkg away from the host: every command gets --rootdir (an
image root or an empty one) or works on test directories only (create, repo),
repository configurations come from a private -R directory, HOME is a
throw-away directory, and the ABI is given explicitly (the demo's binaries are
stand-ins that pkg cannot read an ABI from).  Package scripts would run with the
host's /bin/sh, not the image's, so installs and upgrades run with
RUN_SCRIPTS=false; the pipeline's built-ins for those scripts are the only
expected differences (see expected_extras in the tests).
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from release.demo.content import DemoPackage
from tests.conftest import SHARED, need_shared, need_tool

# pkg version -> the local.sqlite generation it writes
GENERATIONS = {"2.8.99.1": 42, "1.21.3": 36}
VERSION_FOR = {schema: version for version, schema in GENERATIONS.items()}
OSVERSION = "1402000"


@dataclass(frozen=True)
class RealPkg:
    """One real pkg binary and a private HOME to run it with."""

    binary: Path
    version: str
    home: Path

    @property
    def schema(self) -> int:
        return GENERATIONS[self.version]

    def run(self, *args: str, root: Path | None = None, abi: str | None = None, conf: Path | None = None,
            options: dict[str, str] | None = None, env: dict[str, str] | None = None,
            check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        """`pkg [--rootdir ROOT] [-o ABI=..] [-R CONF] ARGS`; output as text, stdout and stderr apart."""
        argv = [str(self.binary)]
        if root is not None:
            argv += ["--rootdir", str(Path(root).resolve())]
        if abi is not None:
            argv += ["-o", f"ABI={abi}", "-o", f"OSVERSION={OSVERSION}"]
        for key, value in (options or {}).items():
            argv += ["-o", f"{key}={value}"]
        if conf is not None:
            argv += ["-R", str(Path(conf).resolve())]
        argv += list(args)
        base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.home), "LC_ALL": "C",
                "TMPDIR": str(self.home)}
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env={**base, **(env or {})})
        if check and proc.returncode != 0:
            raise AssertionError(f"pkg {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc


def need_pkg(version: str, home: Path) -> RealPkg:
    """The real pkg *version* from ../shared; a skip only outside CI without ../shared (conftest.need_shared)."""
    binary = need_shared(SHARED / "tools" / "pkg" / version / "bin" / "pkg", "the real pkg binary")
    home.mkdir(parents=True, exist_ok=True)
    pkg = RealPkg(binary, version, home)
    out = pkg.run("-v", check=False)
    if out.returncode != 0 or out.stdout.strip() != version:
        pytest.fail(f"{binary} does not run here ({out.stderr.strip()[:200]}); "
                    "apt-get install libarchive13 libbsd0 libssl3 zlib1g (tools/setup.sh test does)")
    return pkg


# --------------------------------------------------------------------------- the database, row by row

def logical_db(path: Path) -> dict:
    """Every row pkg keeps for each package, keyed by package name, ids resolved, in rowid order.

    Plus the schema (sqlite_master in order), user_version and journal mode.
    Read from a private copy so that opening a WAL database writes nothing
    next to the image's file.
    """
    copy = Path(str(path) + ".read")
    copy.write_bytes(Path(path).read_bytes())
    conn = sqlite3.connect(copy)
    try:
        return _dump(conn)
    finally:
        conn.close()
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(str(copy) + suffix).unlink(missing_ok=True)


def _dump(c: sqlite3.Connection) -> dict:
    out: dict = {"master": c.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY rowid").fetchall(),
                 "user_version": c.execute("PRAGMA user_version").fetchone()[0],
                 "journal_mode": c.execute("PRAGMA journal_mode").fetchone()[0],
                 "pkg_lock": c.execute("SELECT * FROM pkg_lock").fetchall()}
    names = dict(c.execute("SELECT id, name FROM packages"))
    columns = [r[1] for r in c.execute("PRAGMA table_info(packages)") if r[1] != "id"]
    out["packages"] = {row[columns.index("name")]: dict(zip(columns, row, strict=True))
                       for row in c.execute(f"SELECT {', '.join(columns)} FROM packages")}

    def per(query: str) -> dict[str, list[tuple]]:
        rows: dict[str, list[tuple]] = {}
        for row in c.execute(query):
            rows.setdefault(names[row[0]], []).append(tuple(row[1:]))
        return rows

    file_columns = [r[1] for r in c.execute("PRAGMA table_info(files)") if r[1] != "package_id"]
    dir_columns = [r[1] for r in c.execute("PRAGMA table_info(directories)") if r[1] != "id"]
    out["files"] = per(f"SELECT package_id, {', '.join(file_columns)} FROM files ORDER BY rowid")
    out["config_files"] = per("SELECT package_id, path, content FROM config_files ORDER BY rowid")
    out["directories"] = per(f"SELECT pd.package_id, {', '.join('d.' + x for x in dir_columns)}, pd.try "
                             "FROM pkg_directories pd JOIN directories d ON d.id = pd.directory_id ORDER BY pd.rowid")
    out["deps"] = per("SELECT package_id, origin, name, version FROM deps ORDER BY rowid")
    for table, column in (("categories", "category_id"), ("licenses", "license_id"), ("users", "user_id"),
                          ("groups", "group_id")):
        out[table] = per(f"SELECT l.package_id, t.name FROM pkg_{table} l JOIN {table} t ON t.id = l.{column} "
                         "ORDER BY l.rowid")
    for (table,) in c.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'pkg_shlibs_%'"):
        out[table] = per(f"SELECT l.package_id, s.name FROM {table} l JOIN shlibs s ON s.id = l.shlib_id "
                         "ORDER BY l.rowid")
    out["scripts"] = per("SELECT ps.package_id, ps.type, s.script FROM pkg_script ps JOIN script s "
                         "USING (script_id) ORDER BY ps.rowid")
    out["lua_scripts"] = per("SELECT pl.package_id, pl.type, l.lua_script FROM pkg_lua_script pl "
                             "JOIN lua_script l USING (lua_script_id) ORDER BY pl.rowid")
    out["options"] = per("SELECT po.package_id, o.option, po.value FROM pkg_option po JOIN option o "
                         "USING (option_id) ORDER BY po.rowid")
    out["annotations"] = per("SELECT pa.package_id, t.annotation, v.annotation FROM pkg_annotation pa "
                             "JOIN annotation t ON t.annotation_id = pa.tag_id "
                             "JOIN annotation v ON v.annotation_id = pa.value_id ORDER BY pa.rowid")
    out["provides"] = per("SELECT l.package_id, p.provide FROM pkg_provides l JOIN provides p "
                          "ON p.id = l.provide_id ORDER BY l.rowid")
    out["requires"] = per("SELECT l.package_id, r.require FROM pkg_requires l JOIN requires r "
                          "ON r.id = l.require_id ORDER BY l.rowid")
    out["conflicts"] = per("SELECT l.package_id, p.name FROM pkg_conflicts l JOIN packages p "
                           "ON p.id = l.conflict_id ORDER BY l.rowid")
    return out


def db_differences(ours: dict, theirs: dict, *, ignore_columns: tuple[str, ...] = ()) -> list[str]:
    """Human-readable differences between two logical_db() dumps (empty when equal)."""
    problems = []
    for key in sorted(set(ours) | set(theirs)):
        a, b = ours.get(key), theirs.get(key)
        if key == "packages" and a is not None and b is not None:
            a = {n: {k: v for k, v in row.items() if k not in ignore_columns} for n, row in a.items()}
            b = {n: {k: v for k, v in row.items() if k not in ignore_columns} for n, row in b.items()}
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            for name in sorted(set(a) | set(b)):
                if a.get(name) != b.get(name):
                    problems.append(f"{key}: {name}: ours {str(a.get(name))[:300]} real pkg {str(b.get(name))[:300]}")
        else:
            problems.append(f"{key}: ours {str(a)[:300]} real pkg {str(b)[:300]}")
    return problems


# --------------------------------------------------------------------------- packages and repositories made by pkg

def stage_package(demo: DemoPackage, stage: Path, manifest_dir: Path, **changes) -> Path:
    """Lay *demo*'s members out under *stage* and write the manifest `pkg create -M` reads.

    Owners and modes go into the manifest per file (pkg would otherwise take
    the host's names); hardlinks are real hardlinks in the stage, which pkg
    create turns into tar hardlinks.  *changes* override manifest fields.
    """
    files, directories = {}, {}
    for m in demo.members:
        dest = stage / m.path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if m.kind == "dir":
            dest.mkdir(exist_ok=True)
            directories[m.path] = {"uname": m.uname, "gname": m.gname, "perm": f"{m.mode:04o}"}
            continue
        if m.kind == "file":
            dest.write_bytes(m.data)
        elif m.kind == "hardlink":
            os.link(stage / m.target.lstrip("/"), dest)
        elif m.kind == "symlink":
            dest.symlink_to(m.target)
        if m.kind != "symlink":
            os.utime(dest, (m.mtime, m.mtime))
        files[m.path] = {"uname": m.uname, "gname": m.gname, "perm": f"{m.mode:04o}"}
    manifest = {k: v for k, v in demo.manifest.items() if k not in ("files", "directories", "flatsize")}
    manifest.update(changes, files=files)
    if directories:
        manifest["directories"] = directories
    manifest_dir.mkdir(parents=True, exist_ok=True)
    path = manifest_dir / f"{demo.name}.json"
    path.write_text(json.dumps(manifest, indent=1))
    return path


def pkg_create(pkg: RealPkg, demo: DemoPackage, work: Path, out: Path, **changes) -> Path:
    """`pkg create -M MANIFEST -r STAGE -o OUT` of one demo package; returns the .pkg file."""
    stage = work / "stage" / demo.name
    manifest = stage_package(demo, stage, work / "manifests", **changes)
    out.mkdir(parents=True, exist_ok=True)
    # the ABI pkg create analyses ELF files for (shlibs) is the target's, not this host's
    pkg.run("create", "-M", str(manifest), "-r", str(stage), "-o", str(out), abi=demo.manifest["abi"])
    version = changes.get("version", demo.manifest["version"])
    made = sorted(out.glob(f"{demo.name}-{version}.*"))
    assert len(made) == 1, f"pkg create made {made}"
    return made[0]


SIGN_SH = """#!/bin/sh
read -r sum
[ -n "$sum" ] || exit 1
echo SIGNATURE
printf '%s' "$sum" | openssl dgst -sign "{key}" -sha256 -binary
echo
echo CERT
cat "{pub}"
echo END
"""


def pkg_repo(pkg: RealPkg, repo: Path, key: Path, pub: Path, signing: str) -> subprocess.CompletedProcess:
    """`pkg repo` over *repo*: "pubkey" signs with `rsa:KEY`, "fingerprints" through a signing_command."""
    if signing == "pubkey":
        return pkg.run("repo", str(repo), f"rsa:{key}")
    need_tool("openssl", "openssl")
    script = repo.parent / f"sign-{repo.name}.sh"
    script.write_text(SIGN_SH.format(key=key, pub=pub))
    script.chmod(0o755)
    return pkg.run("repo", str(repo), "signing_command:", str(script))


def file_url(path: Path) -> str:
    """A file:// URL pkg reads as is (pkg does not percent-decode, so no Path.as_uri())."""
    return "file://" + str(Path(path).resolve())


def repo_conf(confdir: Path, name: str, url: str, *, signing: str, pubkey: Path | None = None,
              fingerprints: str = "") -> Path:
    """A -R directory with one repository; *fingerprints* is a directory inside the root."""
    confdir.mkdir(parents=True, exist_ok=True)
    if signing == "pubkey":
        trust = f'signature_type: "pubkey", pubkey: "{pubkey}"'
    elif signing == "fingerprints":
        trust = f'signature_type: "fingerprints", fingerprints: "{fingerprints}"'
    else:
        trust = 'signature_type: "none"'
    (confdir / f"{name}.conf").write_text(f'{name}: {{ url: "{url}", {trust}, enabled: yes }}\n')
    return confdir


# --------------------------------------------------------------------------- roots, path by path

@dataclass(frozen=True)
class Node:
    """What a path is in a root: kind, permission bits, owner names, size, content digest, link target."""

    kind: str
    mode: int
    uname: str
    gname: str
    size: int
    digest: str
    target: str


def root_nodes(root: Path, owners: dict[str, tuple[str, str]] | None = None,
               ids: tuple[dict[int, str], dict[int, str]] | None = None) -> tuple[dict[str, Node], list[set[str]]]:
    """Every path under *root* and the hardlink groups (sets of paths sharing an inode).

    Owner names come from *owners* (a METALOG's path -> (uname, gname)) or
    from *ids* (uid -> name, gid -> name of the image's own accounts).
    """
    nodes: dict[str, Node] = {}
    inodes: dict[int, set[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            path = "/" + full.relative_to(root).as_posix()
            st = full.lstat()
            kind = "dir" if stat.S_ISDIR(st.st_mode) else "symlink" if stat.S_ISLNK(st.st_mode) else \
                "file" if stat.S_ISREG(st.st_mode) else "other"
            if owners is not None:
                uname, gname = owners.get(path, ("?", "?"))
            else:
                uname, gname = ids[0].get(st.st_uid, str(st.st_uid)), ids[1].get(st.st_gid, str(st.st_gid))
            digest = hashlib.sha256(full.read_bytes()).hexdigest() if kind == "file" else ""
            nodes[path] = Node(kind, stat.S_IMODE(st.st_mode), uname, gname,
                               st.st_size if kind == "file" else 0, digest,
                               os.readlink(full) if kind == "symlink" else "")
            if kind == "file" and st.st_nlink > 1:
                inodes.setdefault(st.st_ino, set()).add(path)
    return nodes, sorted((g for g in inodes.values() if len(g) > 1), key=sorted)


def metalog_owners(metalog: Path) -> dict[str, tuple[str, str]]:
    """path -> (uname, gname) from pkg's -o METALOG file (`./bin/sh type=file uname=root ...`)."""
    owners = {}
    for line in metalog.read_text().splitlines():
        words = line.split()
        if not words:
            continue
        keys = dict(w.split("=", 1) for w in words[1:] if "=" in w)
        path = "/" + words[0].removeprefix("./").lstrip("/")
        owners[path] = (keys.get("uname", "?"), keys.get("gname", "?"))
    return owners


# --------------------------------------------------------------------------- a FreeBSD ELF object pkg can analyse

def freebsd_elf(machine: int, *, needed: tuple[str, ...] = (), soname: str | None = None) -> bytes:
    """A minimal little-endian ELF64 shared object for FreeBSD with a dynamic section.

    Just enough for pkg create's libelf analysis (pkg_elf.c analyse_elf): the
    OS comes from EI_OSABI, the architecture from e_machine, DT_NEEDED and
    DT_SONAME from the SHT_DYNAMIC section and its linked string table.
    """
    import struct
    names = [soname] if soname else []
    names += list(needed)
    dynstr = b"\0"
    offsets = {}
    for n in names:
        offsets[n] = len(dynstr)
        dynstr += n.encode() + b"\0"
    entries = [(14, offsets[soname])] if soname else []
    entries += [(1, offsets[n]) for n in needed] + [(5, 0), (10, len(dynstr)), (0, 0)]
    dynamic = b"".join(struct.pack("<qQ", tag, value) for tag, value in entries)
    shstrtab = b"\0.dynstr\0.dynamic\0.shstrtab\0"
    body = dynstr + dynamic + shstrtab
    data_at = 64
    sections = [(0, 0, 0, 0, 0, 0),
                (1, 3, data_at, len(dynstr), 0, 0),                                   # .dynstr
                (9, 6, data_at + len(dynstr), len(dynamic), 1, 16),                  # .dynamic -> .dynstr
                (18, 3, data_at + len(dynstr) + len(dynamic), len(shstrtab), 0, 0)]  # .shstrtab
    shoff = data_at + len(body)
    ident = b"\x7fELF" + bytes([2, 1, 1, 9]) + bytes(8)                               # ELFOSABI_FREEBSD
    header = ident + struct.pack("<HHIQQQIHHHHHH", 3, machine, 1, 0, 0, shoff, 0, 64, 0, 0, 64,
                                 len(sections), 3)
    table = b"".join(struct.pack("<IIQQQQIIQQ", name, kind, 0, 0, offset, size, link, 0, 1, entsize)
                     for name, kind, offset, size, link, entsize in sections)
    return header + body + table


# -------------------------------------------------------------------------- the demo's content as a real pkg repository

def real_demo_repository(pkg: RealPkg, dest: Path, work: Path, *, arch: str, signing: str, subdir: str,
                         key: Path, pub: Path) -> list[Path]:
    """Every demo package made by real `pkg create`, under dest/<subdir>, catalogued by real `pkg repo`."""
    from release.demo import content
    build = content.Build(content.arch_info(arch), 14)
    made = [pkg_create(pkg, content.build_package(name, build), work / name, dest / subdir if subdir else dest)
            for name in content.PACKAGE_NAMES]
    pkg_repo(pkg, dest, key, pub, signing)
    return made
