"""faults: one interface, one module per fault kind; drivers supply the targets."""

from .base import Fault, FaultRecord, build_fault

__all__ = ["Fault", "FaultRecord", "build_fault"]
