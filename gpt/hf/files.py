"""The file names of a Hugging Face GPT-2 folder, and the error every reader of one raises (gpt2.py, cache.py)."""
from __future__ import annotations

from pathlib import Path

HF_CONFIG, HF_WEIGHTS, HF_VOCAB, HF_MERGES, CHARS = "config.json", "model.safetensors", "vocab.json", "merges.txt", \
    "chars.json"
PICKLE_WEIGHTS = "pytorch_model.bin"


class HFError(ValueError):
    """A folder that cannot be imported or a run that cannot be exported; the message says why."""


def pickle_refusal(folder: Path) -> str:
    """Why a folder with only pytorch_model.bin is not read, and the one command that makes it readable."""
    return (f"{folder} holds only {PICKLE_WEIGHTS}, a Python pickle: loading a pickle can run any code it contains, "
            f"so it is not read here. Convert it once with transformers: python -c \"from transformers import "
            f"GPT2LMHeadModel as M; M.from_pretrained('{folder}').save_pretrained('{folder}-safetensors')\" "
            f"(save_pretrained writes {HF_WEIGHTS}), then import that folder")
