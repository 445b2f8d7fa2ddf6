"""Tools a model can call during a multi-turn rollout: a Python sandbox and a local search index."""
