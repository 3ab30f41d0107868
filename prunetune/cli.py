"""The ``prunetune`` command.

Each subcommand is a pair of functions: ``_add_<name>(subparsers)`` declares its
arguments and ``_run_<name>(args)`` does the work. Heavy imports (torch, ray) happen
inside the ``_run_`` functions so that ``prunetune --help`` stays instant.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prunetune.errors import ConfigError, PrunetuneError


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="a YAML file or a built-in preset name (see `prunetune presets`)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override any config key, e.g. --set trial.sparsity=0.7 (repeatable)",
    )


# --------------------------------------------------------------------------- trial


def _add_trial(subparsers) -> None:
    parser = subparsers.add_parser("trial", help="run one compression trial, without Ray")
    _add_config_arguments(parser)
    parser.add_argument("--output", type=Path, default=None, help="directory for result.json and the model")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(run=_run_trial)


def _run_trial(args) -> int:
    from prunetune import api
    from prunetune.ui import print_metrics

    output = args.output or Path("runs") / "trials" / Path(str(args.config)).stem
    problem = api.output_dir_problem(output, key="--output")
    if problem:
        raise ConfigError(problem)
    result = api.run_trial(args.config, overrides=args.overrides, output_dir=output, progress=not args.no_progress)
    print_metrics(result, title=f"trial {output}")
    print(f"result: {output / 'result.json'}\nmodel:  {output / 'model'}")
    return 0


# --------------------------------------------------------------------------- search


def _add_search(subparsers) -> None:
    parser = subparsers.add_parser(
        "search", help="search for the Pareto front of accuracy, latency and emissions (Ray Tune + Optuna)"
    )
    parser.add_argument("config", nargs="?", help="a YAML file or a built-in preset name (see `prunetune presets`)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override any config key, e.g. --set search.num_trials=40 (repeatable)")
    parser.add_argument("--output", default=None, metavar="RUN_DIR",
                        help="run directory: a path or s3:// / gs:// URI (default: output.dir, else runs/<config name>)")
    parser.add_argument("--resume", default=None, metavar="RUN_DIR",
                        help="continue the search in RUN_DIR after its driver stopped (same study and experiment)")
    parser.add_argument("--address", default=None, metavar="ADDRESS",
                        help="join a Ray cluster: auto, HOST:PORT or ray://HOST:PORT (default: cluster.address, "
                        "else Ray in-process on this machine)")
    parser.add_argument("--verbosity", type=int, choices=[0, 1, 2, 3], default=None,
                        help="0 quiet, 1 progress lines (default), 2 + Ray's status, 3 + Ray's full trial table")
    parser.add_argument("--no-wandb", action="store_true", help="do not log to Weights & Biases")
    parser.set_defaults(run=_run_search)


def _run_search(args) -> int:
    from prunetune import api
    from prunetune.analysis import summarize_run

    if args.resume and (args.config or args.overrides or args.output):
        raise ConfigError("--resume continues the saved configuration: give no CONFIG, --set or --output with it")
    if args.resume:
        outcome = api.resume_search(args.resume, address=args.address, verbosity=args.verbosity,
                                    wandb=not args.no_wandb)
    elif args.config:
        problem = api.output_dir_problem(args.output, key="--output") if args.output else None
        if problem:
            raise ConfigError(problem)
        overrides = list(args.overrides)
        if args.verbosity is not None:
            overrides.append(f"search.verbosity={args.verbosity}")
        outcome = api.run_search(args.config, run_dir=args.output, overrides=overrides, address=args.address,
                                 wandb=not args.no_wandb)
    else:
        raise ConfigError("search: give a CONFIG (file or preset) or --resume RUN_DIR")
    print(f"\n{outcome.num_trials} trials ({outcome.num_failed} failed) in {outcome.wall_seconds / 60:.1f} min; "
          f"front: {outcome.front_size} trials; run directory: {outcome.run_dir.location}")
    if outcome.time_budget is not None:
        from prunetune.search.budget import format_duration

        print(f"search.time_budget {format_duration(outcome.time_budget)}: "
              f"{format_duration(outcome.budget_spent or 0.0)} spent when the last trial ended")
    if outcome.num_stopped:
        print(f"stopped early by the scheduler: {outcome.num_stopped} trial(s), saving about "
              f"{outcome.trial_seconds_saved / 60:.1f} min of trial time"
              + (", which went into more trials" if outcome.time_budget is not None else ""))
    if outcome.retimed:
        print(f"re-timed quietly: {len(outcome.retimed)} trial(s); more than 10% off in the search: "
              f"{', '.join(outcome.flagged) or 'none'}")
    print(f"study: optuna-dashboard {outcome.storage_url}")
    summarize_run(outcome.run_dir.local, wandb=not args.no_wandb)  # ends with what to do next
    return 0


# --------------------------------------------------------------------------- presets


def _add_presets(subparsers) -> None:
    parser = subparsers.add_parser("presets", help="list the built-in configurations")
    parser.add_argument("name", nargs="?", help="print this preset's YAML")
    parser.set_defaults(run=_run_presets)


def _run_presets(args) -> int:
    from prunetune.config import PRESETS_DIR, preset_names, read_yaml

    if args.name:
        _, path = read_yaml(args.name)
        print(Path(path).read_text())
        return 0
    for name in preset_names():
        first_line = (PRESETS_DIR / f"{name}.yaml").read_text().splitlines()[0]
        print(f"{name:<14} {first_line.lstrip('# ')}")
    return 0


# --------------------------------------------------------------------------- report, pick, export


def _add_run_dir_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="the run directory a search wrote (e.g. runs/quickstart)")


def _add_pick_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "constraints and preference",
        "constraints given here replace the search's search.constraints; without any, those apply",
    )
    group.add_argument("--max-accuracy-drop", type=float, metavar="X", help="teacher accuracy minus accuracy <= X")
    group.add_argument("--min-accuracy", type=float, metavar="X", help="accuracy >= X")
    group.add_argument("--max-latency-ms", type=float, metavar="Y", help="latency_ms <= Y")
    group.add_argument("--max-emissions-kg", type=float, metavar="Z", help="emissions_kg <= Z")
    group.add_argument("--max-accuracy-drop-test", type=float, metavar="X",
                       help="accuracy drop on the held-out test split <= X (selection is on the evaluation split "
                       "unless you ask for this)")
    group.add_argument("--min-accuracy-test", type=float, metavar="X", help="accuracy on the held-out test split >= X")
    group.add_argument("--drop-bound", choices=["estimate", "upper"], default=None,
                       help="upper: a drop limit bounds the upper end of the drop's 95%% interval, so a trial meets "
                       "it only when the data rule out a larger drop (default: the measured drop)")
    group.add_argument("--prefer", choices=["knee", "accuracy", "latency", "emissions"], default="knee",
                       help="how to choose among the feasible non-dominated trials (default: knee)")


_PICK_OPTIONS = ("max_accuracy_drop", "min_accuracy", "max_latency_ms", "max_emissions_kg",
                 "max_accuracy_drop_test", "min_accuracy_test")


def _constraints_from(args) -> dict[str, float] | None:
    given = {name: getattr(args, name) for name in _PICK_OPTIONS if getattr(args, name) is not None}
    if given and args.drop_bound is not None:
        given["drop_bound"] = args.drop_bound
    elif args.drop_bound is not None:
        raise ConfigError("--drop-bound applies to drop limits given on the command line (--max-accuracy-drop): "
                          "give one, or leave --drop-bound out to use the search's own search.constraints")
    return given or None


def _add_report(subparsers) -> None:
    parser = subparsers.add_parser(
        "report", help="the Pareto front of a search as a table, with plots and where the W&B runs are"
    )
    _add_run_dir_argument(parser)
    parser.add_argument("--wandb", action="store_true", help="also log the W&B summary run (the search logs one itself)")
    parser.add_argument("--retime", nargs="?", const="front", choices=["front", "all"], default=None,
                        help="first time the trials again on a quiet node (a whole node per trial, alternating "
                        "rounds with the teacher): those that could be on the front (default) or all")
    parser.add_argument("--evaluate-test", action="store_true",
                        help="first evaluate the front's trials and the teacher on the held-out test split (once "
                        "per trial; a search does it itself when it ends unless search.evaluate_test is false)")
    parser.add_argument("--address", default=None, metavar="ADDRESS",
                        help="with --retime or --evaluate-test: the Ray cluster to run on (default: the search's "
                        "own setting)")
    parser.set_defaults(run=_run_report)


def _run_report(args) -> int:
    from prunetune import api

    api.report(args.run_dir, wandb=args.wandb, retime=args.retime, evaluate_test=args.evaluate_test,
               address=args.address)
    return 0


def _add_pick(subparsers) -> None:
    parser = subparsers.add_parser("pick", help="the best trial that satisfies constraints, and why")
    _add_run_dir_argument(parser)
    _add_pick_options(parser)
    parser.set_defaults(run=_run_pick)


def _run_pick(args) -> int:
    from prunetune import api

    pick = api.pick(args.run_dir, constraints=_constraints_from(args), prefer=args.prefer, show=True)
    return 0 if pick.found else 1


def _add_export(subparsers) -> None:
    parser = subparsers.add_parser(
        "export", help="write a trial's model as a Hugging Face model directory (and ONNX) with a model card"
    )
    _add_run_dir_argument(parser)
    parser.add_argument("--trial", metavar="ID", help="the trial to export (else: the one `pick` chooses)")
    _add_pick_options(parser)
    parser.add_argument("--out", type=Path, metavar="DIR", help="output directory (default RUN_DIR/exports/<trial>)")
    parser.add_argument("--onnx", action="store_true", help="also write model.onnx, checked against PyTorch")
    parser.add_argument("--no-wandb", action="store_true", help="do not log the export as a W&B artifact")
    parser.set_defaults(run=_run_export)


def _run_export(args) -> int:
    from prunetune import api
    from prunetune.analysis.report import print_export

    if args.trial is not None and (_constraints_from(args) or args.prefer != "knee"):
        raise ConfigError("--trial names the trial: it cannot be combined with the pick options (--max-*, --min-*, --prefer)")
    if args.trial is None and not api.pick(args.run_dir, constraints=_constraints_from(args), prefer=args.prefer,
                                           show=True).found:
        return 1
    result = api.export(args.run_dir, trial_id=args.trial, out=args.out, constraints=_constraints_from(args),
                        prefer=args.prefer, onnx=args.onnx, wandb=not args.no_wandb)
    print_export(result)
    return 0


# --------------------------------------------------------------------------- entry point

COMMANDS = [_add_search, _add_trial, _add_presets, _add_report, _add_pick, _add_export]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prunetune",
        description="Find fast, small, accurate transformer classifiers: pruning + distillation "
        "+ mixed precision, searched for the Pareto front of accuracy, latency and emissions.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for add_command in COMMANDS:
        add_command(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except PrunetuneError as exc:
        print(f"prunetune {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"prunetune {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
