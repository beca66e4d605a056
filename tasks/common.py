"""What every task module shares: the loaded configuration and the action wrapper."""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from doit import get_var
from doit.exceptions import TaskFailed
from doit.tools import config_changed

from release import config as config_mod
from release import planner
from release.errors import BusyError, ConfigError, ReleaseError
from release.plans import Plan
from release.workspace import Workspace, lock_workdir, sweep_partials

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
    """Lock the work directory for a run and clear what a killed run left; exit 3 when it is busy."""
    if READ_ONLY_COMMANDS.intersection(sys.argv[1:]):
        ws.root.mkdir(parents=True, exist_ok=True)
        return None
    try:
        fd = lock_workdir(ws.root)
    except BusyError as e:
        print(str(e), file=sys.stderr)
        sys.exit(3)
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


configure_logging()
CONFIG = load_config()
WS = planner.workspace(CONFIG)
WORKDIR_LOCK = hold_workdir(WS)      # also creates the directory doit opens its state database in


def run_action(func, kwargs: dict):
    """Run a release function; a ReleaseError becomes doit's one-line failure."""
    try:
        result = func(**kwargs)
    except ReleaseError as e:
        return TaskFailed(str(e))
    return result if isinstance(result, dict) else None


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
