"""Helpers shared by test packages; importable as ``helpers`` with tests/ on sys.path."""
