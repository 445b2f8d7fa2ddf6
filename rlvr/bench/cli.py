"""The ``rlvr bench`` subcommand, registered on the main parser by :func:`add_bench_command`.

Progress goes to stderr; the table and the key ratios to stdout; everything to OUT/bench.json.
"""

import argparse
from datetime import datetime
from pathlib import Path


def add_bench_command(commands) -> None:
    """Register ``bench`` on an argparse subparsers object (``parser.add_subparsers()``)."""
    bench = commands.add_parser(
        "bench", help="time rlvr's step against TRL's GRPOTrainer and this machine's matmul ceiling"
    )
    bench.add_argument("recipe", nargs="?", help="recipe name or YAML path; default: grpo")
    bench.add_argument("overrides", nargs="*", help="key=value overrides, e.g. model.name=random:qwen2.5-0.5b")
    bench.add_argument("--steps", type=int, default=3, help="measured steps per contender (default 3)")
    bench.add_argument("--warmup", type=int, default=2, help="warm-up steps, run and not summarized (default 2)")
    bench.add_argument("--out", default=None, help="folder for bench.json and logs (default runs/bench-<time>)")
    bench.add_argument("--no-trl", action="store_true", help="skip TRL's GRPOTrainer")
    bench.add_argument("--variants", action="store_true", help="also run rlvr with each optimization switched off")
    bench.add_argument(
        "--variant", action="append", default=[], metavar="KEY=VALUE",
        help="also run rlvr with this override (repeatable), e.g. --variant train.precision=fp32",
    )  # fmt: skip
    bench.add_argument(
        "--no-trl-fp32", action="store_true", help="when rlvr computes in bf16, skip TRL's extra fp32 row"
    )
    bench.add_argument(
        "--scaling", nargs="*", metavar="AXIS", choices=["length", "group", "model"], default=None,
        help="step time against completion length, group size and model size (all three if none named), "
        "rlvr and TRL per point, on random SmolLM2 shapes; OUT/scaling.json and scaling.png",
    )  # fmt: skip
    bench.add_argument(
        "--sequential", action="store_true", help="run contenders one after another (default: interleave steps)"
    )
    bench.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    bench.set_defaults(handler=cmd_bench)


def cmd_bench(args) -> int:
    from rich.console import Console

    from rlvr.bench import render, run_bench
    from rlvr.config import split_recipe_and_overrides

    recipe, overrides = split_recipe_and_overrides(args.recipe, args.overrides)
    out = Path(args.out or f"runs/bench-{datetime.now().strftime('%Y%m%d-%H%M%S')}")
    if args.scaling is not None:
        from rlvr.bench.scaling import AXES, render_scaling, run_scaling

        scaling = run_scaling(
            recipe, overrides, out, args.scaling or list(AXES), steps=args.steps, warmup=args.warmup,
            trl=not args.no_trl, console=Console(stderr=True),
        )  # fmt: skip
        render_scaling(scaling, Console(width=200))
        print(f"scaling.json: {out / 'scaling.json'}")
        return 0
    result = run_bench(
        recipe, overrides, out, steps=args.steps, warmup=args.warmup, trl=not args.no_trl,
        variants=variant_list(args.variants, args.variant), interleave=not args.sequential,
        console=Console(stderr=True), trl_fp32=not args.no_trl_fp32,
    )  # fmt: skip
    render(result, Console(width=200))
    print(f"bench.json: {out / 'bench.json'}")
    return 0


def variant_list(all_variants: bool, extra: list[str]):
    """``--variants`` (each optimization off) and each ``--variant KEY=VALUE``, as ``run_bench`` takes them."""
    from rlvr.bench import VARIANTS

    chosen = list(VARIANTS) if all_variants else []
    return [*chosen, *[(override, [override]) for override in extra]] or False
