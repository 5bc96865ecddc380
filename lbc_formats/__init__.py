"""Checks of the file formats users upload, with the standard library only (no torch, no service).

The service runs them at upload time (a bad file is a 422 naming the problem) and the engine runs the same
functions before it builds anything, so the rules are written once.
"""
