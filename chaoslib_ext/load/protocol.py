"""What the recorder plugin and the runner agree on. Imports nothing from Locust (or gevent)."""

FD_VARIABLE = "GAMEDAY_RECORDER_FD"
