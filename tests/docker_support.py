"""Test containers from the demo base image, labelled per test so that they can always be removed."""

from __future__ import annotations

import uuid

from chaoslib_ext.demo.docker_image import ensure_base_image


def docker_client_or_reason() -> tuple[object | None, str]:
    """A live Docker client, or why there is none (for a visible skip reason)."""
    try:
        import docker

        client = docker.from_env()
        client.ping()
        return client, ""
    except Exception as error:
        return None, f"no Docker engine: {str(error)[:120]}"


def run_web_containers(client, count: int, role: str, label: str) -> list:
    """`count` busybox httpd containers serving /www on 8080, labelled for one test."""
    image = ensure_base_image(client)
    return [
        client.containers.run(
            image,
            ["/bin/httpd", "-f", "-p", "8080", "-h", "/www"],
            detach=True,
            name=f"gdtest-{label}-{role}-{i}",
            labels={"gameday.test": label, "role": role},
        )
        for i in range(count)
    ]


def new_label() -> str:
    return uuid.uuid4().hex[:8]
