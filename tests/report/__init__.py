"""Tests of funcsim.report (a package so that tests/ is on sys.path and ``helpers`` imports)."""
