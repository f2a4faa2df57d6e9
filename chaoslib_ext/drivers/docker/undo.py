"""The docker driver's undo form: start or unpause a container, on the engine it was stopped or
paused on (not whatever DOCKER_HOST says when `gameday recover` runs)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from chaoslib_ext.state.undo import COMMAND_TIMEOUT_SECONDS, Refused, matches, undo_form

CONTAINER_ID = re.compile(r"[0-9a-f]{64}")
DOCKER_ENGINE = re.compile(r"(?:unix:///[\w./-]+|tcp://[\w.-]+:\d{1,5}|ssh://[\w.@-]+(?::\d{1,5})?)")


@dataclass(frozen=True)
class RestoreContainer:
    """docker start (after a stop) or docker unpause (after a pause), on the engine it was done on
    (not whatever DOCKER_HOST says when recover runs)."""

    verb: str  # start | unpause
    container_id: str
    engine: str  # the Docker endpoint, e.g. unix:///var/run/docker.sock

    def to_data(self) -> dict[str, Any]:
        return {"kind": "docker", "verb": self.verb, "id": self.container_id, "engine": self.engine}

    def perform(self) -> str | None:
        import docker  # only runs that used containers pay for it
        from docker.errors import DockerException, NotFound

        try:
            client = docker.DockerClient(base_url=self.engine, timeout=COMMAND_TIMEOUT_SECONDS)
        except DockerException as error:
            return f"docker engine {self.engine}: {error}"
        try:
            container = client.containers.get(self.container_id)
            wanted = {"unpause": "paused", "start": "exited"}[self.verb]
            if container.status != wanted:
                return None  # something else already brought it back
            container.unpause() if self.verb == "unpause" else container.start()
        except NotFound:
            return None  # removed since
        except DockerException as error:
            return f"docker {self.verb} {self.container_id[:12]}: {error}"
        finally:
            client.close()
        return None


@undo_form("docker")
def read_restore(data: dict[str, Any], run_id: str) -> RestoreContainer:
    fields = set(data) - {"kind"}
    exact = fields == {"verb", "id", "engine"} and data["verb"] in ("start", "unpause")
    if exact and matches(CONTAINER_ID, data["id"]) and matches(DOCKER_ENGINE, data["engine"]):
        return RestoreContainer(data["verb"], data["id"], data["engine"])
    raise Refused(f"not an undo gameday writes: {str(data)[:160]}")
