"""gameday: a chaos engineering experiment runner that judges whether a system held its SLO."""

__version__ = "0.1.0"
