"""Operating jiesu: metrics for Prometheus, structured logs, liveness and readiness, the
processes' heartbeats (docs/operations.md)."""
