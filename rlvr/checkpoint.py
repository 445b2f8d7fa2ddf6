"""Checkpoints that never corrupt, exact resume, and the final Hugging Face export.

A checkpoint is a folder ``checkpoints/step-000012/`` holding ``model.safetensors`` (the
trainable weights: the full model, or only the LoRA adapter's tensors), ``state.pt``
(optimizer, scheduler, sampler position, python/torch RNG states, step) and
``config.yaml``. It is written into a temporary sibling and renamed into place, so a kill
at any moment leaves either the previous checkpoints or the new one complete, never half of
one. Only complete folders are ever read back.
"""

import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors.torch import load_file, save_file

from rlvr.atomic import atomic_folder
from rlvr.errors import TrainingError, one_line

PREFIX = "step-"


class Stateful(Protocol):
    """What a checkpoint saves of a part: any object with these two methods (an optimizer, a
    scheduler, a sampler, a controller, the RNGs) registers itself with ``Run.keep(name, part)``."""

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


@dataclass
class Coefficients:
    """The loss coefficients adaptive controllers move during training."""

    kl: float  # the KL coefficient applied this step
    entropy: float  # the entropy bonus the loss applies
    entropy_state: float  # the entropy controller's carried coefficient

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        self.kl, self.entropy, self.entropy_state = state["kl"], state["entropy"], state["entropy_state"]


class RngState:
    """Python's and torch's (and CUDA's) generators: read when the checkpoint is written."""

    def state_dict(self) -> dict:
        return rng_state()

    def load_state_dict(self, state: dict) -> None:
        restore_rng(state)


def trainable_state(model) -> dict[str, torch.Tensor]:
    """The tensors that training changes: all of them, or only those with requires_grad (LoRA).

    Tied tensors (input embeddings = output head) are stored once, under their first name.
    """
    named = dict(model.named_parameters())
    full = all(p.requires_grad for p in named.values())
    source = model.state_dict() if full else {k: v for k, v in named.items() if v.requires_grad}
    seen: set[int] = set()
    tensors = {}
    for key, value in source.items():
        if value.data_ptr() in seen:
            continue
        seen.add(value.data_ptr())
        tensors[key] = value.detach().to("cpu", copy=True).contiguous()
    return tensors


def save_checkpoint(run_dir: Path, step: int, model, state: dict[str, Any], config_yaml: str, keep: int) -> Path:
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"{PREFIX}{step:06d}"
    try:
        with atomic_folder(target, fsync=True) as tmp:
            save_file(trainable_state(model), str(tmp / "model.safetensors"))
            torch.save({**state, "step": step}, tmp / "state.pt")
            (tmp / "config.yaml").write_text(config_yaml)
    except (OSError, RuntimeError) as err:  # a full disk shows as either; the earlier checkpoints are intact
        free = shutil.disk_usage(root).free / 2**30
        raise TrainingError(
            f"could not write the checkpoint of step {step} to {target} ({one_line(err, 200)}; {free:.1f} GiB free "
            "on that disk); the earlier checkpoints are intact: resume from them with --resume"
        ) from None
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def list_checkpoints(run_dir: Path) -> list[Path]:
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.name.startswith(PREFIX) and (p / "state.pt").is_file())


def load_checkpoint(path: Path, model) -> dict[str, Any]:
    """Load weights into ``model`` and return the saved training state (RNG restored later)."""
    try:
        tensors = load_file(str(path / "model.safetensors"))
        state = torch.load(path / "state.pt", weights_only=False)
    except Exception as err:  # a damaged file: name it rather than show a stack
        raise TrainingError(f"checkpoint {path} cannot be read: {err}") from None
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if unexpected:
        raise TrainingError(f"checkpoint {path} does not fit the model (unexpected {unexpected[:3]})")
    return state


def load_run_policy(path: Path, dtype: str = "float32"):
    """(model, tokenizer) from a run directory's last checkpoint or from one checkpoint folder.

    The base model and LoRA settings come from the run's saved config; the checkpoint's
    weights (full or adapter) are loaded on top. For ``rlvr eval`` on a run still in progress.
    """
    import yaml

    from rlvr.models import add_lora, load_model

    path = Path(path)
    folder = path if (path / "state.pt").is_file() else (list_checkpoints(path) or [None])[-1]
    if folder is None:
        raise TrainingError(f"{path} holds no complete checkpoint")
    model_cfg = yaml.safe_load((folder / "config.yaml").read_text())["model"]
    model, tokenizer = load_model(model_cfg["name"], dtype)
    if model_cfg.get("lora_rank"):
        model = add_lora(
            model,
            model_cfg["lora_rank"],
            model_cfg["lora_alpha"],
            model_cfg["lora_dropout"],
            model_cfg["lora_target_modules"],
        )
    load_checkpoint(folder, model)
    return model, tokenizer


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def export_hf(model, tokenizer, target: Path, base_model: str | None = None) -> Path:
    """Write the policy in Hugging Face format (LoRA merged into the weights), atomically.

    A LoRA (PEFT) policy also writes ``adapter/``: PEFT's own ``save_pretrained`` (adapter_config.json,
    adapter_model.safetensors), loadable with ``PeftModel.from_pretrained(base, "final/adapter")`` on
    the starting model (``base_model``, recorded as the adapter's ``base_model_name_or_path``)."""
    base = model
    if hasattr(model, "merge_and_unload"):
        import copy

        base = copy.deepcopy(model).merge_and_unload()
    with atomic_folder(target) as tmp:
        base.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if hasattr(model, "peft_config"):
            model.save_pretrained(tmp / "adapter")
            if base_model is not None:
                _set_adapter_base(tmp / "adapter" / "adapter_config.json", base_model)
    return target


def _set_adapter_base(config_file: Path, base_model: str) -> None:
    import json

    config = json.loads(config_file.read_text())
    config["base_model_name_or_path"] = base_model
    config_file.write_text(json.dumps(config, indent=2) + "\n")


def push_to_hub(folder: Path, repo_id: str, private: bool = True) -> str:
    """Upload an exported folder to the Hugging Face Hub (needs a network and ``hf auth login``); the
    run's files are written before, so a failed upload loses nothing. Returns the repo URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message="rlvr: final policy")
    except Exception as err:
        raise TrainingError(
            f"checkpoint.push_to_hub={repo_id!r}: upload failed ({type(err).__name__}: {one_line(err)}); "
            f"{folder} is saved: upload it later with `hf upload {repo_id} {folder}`"
        ) from None
    return str(url)
