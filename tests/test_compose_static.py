"""docker-compose.yml and the files it mounts are valid, without running Docker."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.infra import services

yaml = pytest.importorskip("yaml", reason="needs pyyaml")
jsonschema = pytest.importorskip("jsonschema", reason="needs jsonschema")

ROOT = services.REPO_ROOT
COMPOSE_FILE = ROOT / "docker-compose.yml"
# The Compose Specification schema, vendored from the npm package dclint 3.1.0
# (schemas/compose.schema.json); see tests/infra/README.md.
COMPOSE_SCHEMA = Path(services.__file__).with_name("compose-spec.json")


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


def _bind_sources() -> list[tuple[str, Path]]:
    """(service, host path) for every bind mount, short or long syntax."""
    found = []
    for name, service in _compose()["services"].items():
        for volume in service.get("volumes", []):
            if isinstance(volume, str):
                source = volume.split(":", 1)[0]
            elif volume.get("type") == "bind":
                source = volume["source"]
            else:
                continue
            if source.startswith((".", "/")):  # otherwise a named volume
                found.append((name, (ROOT / source).resolve()))
    return found


def test_compose_file_matches_the_compose_spec_schema() -> None:
    """docker-compose.yml validates against the Compose Specification JSON schema."""
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(_compose())]
    assert errors == []


def test_schema_rejects_a_broken_compose_file() -> None:
    """The vendored schema really checks something (a typo'd key fails)."""
    broken = _compose()
    broken["services"]["app"]["depends_onn"] = {}
    assert not jsonschema.Draft7Validator(json.loads(COMPOSE_SCHEMA.read_text())).is_valid(broken)


def test_every_bind_mount_exists() -> None:
    """Each host path that a service mounts is in the repository."""
    missing = [f"{service}: {path}" for service, path in _bind_sources() if not path.exists()]
    assert _bind_sources(), "expected bind mounts to check"
    assert missing == []


def test_every_mounted_yaml_and_json_file_parses() -> None:
    """Mounted configuration files (and files in mounted dirs) are valid YAML / JSON."""
    files = []
    for _, path in _bind_sources():
        files.extend(sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path])
    checked = 0
    for file in files:
        if file.suffix in {".yml", ".yaml"}:
            assert yaml.safe_load(file.read_text()) is not None, file
            checked += 1
        elif file.suffix == ".json":
            json.loads(file.read_text())
            checked += 1
    assert checked >= 5  # collector, prometheus, 2 grafana provisioning, dashboard


def test_services_waited_on_as_healthy_have_healthchecks() -> None:
    """depends_on service_healthy only names services that define a healthcheck."""
    services_ = _compose()["services"]
    for name, service in services_.items():
        for dependency, rule in (service.get("depends_on") or {}).items():
            assert dependency in services_, f"{name} depends on unknown {dependency}"
            if rule.get("condition") == "service_healthy":
                assert "healthcheck" in services_[dependency], f"{name} waits for {dependency}"


def test_pinned_versions_match_what_the_tests_run() -> None:
    """Compose runs the collector release of builder-config.yaml and the tests' Elasticsearch."""
    images = {name: s.get("image", "") for name, s in _compose()["services"].items()}
    manifest = yaml.safe_load((ROOT / "collector" / "builder-config.yaml").read_text())
    assert images["otel-collector"].endswith(f":{manifest['dist']['version']}")
    assert images["elasticsearch"].endswith(f":{services.ES_VERSION}")
    assert images["kibana"].endswith(f":{services.ES_VERSION}")
    for name, image in images.items():
        if image:
            assert re.search(r":[\w.-]+$", image) and not image.endswith(":latest"), f"{name} image not pinned"


@pytest.mark.e2e  # builds or reuses the real collector
@pytest.mark.timeout(1200)  # a cold cache builds the collector first (~5 min)
@pytest.mark.parametrize("environment", ["defaults", "compose"])
def test_collector_config_passes_otelcol_validate(environment: str) -> None:
    """`otelcol-kit validate` accepts the config, with defaults and with compose's env."""
    try:
        binary = services.ensure_collector()
    except services.ServiceUnavailable as exc:
        pytest.skip(str(exc))
    env = {"PATH": "/usr/bin:/bin"}
    if environment == "compose":
        env.update({k: str(v) for k, v in _compose()["services"]["otel-collector"]["environment"].items()})
    result = subprocess.run(
        [str(binary), "validate", f"--config={services.COLLECTOR_CONFIG}"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
