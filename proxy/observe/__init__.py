"""What operators see: metrics, logs, the access log, relay byte counts."""
