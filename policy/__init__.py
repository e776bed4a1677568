"""The ray-on-eks CrossGuard policy pack: plain checks (``checks.py``) wrapped as policies."""
