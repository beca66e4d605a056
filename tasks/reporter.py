"""doit reporter: a failed task in one line (`<task>: <reason>`), and optional task timings.

With RELEASE_TASK_TIMES=<file> in the environment, the wall time of every task
that ran is written there as JSON at the end of the run (bench/build.py uses it
to split a build into stages).
"""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, TextIO

from doit.reporter import ConsoleReporter


class OneLineReporter(ConsoleReporter):
    desc = "one line per failure"

    def __init__(self, outstream: TextIO, options: dict[str, Any]) -> None:
        super().__init__(outstream, options)
        self.started: dict[str, float] = {}
        self.elapsed: dict[str, float] = {}

    def execute_task(self, task):
        self.started[task.name] = time.monotonic()
        super().execute_task(task)

    def add_success(self, task):
        if task.name in self.started:
            self.elapsed[task.name] = time.monotonic() - self.started[task.name]

    def _write_failure(self, result, write_exception=True):
        msg = result["exception"].get_msg().strip().splitlines()
        # TaskFailed carries our one-line message; anything else is a bug and keeps its traceback
        text = msg[0] if len(msg) == 1 else "\n".join(msg)
        sys.stderr.write(f"{result['task'].name}: {text}\n")

    def complete_run(self):
        for err in self.runtime_errors:
            sys.stderr.write(f"{err}\n")
        path = os.environ.get("RELEASE_TASK_TIMES")
        if path:
            with open(path, "w") as f:
                json.dump(self.elapsed, f, sort_keys=True, indent=1)
