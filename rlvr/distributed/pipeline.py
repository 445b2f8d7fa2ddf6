"""One-step-off-policy pipelining (``distributed.max_off_policy_steps: 1``): step k+1's rollouts are
generated and scored while step k trains.

At step k the driver syncs the weights v(k-1) to the rollout workers, logs step k's batch (generated
by v(k-2)), lets the sampler observe it, launches step k+1's whole collection (sampler, rollout
rounds, rewards) in a background thread on the same v(k-1), and trains step k. Each trained batch is
one optimizer step older than the weights it trains: the loss corrects for it with the trainer's own
old log-probs and a truncated importance weight against the rollout policy (``algo.tis_cap``, required;
decoupled PPO, as in verl's and AReaL's asynchronous modes). ``distributed/staleness`` is logged.

The rollout workers hold their own copies of the weights, so generation never reads weights the update
is writing; the in-process engine shares the learner's module, hence ``rollout_workers >= 1``.

Eval and checkpoints wait for the batch in flight first (:meth:`Pipeline.settle`); a checkpoint holds
that batch, so a resumed run trains on exactly the batch the uninterrupted run would have.
"""

import threading


class Pipeline:
    """The batch in flight: launched by one step, taken by the next."""

    def __init__(self) -> None:
        self.thread: threading.Thread | None = None
        self.pending = None  # a finished StepBatch not yet trained on
        self.error: BaseException | None = None

    def launch(self, collect_next) -> None:
        """Run ``collect_next()`` (the next step's :func:`rlvr.collect.collect`) in the background."""
        self.settle()

        def run() -> None:
            try:
                self.pending = collect_next()
            except BaseException as err:  # re-raised in the driver's thread by settle()
                self.error = err

        self.thread = threading.Thread(target=run, name="rlvr-next-rollout", daemon=True)
        self.thread.start()

    def settle(self) -> None:
        """Wait for the batch in flight (it stays pending); re-raise what stopped it."""
        if self.thread is not None:
            self.thread.join()
            self.thread = None
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def take(self):
        """The pending batch (None at the first step), removed."""
        self.settle()
        batch, self.pending = self.pending, None
        return batch

    def state_dict(self) -> dict:
        self.settle()
        return {"pending": self.pending}

    def load_state_dict(self, state: dict) -> None:
        self.pending = state["pending"]
