"""The HTTP edge: merchant API, channel callbacks, hosted cashier page, health and metrics."""
