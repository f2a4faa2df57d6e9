"""Test containers without a registry: a busybox-static root file system brought in with
`docker import`, and helpers that start labelled containers from it and always remove them."""

from __future__ import annotations

import io
import shutil
import tarfile
import uuid

BASE_IMAGE = "gameday-test-base:1"
BUSYBOX_APPLETS = ("sh", "httpd", "sleep", "cat", "echo", "ls", "kill", "ps")


def docker_client_or_reason() -> tuple[object | None, str]:
    """A live Docker client, or why there is none (for a visible skip reason)."""
    try:
        import docker

        client = docker.from_env()
        client.ping()
        return client, ""
    except Exception as error:
        return None, f"no Docker engine: {str(error)[:120]}"


def ensure_base_image(client) -> str:
    """Import the base image once (it stays cached between runs: the only thing tests keep)."""
    from docker.errors import ImageNotFound

    try:
        client.images.get(BASE_IMAGE)
        return BASE_IMAGE
    except ImageNotFound:
        pass
    busybox = shutil.which("busybox")
    if busybox is None:
        raise RuntimeError("busybox is not installed (apt-get install busybox-static)")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.add(busybox, arcname="bin/busybox")
        for applet in BUSYBOX_APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            archive.addfile(link)
        for name, text in (("www/index.html", b"ok\n"), ("www/checkout", b'{"ok": true}\n')):
            info = tarfile.TarInfo(name)
            info.size = len(text)
            archive.addfile(info, io.BytesIO(text))
    client.api.import_image_from_data(buffer.getvalue(), repository="gameday-test-base", tag="1")
    return BASE_IMAGE


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
