"""What OpenPGP signing adds to publish/push, and the two OpenPGP libraries, side by side in one run.

    python bench/signing.py [--rounds 3] [--signatures 27]

1. builds the embedded demo release once;
2. publishes it (`doit publish:demo`, which pushes to a fresh docker-registry
   on 127.0.0.1 first, then fills a fresh download tree) from a fresh copy of
   the work directory, `--rounds` times each:
   - without an OpenPGP key;
   - with the key as CI holds it (a passphrase-protected key file and its
     passphrase in the environment): 27 image signatures (3 flavours x 3
     manifests x 3 tags) and 4 CHECKSUM signatures;
   - with the key in a GnuPG home chosen by fingerprint, its passphrase
     cached by gpg-agent (a release engineer's unlocked session; one round);
   then once more on the same tree, where every signature is kept;
3. times single operations of each library on the same key: python-gnupg
   over gpg (key file in a throw-away home; key in a GnuPG home through the
   agent) and pysequoia in process (when installed: pip install pysequoia).

Prints medians, the difference and the ratio to publishing without a key.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import toml

PROJECT = Path(__file__).resolve().parent.parent
if str(PROJECT) not in sys.path:
    sys.path.insert(0, str(PROJECT))

from release import openpgp  # noqa: E402
from tests.openpgp_support import PASSPHRASE, Keys, _make, preset_passphrase, stop_agent  # noqa: E402
from tests.registry_support import RegistryServer  # noqa: E402


def doit(config: Path, work: Path, task: str, env: dict | None = None) -> tuple[float, str]:
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "doit", "-f", str(PROJECT / "dodo.py"), f"config={config}",
                           f"workdir={work}", task], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise SystemExit(f"doit {task}: {proc.stderr.strip()[-2000:]}")
    return time.monotonic() - t0, proc.stdout


def make_keys(base: Path) -> Keys:
    home = base / "gnupg"
    home.mkdir(mode=0o700)
    (home / "gpg-agent.conf").write_text("allow-preset-passphrase\n")
    release = _make(home, "FreeBSD bench release key <re@example.org>", PASSPHRASE, base, "release")
    other = _make(home, "Other <o@example.org>", "", base, "other")
    return Keys(home, release, other)


def publish_round(base: Path, built: Path, n: int, signing: dict, env: dict) -> dict:
    """One publish from a fresh work copy into a fresh registry and tree, then a republish."""
    work, tree = base / f"work-{n}", base / f"tree-{n}"
    shutil.copytree(built, work, symlinks=True)
    with RegistryServer(base / f"registry-{n}") as registry:
        data = toml.loads((PROJECT / "config.toml").read_text())
        data["registries"] = {"bench": {"url": registry.url, "namespace": "freebsd"}}
        data["publish"] = {"root": str(tree), "keep": 7}
        data["signing"].update(signing)
        config = base / f"config-{n}.toml"
        config.write_text(toml.dumps(data))
        first, out = doit(config, work, "publish:demo", env)
        again, _ = doit(config, work, "publish:demo", env)
    made = next((line.split(": ", 2)[2] for line in out.splitlines() if "OpenPGP signatures by" in line), "-")
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(tree, ignore_errors=True)
    return {"first": first, "again": again, "made": made}


def publish_table(base: Path, built: Path, keys: Keys, rounds: int) -> None:
    modes = [("no OpenPGP key", {}, {}, rounds),
             ("key file + passphrase (CI)", {}, keys.env(), rounds),
             ("GnuPG home key via gpg-agent", {"openpgp_key": keys.release.fingerprint,
                                               "gnupg_home": str(keys.home)}, {}, 1)]
    rows = []
    n = 0
    for name, signing, env, count in modes:
        runs = []
        for _ in range(count):
            if signing:
                preset_passphrase(keys)
            n += 1
            runs.append(publish_round(base, built, n, signing, env))
        rows.append((name, statistics.median(r["first"] for r in runs),
                     statistics.median(r["again"] for r in runs), runs[0]["made"], count))
    plain, plain_again = rows[0][1], rows[0][2]
    print(f"\n{'publish:demo (push + tree)':<30} {'rounds':>6} {'first s':>8} {'added s':>8} {'ratio':>6} | "
          f"{'again s':>8} {'added s':>8} | signatures")
    for name, first, again, made, count in rows:
        print(f"{name:<30} {count:>6} {first:>8.2f} {first - plain:>8.2f} {first / plain:>6.2f} | "
              f"{again:>8.2f} {again - plain_again:>8.2f} | {made}")


def timed(fn, repeat: int) -> float:
    t0 = time.perf_counter()
    for i in range(repeat):
        fn(i)
    return (time.perf_counter() - t0) / repeat


def library_table(keys: Keys, count: int) -> None:
    payloads = [b'{"critical":{"identity":{"docker-reference":"r/x:%d"}}}' % i for i in range(count)]
    public = keys.release.public.read_bytes()
    rows = []
    t0 = time.perf_counter()
    with openpgp.open_signer(environ=keys.env()) as signer:
        opened = time.perf_counter() - t0
        sign = timed(lambda i: signer.sign(payloads[i]), count)
        sigs = [signer.sign(p) for p in payloads[:3]]
    with openpgp.open_verifier(public, "bench") as verifier:
        verify = timed(lambda i: verifier.open(sigs[i % 3], "bench"), count)
    rows.append(("python-gnupg, key file (CI)", opened, sign, verify))
    preset_passphrase(keys)
    t0 = time.perf_counter()
    with openpgp.open_signer(keys.release.fingerprint, str(keys.home), environ={}) as signer:
        opened = time.perf_counter() - t0
        sign = timed(lambda i: signer.sign(payloads[i]), min(count, 5))
    rows.append(("python-gnupg, GnuPG home + agent", opened, sign, None))
    try:
        import pysequoia
    except ImportError:
        pysequoia = None
    if pysequoia is not None:
        t0 = time.perf_counter()
        signer = pysequoia.Tsk.from_bytes(keys.release.secret.read_bytes()).signer(PASSPHRASE)
        opened = time.perf_counter() - t0
        sign = timed(lambda i: pysequoia.sign(signer, payloads[i], armor=False), count)
        cert = pysequoia.Cert.from_bytes(public)
        made = [pysequoia.sign(signer, p, armor=False) for p in payloads[:3]]
        verify = timed(lambda i: pysequoia.verify(bytes=made[i % 3], store=lambda ids: [cert]), count)
        rows.append(("pysequoia (in process)", opened, sign, verify))
    print(f"\n{'OpenPGP library':<34} {'open key s':>10} {'sign ms':>8} {'verify ms':>9} "
          f"{f'{count} sigs s':>10}")
    for name, opened, sign, verify in rows:
        shown = f"{verify * 1000:>9.2f}" if verify is not None else f"{'(same)':>9}"
        print(f"{name:<34} {opened:>10.3f} {sign * 1000:>8.2f} {shown} {opened + sign * count:>10.2f}")
    if pysequoia is None:
        print("pysequoia: not installed (pip install pysequoia) - no row")
    print("\nopen key: import into a throw-away home and unlock (key file), or find it in the GnuPG home; "
          "sign: one simple-signing signature.\nThe GnuPG home key is passphrase-protected at gpg-agent's "
          "calibrated S2K count, which the agent derives again for every signature.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="signing.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--signatures", type=int, default=27, help="signatures per library row")
    args = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="bench-sign-"))
    keys = None
    try:
        built = base / "built"
        t, _ = doit(PROJECT / "config.toml", built, "build:demo")
        print(f"built the demo in {t:.1f} s")
        keys = make_keys(base)
        publish_table(base, built, keys, args.rounds)
        library_table(keys, args.signatures)
    finally:
        if keys is not None:
            stop_agent(keys.home)
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
