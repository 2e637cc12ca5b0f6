"""HTTP: the JSON API, git smart HTTP, the run beacon (and, later, the dashboard)."""
