"""Rollouts with transformers' ``generate`` on the policy module itself.

Prompts are left-padded (so every row's next token is at the same column) with an attention
mask; generate derives position ids from that mask. The sampling policy's log-prob of each
token is log_softmax(logits / temperature) from the raw logits generate returns: the same
quantity the trainer computes, so on-policy ratios start at 1. Top-p truncation is not
reflected in those log-probs (as in TRL and verl); with top_p < 1 the ratio is relative to
the untruncated tempered policy.

Limits: ``output_logits`` keeps [steps, batch, vocab] float logits for one generation batch
(about 300 MB at 32 x 48 tokens with a 49k vocabulary); ``rollout.batch_size`` bounds it.
Finished rows keep decoding padding until the whole batch stops.
"""

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from rlvr.precision import Precision, autocast, fp32_head
from rlvr.rollout import Sample, SamplingParams, cut_at_stop, trim_at_stop
from rlvr.rollout.seeds import row_seeds, row_uniforms


class HFGenerateEngine:
    """RolloutEngine over ``model.generate``; shares the trainer's module, so new weights are live."""

    def __init__(
        self, model, tokenizer, batch_size: int = 64, precision: Precision = "fp32", fp32_logits: bool = False
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.precision = precision  # bf16: generate runs under autocast (rlvr.precision)
        self.fp32_logits = fp32_logits  # bf16: the LM head still computes in fp32 (rlvr.precision.fp32_head)

    def update_weights(self, model, version: int | None = None) -> None:
        self.model = model  # the trainer's own module: its weights are live, whatever the version

    @torch.no_grad()
    def continue_ids(
        self, prefixes: list[list[int]], sampling: SamplingParams, seeds: list[int] | None = None
    ) -> list[Sample]:
        seeds = row_seeds(prefixes, sampling.seed, seeds)
        samples: list[Sample] = []
        was_training = self.model.training
        self.model.eval()
        try:
            device = next(self.model.parameters()).device
            with autocast(device, self.precision), fp32_head(self.model, self.fp32_logits):
                for start in range(0, len(prefixes), self.batch_size):
                    batch_seeds = None if seeds is None else seeds[start : start + self.batch_size]
                    samples += self._generate_batch(prefixes[start : start + self.batch_size], sampling, batch_seeds)
        finally:
            self.model.train(was_training)
        return samples

    def _generate_batch(
        self, prompts: list[list[int]], sampling: SamplingParams, seeds: list[int] | None
    ) -> list[Sample]:
        tokenizer = self.tokenizer
        width = max(len(p) for p in prompts)
        pad_id = tokenizer.pad_token_id
        input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, ids in enumerate(prompts):
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            attention_mask[row, width - len(ids) :] = 1
        greedy = sampling.temperature == 0
        seeded = seeds is not None and not greedy
        device = next(self.model.parameters()).device
        draws = SeededDraw(sampling, row_uniforms(seeds, sampling.max_new_tokens), width) if seeded else None
        out = self.model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            max_new_tokens=sampling.max_new_tokens,
            do_sample=not greedy and not seeded,
            temperature=None if greedy or seeded else sampling.temperature,
            top_p=None if greedy or seeded else sampling.top_p,
            logits_processor=LogitsProcessorList([draws]) if seeded else None,
            top_k=None,
            stop_strings=sampling.stop or None,
            tokenizer=tokenizer if sampling.stop else None,
            pad_token_id=pad_id,
            eos_token_id=tokenizer.eos_token_id,
            return_dict_in_generate=True,
            output_logits=sampling.return_logprobs,
        )
        new_tokens = out.sequences[:, width:].cpu()  # [B, steps]
        logprobs = self._token_logprobs(out.logits, new_tokens, sampling) if sampling.return_logprobs else None
        samples = []
        for row in range(len(prompts)):
            ids, reason = trim_at_stop(tokenizer, new_tokens[row].tolist(), sampling.stop)
            text = cut_at_stop(tokenizer.decode(ids, skip_special_tokens=True), sampling.stop)
            row_logprobs = logprobs[row, : len(ids)].tolist() if logprobs is not None else [0.0] * len(ids)
            samples.append(Sample(ids, row_logprobs, reason, text))
        return samples

    def _token_logprobs(self, logits: tuple, tokens: torch.Tensor, sampling: SamplingParams) -> torch.Tensor:
        temperature = sampling.temperature or 1.0
        columns = []
        for step, step_logits in enumerate(logits):  # each [B, V]
            logp = torch.log_softmax(step_logits.float().cpu() / temperature, dim=-1)
            columns.append(logp.gather(1, tokens[:, step : step + 1]).squeeze(1))
        return torch.stack(columns, dim=1)  # [B, steps]


class SeededDraw(LogitsProcessor):
    """Each row's next token drawn with its own uniform (placement-free seeds, :mod:`rlvr.rollout.seeds`),
    by the fast engine's :func:`rlvr.rollout.fast.sample_tokens` (temperature, top-p, inverse CDF), then
    forced: every other logit becomes -inf and ``generate`` runs greedy. ``generate``'s own sampling
    cannot take a generator per row; its warpers would run after this processor."""

    def __init__(self, sampling: SamplingParams, uniforms: torch.Tensor, width: int) -> None:
        self.sampling = sampling
        self.uniforms = uniforms  # [B, max_new_tokens]
        self.width = width  # the padded prompt width: the step is input_ids' length past it

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        from rlvr.rollout.fast import sample_tokens

        step = input_ids.shape[1] - self.width
        tokens, _ = sample_tokens(scores, self.sampling, None, self.uniforms[:, step])
        forced = torch.full_like(scores, float("-inf"))
        return forced.scatter_(1, tokens.view(-1, 1).to(scores.device), 0.0)
