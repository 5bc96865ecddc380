"""What can be submitted, as plain data: imported by the engine and the service alike (no torch, no web)."""
