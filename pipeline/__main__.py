"""``python -m pipeline [--root DIR] [--profile NAME] {check,prepare,tune,final,report} [STUDY]``."""

from __future__ import annotations

import argparse
import sys

from pipeline.errors import PipelineError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description="HyperMask study pipeline stages")
    parser.add_argument("--root", default=".", help="project root holding params.yaml and studies/")
    parser.add_argument("--profile", help="profile to use instead of params.yaml's 'profile'")
    stages = parser.add_subparsers(dest="stage", required=True)
    stages.add_parser("check", help="validate params.yaml and every study file (no compute)")
    stages.add_parser("prepare", help="check the studies, then make the datasets present and verified")
    for stage in ("tune", "final"):
        sub = stages.add_parser(stage, help=f"the {stage} stage of one study")
        sub.add_argument("study")
    stages.add_parser("report", help="write reports/report.md and its plots")
    return parser


def run(args: argparse.Namespace) -> None:
    from pipeline.layout import Layout
    from pipeline.params import load_params

    layout = Layout.at(args.root)
    params = load_params(layout.params_file, args.profile)
    if args.stage == "check":
        from pipeline.prepare import check_studies

        print(f"params.yaml and {len(check_studies(layout, params))} study files are valid "
              f"under every profile that runs them ({', '.join(params.profiles)})")
    elif args.stage == "prepare":
        from pipeline.prepare import prepare

        prepare(layout, params)
    elif args.stage == "tune":
        from pipeline.tune import tune_study

        tune_study(layout, params, args.study)
    elif args.stage == "final":
        from pipeline.final import final_study

        final_study(layout, params, args.study)
    else:
        from pipeline.report import write_report

        print(f"report written to {write_report(layout, params)}")


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
