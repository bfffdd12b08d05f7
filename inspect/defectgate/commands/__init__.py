"""Runtime subcommands of the `defectgate` CLI; each has main(argv) -> int."""
