"""One exception hierarchy for the whole pipeline.

Every failure a release engineer can cause or meet (bad configuration, a bad
signature, a tampered package, a server fault) is a ReleaseError subclass whose
message is one line naming the thing at fault.  The command-line layer prints
that line and exits non-zero (2 for bad input) instead of a traceback.
"""


class ReleaseError(Exception):
    """Base of every error the pipeline reports to the user."""

    exit_status = 1

    def __str__(self) -> str:  # one line, whatever the caller passed
        return " ".join(super().__str__().split("\n")).strip()


class InputError(ReleaseError):
    """The user's input (config, catalogue, lock, package) is wrong."""

    exit_status = 2


class ConfigError(InputError):
    """config.toml is invalid; carries every problem found, not just the first."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))

    def __str__(self) -> str:
        return "\n".join(self.problems)


class FetchError(ReleaseError):
    """A remote (HTTP, file or git) could not deliver what was asked for."""


class SignatureError(InputError):
    """A catalogue signature is missing, untrusted, revoked or does not verify."""


class IntegrityError(InputError):
    """Downloaded bytes do not match the sum the catalogue promised."""


class RepositoryError(InputError):
    """A pkg repository's meta.conf or catalogue is malformed."""


class PackageError(InputError):
    """A .pkg file is malformed or unsafe (bad manifest, path traversal, ...)."""


class SolverError(InputError):
    """A flavour's package closure cannot be resolved."""


class LockError(InputError):
    """A lock file is missing, malformed or does not match the configuration."""


class LayerError(InputError):
    """A layer cannot be built deterministically from its inputs."""


class StepError(InputError):
    """An install-time step (builtin or package script) cannot be carried out."""


class ToolError(ReleaseError):
    """An external tool is missing or failed."""


class BusyError(ReleaseError):
    """Another pipeline run holds the work directory."""


class DiskError(ReleaseError):
    """A file could not be written: a full disk, a quota, a read-only file system (the message names it)."""
