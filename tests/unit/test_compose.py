"""docker-compose.yaml parses (when a docker client with compose exists here)."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yaml"


def test_compose_file_declares_the_stack():
    doc = yaml.safe_load(COMPOSE.read_text())
    services = set(doc["services"])
    expected = {"postgres", "redis", "s3", "airflow-init", "airflow-apiserver", "airflow-scheduler",
                "airflow-dag-processor", "airflow-triggerer", "airflow-worker"}
    assert expected <= services, expected - services


def test_docker_compose_config_parses():
    docker = shutil.which("docker")
    if not docker:
        pytest.skip("no docker client on this machine: `docker compose config` cannot be checked")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("docker client has no compose plugin: `docker compose config` cannot be checked")
    result = subprocess.run([docker, "compose", "-f", str(COMPOSE), "config", "--quiet"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
