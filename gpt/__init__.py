"""A from-scratch GPT library in PyTorch: tokenizers, model, training, sampling, run folders, inspection.

Never imports streamlit: the explorer app is built on top of it.
"""
from .config import ConfigError, GPTConfig, TrainConfig, preset
from .generate import generate_text, stream_text, stream_tokens
from .model import GPT, Trace, count_params, flops_per_token, memory_estimate
from .runs import LoadedRun, list_runs, load_run
from .tokenizers import BPETokenizer, CharTokenizer, UnknownCharactersError

__all__ = ["ConfigError", "GPTConfig", "TrainConfig", "preset", "generate_text", "stream_text", "stream_tokens",
           "GPT", "Trace", "count_params", "flops_per_token", "memory_estimate", "LoadedRun", "list_runs",
           "load_run", "BPETokenizer", "CharTokenizer", "UnknownCharactersError"]
