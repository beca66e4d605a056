"""What every task module shares: the loaded configuration and the action wrapper."""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from doit import get_var
from doit.exceptions import TaskError, TaskFailed
from doit.tools import config_changed

from release import config as config_mod
from release import matrix as matrix_mod
from release import planner
from release.demo import inputs as demo_inputs
from release.errors import BusyError, ConfigError, InputError, ReleaseError
from release.fsutil import DISK_ERRNOS
from release.plans import Plan
from release.workspace import Workspace, claim_workdir, lock_workdir, sweep_partials

PROJECT = Path(__file__).resolve().parent.parent


def load_config() -> config_mod.Config:
    """The configuration for this doit run, or exit 2 listing every problem.

    `doit config=FILE workdir=DIR ...` (or RELEASE_CONFIG / RELEASE_WORKDIR in the
    environment) select another matrix or work directory; tests use both.
    """
    path = get_var("config", None) or os.environ.get("RELEASE_CONFIG") or str(PROJECT / "config.toml")
    workdir = get_var("workdir", None) or os.environ.get("RELEASE_WORKDIR") or None
    try:
        return config_mod.load(path, workdir=workdir)
    except ConfigError as e:
        for line in e.problems:
            print(line, file=sys.stderr)
        sys.exit(2)


# doit commands that only read; everything else (run, clean, forget ...) holds the work directory
READ_ONLY_COMMANDS = {"list", "info", "help", "dumpdb", "tabcompletion"}


def hold_workdir(ws: Workspace) -> int | None:
    """Lock the work directory for a run and clear what a killed run left.

    Exit 3 when another run holds it, 2 when it is not a work directory.
    """
    try:
        if READ_ONLY_COMMANDS.intersection(sys.argv[1:]):
            claim_workdir(ws.root)
            return None
        fd = lock_workdir(ws.root)
    except (BusyError, InputError) as e:
        print(str(e), file=sys.stderr)
        sys.exit(e.exit_status if isinstance(e, InputError) else 3)
    sweep_partials(ws.root)
    return fd


def configure_logging() -> None:
    """Warnings and errors of the library on stderr; the output of emulated commands too (INFO).

    RELEASE_LOG_LEVEL=INFO (or DEBUG) shows everything the library logs: requests,
    catalogue checks, commands run.
    """
    level = os.environ.get("RELEASE_LOG_LEVEL", "WARNING").upper()
    logging.basicConfig(level=getattr(logging, level, logging.WARNING), format="%(name)s: %(message)s")
    logging.getLogger("release.emulate").setLevel(min(logging.INFO, logging.getLogger().level))


# tasks that concern every release's src, and tasks that need no release's src at all
ALL_RELEASES = {"config-check"}
NO_RELEASES = {"gc", "verify-tree", "list", "info", "help"}
DEFAULT_TASKS = ["build:demo"]


def requested_releases(argv: list[str]) -> set[str]:
    """The configured releases a doit command line asks for, so only their src mirrors are fetched.

    `doit build:demo` touches the demo's src only; `doit build` (every
    release), `doit nightly` (the snapshots) and a name a branch glob makes
    (15.1-RELEASE) fetch more.
    """
    commands = {"run", "clean", "forget", "ignore", "strace", "reset-dep", "auto"}
    with_value = {"-f", "--file", "-d", "--dir", "-n", "--process", "-P", "--parallel-type", "--db-file",
                  "--backend", "--check_file_uptodate", "-r", "--reporter", "-o", "--output-file", "-v",
                  "--verbosity", "--seek-file", "--codec-cls"}
    words, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in with_value:
            skip = True
        elif not a.startswith("-") and "=" not in a and a not in commands:
            words.append(a)
    words = words or DEFAULT_TASKS
    patterns = {r.name for r in CONFIG.releases.values() if r.is_pattern}
    out: set[str] = set()
    for word in words:
        basename, _, rest = word.partition(":")
        name = rest.split(":")[0]
        if basename in NO_RELEASES:
            continue
        if basename == "nightly":
            out |= {r.name for r in CONFIG.releases.values() if r.kind == "snapshot"}
        elif not name or basename in ALL_RELEASES:
            out |= set(CONFIG.releases)
        elif name in CONFIG.releases:
            out.add(name)
        else:
            out |= patterns             # a release a branch glob makes
    return out


def resolve_matrix() -> matrix_mod.Matrix:
    """The release matrix completed from each release's src (release.matrix), before any task exists.

    The tasks a release gets (its flavours, its file names) follow from its
    src, so a run fetches the src mirrors first, here (one negotiation each;
    the fetch tasks then record those heads without asking again), after
    generating the embedded demo's inputs when the configuration has demo
    releases.  Read-only commands (list, info) use what the mirrors hold.
    Bad input exits 2 with one line, as a failing task would.
    """
    wanted = set() if WORKDIR_LOCK is None else requested_releases(sys.argv[1:])
    try:
        demo = planner.demo_plan(CONFIG)
        if demo is not None and any(CONFIG.releases[r].demo for r in wanted):
            demo_inputs.generate_for(demo)
        m = matrix_mod.resolve(CONFIG, WS, fetch=wanted)
    except ReleaseError as e:
        print(f"release matrix: {e}", file=sys.stderr)
        sys.exit(e.exit_status)
    if WORKDIR_LOCK is None:            # list, info: say which releases have no tasks yet, and why
        for name, why in sorted(m.pending.items()):
            print(f"{name}: no tasks until its src is fetched ({why}); `doit config-check` fetches it",
                  file=sys.stderr)
    return m


configure_logging()
CONFIG = load_config()
WS = planner.workspace(CONFIG)
WORKDIR_LOCK = hold_workdir(WS)      # also creates the directory doit opens its state database in
MATRIX = resolve_matrix()


def run_action(func, kwargs: dict):
    """Run a release function; a ReleaseError becomes doit's one-line failure.

    Its exit_status decides which: bad input (2) becomes a TaskError, which
    makes doit end with status 2; anything else (a server, a tool: 1) a
    TaskFailed, status 1.  doit ends with 2 when any task ended with an error.
    """
    try:
        result = func(**kwargs)
    except ReleaseError as e:
        return (TaskError if e.exit_status == 2 else TaskFailed)(str(e))
    except OSError as e:                # a full disk the library met where it names no path itself
        if e.errno not in DISK_ERRNOS:
            raise
        return TaskFailed(f"{e.filename or 'the work directory'}: cannot write: {e.strerror}")
    return result if isinstance(result, dict) else None


def say_lines(lines: list[str]) -> None:
    for line in lines:
        say(line)


def say(line: str) -> None:
    """How tasks that report line by line (verify) print: plain stdout, shown by doit."""
    print(line, flush=True)


def act(func, **kwargs) -> tuple:
    """A picklable doit action calling *func(**kwargs)* (no lambdas: parallel runs pickle actions)."""
    return (run_action, [func, kwargs])


def planned(plan: Plan, func, *, doc: str, always: bool = False, uptodate: list | None = None,
            **kwargs) -> dict:
    """A doit task from a stage plan: file_dep, targets and config_changed all derive from the plan.

    *always* marks tasks that look upstream (fetch) or at the world (publish,
    push, verify) each run; the others rerun only when an input record or the
    plan's identity (the settings the stage reads) changes.
    """
    task = {"actions": [act(func, plan=plan, **kwargs)],
            "file_dep": [str(p) for p in plan.inputs()],
            "targets": [str(p) for p in plan.outputs()],
            "uptodate": [False] if always else [config_changed(plan.identity())] + (uptodate or []),
            "doc": doc}
    return task
