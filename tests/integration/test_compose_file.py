"""compose.yaml is a valid Compose file and runs only real `vidjobs` commands.

The schema is the Compose specification's JSON schema (compose-spec/compose-spec,
Apache-2.0) as vendored by the check-jsonschema package (a dev dependency), so no network
is needed.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import typer.main
import yaml

from workers.cli import app

ROOT = Path(__file__).resolve().parents[2]
VIDJOBS_SERVICES = {"migrate", "api", "relay", "worker", "reaper", "ledger", "webhooks"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def compose_schema() -> dict[str, Any]:
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads((vendor / "compose-spec.json").read_text())
    assert "services" in schema["properties"], "not the Compose specification schema"
    return schema


def test_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = compose_schema()
    validator_cls = jsonschema.validators.validator_for(schema)
    validator_cls.check_schema(schema)
    errors = sorted(validator_cls(schema).iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_the_schema_check_can_fail() -> None:
    broken = {"services": {"api": {"image": "x", "depends_on": {"db": {"condition": "up"}}}}}
    schema = compose_schema()
    assert list(jsonschema.validators.validator_for(schema)(schema).iter_errors(broken))


def test_the_command_check_can_fail() -> None:
    cli = typer.main.get_command(app)
    assert cli.commands.get("publish") is None  # type: ignore[attr-defined]
    with pytest.raises(Exception, match="No such option"):
        cli.commands["relay"].make_context("relay", ["--no-such-option"])  # type: ignore[attr-defined]


def test_every_service_command_is_a_real_vidjobs_command(compose: dict[str, Any]) -> None:
    cli = typer.main.get_command(app)
    services = compose["services"]
    assert set(services) >= VIDJOBS_SERVICES | {"postgres", "kafka"}
    for name in VIDJOBS_SERVICES:
        command = services[name]["command"]
        assert isinstance(command, list) and command, name
        sub = cli.commands.get(command[0])  # type: ignore[attr-defined]
        assert sub is not None, f"{name}: `vidjobs {command[0]}` is not a command"
        # Parse (not run) the arguments: unknown options or bad values raise here.
        sub.make_context(command[0], list(command[1:]))


def test_the_fleet_starts_in_order_and_shows_relay_failover(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for dependency in ("postgres", "kafka"):
        assert services[dependency].get("healthcheck"), f"{dependency} needs a health check"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in VIDJOBS_SERVICES - {"migrate"}:
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
    for name in ("relay", "worker", "ledger", "webhooks"):
        assert services[name]["depends_on"]["kafka"]["condition"] == "service_healthy", name
    assert services["relay"]["deploy"]["replicas"] == 2
    assert services["worker"]["deploy"]["replicas"] >= 2


def test_the_broker_is_the_official_image_of_the_tested_kafka_version(
    compose: dict[str, Any],
) -> None:
    pom = (ROOT / "scripts" / "kafka" / "pom.xml").read_text()
    match = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom)
    assert match is not None
    kafka = compose["services"]["kafka"]
    assert kafka["image"] == f"apache/kafka:{match.group(1)}"
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    for name in VIDJOBS_SERVICES:
        env = compose["services"][name]["environment"]
        assert env["VIDJOBS_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert "@postgres:5432/" in env["VIDJOBS_DATABASE_URL"]


def test_blobs_live_in_the_object_store_and_no_volume_is_shared(compose: dict[str, Any]) -> None:
    services = compose["services"]
    module = re.search(
        r'VERSITYGW_MODULE = ".*@(v[0-9.]+)"', (ROOT / "scripts" / "services.py").read_text()
    )
    assert module is not None
    assert services["s3"]["image"] == f"versity/versitygw:{module.group(1)}"  # the tested one
    s3_env = services["s3"]["environment"]
    for name in VIDJOBS_SERVICES:
        service = services[name]
        assert not service.get("volumes"), f"{name} mounts a volume: blobs must not need one"
        env = service["environment"]
        assert env["VIDJOBS_STORAGE_URL"].startswith("s3://"), name
        assert env["VIDJOBS_S3_ENDPOINT_URL"] == "http://s3:7070", name
        assert env["AWS_ACCESS_KEY_ID"] == s3_env["ROOT_ACCESS_KEY"], name
        assert env["AWS_SECRET_ACCESS_KEY"] == s3_env["ROOT_SECRET_KEY"], name
    assert "s3" in services["migrate"]["depends_on"]
