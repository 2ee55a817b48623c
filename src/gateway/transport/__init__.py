"""Transports at the edge: gRPC (grpc_server, grpc_client) and XML over HTTPS; TLS material.

Modules are imported directly (e.g. `gateway.transport.grpc_server`) so that using one
transport does not load the other's libraries.
"""
