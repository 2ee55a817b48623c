"""Envelopes, signatures and receipts in both bindings. No I/O: bytes in, objects out."""
