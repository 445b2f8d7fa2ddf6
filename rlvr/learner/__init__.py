"""The learner: everything that holds gradients (the future Ray actor group of the distributed runtime).

- :mod:`rlvr.learner.microbatch`: a step's completions collated into micro-batches, cut by rows and a
  token budget, each distinct prompt once;
- :mod:`rlvr.learner.forward`: the forward passes (prompts once, packed completions, attention per row,
  the fused LM-head log-probs);
- :mod:`rlvr.learner.update`: one optimizer step, the loss composed from registered parts;
- :mod:`rlvr.learner.passes`: the no-gradient passes before an update (reference KL, the trainer's own
  old log-probs);
- :mod:`rlvr.learner.critic`: the value model.

Nothing on the rollout side (rollout engines, envs, tools, rewards, tasks) imports this package.
"""
