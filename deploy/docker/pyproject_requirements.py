"""Print the requirements that pyproject.toml declares, one per line, for `pip install -r`.

The Dockerfile installs these in a layer of their own, built from
pyproject.toml alone, so an edit to the code reuses that layer.

    python pyproject_requirements.py [--extras a,b] [--build] [pyproject.toml]

--extras adds optional-dependencies groups; --build adds build-system.requires
(for `pip install --no-build-isolation` of the package afterwards).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import tomllib


def requirements(pyproject: dict, extras: list[str], build: bool) -> list[str]:
    project = pyproject["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [e for e in extras if e not in optional]
    if unknown:
        raise SystemExit(f"--extras {','.join(unknown)!r}: not in optional-dependencies ({', '.join(optional)})")
    found = list(project.get("dependencies", []))
    for extra in extras:
        found += optional[extra]
    if build:
        found += pyproject.get("build-system", {}).get("requires", [])
    own = project["name"].replace("_", "-").lower()
    # An extra that names the package itself ("otel-asgi-kit[x]") is not installable from here.
    return [r for r in dict.fromkeys(found) if not r.replace("_", "-").lower().startswith(own)]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extras", default="", help="comma-separated optional-dependencies groups")
    parser.add_argument("--build", action="store_true", help="add build-system.requires")
    parser.add_argument("pyproject", nargs="?", default="pyproject.toml")
    args = parser.parse_args(argv)
    pyproject = tomllib.loads(Path(args.pyproject).read_text())
    extras = [e.strip() for e in args.extras.split(",") if e.strip()]
    print("\n".join(requirements(pyproject, extras, args.build)))


if __name__ == "__main__":
    main(sys.argv[1:])
