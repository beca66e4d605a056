"""release.ucl: the UCL subset pkg repositories and FreeBSD's sources use."""
from __future__ import annotations

from pathlib import Path

import pytest

from release import ucl
from release.errors import RepositoryError


def parse(text: str, **kwargs):
    return ucl.loads(text, "test.conf", **kwargs)


def error_of(text: str, **kwargs) -> str:
    with pytest.raises(RepositoryError) as info:
        parse(text, **kwargs)
    return str(info.value)


# -- values -------------------------------------------------------------------
def test_scalars_are_typed_like_libucl():
    doc = parse("""
        int = 42; neg = -7; hex = 0x1F; float = 14.2; exp = 1e3
        yes1 = yes; no1 = NO; on1 = On; off1 = off; t = true; f = False
        nothing = null
        version = 1.0.0
        size = "10k"
        word = base
        spaced = value with  spaces   ;
    """)
    assert doc == {
        "int": 42, "neg": -7, "hex": 31, "float": 14.2, "exp": 1000.0,
        "yes1": True, "no1": False, "on1": True, "off1": False, "t": True, "f": False,
        "nothing": None, "version": "1.0.0", "size": "10k", "word": "base",
        "spaced": "value with  spaces",
    }
    assert type(doc["int"]) is int and type(doc["float"]) is float


def test_separators_and_terminators():
    doc = parse('a = 1; b: 2, c "three"\nd {x = 1}\ne [1, 2]\n')
    assert doc == {"a": 1, "b": 2, "c": "three", "d": {"x": 1}, "e": [1, 2]}


def test_braces_around_the_whole_file():
    assert parse('{ "version": 2, "packing_format": "tzst" }\n') == {"version": 2, "packing_format": "tzst"}


def test_empty_and_comment_only_documents():
    assert parse("") == {}
    assert parse("# nothing\n/* at /* all */ */\n") == {}


def test_comments_everywhere():
    doc = parse("""
        # a comment
        a = 1 # trailing
        /* block
           /* nested */ still comment */
        b = "x" /* after */ ;
        c = plain/* glued */
        d = [ 1, # one
              2 ]
    """)
    assert doc == {"a": 1, "b": "x", "c": "plain", "d": [1, 2]}


def test_quoted_strings_and_escapes():
    doc = parse(r'''
        a = "tab\there \"q\" back\\slash \/ \u00e9 \ud83d\ude00"
        b = 'it\'s raw \n here'
        "quoted key" = 1
        c = "semi;colon, comma # not a comment"
    ''')
    assert doc["a"] == 'tab\there "q" back\\slash / \u00e9 \U0001F600'
    assert doc["b"] == "it's raw \\n here"
    assert doc["quoted key"] == 1
    assert doc["c"] == "semi;colon, comma # not a comment"


def test_heredocs():
    doc = parse("desc = <<EOD\nline one\n  EOD is not the end\n\n\tline four\nEOD\nempty = <<X\nX\nnext = 1\n")
    assert doc == {"desc": "line one\n  EOD is not the end\n\n\tline four", "empty": "", "next": 1}


def test_nested_objects_and_arrays():
    doc = parse("""
        deps {
            "FreeBSD-clibs": { origin = "base"; version = "14.2" }
        }
        sets = [ { name = a }, { name = b }, ]
        matrix = [[1, 2], [3]]
    """)
    assert doc == {
        "deps": {"FreeBSD-clibs": {"origin": "base", "version": "14.2"}},
        "sets": [{"name": "a"}, {"name": "b"}],
        "matrix": [[1, 2], [3]],
    }


def test_path_keys_and_variables_are_kept():
    doc = parse('directories { /dev = "y"; /tmp = y }\nname = "${PKG_NAME_PREFIX}-${PKGNAME}"\n')
    assert doc == {"directories": {"/dev": "y", "/tmp": "y"}, "name": "${PKG_NAME_PREFIX}-${PKGNAME}"}


def test_key_lines_report_top_level_keys():
    lines: dict[str, int] = {}
    parse("\n# c\nversion = 2;\nnested {\n  inner = 1\n}\nlast = x\n", key_lines=lines)
    assert lines == {"version": 3, "nested": 4, "last": 7}


# -- macros ---------------------------------------------------------------------
def test_macros_are_refused_without_a_handler():
    message = error_of('a = 1\n.include "other.ucl"\n')
    assert message == "test.conf: line 2: macro .include is not supported here"


def test_macros_go_to_the_handler():
    calls = []
    doc = parse('.include(try=true,duplicate=rewrite) "${UCLFILES}/x.ucl"\n.priority "1"\nk = v\n',
                macro=lambda name, params, arg: calls.append((name, params, arg)))
    assert doc == {"k": "v"}
    assert calls == [("include", {"try": True, "duplicate": "rewrite"}, "${UCLFILES}/x.ucl"),
                     ("priority", {}, "1")]


# -- errors -----------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("a = 1\na = 2\n", "test.conf: line 2: duplicate key 'a'"),
    ('a = 1\nb = "open\n', "test.conf: line 2: unescaped control character in a quoted string"),
    ('a = 1\n\nb = "never closed', "test.conf: line 3: unterminated string"),
    ("a {\n  b = 1\n", "test.conf: line 1: unterminated object (opened here)"),
    ("a = [1,\n2\n", "test.conf: line 1: unterminated array (opened here)"),
    ("a = 1\nb =\n2;", "test.conf: line 2: missing value for key 'b'"),
    ("a = 1\nb = ;", "test.conf: line 2: missing value for key 'b'"),
    ("a = 1\nb\n", "test.conf: line 2: missing value for key 'b'"),
    ('a = "\\q"\n', "test.conf: line 1: unknown escape \\q in a quoted string"),
    ("a = 1\n/* never\nclosed\n", "test.conf: line 2: unterminated /* comment"),
    ('a = "x" y\n', "test.conf: line 1: expected ';', ',' or a new line, found 'y'"),
    ("a = 1\n}\n", "test.conf: line 2: unexpected '}'"),
    ("a = 1\n= 2\n", "test.conf: line 2: invalid character '=' at the start of a key"),
    ("d = <<EOD\ntext\nEOD \n", "test.conf: line 1: unterminated heredoc <<EOD"),
    ("[1, 2]\n", "test.conf: line 1: the top level must be an object, not an array"),
    ("a = 1\nsize = 10kb\n", "test.conf: line 2: number with a unit suffix '10kb' is not supported; quote it"),
    ("timeout = 5min\n", "test.conf: line 1: number with a unit suffix '5min' is not supported; quote it"),
    ("{ a = 1 } b = 2\n", "test.conf: line 1: unexpected 'b' after the closing brace"),
])
def test_errors_name_source_and_line(text, expected):
    assert error_of(text) == expected


# -- writer ---------------------------------------------------------------------------
def test_dumps_flat_mapping_is_pkg_config_layout():
    text = ucl.dumps({"version": 2, "packing_format": "tzst", "eol": 0, "on": True, "none": None})
    assert text == 'version = 2;\npacking_format = "tzst";\neol = 0;\non = true;\nnone = null;\n'


def test_dumps_round_trips_nested_values():
    value = {
        "FreeBSD-base": {"url": "pkg+https://pkg.FreeBSD.org/${ABI}/base_latest", "enabled": True,
                         "mirror_type": "srv", "priority": -1, "weight": 0.5},
        "quoted key": ['say "hi"\n', 1, [2, {"deep": []}], {}],
        "unicode": "\u00e9t\u00e9",
        "control": "bell\x07",
    }
    text = ucl.dumps(value)
    assert ucl.loads(text, "dumped") == value
    assert '"quoted key" [\n' in text and "FreeBSD-base {\n" in text


@pytest.mark.parametrize("bad", [{"x": object()}, {1: "int key"}, {"x": float("nan")}])
def test_dumps_rejects_what_ucl_cannot_hold(bad):
    with pytest.raises(TypeError):
        ucl.dumps(bad)


# -- real FreeBSD files -------------------------------------------------------------------
def _sample(src_samples: Path, relative: str, **kwargs) -> dict:
    path = src_samples / relative
    return ucl.loads(path.read_text(), relative, **kwargs)


def test_every_pkgbase_ucl_sample_parses(src_samples):
    files = sorted((src_samples / "release" / "packages").rglob("*.ucl"))
    assert len(files) >= 10
    for path in files:
        doc = ucl.loads(path.read_text(), str(path.relative_to(src_samples)), macro=lambda *a: None)
        assert isinstance(doc, dict) and doc, path


def test_runtime_ucl_keeps_post_install_script(src_samples):
    doc = _sample(src_samples, "release/packages/ucl/runtime.ucl")
    assert doc["vital"] is True
    script = doc["scripts"]["post-install"]
    assert script.splitlines()[0] == "    pwd_mkdb -i -p -d  ${PKG_ROOTDIR}/etc ${PKG_ROOTDIR}/etc/master.passwd"
    assert "services_mkdb ${CAP_MKDB_ENDIAN} -q -o ${PKG_ROOTDIR}/var/db/services.db" in script
    assert not script.endswith("\n")


def test_old_flat_manifest_with_heredocs_and_bare_words(src_samples):
    doc = _sample(src_samples, "release/packages/caroot.ucl")
    assert doc["categories"] == ["base"] and doc["licenses"] == ["BSD2CLAUSE"]
    assert doc["desc"] == "%DESC%"
    assert doc["scripts"]["post-install"] == (
        "\t[ -x /usr/sbin/certctl ] && env DESTDIR=${PKG_ROOTDIR} \\\n\t    /usr/sbin/certctl rehash")
    certctl = _sample(src_samples, "release/packages/certctl.ucl")
    assert certctl["maintainer"] == "%PKG_MAINTAINER%"


def test_manifest_after_c_comment_licence_header(src_samples):
    doc = _sample(src_samples, "release/packages/ucl/certctl.ucl")
    assert doc == {"deps": {"openssl": {"version": "${VERSION}", "origin": "base"}}}
    caroot = _sample(src_samples, "release/packages/ucl/caroot.ucl")
    assert caroot["scripts"]["post-install"].startswith("/usr/sbin/certctl -D${PKG_ROOTDIR}/ ")


def test_zoneinfo_annotations(src_samples):
    doc = _sample(src_samples, "release/packages/ucl/zoneinfo-all.ucl")
    assert doc["annotations"] == {"set": "minimal,minimal-jail"}
    assert doc["licenses"] == ["PD"]
    assert doc["desc"].startswith("The timezone database") and doc["desc"].endswith("UTC and local timezones.")


def test_template_includes_reach_the_macro_handler(src_samples):
    calls = []
    doc = _sample(src_samples, "release/packages/template.ucl",
                  macro=lambda name, params, arg: calls.append((name, params["try"], arg)))
    assert doc["annotations"] == {"set": "base"} and doc["prefix"] == "/"
    assert calls == [("include", False, "${UCLFILES}/${PKGGENNAME}-all.ucl"),
                     ("include", True, "${UCLFILES}/${PKGNAME}.ucl"),
                     ("include", True, "${UCLFILES}/${FORCEINCLUDE}.ucl")]
    with pytest.raises(RepositoryError, match=r"^release/packages/template.ucl: line 3\d: macro .include"):
        _sample(src_samples, "release/packages/template.ucl")


@pytest.mark.parametrize("relative, fingerprint", [
    ("share/keys/pkg/trusted/pkg.freebsd.org.2013102301",
     "b0170035af3acc5f3f3ae1859dc717101b4e6c1d0a794ad554928ca0cbb2f438"),
    ("share/keys/pkgbase-15/trusted/awskms-15",
     "1d7b45d20fa8d6ed26f9b4a13ac81a6b5df860b9fe644d07b87e92298ba72595"),
    ("share/keys/pkgbase-15/trusted/backup-signing-15",
     "56a77bdcb6c3cf7984729c6138bd5617c24aa0d466b3b604c96205b2c5629f3c"),
])
def test_real_fingerprint_files(src_samples, relative, fingerprint):
    assert _sample(src_samples, relative) == {"function": "sha256", "fingerprint": fingerprint}
