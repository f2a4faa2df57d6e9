"""load: Locust as a child process, with a recorder plugin streaming per-second histograms."""
