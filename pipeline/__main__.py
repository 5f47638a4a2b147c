"""``python -m pipeline [--root DIR] [--profile NAME] {check,prepare,tune,final,sweep,report} [STUDY]`` and
``python -m pipeline evaluate --model URI --out DIR``."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

from pipeline.errors import PipelineError
from pipeline.workspace.graph import COMMANDS, STAGES, study_stage


def _module(command: str) -> Any:
    """The module that carries ``command`` out: a stage's (its ``run(layout, params, study)``) or a
    command's (``check``; ``evaluate``, whose ``run_command(layout, args)`` needs no params.yaml), imported
    only when run."""
    return importlib.import_module(STAGES[command].module if command in STAGES else COMMANDS[command])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description="HyperMask study pipeline stages")
    parser.add_argument("--root", default=".", help="project root holding params.yaml and studies/")
    parser.add_argument("--profile", help="profile to use instead of params.yaml's 'profile'")
    parser.add_argument("--outputs-to", help=argparse.SUPPRESS)  # in a Ray job: where the stage's outputs go
    stages = parser.add_subparsers(dest="stage", required=True)
    stages.add_parser("check", help="validate params.yaml and every study file (no compute)")
    stages.add_parser("prepare", help="check the studies, then make the datasets present and verified")
    for stage in (name for name in STAGES if study_stage(name)):
        sub = stages.add_parser(stage, help=f"the {stage} stage of one study")
        sub.add_argument("study")
    stages.add_parser("report", help="write reports/report.md and its plots")
    evaluate = stages.add_parser("evaluate", help="evaluate a logged or registered model on its test data")
    evaluate.add_argument("--model", required=True,
                          help="models:/hypermask-<study>@best, models:/<name>/<version>, runs:/<run id>/model "
                               "or a local MLflow model folder")
    evaluate.add_argument("--out", required=True, help="folder for metrics.json")
    evaluate.add_argument("--data-root", help="where to look for the dataset (default: the run's data_root)")
    return parser


def run(args: argparse.Namespace) -> None:
    from pipeline.spec.params import load_params
    from pipeline.workspace.layout import Layout
    from pipeline.workspace.skip import skip_unrun

    layout = Layout.at(args.root)
    if args.stage == "evaluate":  # needs no params.yaml: a model carries its configuration
        _module(args.stage).run_command(layout, args)
        return
    params = load_params(layout.params_file, args.profile)
    study = getattr(args, "study", None)
    if skip_unrun(layout, params, args.stage, study):
        return
    if study is not None:  # a broken study file is refused before the stage's tools are imported
        from pipeline.spec.studies import load_checked_study

        load_checked_study(layout, study, params)
    if study is not None and not args.outputs_to:
        from pipeline.cluster.submit import job_server, submit_stage

        server = job_server(params)
        if server:  # RAY_ADDRESS names a job server: the stage runs as a Ray job, its outputs come back here
            submit_stage(layout, params, args.stage, study, server)
            return
    module = _module(args.stage)
    runner = module.check if args.stage == "check" else module.run
    runner(layout, params, study)
    if args.outputs_to:
        from pipeline.cluster.submit import publish_outputs

        publish_outputs(layout, args.stage, study, args.outputs_to)


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
