#!/bin/sh
# One-shot: create Kibana data views for the OTel data streams the collector
# writes (traces-*.otel-*, logs-*.otel-*). Idempotent: "override" replaces a
# view with the same title, so re-running `docker compose up` is harmless.
set -eu
KIBANA_URL="${KIBANA_URL:-http://kibana:5601}"

create() {
  # allowNoIndex: the view can exist before the first document arrives.
  curl -fsS -X POST "$KIBANA_URL/api/data_views/data_view" \
    -H 'kbn-xsrf: true' -H 'Content-Type: application/json' \
    -d "{\"override\": true, \"data_view\": {\"id\": \"$1\", \"title\": \"$2\", \"name\": \"$3\", \"timeFieldName\": \"@timestamp\", \"allowNoIndex\": true}}" \
    >/dev/null
  echo "kibana-init: data view '$3' ($2) ready"
}

create otel-traces 'traces-*.otel-*' 'Traces (OTel)'
create otel-logs 'logs-*.otel-*' 'Logs (OTel)'
