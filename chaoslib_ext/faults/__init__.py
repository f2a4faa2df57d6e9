"""faults: one interface, one module per fault kind; drivers supply the targets."""

from chaoslib_ext.faults.base import Fault, FaultRecord, build_fault

__all__ = ["Fault", "FaultRecord", "build_fault"]
