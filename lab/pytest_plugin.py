"""pytest fixtures of the lab (filled in by the lab hosts work)."""
