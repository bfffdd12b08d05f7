"""Subcommands of the `defectgate` CLI that need the [train] extra; each has main(argv) -> int."""
