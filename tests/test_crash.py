"""A build killed with SIGKILL is completed by the next run, byte for byte; runs do not interleave."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import PROJECT
from tests.pipeline_support import doit

CONFIG = PROJECT / "config.toml"


def start(work: Path) -> subprocess.Popen:
    argv = [sys.executable, "-m", "doit", "-f", str(PROJECT / "dodo.py"), f"config={CONFIG}",
            f"workdir={work}", "build:demo"]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def kill_at(work: Path, line: str, delay: float) -> bool:
    """Run build:demo and SIGKILL it *delay* seconds after it starts task *line*; False if it never did."""
    proc = start(work)
    try:
        for out in proc.stdout:                      # bounded: the build ends
            if out.strip() == f".  {line}":
                time.sleep(delay)
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=60)
                return proc.returncode == -signal.SIGKILL
        proc.wait(timeout=60)
        return False
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def outputs(work: Path) -> dict[str, bytes]:
    files = {}
    for sub in ("out", "blobs"):
        for p in sorted((work / sub).rglob("*")):
            if p.is_file():
                files[str(p.relative_to(work))] = p.read_bytes()
    return files


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, bytes]:
    work = tmp_path_factory.mktemp("reference") / "work"
    doit(CONFIG, work, "build:demo")
    return outputs(work)


@pytest.mark.parametrize("points", [
    [("demo", 0.05), ("layer:demo:amd64:static", 0.0), ("layer:demo:amd64:minimal", 0.02)],
    [("layer:demo:aarch64:dynamic", 0.01), ("archive:demo:amd64:minimal", 0.0), ("index:demo:static", 0.0),
     ("checksum:demo:aarch64", 0.0)],
])
def test_killed_builds_are_completed_byte_identically(tmp_path, reference, points):
    work = tmp_path / "work"
    killed = [line for line, delay in points if kill_at(work, line, delay)]
    assert killed, "no kill point was reached"
    doit(CONFIG, work, "build:demo")
    assert outputs(work) == reference
    assert not [p for p in work.rglob("*") if p.name.startswith(".partial-")]
    doit(CONFIG, work, "verify-checksums:demo")


def test_a_second_run_on_the_same_work_directory_is_refused(tmp_path):
    work = tmp_path / "work"
    first = start(work)
    try:
        assert first.stdout.readline()                   # the first run holds the directory now
        second = doit(CONFIG, work, "build:demo", check=False)
        assert second.returncode == 3
        assert second.stderr.strip() == (f"{work}: work directory in use by another doit run (pid {first.pid}); "
                                         "wait for it to finish or use another workdir=")
    finally:
        first.wait(timeout=120)
    assert first.returncode == 0
    assert doit(CONFIG, work, "list").returncode == 0      # read-only commands never need the lock
