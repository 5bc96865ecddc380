"""The ``lbc`` command. Sub-commands import their heavy dependencies (torch, the engine) only when run."""
