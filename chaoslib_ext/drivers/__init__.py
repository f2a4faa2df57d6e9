"""drivers: where targets live. One package per driver, one line per driver here; a driver's
module is imported only when an experiment names it (so a local run never imports docker)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chaoslib_ext.drivers.base import Driver
    from chaoslib_ext.spec.model import Experiment

DRIVERS = {  # target.driver -> module:class
    "local": "chaoslib_ext.drivers.local.driver:LocalDriver",
    "docker": "chaoslib_ext.drivers.docker.driver:DockerDriver",
    "kubernetes": "chaoslib_ext.drivers.kubernetes.driver:KubernetesDriver",
}
UNDO_FORMS = (
    "chaoslib_ext.drivers.docker.undo",
    "chaoslib_ext.drivers.kubernetes.undo",
)  # their own ledger lines


def driver_class(name: str) -> type[Driver]:
    module, _, attribute = DRIVERS[name].partition(":")
    driver: type[Driver] = getattr(importlib.import_module(module), attribute)
    return driver


def driver_for(experiment: Experiment) -> Driver:
    """The experiment's driver, made without touching anything."""
    return driver_class(experiment.driver)(experiment)


def load_undo_forms() -> None:
    """Make every driver's undo forms known, so that any run's ledger can be read back."""
    for module in UNDO_FORMS:
        importlib.import_module(module)
