"""``rlvr train | eval | sweep | bench | report | recipes | tasks``.

Errors a user can act on (:class:`rlvr.errors.RlvrError`) print as one line and exit with
status 2; ``--debug`` shows the traceback instead.
"""

import argparse
import json
import os
import sys
from pathlib import Path

from rlvr.errors import ConfigError, RlvrError


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from rlvr.hf_compat import quiet_libraries

    quiet_libraries()
    try:
        return args.handler(args)
    except RlvrError as err:
        if args.debug:
            raise
        print(f"rlvr: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rlvr: interrupted; resume with --resume RUN_DIR from the last checkpoint", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlvr", description="RL fine-tuning with verifiable rewards")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command")

    train = commands.add_parser("train", help="train a model with a recipe")
    train.add_argument("recipe", nargs="?", help="recipe name (see `rlvr recipes`) or YAML path; default: grpo")
    train.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.steps=10 optim.lr=1e-5")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    train.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    train.set_defaults(handler=cmd_train)

    ev = commands.add_parser("eval", help="evaluate a model on a task's held-out split")
    ev.add_argument(
        "--model",
        default="smollm2-135m-instruct",
        help="model name, HF id or directory; a run directory (its final/ or last checkpoint) or checkpoint folder",
    )
    ev.add_argument("overrides", nargs="*", help="key=value, e.g. task.name=countdown eval.size=100 eval.samples=8")
    ev.add_argument("--recipe", default=None, help="recipe whose task and eval settings to use (default: grpo)")
    ev.add_argument("--out", default=None, help="write the metrics JSON here")
    ev.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    ev.set_defaults(handler=cmd_eval)

    sw = commands.add_parser("sweep", help="run several recipes with the same budget and seed; one table")
    sw.add_argument("recipes", nargs="+", help="recipe names or paths, then key=value overrides for all of them")
    sw.add_argument(
        "--out", default=None, help="folder for the runs and sweep.md/sweep.json (default runs/sweep-<time>)"
    )
    sw.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    sw.set_defaults(handler=cmd_sweep)

    from rlvr.bench.cli import add_bench_command
    from rlvr.report.cli import add_report_command

    add_bench_command(commands)
    add_report_command(commands)

    recipes = commands.add_parser("recipes", help="list the bundled recipes")
    recipes.set_defaults(handler=cmd_recipes)
    tasks = commands.add_parser("tasks", help="list the registered tasks and rewards")
    tasks.set_defaults(handler=cmd_tasks)
    return parser


def cmd_train(args) -> int:
    from rlvr.config import load_config, split_recipe_and_overrides, validate
    from rlvr.trainer import train

    recipe, overrides = split_recipe_and_overrides(args.recipe, args.overrides)
    if args.resume:
        import yaml

        from rlvr.config import apply_overrides

        saved = Path(args.resume) / "config.yaml"
        if not saved.is_file():
            raise ConfigError(f"nothing to resume: {saved} not found")
        raw = yaml.safe_load(saved.read_text())
        apply_overrides(raw, ([recipe] if recipe else []) + overrides)
        config = validate(raw, source=str(saved))
        run_dir = train(config, Path(args.resume), resume=True)
    else:
        config = load_config(recipe, overrides)
        run_dir = train(config)
    print(f"run finished: {run_dir}  (metrics.jsonl, samples.jsonl, tensorboard/, final/)")
    return 0


def cmd_eval(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from rlvr.checkpoint import load_run_policy
    from rlvr.config import load_config
    from rlvr.evaluate import evaluate
    from rlvr.models import load_model, resolve_device
    from rlvr.rewards import load_reward_plugins
    from rlvr.rollout import SamplingParams, make_engine
    from rlvr.tasks import make_task

    config = load_config(args.recipe, args.overrides)
    load_reward_plugins(config.plugins)
    model_name = resolve_model(args.model)
    task = make_task(config.task.name, **config.task.params())
    examples = task.split("eval")[: config.eval.size]
    if is_run_checkpoint(model_name):
        model, tokenizer = load_run_policy(Path(model_name), config.model.dtype)
    else:
        model, tokenizer = load_model(model_name, config.model.dtype, seed=config.train.seed)
    model.to(resolve_device(config.train.device))
    engine = make_engine(config.rollout.engine, model, tokenizer, config.eval.batch_size, config.rollout.onednn_weights)
    sampling = SamplingParams(
        max_new_tokens=config.eval.max_new_tokens or config.rollout.max_new_tokens,
        temperature=config.eval.temperature,
        top_p=config.rollout.top_p,
        stop=config.rollout.stop,
        return_logprobs=False,
    )
    if config.eval.samples > 1 and config.eval.temperature == 0:
        raise ConfigError("eval.samples > 1 needs eval.temperature > 0 (greedy samples are all the same)")
    result = evaluate(
        engine, examples, config.eval.verifier or task.verifier, sampling, config.eval.samples, config.tools
    )
    metrics = {"model": model_name, "task": config.task.name, **result.metrics}
    table = Table(title=f"{model_name} on {config.task.name} (held-out)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result.metrics.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    Console().print(table)
    text = json.dumps(metrics, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    else:
        print(text)
    return 0


def resolve_model(name: str) -> str:
    """A finished run directory means its exported final model."""
    path = Path(name)
    if (path / "final" / "config.json").is_file():
        return str(path / "final")
    return name


def is_run_checkpoint(name: str) -> bool:
    """A checkpoint folder, or a run directory (still in progress) holding checkpoints."""
    path = Path(name)
    return (path / "state.pt").is_file() or (path / "checkpoints").is_dir()


def cmd_sweep(args) -> int:
    from datetime import datetime

    from rich.console import Console

    from rlvr.config import load_config
    from rlvr.sweep import sweep

    recipes = [r for r in args.recipes if "=" not in r]
    overrides = [r for r in args.recipes if "=" in r]
    out = Path(args.out or f"runs/sweep-{datetime.now().strftime('%Y%m%d-%H%M%S')}")
    console = Console(stderr=True)
    for recipe in recipes:  # fail on a typo before hours of training, not after
        load_config(recipe, overrides)
    sweep(recipes, overrides, out, console)
    print((out / "sweep.md").read_text())
    return 0


def cmd_recipes(args) -> int:
    from rlvr.config import RECIPES_DIR, available_recipes

    for name in available_recipes():
        header = (RECIPES_DIR / f"{name}.yaml").read_text().splitlines()[0].lstrip("# ")
        print(f"{name:16s} {header}")
    return 0


def cmd_tasks(args) -> int:
    from rlvr.rewards import REWARDS
    from rlvr.tasks import TASKS

    print("tasks:   " + ", ".join(TASKS.names()))
    print("rewards: " + ", ".join(REWARDS.names()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
