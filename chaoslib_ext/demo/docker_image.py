"""A base image for the docker demo and tests, built without a registry: a busybox-static root file
system brought in with `docker import`. Run `python -m chaoslib_ext.demo.docker_image` to build it."""

from __future__ import annotations

import io
import shutil
import sys
import tarfile
from typing import Any

REPOSITORY, TAG = "gameday-base", "3"
BASE_IMAGE = f"{REPOSITORY}:{TAG}"
APPLETS = (
    "sh",
    "httpd",
    "wget",
    "nslookup",
    "sed",
    "timeout",
    "sleep",
    "cat",
    "echo",
    "ls",
    "kill",
    "ps",
    "printf",
)
PAGES = {"www/index.html": b"ok\n", "www/work": b'{"ok": true}\n', "www/checkout": b'{"ok": true}\n'}


def base_image_tar(busybox: str) -> bytes:
    """The root file system: busybox, its applets as links, and a few static pages."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.add(busybox, arcname="bin/busybox")
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            archive.addfile(link)
        for name, text in PAGES.items():
            info = tarfile.TarInfo(name)
            info.size = len(text)
            archive.addfile(info, io.BytesIO(text))
    return buffer.getvalue()


def ensure_base_image(client: Any) -> str:
    """Import the base image unless it is there already (it stays cached between runs)."""
    from docker.errors import ImageNotFound

    try:
        client.images.get(BASE_IMAGE)
        return BASE_IMAGE
    except ImageNotFound:
        pass
    busybox = shutil.which("busybox")
    if busybox is None:
        raise RuntimeError("busybox is not installed (apt-get install busybox-static)")
    client.api.import_image_from_data(base_image_tar(busybox), repository=REPOSITORY, tag=TAG)
    return BASE_IMAGE


def main() -> int:
    import docker

    try:
        print(ensure_base_image(docker.from_env()))
    except Exception as error:  # a one-line reason for make, not a traceback
        print(f"cannot build {BASE_IMAGE}: {error}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
