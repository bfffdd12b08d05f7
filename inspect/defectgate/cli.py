"""The single `defectgate` command. Each subcommand lives in its own module with
`main(argv: list[str]) -> int`; this file only dispatches, so `defectgate --help` imports nothing
heavy and off-line subcommands say which extra to install when their package is missing."""

from __future__ import annotations

import importlib
import logging
import sys

from .errors import DefectgateError, MissingExtraError

# name -> (module, extra that provides it or None, one-line help)
COMMANDS: dict[str, tuple[str, str | None, str]] = {
    "run": ("defectgate.commands.run", None, "run the inspection station from a config file"),
    "replay": ("defectgate.commands.replay", None, "run the station on recorded images or video as fast as possible"),
    "bench": ("defectgate.commands.bench", None, "measure raw inference, pipeline overhead and fire-time error"),
    "engine": ("defectgate.commands.engine", "gpu", "build a TensorRT engine from an ONNX bundle"),
    "plc-sim": ("defectgate.commands.plc_sim", "station", "a simulated PLC (Modbus TCP) running the line's result program"),
    "data": ("defectgate_training.commands.data", "train", "synthesize, import, validate, split and describe datasets"),
    "train": ("defectgate_training.commands.train", "train", "train a YOLO detector with ultralytics"),
    "evaluate": ("defectgate_training.commands.evaluate", "train", "mAP and part-level escape/overkill of a model"),
    "export": ("defectgate_training.commands.export", "train", "export a trained model to an ONNX bundle"),
    "parity": ("defectgate_training.commands.parity", "train", "compare backends and precisions on the same images"),
    "promote": ("defectgate_training.commands.promote", "train", "gate a candidate bundle into the model registry"),
    "qa": ("defectgate_training.qa.app", "qa", "the QA review and labeling web app"),
}

USAGE = "usage: defectgate <command> [options]\n\ncommands:\n" + "\n".join(
    f"  {name:<9} {text}" for name, (_, _, text) in COMMANDS.items()
) + "\n\nRun 'defectgate <command> --help' for a command's options."


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    if argv[0] in ("-V", "--version"):
        from . import __version__

        print(f"defectgate {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"defectgate: error: unknown command '{name}'\n\n{USAGE}", file=sys.stderr)
        return 2
    module_name, extra, _ = COMMANDS[name]
    try:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            missing = (exc.name or "").split(".")[0]
            if extra and missing not in ("defectgate",):
                raise MissingExtraError(exc.name or module_name, extra, f"'defectgate {name}'") from exc
            raise
        return int(module.main(rest) or 0)
    except DefectgateError as exc:
        print(f"defectgate {name}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"defectgate {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
