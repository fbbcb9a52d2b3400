"""A from-scratch GPT library in PyTorch: tokenizers, model, training, sampling, run folders, inspection.

Never imports streamlit: the explorer app is built on top of it.
"""
from gpt.config import ConfigError, GPTConfig, TrainConfig, preset
from gpt.generate import generate_text, stream_text, stream_tokens
from gpt.model import GPT, Trace
from gpt.runs import LoadedRun, list_runs, load_run
from gpt.sizing import count_params, flops_per_token, memory_estimate
from gpt.tokenizers import BPETokenizer, CharTokenizer, UnknownCharactersError

__all__ = ["ConfigError", "GPTConfig", "TrainConfig", "preset", "generate_text", "stream_text", "stream_tokens",
           "GPT", "Trace", "count_params", "flops_per_token", "memory_estimate", "LoadedRun", "list_runs",
           "load_run", "BPETokenizer", "CharTokenizer", "UnknownCharactersError"]
