"""Channel selection, channel health and circuit breakers (FX quotes will live here too)."""
