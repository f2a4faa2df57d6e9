"""The kubernetes driver's undo form: delete the Chaos Mesh object a run created, on the cluster
it was created on, and only that object: the same name and namespace, the run's label, and (once
known) its uid. A 404 or another uid counts as already undone; a context that now points at
another server is never acted on."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from chaoslib_ext.state.undo import Refused, matches, undo_form

NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
GROUP = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
SERVER = re.compile(r"https?://[\w.\[\]:-]{1,253}(:\d{1,5})?(/[\w./-]*)?")
CONTEXT = re.compile(r"[\w.@:/-]{0,253}")
UID = re.compile(r"[0-9a-f-]{36}")
GONE_WAIT_SECONDS = 10.0  # how long a deleted object may take to go (finalizers run)
FIELDS = {"server", "context", "group", "version", "plural", "namespace", "name", "run", "uid"}


@dataclass(frozen=True)
class DeleteClusterObject:
    server: str  # the API server it was created on
    context: str  # the kubeconfig context that reached it ("" without a kubeconfig)
    group: str
    version: str
    plural: str
    namespace: str
    name: str
    run: str  # the value of its gameday.dev/run label
    uid: str = ""  # "" until the API server has named it

    def to_data(self) -> dict[str, Any]:
        return {
            "kind": "kubernetes-object",
            "server": self.server,
            "context": self.context,
            "group": self.group,
            "version": self.version,
            "plural": self.plural,
            "namespace": self.namespace,
            "name": self.name,
            "run": self.run,
            "uid": self.uid,
        }

    def perform(self) -> str | None:
        from chaoslib_ext.drivers.kubernetes.objects import ObjectAway

        try:
            return ObjectAway(self).take_away(GONE_WAIT_SECONDS)
        except Exception as error:  # the clean-up reports it, and recover tries again later
            return f"{self.plural} {self.namespace}/{self.name} on {self.server}: {error}"[:400]

    def describe(self) -> str:
        return f"{self.plural} {self.namespace}/{self.name}"


@undo_form("kubernetes-object")
def read_delete(data: dict[str, Any], run_id: str) -> DeleteClusterObject:
    if set(data) - {"kind"} == FIELDS:
        values = {key: data[key] for key in FIELDS}
        shapes = (
            (SERVER, values["server"]),
            (CONTEXT, values["context"]),
            (GROUP, values["group"]),
            (NAME, values["version"]),
            (NAME, values["plural"]),
            (NAME, values["namespace"]),
            (NAME, values["name"]),
        )
        owned = values["run"] == run_id[-63:] and (values["uid"] == "" or matches(UID, values["uid"]))
        if all(matches(pattern, value) for pattern, value in shapes) and owned:
            return DeleteClusterObject(**values)
    raise Refused(f"not an undo gameday writes: {str(data)[:160]}")


def wait_gone(exists: Any, seconds: float) -> bool:
    """Whether `exists()` turns False within `seconds`."""
    deadline = time.monotonic() + seconds
    while exists():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True
