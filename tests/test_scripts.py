"""Recognising pkgbase package scripts, on FreeBSD's own UCL manifests and embedded variants."""
from __future__ import annotations

import re
import urllib.parse
from pathlib import Path

import pytest

from release.builtins.scripts import ScriptAction, recognise
from release.errors import StepError
from release.fsutil import identity

PWD = ScriptAction("pwd_mkdb", {"source": "/etc/master.passwd", "directory": "/etc", "v7_passwd": True,
                        "byte_order": "little"})


def services(order: str) -> ScriptAction:
    return ScriptAction("services_mkdb", {"source": "/etc/services", "database": "/var/db/services.db",
                                  "byte_order": order})


def ucl_scripts(path: Path) -> dict[str, str]:
    """The `scripts` of a pkgbase UCL manifest: heredocs and one-line strings, as pkg stores them."""
    text = path.read_text()
    found = {m.group(1): m.group(2) for m in re.finditer(r"^\s*([a-z-]+) = <<EOD\n(.*?)\nEOD$", text, re.M | re.S)}
    found |= {m.group(1): m.group(2) for m in re.finditer(r'^\s*([a-z-]+) = "(.*)"$', text, re.M)}
    return found


@pytest.mark.parametrize("path", ["release/packages/runtime.ucl", "release/packages/ucl/runtime.ucl"])
@pytest.mark.parametrize("order", ["little", "big"])
def test_runtime_post_install(path, order, src_samples):
    script = ucl_scripts(src_samples / path)["post-install"]
    assert "${PKG_ROOTDIR}/\n" in script + "\n"             # the truncated services_mkdb line
    steps = recognise("FreeBSD-runtime", "post-install", script, byte_order=order)
    assert steps == [ScriptAction("pwd_mkdb", PWD.args | {"byte_order": order}), services(order)]


@pytest.mark.parametrize("path", ["release/packages/caroot.ucl", "release/packages/certctl.ucl",
                                  "release/packages/ucl/caroot.ucl"])
def test_certctl_rehash_spellings(path, src_samples):
    scripts = ucl_scripts(src_samples / path)
    assert recognise("FreeBSD-caroot", "post-install", scripts["post-install"],
                     byte_order="little") == [ScriptAction("certctl_rehash")]
    for phase, script in scripts.items():
        if phase != "post-install":                       # ucl/caroot.ucl's post-uninstall
            assert recognise("FreeBSD-caroot", phase, script, byte_order="little") == []


def test_full_runtime_script_of_older_trees():
    script = ("\tpwd_mkdb -i -p -d  ${PKG_ROOTDIR}/etc ${PKG_ROOTDIR}/etc/master.passwd\n"
              "\tservices_mkdb %CAP_MKDB_ENDIAN% -q -o ${PKG_ROOTDIR}/var/db/services.db ${PKG_ROOTDIR}/etc/services\n"
              "\tchmod 1777 ${PKG_ROOTDIR}/tmp\n")
    assert recognise("FreeBSD-runtime", "post-install", script, byte_order="big") == [
        ScriptAction("pwd_mkdb", PWD.args | {"byte_order": "big"}), services("big"),
        ScriptAction("chmod", {"path": "/tmp", "mode": 0o1777})]


def test_explicit_byte_order_wins_over_the_target():
    script = ("services_mkdb -l -q -o ${PKG_ROOTDIR}/var/db/services.db ${PKG_ROOTDIR}/etc/services\n"
              "pwd_mkdb -B -p -d $PKG_ROOTDIR/etc $PKG_ROOTDIR/etc/master.passwd\n")
    steps = recognise("FreeBSD-runtime", "post-install", script, byte_order="big")
    assert steps[0] == services("little")
    assert steps[1].args["byte_order"] == "big"
    steps = recognise("FreeBSD-runtime", "post-install",
                      script.replace("-l -q", "-b -q").replace("-B -p", "-L -p"), byte_order="little")
    assert [s.args["byte_order"] for s in steps] == ["big", "little"]


def test_cap_mkdb_for_login_conf():
    steps = recognise("FreeBSD-runtime", "post-install",
                      "cap_mkdb ${CAP_MKDB_ENDIAN} ${PKG_ROOTDIR}/etc/login.conf", byte_order="big")
    assert steps == [ScriptAction("cap_mkdb", {"sources": ["/etc/login.conf"], "database": "/etc/login.conf.db",
                                       "byte_order": "big"})]


def test_shell_layout_is_tolerated():
    script = ("# rebuild the databases\n\n"
              "  /usr/sbin/pwd_mkdb   -i -p -d \"${PKG_ROOTDIR}/etc\" \\\n"
              "\t\t${PKG_ROOTDIR}/etc/master.passwd ; chmod 0755 ${PKG_ROOTDIR}/var/empty\n"
              "test -x /usr/sbin/certctl && DESTDIR=${PKG_ROOTDIR}/ certctl -c rehash\n"
              "chmod 1777 ${PKG_ROOTDIR}/tmp ${PKG_ROOTDIR}/var/tmp && /usr/sbin/certctl -D ${PKG_ROOTDIR} "
              "${PKG_METALOG:+-U -M $PKG_METALOG} rehash\n")
    assert recognise("FreeBSD-x", "post-install", script, byte_order="little") == [
        PWD, ScriptAction("chmod", {"path": "/var/empty", "mode": 0o755}), ScriptAction("certctl_rehash"),
        ScriptAction("chmod", {"path": "/tmp", "mode": 0o1777}),
        ScriptAction("chmod", {"path": "/var/tmp", "mode": 0o1777}), ScriptAction("certctl_rehash")]


def test_url_encoded_manifest_script():
    encoded = urllib.parse.quote("[ -x /usr/sbin/certctl ] && env DESTDIR=${PKG_ROOTDIR} \\\n"
                                 "    /usr/sbin/certctl rehash\n")
    assert recognise("FreeBSD-caroot", "post-install", urllib.parse.unquote(encoded),
                     byte_order="little") == [ScriptAction("certctl_rehash")]


@pytest.mark.parametrize("script, shown", [
    ("xyz --frobnicate ${PKG_ROOTDIR}/etc", "xyz --frobnicate ${PKG_ROOTDIR}/etc"),
    ("chmod 1777 /tmp", "chmod 1777 /tmp"),                                     # the build host's /tmp
    ("chmod a+w ${PKG_ROOTDIR}/tmp", "chmod a+w ${PKG_ROOTDIR}/tmp"),
    ("pwd_mkdb -p ${PKG_ROOTDIR}/etc/master.passwd", "pwd_mkdb -p ${PKG_ROOTDIR}/etc/master.passwd"),
    ("pwd_mkdb -u root -d ${PKG_ROOTDIR}/etc ${PKG_ROOTDIR}/etc/master.passwd",
     "pwd_mkdb -u root -d ${PKG_ROOTDIR}/etc ${PKG_ROOTDIR}/etc/master.passwd"),
    ("services_mkdb -q ${PKG_ROOTDIR}/etc/services", "services_mkdb -q ${PKG_ROOTDIR}/etc/services"),
    ("/usr/sbin/certctl rehash", "/usr/sbin/certctl rehash"),
    ("env DESTDIR=/ certctl rehash", "env DESTDIR=/ certctl rehash"),
    ("/usr/local/sbin/pwd_mkdb -d ${PKG_ROOTDIR}/etc ${PKG_ROOTDIR}/etc/master.passwd",
     "/usr/local/sbin/pwd_mkdb -d ${PKG_ROOTDIR}/etc ${PKG_ROOTDIR}/etc/master.passwd"),
    ("[ -f ${PKG_ROOTDIR}/etc/services ] && services_mkdb -q -o ${PKG_ROOTDIR}/db ${PKG_ROOTDIR}/etc/services",
     "[ -f ${PKG_ROOTDIR}/etc/services ]"),
    ("chmod 1777 ${PKG_ROOTDIR}/tmp || true", "chmod 1777 ${PKG_ROOTDIR}/tmp || true"),
])
def test_unrecognised_commands(script, shown):
    with pytest.raises(StepError) as exc:
        recognise("FreeBSD-foo", "post-install", script, byte_order="little")
    assert str(exc.value).startswith(f'FreeBSD-foo: post-install script: unrecognised command "{shown}"')
    assert recognise("FreeBSD-foo", "post-install", script, byte_order="little",
                     ignorable={"FreeBSD-foo:post-install"}) == []
    with pytest.raises(StepError):        # ignorable is per package and phase
        recognise("FreeBSD-foo", "post-install", script, byte_order="little",
                  ignorable={"FreeBSD-foo:pre-install", "FreeBSD-bar:post-install"})


@pytest.mark.parametrize("phase", ["post-deinstall", "pre-deinstall", "deinstall", "post-uninstall",
                                   "pre-upgrade", "post-upgrade"])
def test_phases_that_do_not_run_at_install(phase):
    assert recognise("FreeBSD-foo", phase, "rm -rf /", byte_order="little") == []


def test_pre_install_is_read_too():
    with pytest.raises(StepError, match="^FreeBSD-foo: pre-install script: unrecognised command"):
        recognise("FreeBSD-foo", "pre-install", "useradd x", byte_order="little")


def test_byte_order_is_checked():
    with pytest.raises(StepError, match="neither little nor big"):
        recognise("FreeBSD-foo", "post-install", "", byte_order="middle")


def test_steps_have_stable_identities():
    a = recognise("FreeBSD-runtime", "post-install", "chmod 1777 ${PKG_ROOTDIR}/tmp", byte_order="little")
    b = recognise("FreeBSD-runtime", "post-install", "\tchmod  01777  $PKG_ROOTDIR/tmp/", byte_order="little")
    assert identity([s.as_json() for s in a]) == identity([s.as_json() for s in b])
    with pytest.raises(ValueError):
        ScriptAction("rm_rf")
