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
    Parser.argv = list(sys.argv[1:] if argv is None else argv)
    args, extra = parser.parse_known_args(argv)
    takes = "overrides" if hasattr(args, "overrides") else "recipes" if hasattr(args, "recipes") else None
    if extra and (takes is None or not all("=" in e and not e.startswith("-") for e in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:  # key=value overrides after the options (`rlvr sweep a b --seeds 0 1 train.steps=8`)
        setattr(args, takes, [*(getattr(args, takes) or []), *extra])
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
    except BrokenPipeError:  # `rlvr recipes | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("rlvr: interrupted; resume with --resume RUN_DIR from the last checkpoint", file=sys.stderr)
        return 130


class Parser(argparse.ArgumentParser):
    """argparse with a hint for the commonest slip: ``--steps 3`` where rlvr takes ``train.steps=3``."""

    argv: list[str] = []  # the command line being parsed, to quote a flag's value in the hint

    def error(self, message: str):
        hint = override_hint(message, Parser.argv)
        super().error(message + (f". {hint}" if hint else ""))


def override_hint(message: str, argv: list[str]) -> str:
    """For an unrecognized ``--flag``, the config key of that name, written as an override."""
    import re

    from rlvr.config import RunConfig

    match = re.search(r"unrecognized arguments: (--?[\w-]+)(?:[= ](\S+))?", message)
    if not match:
        return ""
    raw = match.group(1)
    following = argv[argv.index(raw) + 1] if raw in argv and argv.index(raw) + 1 < len(argv) else None
    value = match.group(2) or (following if following and "=" not in following else None) or "VALUE"
    flag = raw.lstrip("-").replace("-", "_")
    keys = [name for name in RunConfig.model_fields if name == flag]
    preferred = ("train", "optim", "rollout", "eval", "model", "algo")
    sections = sorted(
        RunConfig.model_fields.items(), key=lambda kv: preferred.index(kv[0]) if kv[0] in preferred else 9
    )
    for section, info in sections:
        fields = getattr(info.annotation, "model_fields", {})
        keys += [f"{section}.{name}" for name in fields if name == flag]
    if keys:
        return f"Settings are key=value overrides: did you mean {keys[0]}={value}?"
    return "Settings are key=value overrides (e.g. train.steps=3); see the recipe's keys in rlvr/config.py"


EPILOG = """Settings are key=value overrides after the recipe, e.g.
  rlvr train grpo train.steps=40 optim.lr=1e-5 run_dir=runs/my-run
run_dir= sets the output directory (default runs/<recipe>-<date>-<time>)."""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="rlvr", description="RL fine-tuning with verifiable rewards", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", parser_class=Parser)

    train = commands.add_parser(
        "train", help="train a model with a recipe", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    train.add_argument("recipe", nargs="?", help="recipe name (see `rlvr recipes`) or YAML path; default: grpo")
    train.add_argument(
        "overrides", nargs="*", help="key=value overrides, e.g. train.steps=10 optim.lr=1e-5 run_dir=runs/my-run"
    )
    train.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    train.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    train.set_defaults(handler=cmd_train)

    sft = commands.add_parser(
        "sft",
        help="supervised fine-tuning on demonstrations (a recipe's SFT stages; default recipe: sft)",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sft.add_argument(
        "recipe", nargs="?", help="recipe name or YAML path; its sft stages run, or one of train.steps; default: sft"
    )
    sft.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.steps=30 demos.path=my.jsonl")
    sft.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    sft.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    sft.set_defaults(handler=cmd_sft)

    demos = commands.add_parser("demos", help="write a task's generated demonstrations to a JSONL file")
    demos.add_argument("recipe", nargs="?", help="recipe whose task and tool to use (default: sft)")
    demos.add_argument("overrides", nargs="*", help="key=value overrides, e.g. demos.size=64 task.digits=2")
    demos.add_argument("--out", required=True, help="the JSONL file to write (prompt / completion / answer rows)")
    demos.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    demos.set_defaults(handler=cmd_demos)

    ev = commands.add_parser("eval", help="evaluate a model on a task's held-out split")
    ev.add_argument(
        "--model",
        default=None,
        help="model name, HF id or directory; a run directory (its final/ or last checkpoint, with the run's own "
        "config.yaml) or a checkpoint folder; default: the config's model.name",
    )
    ev.add_argument("overrides", nargs="*", help="key=value, e.g. task.name=countdown eval.size=100 eval.samples=8")
    ev.add_argument(
        "--recipe",
        action="append",
        default=None,
        help="recipe whose task and eval settings to use (default: the run's, else grpo); repeat it to evaluate "
        "several recipes' tasks in one call",
    )
    ev.add_argument(
        "--task",
        action="append",
        default=None,
        metavar="TASK",
        help="evaluate on this task instead (a name, or YAML such as '{name: countdown, eval_size: 50}'); repeat "
        "for several tasks in one call, one model load",
    )
    ev.add_argument("--out", default=None, help="write the metrics JSON here")
    ev.add_argument(
        "--samples", default=None, metavar="FILE", help="write every held-out completion here (JSONL, one per sample)"
    )
    ev.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    ev.set_defaults(handler=cmd_eval)

    sw = commands.add_parser("sweep", help="run several recipes with the same budget and seed; one table")
    sw.add_argument("recipes", nargs="+", help="recipe names or paths, then key=value overrides for all of them")
    sw.add_argument(
        "--out", default=None, help="folder for the runs and sweep.md/sweep.json (default runs/sweep-<time>)"
    )
    sw.add_argument(
        "--seeds", nargs="+", default=None, metavar="SEED",
        help="run each recipe once per seed (train.seed) and report mean ± std over them; key=value overrides "
        "may follow",
    )  # fmt: skip
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


def cmd_sft(args) -> int:
    """``rlvr sft``: ``rlvr train`` with only the recipe's SFT stages (one of ``train.steps`` if it has none)."""
    return cmd_train(args, sft_only=True)


def cmd_train(args, sft_only: bool = False) -> int:
    from rlvr.config import load_config, split_recipe_and_overrides, validate
    from rlvr.trainer import train

    recipe, overrides = split_recipe_and_overrides(args.recipe, args.overrides)
    if sft_only and recipe is None and not args.resume:
        recipe = "sft"
    if sft_only:  # rlvr sft train.steps=30: one SFT stage of 30 steps
        overrides = [f"stages=[{{kind: sft, steps: {o.partition('=')[2]}}}]" if o.startswith("train.steps=") else o
                     for o in overrides]  # fmt: skip
    if args.resume:
        import yaml

        from rlvr.config import apply_overrides, refuse_steps_with_stages
        from rlvr.config_upgrade import upgrade_saved

        saved = Path(args.resume) / "config.yaml"
        if not saved.is_file():
            raise ConfigError(f"nothing to resume: {saved} not found")
        if recipe is not None:
            raise ConfigError(
                f"--resume continues {args.resume} with its own config.yaml: drop the recipe {recipe!r} "
                "(key=value overrides still apply)"
            )
        raw = upgrade_saved(yaml.safe_load(saved.read_text()))
        apply_overrides(raw, overrides)
        refuse_steps_with_stages(raw, overrides)
        config = validate(raw, source=str(saved))
        run_dir = train(config, Path(args.resume), resume=True)
    else:
        config = load_config(recipe, overrides)
        if sft_only:
            config = sft_stages_only(config)
        run_dir = train(config)
    written = [name for name in ("metrics.jsonl", "samples.jsonl", "tensorboard/", "final/")
               if (run_dir / name.rstrip("/")).exists()]  # fmt: skip
    print(f"run finished: {run_dir}  ({', '.join(written)})")
    return 0


def sft_stages_only(config):
    """The config with only its SFT stages; a recipe without stages gets one SFT stage of ``train.steps``."""
    from rlvr.config import validate

    stages = [s.model_dump() for s in config.stages if s.kind == "sft"]
    if config.stages and not stages:
        raise ConfigError(f"rlvr sft: recipe {config.recipe!r} has no stage of kind sft (its stages are all rl)")
    raw = config.model_dump(mode="json")
    raw["stages"] = stages or [{"kind": "sft", "steps": config.train.steps}]
    return validate(raw, source=f"recipe {config.recipe}")


def cmd_demos(args) -> int:
    """Write the recipe task's generated demonstrations (``demos.size`` of them) as JSONL rows a run can
    read back with ``demos.path``: the task's prompt, the completion as assistant and tool pieces, the answer."""
    from rlvr.config import load_config, split_recipe_and_overrides
    from rlvr.demos import make_bank
    from rlvr.models import tokenizer_for
    from rlvr.tasks import make_task

    recipe, overrides = split_recipe_and_overrides(args.recipe, args.overrides)
    config = load_config(recipe or "sft", overrides)
    if config.demos.path:
        raise ConfigError("rlvr demos writes generated demonstrations: drop demos.path")
    task = make_task(config.task.name, **config.task.params())
    bank = make_bank(config, task.split("train"), tokenizer_for(config.model.name))  # its template renders turns
    try:
        rows = [demo_row(bank.demo(i)) for i in range(len(bank))]
    finally:
        bank.close()
    out = Path(args.out)
    partial = out.with_name(out.name + ".partial")  # written whole, then renamed: never half a file
    partial.write_text("".join(json.dumps(row) + "\n" for row in rows))
    os.replace(partial, out)
    print(f"wrote {len(rows)} demonstrations of task {config.task.name!r} to {args.out}")
    return 0


def demo_row(demo) -> dict:
    """A demonstration as a JSONL row of the prompt / completion shape (rlvr.demos.files); the example's
    meta as further columns (a search demonstration's corpus, ...), which read back into its meta."""
    pieces = [{"role": "assistant" if trained else "tool", "content": text} for text, trained in demo.segments]
    completion = pieces[0]["content"] if len(pieces) == 1 else pieces
    row = {"id": demo.example.id, "prompt": demo.example.prompt, "completion": completion}
    row["answer"] = demo.example.answer
    reserved = {"messages", "prompt", "completion", "answer", "id", "solution", "ground_truth"}
    return row | {k: v for k, v in demo.example.meta.items() if k not in reserved}


def eval_config(model: str | None, recipe: str | None, overrides: list[str]):
    """(config, model to load, whether it is a run's checkpoint) for ``rlvr eval``.

    A run directory or checkpoint folder evaluates with the run's own config.yaml (task, tools,
    prompts, verifier) unless ``--recipe`` is given; overrides apply on top. Without ``--model``,
    the model is the config's ``model.name`` (so ``rlvr eval model.name=X`` evaluates X)."""
    import yaml

    from rlvr.config import apply_overrides, load_config, validate
    from rlvr.config_upgrade import upgrade_saved

    path = Path(model) if model else None
    saved = None
    if path is not None and (is_run_checkpoint(str(path)) or (path / "final").is_dir()):
        saved = path / "config.yaml"
    if saved is not None and recipe is None and saved.is_file():
        raw = upgrade_saved(yaml.safe_load(saved.read_text()))
        apply_overrides(raw, overrides)
        config = validate(raw, source=str(saved))
    else:
        config = load_config(recipe, overrides)
    if path is None:
        return config, config.model.name, False
    if (path / "final" / "config.json").is_file():
        return config, str(path / "final"), False
    return config, str(path), is_run_checkpoint(str(path))


def cmd_eval(args) -> int:
    """Evaluate one model on one or several tasks: one table each, one JSON (a list of results with several)."""
    from rlvr.checkpoint import load_run_policy
    from rlvr.models import load_model, resolve_device
    from rlvr.precision import resolve_precision
    from rlvr.rollout import make_engine

    configs, model_name, from_checkpoint = eval_configs(args)
    config = configs[0]
    if from_checkpoint:
        model, tokenizer = load_run_policy(Path(model_name), config.model.dtype)
    else:
        model, tokenizer = load_model(model_name, config.model.dtype, seed=config.train.seed)
    device = resolve_device(config.train.device)
    model.to(device)
    precision = resolve_precision(config.rollout.precision, device, resolve_precision(config.train.precision, device))
    engine = make_engine(
        config.rollout.engine, model, tokenizer, max(c.eval.batch_size for c in configs),
        config.rollout.onednn_weights, precision, config.train.fp32_logits,
    )  # fmt: skip
    samples = Path(args.samples).open("w") if args.samples else None
    try:
        results = [eval_one(engine, model_name, c, samples) for c in configs]
    finally:
        if samples is not None:
            samples.close()
    text = json.dumps(results[0] if len(results) == 1 else results, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    else:
        print(text)
    return 0


def eval_configs(args):
    """The configs ``rlvr eval`` runs (one per ``--recipe`` or ``--task``), the model, and if it is a checkpoint."""
    import yaml

    recipes, tasks = args.recipe or [None], args.task or []
    if len(recipes) > 1 and tasks:
        raise ConfigError("rlvr eval: give several --recipe or several --task, not both")
    found = [eval_config(args.model, recipe, args.overrides) for recipe in recipes]
    configs = [c for c, _, _ in found]
    if tasks:
        base = configs[0]
        configs = []
        for spec in tasks:
            task = yaml.safe_load(spec) if spec.lstrip().startswith("{") else {"name": spec}
            if not isinstance(task, dict) or "name" not in task:
                raise ConfigError(f"--task {spec!r}: expected a task name or a YAML mapping with a name")
            configs.append(base.model_copy(update={"task": type(base.task)(**task)}))
    for config in configs:
        if config.eval.samples > 1 and config.eval.temperature == 0:
            raise ConfigError("eval.samples > 1 needs eval.temperature > 0 (greedy samples are all the same)")
    return configs, found[0][1], found[0][2]


def eval_one(engine, model_name: str, config, samples) -> dict:
    """Evaluate on ``config``'s task and print its table; every completion to ``samples`` when given."""
    from rich.console import Console
    from rich.table import Table

    from rlvr.evaluate import evaluate
    from rlvr.rewards import load_reward_plugins
    from rlvr.rewards.mix import verifier_reward
    from rlvr.rollout import SamplingParams
    from rlvr.rollout.seeds import derive_seed
    from rlvr.tasks import make_task

    load_reward_plugins(config.plugins)
    task = make_task(config.task.name, **config.task.params())
    examples = task.split("eval")[: config.eval.size]
    sampling = SamplingParams(
        max_new_tokens=config.eval.max_new_tokens or config.rollout.max_new_tokens,
        temperature=config.eval.temperature,
        top_p=config.rollout.top_p,
        stop=config.rollout.stop,
        return_logprobs=False,
        seed=derive_seed(config.train.seed, "eval", 0),
    )
    check = verifier_reward(config, config.eval.verifier or task.verifier)
    result = evaluate(engine, examples, check, sampling, config.eval.samples, config.tools, config.think)
    metrics = {"model": model_name, "task": config.task.name, **result.metrics}
    table = Table(title=f"{model_name} on {config.task.name} (held-out)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result.metrics.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    Console().print(table)
    if samples is not None:
        for row in result.rows:
            samples.write(json.dumps({"model": model_name, "task": config.task.name, **row}) + "\n")
    if config.eval.budgets:
        metrics["budgets"] = budget_table(engine, examples, check, sampling, config)
    return metrics


def budget_table(engine, examples, check, sampling, config) -> list[dict]:
    """``eval.budgets``: accuracy, mean length and tokens per correct answer at each token budget."""
    from rich.console import Console
    from rich.table import Table

    from rlvr.evaluate import evaluate_budgets

    rows = []
    table = Table(title="accuracy against the token budget")
    for column in ("budget", "accuracy", "mean tokens", "tokens / correct", "truncated"):
        table.add_column(column, justify="right")
    for budget, result in evaluate_budgets(
        engine, examples, check, sampling, config.eval.budgets, config.eval.samples, config.tools, config.think
    ):
        m = result.metrics
        rows.append({"budget": budget, **{k.removeprefix("eval/"): v for k, v in m.items()}})
        per_correct = m.get("eval/tokens_per_correct")
        table.add_row(
            str(budget), f"{m['eval/accuracy']:.3f}", f"{m['eval/response_length']:.1f}",
            "-" if per_correct is None else f"{per_correct:.1f}", f"{m['eval/truncated_frac']:.2f}",
        )  # fmt: skip
    Console().print(table)
    return rows


def is_run_checkpoint(name: str) -> bool:
    """A checkpoint folder, or a run directory (still in progress) holding checkpoints."""
    path = Path(name)
    return (path / "state.pt").is_file() or (path / "checkpoints").is_dir()


def cmd_sweep(args) -> int:
    from datetime import datetime

    from rich.console import Console

    from rlvr.config import load_config
    from rlvr.sweep import sweep

    given = [*args.recipes, *(args.seeds or [])]  # argparse hands overrides after --seeds to it
    recipes = [r for r in args.recipes if "=" not in r]
    overrides = [r for r in given if "=" in r]
    seeds = None
    if args.seeds is not None:
        try:
            seeds = [int(s) for s in args.seeds if "=" not in s]
        except ValueError:
            raise ConfigError(f"--seeds takes integers, got {' '.join(args.seeds)}") from None
        if not seeds or len(set(seeds)) != len(seeds):
            raise ConfigError(f"--seeds needs distinct integers, got {' '.join(args.seeds)}")
    stems = [Path(r).stem for r in recipes]
    if len(set(stems)) != len(stems):
        raise ConfigError(f"two recipes would share a run folder: {' '.join(recipes)} (rename one file)")
    out = Path(args.out or f"runs/sweep-{datetime.now().strftime('%Y%m%d-%H%M%S')}")
    console = Console(stderr=True)
    for recipe in recipes:  # fail on a typo before hours of training, not after
        load_config(recipe, overrides)
    sweep(recipes, overrides, out, console, seeds=seeds)
    print((out / "sweep.md").read_text())
    return 0


def cmd_recipes(args) -> int:
    from rlvr.config import RECIPES_DIR, available_recipes

    for name in available_recipes():
        header = (RECIPES_DIR / f"{name}.yaml").read_text().splitlines()[0].lstrip("# ")
        print(f"{name:16s} {header}")
    return 0


def cmd_tasks(args) -> int:
    from rlvr.rewards import BATCH_REWARDS, GROUP_REWARDS, REWARDS
    from rlvr.tasks import TASKS

    print("tasks:   " + ", ".join(TASKS.names()))
    print("rewards: " + ", ".join(REWARDS.names()))
    print("group rewards: " + ", ".join(GROUP_REWARDS.names()))
    print("batch rewards: " + ", ".join(BATCH_REWARDS.names()))
    print("from a file: file.py:function (a TRL, verl or rlvr reward function; docs/data.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
