"""Frame sources chosen by URI."""
