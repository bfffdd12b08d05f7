"""Suite-wide: puts tests/ on sys.path (pytest does that for a folder holding a conftest), so that
the shared helper module tests/tinyyolo.py imports from every test folder."""
