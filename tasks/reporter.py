"""doit reporter that reports a failed task in one line: `<task>: <reason>`."""
from __future__ import annotations

import sys

from doit.reporter import ConsoleReporter


class OneLineReporter(ConsoleReporter):
    desc = "one line per failure"

    def _write_failure(self, result, write_exception=True):
        msg = result["exception"].get_msg().strip().splitlines()
        # TaskFailed carries our one-line message; anything else is a bug and keeps its traceback
        text = msg[0] if len(msg) == 1 else "\n".join(msg)
        sys.stderr.write(f"{result['task'].name}: {text}\n")

    def complete_run(self):
        if self.runtime_errors:
            for err in self.runtime_errors:
                sys.stderr.write(f"{err}\n")
