"""Helpers shared by the tests (imported as ``helpers.<module>``; tests/conftest.py puts tests/ on sys.path)."""
