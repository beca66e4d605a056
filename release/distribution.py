"""The OCI distribution spec's vocabulary, as the registry client reads and writes it.

Repository names, tags and digests (distribution-spec "Pulling manifests"),
token scopes (``repository:<name>:<actions>``, the token spec), the Range
header an upload session answers with, and the error bodies registries send
(``{"errors":[{"code":..,"message":..}]}``).  Those bodies are chosen by the
registry, so only a capped prefix of one is ever read and a cut line of it
quoted.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import InputError
from .http import cut

REPO_NAME = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*")
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
RANGE = re.compile(r"^(?:bytes=)?0-(\d+)$")


@dataclass(frozen=True)
class Reply:
    """A registry's answer, read: status, headers and (a capped prefix of) the body."""

    status_code: int
    reason: str
    headers: Mapping[str, str]
    content: bytes


def scope(repo: str, actions: str) -> str:
    return f"repository:{repo}:{actions}"


def check_name(repo: str) -> None:
    if not REPO_NAME.fullmatch(repo) or len(repo) > 255:
        raise InputError(f"{repo!r}: not a valid repository name (lower case, digits, . _ - and /)")


def bytes_held(resp: Reply) -> int | None:
    """Bytes an upload session holds according to its Range header ("0-<last>").

    "0-0" is what distribution says for an empty session; a session holding
    exactly one byte is indistinguishable, and never happens with our chunks.
    """
    m = RANGE.match(resp.headers.get("Range", "").strip())
    if not m:
        return None
    last = int(m.group(1))
    return 0 if last == 0 else last + 1


_ERROR_CODE = re.compile(r'"code"\s*:\s*"([^"\\]{0,100})"')
_ERROR_MESSAGE = re.compile(r'"message"\s*:\s*"((?:[^"\\]|\\.){0,400})')


def error_detail(resp: Reply) -> str:
    """": CODE: message" from a distribution error body, when there is one (cut: the registry chose it).

    Only a prefix of the body was read (read_capped), so a huge body is not
    valid JSON any more: its first code and message are then picked out as text.
    """
    try:
        first = (json.loads(resp.content or b"{}").get("errors") or [])[0]
        code, message = str(first.get("code", "?")), str(first.get("message", ""))
    except (ValueError, AttributeError, IndexError, TypeError):
        text = resp.content[:4096].decode("utf-8", "replace")
        code_match, message_match = _ERROR_CODE.search(text), _ERROR_MESSAGE.search(text)
        if not code_match:
            return ""
        code, message = code_match.group(1), message_match.group(1) if message_match else ""
    return cut(f": {code}: {message}".rstrip(": "))
