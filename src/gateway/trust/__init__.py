"""Certificates and per-partner trust: which keys each administration may sign with. No I/O."""
