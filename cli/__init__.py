"""The `juhe` command."""
