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

from rlvr.rollout import SamplingParams
from rlvr.types import Completion, Example


def chat_prompt_ids(tokenizer, example: Example) -> list[int]:
    """Token ids of an example's prompt with the chat template and the assistant header."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(example.prompt, tokenize=False, add_generation_prompt=True)
    else:
        text = "\n\n".join(m["content"] for m in example.prompt) + "\n"
    return tokenizer(text, add_special_tokens=False)["input_ids"]


class HFGenerateEngine:
    """RolloutEngine over ``model.generate``; shares the trainer's module, so new weights are live."""

    def __init__(self, model, tokenizer, batch_size: int = 64) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self._prompt_cache: dict[str, list[int]] = {}

    def update_weights(self, model) -> None:
        self.model = model

    def prompt_ids(self, example: Example) -> list[int]:
        key = repr(example.prompt)
        if key not in self._prompt_cache:
            self._prompt_cache[key] = chat_prompt_ids(self.tokenizer, example)
        return self._prompt_cache[key]

    @torch.no_grad()
    def generate(self, examples: list[Example], n: int, sampling: SamplingParams) -> list[list[Completion]]:
        jobs = [(i, example) for i, example in enumerate(examples) for _ in range(n)]
        results: list[list[Completion]] = [[] for _ in examples]
        was_training = self.model.training
        self.model.eval()
        try:
            for start in range(0, len(jobs), self.batch_size):
                chunk = jobs[start : start + self.batch_size]
                for (i, _), completion in zip(
                    chunk, self._generate_batch([e for _, e in chunk], sampling), strict=True
                ):
                    results[i].append(completion)
        finally:
            self.model.train(was_training)
        return results

    def _generate_batch(self, examples: list[Example], sampling: SamplingParams) -> list[Completion]:
        tokenizer = self.tokenizer
        prompts = [self.prompt_ids(e) for e in examples]
        width = max(len(p) for p in prompts)
        pad_id = tokenizer.pad_token_id
        input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, ids in enumerate(prompts):
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            attention_mask[row, width - len(ids) :] = 1
        greedy = sampling.temperature == 0
        device = next(self.model.parameters()).device
        out = self.model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            max_new_tokens=sampling.max_new_tokens,
            do_sample=not greedy,
            temperature=None if greedy else sampling.temperature,
            top_p=None if greedy else sampling.top_p,
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
        completions = []
        for row, example in enumerate(examples):
            ids, reason = self._trim(new_tokens[row].tolist(), sampling)
            text = tokenizer.decode(ids, skip_special_tokens=True)
            completions.append(
                Completion(
                    example=example,
                    text=_cut_at_stop(text, sampling.stop),
                    prompt_ids=prompts[row],
                    token_ids=ids,
                    logprobs=logprobs[row, : len(ids)].tolist() if logprobs is not None else [0.0] * len(ids),
                    loss_mask=[1] * len(ids),
                    finish_reason=reason,
                )
            )
        return completions

    def _token_logprobs(self, logits: tuple, tokens: torch.Tensor, sampling: SamplingParams) -> torch.Tensor:
        temperature = sampling.temperature or 1.0
        columns = []
        for step, step_logits in enumerate(logits):  # each [B, V]
            logp = torch.log_softmax(step_logits.float().cpu() / temperature, dim=-1)
            columns.append(logp.gather(1, tokens[:, step : step + 1]).squeeze(1))
        return torch.stack(columns, dim=1)  # [B, steps]

    def _trim(self, ids: list[int], sampling: SamplingParams) -> tuple[list[int], str]:
        """Cut after the first eos (kept, so the model learns to stop) or after the first token
        whose text completes a stop string, whichever comes first; drop the padding after it.

        transformers' stop-string check only matches at the end of the text, so a stop string
        inside a token (" " in " fourteenth") is found here instead.
        """
        eos = self.tokenizer.eos_token_id
        end = ids.index(eos) + 1 if eos in ids else None
        if sampling.stop:
            for k in range(len(ids) if end is None else end - 1):
                text = self.tokenizer.decode(ids[: k + 1], skip_special_tokens=True)
                if any(s in text for s in sampling.stop):
                    return ids[: k + 1], "stop"
        return (ids[:end], "stop") if end is not None else (ids, "length")


def _cut_at_stop(text: str, stop: list[str]) -> str:
    cuts = [text.index(s) + len(s) for s in stop if s in text]
    return text[: min(cuts)] if cuts else text
