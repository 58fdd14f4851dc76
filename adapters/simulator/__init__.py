"""The channel simulator: a sandbox PSP with its own protocol, and the adapter that speaks it."""

from adapters.simulator.adapter import SimulatorAdapter
from adapters.simulator.server import create_app

__all__ = ["SimulatorAdapter", "create_app"]
