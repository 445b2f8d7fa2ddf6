"""Weight sync learner -> rollout workers, per transport: ``python -m rlvr.bench.sync``.

Starts a local Ray cluster, one :class:`rlvr.distributed.rollout_pool.RolloutPool` per transport
(``object_store``, ``broadcast``) with ``--workers`` workers, sends the model's weights ``--repeats``
times (a new version each time) and prints the median seconds, MB and MB/s of each; ``--out FILE``
writes them as JSON. The model is ``model.name`` (default: the embedded SmolLM2-135M-Instruct; any
override after the options applies, e.g. ``model.name=random:smollm2-360m``).
"""

import argparse
import json
import statistics
import sys

import torch

from rlvr.config import load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rlvr.bench.sync", description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args, overrides = parser.parse_known_args(argv)
    from rich.console import Console
    from rich.table import Table

    from rlvr.distributed.cluster import connect, disconnect
    from rlvr.distributed.rollout_pool import RolloutPool
    from rlvr.models import load_model

    rows = []
    for transport in ("object_store", "broadcast"):
        placement = ["distributed.backend=ray", f"distributed.transport={transport}",
                     f"distributed.rollout_workers={args.workers}", "distributed.worker_cpus=0.1"]  # fmt: skip
        config = load_config(None, [*overrides, *placement])
        model, tokenizer = load_model(config.model.name, config.model.dtype, seed=0)
        started = connect(config.distributed)
        pool = RolloutPool(config, tokenizer, "fp32")
        try:
            seconds, megabytes = [], 0.0
            for version in range(args.repeats + 1):
                with torch.no_grad():
                    next(model.parameters()).add_(1e-3)  # a new version
                pool.update_weights(model, version=version)
                if version:  # the first sync also forms the broadcast group
                    seconds.append(pool.last_sync["distributed/sync_s"])
                megabytes = pool.last_sync["distributed/sync_mb"]
            median = statistics.median(seconds)
            rows.append({"transport": transport, "workers": args.workers, "mb": megabytes, "seconds": median,
                         "mb_per_s": megabytes / median, "ms_per_mb": 1000 * median / megabytes})  # fmt: skip
        finally:
            pool.close()
            disconnect(started)
    table = Table(title=f"weight sync, {config.model.name}, {args.workers} worker(s), median of {args.repeats}")
    for column in ("transport", "MB", "s", "MB/s", "ms/MB"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(r["transport"], f"{r['mb']:.1f}", f"{r['seconds']:.3f}", f"{r['mb_per_s']:.0f}",
                      f"{r['ms_per_mb']:.2f}")  # fmt: skip
    Console().print(table)
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(rows, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
