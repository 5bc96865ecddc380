"""What a job can ask for, as plain data: no torch, no service imports (a leaf both sides read).

``jobs/`` validates specs with it and ``lbc_core`` builds from it, so each fact is written once.
"""
