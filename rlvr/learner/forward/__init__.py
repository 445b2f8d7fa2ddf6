"""Forward passes of the learner: :mod:`hidden` (prompts once, completions on their KV, packed),
:mod:`attention` (attention per row of packed completions; masked GQA), :mod:`head` (fused, chunked
LM-head log-probs and entropies), :mod:`logprobs` (completion log-probs of a micro-batch, per-row passes)."""
