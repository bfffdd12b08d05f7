"""defectgate promote: gate a candidate bundle into the model registry; --rollback; --status."""

from __future__ import annotations

import argparse


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="defectgate promote", description=(
        "Promote a candidate bundle into a registry only if, on the gate split, its escape and overkill "
        "rates are not worse than the current model's beyond the tolerances. Exit 1 when refused."))
    p.add_argument("candidate", nargs="?", help="candidate bundle folder")
    p.add_argument("--registry", required=True, help="registry folder (created on first promotion)")
    p.add_argument("--data", help="dataset yaml of the gate set")
    p.add_argument("--split", default="val", help="gate split (default val)")
    p.add_argument("--escape-tolerance", type=float, default=0.0, help="allowed escape-rate increase (default 0)")
    p.add_argument("--overkill-tolerance", type=float, default=0.01, help="allowed overkill-rate increase (default 0.01)")
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--force", action="store_true", help="promote even if the gate refuses (recorded in history)")
    p.add_argument("--rollback", action="store_true", help="point current back at the previous version")
    p.add_argument("--to", help="with --rollback: the version to point current at, e.g. v0002")
    p.add_argument("--status", action="store_true", help="print current version and history")
    a = p.parse_args(argv)
    from defectgate.errors import ConfigError

    from .. import registry as reg

    if a.status:
        print(reg.status(a.registry))
        return 0
    if a.rollback:
        old, new = reg.rollback(a.registry, a.to)
        print(f"rolled back: current {old} -> {new}")
        return 0
    if not a.candidate or not a.data:
        raise ConfigError("promote needs a candidate bundle folder and --data (the gate set), or --rollback / --status")
    reg.check_bundle_path(a.candidate)
    d = reg.promote(a.candidate, a.registry, a.data, a.split, a.escape_tolerance, a.overkill_tolerance, a.backend, a.force)
    print(d.table)
    if d.promoted:
        print(f"PROMOTED {a.candidate} as {d.version}; {a.registry}/current -> versions/{d.version}")
        return 0
    print("REFUSED: " + "; ".join(d.reasons))
    return 1
