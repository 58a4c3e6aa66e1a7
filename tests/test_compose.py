"""docker/compose.yaml and docker/Dockerfile, read as data: what no `docker compose config` would catch.

Every service that runs Portico's image works in one data directory: the files
web stores are the batch inputs the worker reads, the worker's output files are
what web serves, and a ledger spool left by any of them is drained by the next
to start. So each must mount the volume web mounts, at the same path, and see
the same files and ledger directories. Health checks probe the health
endpoints, which answer without a key and say what they mean.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

DOCKER = Path(__file__).resolve().parent.parent / "docker"
HEALTH_PATHS = ("/health/live", "/health/ready")


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def dockerfile() -> str:
    return (DOCKER / "Dockerfile").read_text(encoding="utf-8")


def image_env() -> dict[str, str]:
    """The variables the image's ENV instructions set (continued lines joined)."""
    text = dockerfile().replace("\\\n", " ")
    found: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            for pair in shlex.split(line[4:]):
                name, _, value = pair.partition("=")
                found[name] = value
    return found


def portico_services() -> dict[str, dict[str, Any]]:
    """The services built from Portico's Dockerfile."""
    return {
        name: service
        for name, service in compose()["services"].items()
        if (service.get("build") or {}).get("dockerfile") == "docker/Dockerfile"
    }


def data_dirs(service: dict[str, Any]) -> tuple[str, str, str]:
    """Where the service keeps its data, its batch files and its ledger spool, as its settings would resolve them."""
    env = {**image_env(), **(service.get("environment") or {})}
    data = env["PORTICO_DATA_DIR"]
    return data, env.get("PORTICO_FILES_DIR", f"{data}/files"), env.get("PORTICO_LEDGER_DIR", f"{data}/ledger")


def named_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> named volume, for the service's volumes that are named volumes (not host paths)."""
    declared = compose().get("volumes") or {}
    mounts: dict[str, str] = {}
    for entry in service.get("volumes") or []:
        source, _, rest = entry.partition(":")
        if source in declared:
            mounts[rest.split(":")[0]] = source
    return mounts


def test_every_portico_service_shares_webs_data_volume_at_the_same_path() -> None:
    services = portico_services()
    assert {"web", "worker", "beat"} <= services.keys()
    web_data, _, _ = data_dirs(services["web"])
    volume = named_mounts(services["web"]).get(web_data)
    assert volume is not None, f"web mounts no named volume at its data directory {web_data}"
    for name, service in services.items():
        assert named_mounts(service).get(web_data) == volume, f"{name} does not mount {volume} at {web_data}"


@pytest.mark.parametrize("service", ["worker", "beat"])
def test_worker_and_beat_see_the_files_and_ledger_directories_web_sees(service: str) -> None:
    services = portico_services()
    assert data_dirs(services[service]) == data_dirs(services["web"])


def test_web_is_healthy_once_ready_and_not_by_probing_the_api() -> None:
    web = portico_services()["web"]
    probe = " ".join(web["healthcheck"]["test"])
    assert "/v1/" not in probe
    assert "'/health/ready'" in probe
    assert "status != 200" in probe


def test_the_images_own_health_check_asks_whether_the_process_is_alive() -> None:
    instruction = re.search(r"^HEALTHCHECK .*?CMD (.+)$", dockerfile().replace("\\\n", " "), re.MULTILINE)
    assert instruction is not None
    probe = instruction.group(1)
    assert "/v1/" not in probe
    assert any(f"'{path}'" in probe for path in HEALTH_PATHS)
    assert "status != 200" in probe
