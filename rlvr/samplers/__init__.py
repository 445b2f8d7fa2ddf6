"""Samplers: which training examples the next step uses.

A sampler is any object with ``next(count) -> list[int]`` (indices into the task's train
split) and ``state_dict()`` / ``load_state_dict()`` so a resumed run continues from the same
data position. Curricula, dynamic and replay samplers plug in here.
"""

import random


class ShuffledSampler:
    """Epochs over the train split, each a fresh seeded permutation (the seed and epoch fix it)."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.seed = seed
        self.epoch = 0
        self.position = 0
        self._order = self._permutation()

    def _permutation(self) -> list[int]:
        order = list(range(self.size))
        random.Random(f"{self.seed}-{self.epoch}").shuffle(order)
        return order

    def next(self, count: int) -> list[int]:
        picked = []
        while len(picked) < count:
            if self.position == self.size:
                self.epoch += 1
                self.position = 0
                self._order = self._permutation()
            picked.append(self._order[self.position])
            self.position += 1
        return picked

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = state["epoch"]
        self.position = state["position"]
        self._order = self._permutation()
