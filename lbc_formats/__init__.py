"""File-format readers and checks without torch: shared by upload validation (jobs) and the engine's loaders."""
