"""Canonical records and code lists, WCO-DM aligned. No I/O."""
