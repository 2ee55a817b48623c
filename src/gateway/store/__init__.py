"""Message stores: the inbox of accepted envelopes with their receipts (SQLite by default)."""
