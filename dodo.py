"""doit entry point: `doit list` shows the tasks, `doit build:demo` builds the demo release.

Only configuration and task imports live here; tasks/ turns config.toml into
tasks, release/ does the work.
"""
from tasks.build import task_build, task_config_check  # noqa: F401
from tasks.common import WS
from tasks.images import (task_archive, task_checksum, task_image, task_index, task_layer,  # noqa: F401
                          task_sbom, task_verify_checksums)
from tasks.prepare import task_demo, task_download, task_fetch, task_gc, task_lock  # noqa: F401
from tasks.publish import task_nightly, task_publish, task_push, task_verify_tree  # noqa: F401
from tasks.verify import task_verify  # noqa: F401
from tasks.reporter import OneLineReporter

DOIT_CONFIG = {
    "dep_file": str(WS.root / ".doit.db"),
    "backend": "sqlite3",
    "default_tasks": ["build:demo"],
    "reporter": OneLineReporter,
    "verbosity": 1,
}
