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


# --- replicas behind a proxy, found by Prometheus ------------------------------

PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
NGINX_CONFIG = ROOT / "deploy" / "nginx" / "nginx.conf"


def _mounted_at(service: dict[str, Any], target: str) -> Path:
    for volume in service.get("volumes", []):
        source, _, rest = volume.partition(":")
        if rest.split(":")[0] == target:
            return (ROOT / source).resolve()
    raise AssertionError(f"nothing mounted at {target}")


def test_app_runs_as_replicas_without_host_ports() -> None:
    """The app is scaled (deploy.replicas) and publishes no host port, which replicas could not share."""
    app = _compose()["services"]["app"]
    assert app["deploy"]["replicas"] >= 3
    assert "ports" not in app
    assert "container_name" not in app  # a fixed name forbids --scale


def test_prometheus_discovers_the_replicas_by_dns() -> None:
    """The app job resolves the compose service name on the admin port: scaling needs no config edit."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    compose = _compose()["services"]
    assert _mounted_at(compose["prometheus"], "/etc/prometheus/prometheus.yml") == PROMETHEUS_CONFIG
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "app"]
    assert "static_configs" not in job
    (dns,) = job["dns_sd_configs"]
    assert dns["names"] == ["app"] and dns.get("type", "SRV") == "A"
    assert str(dns["port"]) == compose["app"]["environment"]["OTEL_EXPORTER_PROMETHEUS_PORT"]


def test_prometheus_config_passes_promtool() -> None:
    """Debian's promtool accepts deploy/prometheus/prometheus.yml (unknown keys and bad values fail it)."""
    promtool = services.ensure_prometheus().with_name("promtool")
    result = subprocess.run(
        [str(promtool), "check", "config", str(PROMETHEUS_CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_proxy_round_robins_over_the_app_service_and_passes_nginx_t(tmp_path: Path) -> None:
    """The proxy publishes the app's port, sends to the service name through Docker's DNS, and `nginx -t` accepts it."""
    compose = _compose()["services"]
    proxy = compose["proxy"]
    assert proxy["image"].startswith("nginx:")
    assert _mounted_at(proxy, "/etc/nginx/nginx.conf") == NGINX_CONFIG
    assert proxy["ports"] == ["127.0.0.1:8000:8000"]
    text = NGINX_CONFIG.read_text()
    # A variable in proxy_pass makes nginx re-resolve the name (valid=...), so new replicas get traffic.
    assert re.search(r"^\s*resolver 127\.0\.0\.11 valid=\d+s", text, re.M)
    assert re.search(r"set \$(\w+) http://app:8000;\s*proxy_pass \$\1;", text)
    assert "proxy_set_header Upgrade $http_upgrade;" in text  # WebSockets pass through
    from tests.infra.replicas import nginx_binary

    result = subprocess.run(
        [str(nginx_binary()), "-t", "-p", str(tmp_path), "-c", str(NGINX_CONFIG), "-e", "stderr"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_traffic_goes_through_the_proxy_to_existing_routes() -> None:
    """The generator targets the proxy, and its default paths and WebSocket are routes of the image's app."""
    import importlib.util

    traffic = _compose()["services"]["traffic"]
    assert traffic["environment"]["TRAFFIC_TARGET"] == "http://proxy:8000"
    spec = importlib.util.spec_from_file_location("generate", ROOT / "deploy" / "traffic" / "generate.py")
    assert spec and spec.loader
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    from starlette.routing import Match

    from examples.starlette_app import app

    def matched(path: str, kind: str) -> bool:
        scope = {"type": kind, "path": path, "method": "GET", "root_path": ""}
        return any(route.matches(scope)[0] is Match.FULL for route in app.routes)

    paths = generate.DEFAULT_PATHS.split(",")
    assert [p for p in paths if not matched(p, "http")] == ["/does-not-exist"]  # the one 404 on purpose
    assert {"/fail", "/block"} <= set(paths)
    assert matched("/ws/traffic", "websocket")


# --- exemplars: Prometheus keeps them, Grafana links them to Kibana --------------

DATASOURCES = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yaml"


def _grafana_expand(value: str, environ: dict[str, str]) -> str:
    """Grafana's $VAR / ${VAR} expansion of provisioning files, where $$ is a literal $."""
    return re.sub(
        r"\$\$|\$\{(\w+)\}|\$(\w+)",
        lambda m: "$" if m.group(0) == "$$" else environ.get(m.group(1) or m.group(2), ""),
        value,
    )


def test_prometheus_stores_exemplars() -> None:
    """Compose starts Prometheus with exemplar storage on."""
    assert "--enable-feature=exemplar-storage" in _compose()["services"]["prometheus"]["command"]


def test_exemplars_link_to_the_trace_in_kibana() -> None:
    """The trace_id exemplar label opens Kibana Discover on the traces data view, filtered by trace.id."""
    (datasource,) = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    (destination,) = datasource["jsonData"]["exemplarTraceIdDestinations"]
    assert destination["name"] == "trace_id"
    url = _grafana_expand(destination["url"], {})
    assert "${__value.raw}" in url, "Grafana would expand an unescaped ${...} from its environment"
    kibana_published = _compose()["services"]["kibana"]["ports"][0].rsplit(":", 1)[0]  # host ip:port
    assert url.startswith(f"http://{kibana_published}/app/discover#/?")
    view = re.search(r"dataViewId:([\w-]+)", url)
    assert view, url
    init = (ROOT / "deploy" / "kibana" / "init-data-views.sh").read_text()
    assert re.search(rf"^create {view.group(1)} 'traces-\*", init, re.M), "the data view kibana-init creates"
    assert "query:(language:kuery,query:'trace.id:${__value.raw}')" in url
    assert url.count("(") == url.count(")")  # rison is balanced


def test_latency_panels_show_exemplars() -> None:
    """Each panel over a duration histogram asks Grafana for exemplars, on one target (more would draw duplicates)."""
    from tests.infra import dashboards

    latency = {}
    for path in dashboards.dashboard_files():
        for panel in json.loads(path.read_text())["panels"]:
            targets = panel.get("targets", [])
            if any(re.search(r"histogram_quantile\(.*_duration_seconds_bucket", t.get("expr", "")) for t in targets):
                latency[panel["title"]] = [t.get("exemplar") is True for t in targets]
    assert len(latency) >= 2
    assert {title: flags.count(True) for title, flags in latency.items()} == dict.fromkeys(latency, 1)
