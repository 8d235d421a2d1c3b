"""Just enough of Dockerfile and .dockerignore semantics to check them without Docker.

Dockerfile: instructions with continuation lines joined (no parser
directives or heredocs, which ours do not use). .dockerignore: Docker's
rules as documented — patterns in order, the last match wins, ``!`` re-
includes, and a pattern that matches a directory matches everything under it.
"""

from __future__ import annotations

import fnmatch
import os
import shlex
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Instruction:
    keyword: str
    args: str

    def copy_sources(self) -> list[str]:
        """Sources of a COPY/ADD from the build context (not ``--from`` another stage)."""
        words = shlex.split(self.args)
        if any(w.startswith("--from=") for w in words):
            return []
        paths = [w for w in words if not w.startswith("--")]
        return paths[:-1]


def instructions(dockerfile: Path) -> list[Instruction]:
    joined: list[str] = []
    pending = ""
    for line in dockerfile.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        joined.append(pending + stripped)
        pending = ""
    found = []
    for text in joined:
        keyword, _, args = text.partition(" ")
        found.append(Instruction(keyword.upper(), args.strip()))
    return found


def ignore_patterns(dockerignore: Path) -> list[tuple[bool, str]]:
    """(excludes, pattern) in file order."""
    patterns = []
    for line in dockerignore.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        patterns.append((not negated, pattern))
    return patterns


def _matches(pattern: str, path: str) -> bool:
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    if pattern.startswith("**/"):
        # **/x matches x at any depth, as a file or as a directory above the path.
        tail = pattern[3:]
        return any(fnmatch.fnmatchcase(p.rsplit("/", 1)[-1], tail) for p in prefixes)
    return any(fnmatch.fnmatchcase(p, pattern) and p.count("/") == pattern.count("/") for p in prefixes)


def is_excluded(path: str, patterns: list[tuple[bool, str]]) -> bool:
    excluded = False
    for excludes, pattern in patterns:
        if _matches(pattern, path):
            excluded = excludes
    return excluded


def _pruned(directory: str, patterns: list[tuple[bool, str]]) -> bool:
    if not is_excluded(directory, patterns):
        return False
    reincluded = [p for excludes, p in patterns if not excludes]
    return not any(p.startswith((f"{directory}/", "*")) for p in reincluded)


def context_files(root: Path, dockerignore: Path) -> list[Path]:
    """Files Docker would send as the build context of ``root``."""
    patterns = ignore_patterns(dockerignore)
    sent = []
    for directory, dirs, files in os.walk(root):
        rel_dir = os.path.relpath(directory, root)
        for name in files:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if not is_excluded(rel, patterns):
                sent.append(root / rel)
        # An excluded directory is still walked when a ! pattern may re-include something inside it.
        dirs[:] = [d for d in dirs if not _pruned(d if rel_dir == "." else f"{rel_dir}/{d}", patterns)]
    return sent
