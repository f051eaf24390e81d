"""Tests of funcsim.executors (a package so that tests/ is on sys.path)."""
