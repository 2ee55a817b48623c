"""Operations: Prometheus metrics, health and readiness, structured (JSON-lines) logs."""
