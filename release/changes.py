"""What changed between two published snapshot builds of a branch.

Every snapshot build publishes BUILDINFO-<suffix>.json (its src commit and, per
flavour, every package and version) and a change report against the build
published before it: the src commits in between (first-parent, as
`git log --first-parent old..new` lists them) and, per flavour, the packages
added, removed and upgraded.  The first build of a branch reports "initial".
"""
from __future__ import annotations

from typing import Any

from .errors import ReleaseError
from .srcgit import SrcMirror


def buildinfo(*, release: str, version: str, suffix: str, arch: str, src: dict[str, Any],
              lock: dict[str, Any]) -> dict[str, Any]:
    return {
        "release": release, "version": version, "suffix": suffix, "arch": arch,
        "src": {k: src[k] for k in ("branch", "commit", "short", "count")},
        "flavours": {name: {p["name"]: p["version"] for p in f["packages"]}
                     for name, f in lock["flavours"].items()},
    }


def compare(previous: dict[str, Any] | None, current: dict[str, Any], mirror: SrcMirror | None) -> dict[str, Any]:
    """The change report of *current* against *previous* (None: the first build)."""
    report: dict[str, Any] = {"release": current["release"], "version": current["version"],
                              "arch": current["arch"], "suffix": current["suffix"],
                              "src": {"branch": current["src"]["branch"], "to": current["src"]["commit"]}}
    if previous is None:
        report["initial"] = True
        report["flavours"] = {f: {"added": dict(sorted(p.items())), "removed": {}, "upgraded": {}}
                              for f, p in current["flavours"].items()}
        return report
    report["initial"] = False
    report["previous"] = previous["suffix"]
    report["src"]["from"] = previous["src"]["commit"]
    try:
        commits = mirror.commits_between(previous["src"]["commit"], current["src"]["commit"]) if mirror else None
        report["src"]["commits"] = [{"commit": c.commit, "subject": c.subject} for c in commits] \
            if commits is not None else None
    except ReleaseError:
        report["src"]["commits"] = None           # the old commit is no longer on the branch (history rewritten)
    flavours = {}
    for f in sorted(set(current["flavours"]) | set(previous["flavours"])):
        old, new = previous["flavours"].get(f, {}), current["flavours"].get(f, {})
        flavours[f] = {
            "added": {n: new[n] for n in sorted(set(new) - set(old))},
            "removed": {n: old[n] for n in sorted(set(old) - set(new))},
            "upgraded": {n: [old[n], new[n]] for n in sorted(set(old) & set(new)) if old[n] != new[n]},
        }
    report["flavours"] = flavours
    return report


def text(report: dict[str, Any]) -> str:
    """A short human summary of a change report."""
    head = f"FreeBSD {report['version']} {report['arch']} {report['suffix']}"
    lines = []
    if report["initial"]:
        lines.append(f"{head}: initial build of {report['src']['branch']} at {report['src']['to'][:12]}")
    else:
        lines.append(f"{head}: changes since {report['previous']}")
        commits = report["src"].get("commits")
        rng = f"{report['src']['from'][:12]}..{report['src']['to'][:12]}"
        if commits is None:
            lines.append(f"src {report['src']['branch']} {rng}: the earlier commit is not on the branch")
        else:
            lines.append(f"src {report['src']['branch']} {rng}: {len(commits)} commit(s)")
            lines += [f"  {c['commit'][:12]} {c['subject']}" for c in commits[:50]]
            if len(commits) > 50:
                lines.append(f"  ... and {len(commits) - 50} more")
    for flavour, delta in report["flavours"].items():
        parts = [f"upgraded {n} {a} -> {b}" for n, (a, b) in delta["upgraded"].items()]
        if not report["initial"]:
            parts += [f"added {n} {v}" for n, v in delta["added"].items()]
        else:
            parts += [f"{len(delta['added'])} packages"]
        parts += [f"removed {n} {v}" for n, v in delta["removed"].items()]
        lines.append(f"{flavour}: " + ("; ".join(parts) if parts else "no package changes"))
    return "\n".join(lines) + "\n"
