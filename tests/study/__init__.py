"""Tests of funcsim.study (a package so that tests/ is on sys.path and ``helpers`` imports)."""
