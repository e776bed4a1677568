"""quickstart: the smallest end-to-end check that a Ray cluster schedules work."""
