"""I/O plumbing shared by the gateway and the workers: PostgreSQL, Redis, RabbitMQ, logs,
metrics."""
