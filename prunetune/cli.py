"""The ``prunetune`` command.

Each subcommand is a pair of functions: ``_add_<name>(subparsers)`` declares its
arguments and ``_run_<name>(args)`` does the work. Heavy imports (torch, ray) happen
inside the ``_run_`` functions so that ``prunetune --help`` stays instant.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prunetune.errors import PrunetuneError


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
    from prunetune import config as config_module
    from prunetune.trainables.trial import run_trial
    from prunetune.ui import print_metrics

    config = config_module.load(args.config, args.overrides)
    output = args.output or Path("runs") / "trials" / Path(str(args.config)).stem
    result = run_trial(config, output_dir=output, progress=not args.no_progress)
    print_metrics(result, title=f"trial {output}")
    print(f"result: {output / 'result.json'}\nmodel:  {output / 'model'}")
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


# --------------------------------------------------------------------------- entry point

COMMANDS = [_add_trial, _add_presets]


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
