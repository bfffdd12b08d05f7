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
    p.add_argument("--stage", action="store_true",
                   help="add the candidate as the registry's `candidate` for shadow mode; current is not touched")
    p.add_argument("--evidence", choices=("shadow", "replay"),
                   help="promote the staged candidate on evidence: the gate split (--data) plus the reviewed "
                        "disagreements of --archive (a shadow-mode station's, or a replay's)")
    p.add_argument("--archive", help="with --evidence: the archive folder holding the shadow verdicts")
    p.add_argument("--reviews", help="with --evidence: the QA review database (default ARCHIVE/reviews.sqlite)")
    p.add_argument("--escape-limit", type=float, default=0.05,
                   help="with --evidence: the 95 %% upper bound on the candidate's escape rate must be at or below "
                        "this (default 0.05)")
    p.add_argument("--confidence", type=float, default=0.95, help="with --evidence: confidence of the bound")
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
    from .. import rollout

    if a.stage:
        if not a.candidate:
            raise ConfigError("promote --stage needs the candidate bundle folder")
        reg.check_bundle_path(a.candidate)
        version = rollout.stage(a.candidate, a.registry)
        print(f"STAGED {a.candidate} as {version}; {a.registry}/candidate -> versions/{version} "
              f"(set shadow.bundle: {a.registry}/candidate in the station config)")
        return 0
    if a.evidence:
        if a.candidate:
            raise ConfigError("promote --evidence promotes the staged candidate; stage BUNDLE with --stage first "
                              "instead of naming it here")
        d = rollout.promote_on_evidence(a.registry, a.evidence, a.archive, a.reviews, a.data, a.split,
                                        a.escape_limit, a.confidence, a.overkill_tolerance, a.backend, a.force)
        return _outcome(d, f"candidate {d.version} on {a.evidence} evidence", a.registry)
    if not a.candidate or not a.data:
        raise ConfigError("promote needs a candidate bundle folder and --data (the gate set), or --rollback / --status")
    reg.check_bundle_path(a.candidate)
    d = reg.promote(a.candidate, a.registry, a.data, a.split, a.escape_tolerance, a.overkill_tolerance, a.backend, a.force)
    return _outcome(d, f"{a.candidate} as {d.version}", a.registry)


def _outcome(d, what: str, registry: str) -> int:
    """Print the gate's table and its decision; exit 0 when promoted, 1 when refused."""
    print(d.table)
    if d.promoted:
        print(f"PROMOTED {what}; {registry}/current -> versions/{d.version}")
        return 0
    print("REFUSED: " + "; ".join(d.reasons))
    return 1
