"""Groups guided by demonstrations: LUFFY's off-policy members and Prefix-RFT's prefix rollouts.

For a prompt that has a demonstration, its group of ``G`` holds, in this order:

- ``G - group_demos - prefix_rollouts`` rollouts the policy sampled (single- or multi-turn);
- ``prefix_rollouts`` rollouts that continue a prefix of the demonstration (Prefix-RFT, Huang et al.
  2025, "Blending Supervised and Reinforcement Fine-Tuning with Prefix Sampling", arXiv 2507.01679):
  a fraction of its tokens drawn uniformly from ``sft.prefix_fraction``, then the policy's own
  continuation. The prefix is in the completion (the reward reads the whole answer) with loss mask
  and log-prob 0: only the continuation is trained;
- ``group_demos`` copies of the demonstration itself (LUFFY, Yan et al. 2025, arXiv 2504.14945),
  scored by the same rewards, so the group's advantages compare the policy with the expert and the
  update trains the demonstration's tokens with LUFFY's shaped off-policy loss.

Prompts without a demonstration get ``G`` sampled rollouts. Fewer rollouts are sampled: LUFFY's
members replace rollouts, which is the method's saving. Limits: prefix rollouts are single-turn; the
prefix is cut at a token, which may split a word, and at most ``max_new_tokens - 1`` tokens long (the
prefix and its continuation share the rollout's budget); Prefix-RFT's schedule that shortens the
prefixes over training is not implemented (a fixed ``sft.prefix_fraction`` range).
"""

import random
from dataclasses import replace

from rlvr.rollout import SamplingParams
from rlvr.types import Completion, Example


def guided_groups(cfg, engine, examples: list[Example], n: int, sampling: SamplingParams, bank, sample_groups):
    """``n`` completions per example, demonstrations and prefix rollouts in the groups of prompts that
    have one; ``sample_groups(cfg, engine, examples, n, sampling)`` samples the policy's."""
    demos = [bank.for_example(e) for e in examples]
    k_demo, k_prefix = cfg.sft.group_demos, cfg.sft.prefix_rollouts
    guided = [i for i, d in enumerate(demos) if d is not None]
    plain = [i for i, d in enumerate(demos) if d is None]
    groups: list[list[Completion]] = [[] for _ in examples]
    if plain:
        for i, g in zip(plain, sample_groups(cfg, engine, [examples[i] for i in plain], n, sampling), strict=True):
            groups[i] = g
    if guided:
        sampled = sample_groups(cfg, engine, [examples[i] for i in guided], n - k_demo - k_prefix, sampling)
        prefixed = prefix_rollouts([demos[i] for i in guided], k_prefix, engine, sampling, cfg.sft.prefix_fraction)
        for i, own, extra in zip(guided, sampled, prefixed, strict=True):
            groups[i] = own + extra + [demos[i]] * k_demo
    return groups


def prefix_rollouts(demos: list[Completion], k: int, engine, sampling: SamplingParams, fraction):
    """``k`` continuations of a prefix of each demonstration: [len(demos)][k] completions."""
    if k == 0:
        return [[] for _ in demos]
    low, high = fraction
    budget = sampling.max_new_tokens
    cuts = []
    for demo in demos:
        for _ in range(k):
            cut = int(random.uniform(low, high) * len(demo.token_ids))  # the global RNG: checkpointed
            cuts.append(min(cut, budget - 1))  # at least one token of the budget is the policy's
    prefixes = [demos[j // k].prompt_ids + demos[j // k].token_ids[: cuts[j]] for j in range(len(cuts))]
    # one batch for all rows: each may use the budget its prefix leaves, the shortest prefix sets the length
    samples = engine.continue_ids(prefixes, replace(sampling, max_new_tokens=budget - min(cuts)))
    tokenizer = engine.tokenizer
    out: list[list[Completion]] = [[] for _ in demos]
    for j, sample in enumerate(samples):
        demo, cut = demos[j // k], cuts[j]
        room = budget - cut
        ids, logprobs = sample.token_ids[:room], sample.logprobs[:room]
        finish = sample.finish_reason if len(ids) == len(sample.token_ids) else "length"
        head = tokenizer.decode(demo.token_ids[:cut], skip_special_tokens=True)
        text = sample.text if len(ids) == len(sample.token_ids) else tokenizer.decode(ids, skip_special_tokens=True)
        out[j // k].append(
            replace(
                demo,
                text=head + text,
                token_ids=demo.token_ids[:cut] + ids,
                logprobs=[0.0] * cut + logprobs,
                loss_mask=[0] * cut + [1] * len(ids),
                finish_reason=finish,
                turns=[],
                budget=sampling.max_new_tokens,
                origin="prefix",
            )  # fmt: skip
        )
    return out
