"""The solution files are snippets run by scripts/mutants.py and tests/test_mutants.py, not modules to collect."""

collect_ignore = ["solutions"]
