"""Tests of funcsim.data (a package so that tests/ is on sys.path and ``helpers`` imports)."""
