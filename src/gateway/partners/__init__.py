"""Partner profiles (adapters/partners/*.toml) and the rules they drive. No I/O.

A profile says, per partner administration, what its agreement recognises (eligible AEO types,
the partner programme each maps to, the identifiers the partner needs), how to reach it (binding,
endpoint, certificates) and how to deliver (retries, duplicate window, clock skew). Profiles are
read and checked at start-up by ``profile.load_profile`` from text the caller read.
"""
