"""Mapping engine: EU formats <-> canonical records <-> UB exchange payloads. No I/O.

Mapping tables live as data in adapters/mappings and are passed in by callers; schemas ship in
translate/schemas and are loaded from the package.
"""
