"""``python -m pipeline [--root DIR] [--profile NAME] {check,prepare,tune,final,sweep,report} [STUDY]``."""

from __future__ import annotations

import argparse
import importlib
import sys

from pipeline.errors import PipelineError

# Stage -> the module whose ``run(layout, params, study)`` carries it out (imported only when run).
STAGES = {"check": "pipeline.prepare", "prepare": "pipeline.prepare", "tune": "pipeline.tune",
          "final": "pipeline.final", "sweep": "pipeline.sweep", "report": "pipeline.report"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description="HyperMask study pipeline stages")
    parser.add_argument("--root", default=".", help="project root holding params.yaml and studies/")
    parser.add_argument("--profile", help="profile to use instead of params.yaml's 'profile'")
    stages = parser.add_subparsers(dest="stage", required=True)
    stages.add_parser("check", help="validate params.yaml and every study file (no compute)")
    stages.add_parser("prepare", help="check the studies, then make the datasets present and verified")
    for stage in ("tune", "final", "sweep"):
        sub = stages.add_parser(stage, help=f"the {stage} stage of one study")
        sub.add_argument("study")
    stages.add_parser("report", help="write reports/report.md and its plots")
    return parser


def run(args: argparse.Namespace) -> None:
    from pipeline.layout import Layout
    from pipeline.params import load_params

    layout = Layout.at(args.root)
    params = load_params(layout.params_file, args.profile)
    module = importlib.import_module(STAGES[args.stage])
    runner = module.check if args.stage == "check" else module.run
    runner(layout, params, getattr(args, "study", None))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        run(args)
    except PipelineError as err:
        print(f"pipeline: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
