"""GPT-2 checkpoints in and out, in Hugging Face's folder format, without `transformers` at runtime.

A GPT-2 folder holds config.json (GPT2Config), model.safetensors, vocab.json and merges.txt. Our GPT has the same
shape as GPT-2 (pre-LayerNorm blocks, fused QKV, learned positions, tied LM head), so the mapping is one to one
except that GPT-2 stores its linear layers as `Conv1D`, whose weight is the transpose of nn.Linear's.

    python -m gpt.hf import SRC_DIR RUN_DIR     # a GPT-2 folder -> a run folder (checkpoints/NAME for a bare name)
    python -m gpt.hf export RUN_DIR OUT_DIR     # any attention run -> a folder GPT2LMHeadModel.from_pretrained reads

Tokenizers: GPT-2's byte-level BPE is read by our own BPETokenizer. On export, a BPE run writes its vocab.json and
merges.txt; a char run whose characters are all single bytes (ASCII, e.g. Shakespeare) writes a merge-free byte
vocabulary that gives exactly our ids; a char run with multi-byte characters writes the model plus chars.json
(id -> character), since GPT-2's format cannot hold those characters without extra tokens the model lacks.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from gpt import runs
from gpt.config import ConfigError, GPTConfig, TrainConfig
from gpt.hf import cache as hf_cache
from gpt.hf.files import CHARS, HF_CONFIG, HF_MERGES, HF_VOCAB, HF_WEIGHTS, PICKLE_WEIGHTS, HFError, pickle_refusal
from gpt.model import GPT
from gpt.tokenizers import GPT2_PATTERN, BPETokenizer, CharTokenizer, TokenizerError, save_tokenizer

# GPT-2's activation names -> ours ("gelu_new" and friends are the tanh approximation)
ACTIVATION_IN = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh",
                 "gelu": "gelu"}
ACTIVATION_OUT = {"gelu_tanh": "gelu_new", "gelu": "gelu"}
CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
ENDOFTEXT = "<|endoftext|>"


# ---- import ----
def config_from_gpt2(hf: dict) -> GPTConfig:
    """Our GPTConfig from a GPT2Config dict, refusing variants our model does not compute."""
    if not isinstance(hf, dict):
        raise HFError("config.json must hold a JSON object")
    if hf.get("model_type", "gpt2") != "gpt2":
        raise HFError(f"config.json describes a {hf.get('model_type')!r} model; only GPT-2 ('gpt2') is supported")
    act = hf.get("activation_function", "gelu_new")
    if act not in ACTIVATION_IN:
        raise HFError(f"activation_function {act!r} is not supported (use one of {', '.join(ACTIVATION_IN)})")
    try:
        n_embd = int(hf.get("n_embd", 768))
        n_inner = hf.get("n_inner")
        if n_inner not in (None, 4 * n_embd):
            raise HFError(f"n_inner {n_inner} differs from 4 * n_embd; our MLP is always 4x wide")
        for flag, ok in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                         ("reorder_and_upcast_attn", False), ("add_cross_attention", False),
                         ("tie_word_embeddings", True)):
            if hf.get(flag, ok) != ok:
                raise HFError(f"config.json sets {flag}={hf[flag]!r}; only {ok!r} is supported")
        cfg = GPTConfig(vocab_size=int(hf.get("vocab_size", 50257)), block_size=int(hf.get("n_positions", 1024)),
                        n_layer=int(hf.get("n_layer", 12)), n_head=int(hf.get("n_head", 12)), n_embd=n_embd,
                        dropout=0.0, bias=True, arch="gpt", activation=ACTIVATION_IN[act],
                        layer_norm_eps=float(hf.get("layer_norm_epsilon", 1e-5)))
        return cfg.validate()
    except (TypeError, ValueError) as e:
        if isinstance(e, HFError):
            raise
        raise HFError(f"config.json: {e}") from e


def state_dict_from_gpt2(tensors: dict[str, torch.Tensor], cfg: GPTConfig) -> dict[str, torch.Tensor]:
    """Rename GPT-2 keys (with or without the 'transformer.' prefix) to ours; transpose Conv1D weights."""
    out = {}
    for key, value in tensors.items():
        name = key.removeprefix("transformer.")
        if name.endswith((".attn.bias", ".attn.masked_bias")) or name == "lm_head.weight":
            continue  # old checkpoints' causal-mask buffers; the LM head is tied to wte
        if name.startswith("h."):
            name = "blocks." + name[2:]
        if name.endswith(CONV1D):
            value = value.t()
        out[name] = value.float().contiguous()
    lm_head = tensors.get("lm_head.weight")
    if lm_head is not None and "wte.weight" in out and not torch.equal(lm_head.float(), out["wte.weight"]):
        raise HFError("model.safetensors has an LM head different from the token embedding; our GPT ties them")
    out["lm_head.weight"] = out["wte.weight"]
    return out


def char_tokenizer_from_export(src: Path) -> CharTokenizer | None:
    """The char tokenizer of a folder written by export_gpt2 from a char run (chars.json, or a merge-free
    vocabulary of single-byte tokens with ids 0..n-1), so such an export imports back exactly; else None."""
    if (src / CHARS).is_file():
        chars = json.loads((src / CHARS).read_text(encoding="utf-8"))
        return CharTokenizer([chars[str(i)] for i in range(len(chars))])
    try:
        merges = [line for line in (src / HF_MERGES).read_text(encoding="utf-8").splitlines()
                  if line and not line.startswith("#version")]
        encoder = json.loads((src / HF_VOCAB).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    from gpt.tokenizers import _bytes_to_unicode
    byte_of = {c: b for b, c in _bytes_to_unicode().items()}
    if merges or len(encoder) >= 256 or sorted(encoder.values()) != list(range(len(encoder))):
        return None
    if not all(len(token) == 1 and token in byte_of and byte_of[token] < 128 for token in encoder):
        return None
    by_id = {i: chr(byte_of[token]) for token, i in encoder.items()}
    return CharTokenizer([by_id[i] for i in range(len(by_id))])


def read_gpt2_tokenizer(src: Path) -> BPETokenizer | CharTokenizer:
    try:
        exported = char_tokenizer_from_export(src)
    except (KeyError, TypeError, ValueError, TokenizerError) as e:
        raise HFError(f"{src}: malformed {CHARS}: {e}") from e
    if exported is not None:
        return exported
    special = [ENDOFTEXT]
    for name in ("added_tokens.json", "special_tokens_map.json"):
        try:
            data = json.loads((src / name).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(data, dict):
            for value in data.values():
                token = value.get("content") if isinstance(value, dict) else value
                if isinstance(token, str):
                    special.append(token)
            if name == "added_tokens.json":
                special.extend(k for k in data if isinstance(k, str))
    try:
        return BPETokenizer.from_gpt2_files(src / HF_VOCAB, src / HF_MERGES, special_tokens=special)
    except FileNotFoundError as e:
        raise HFError(f"{src} lacks {Path(e.filename).name}; a GPT-2 folder needs vocab.json and merges.txt") from e
    except (OSError, json.JSONDecodeError, TokenizerError) as e:
        raise HFError(f"cannot read GPT-2's tokenizer from {src}: {e}") from e


def load_gpt2(src: str | Path) -> tuple[GPT, BPETokenizer, dict]:
    """(model in eval mode, tokenizer, the folder's config dict) from a local GPT-2 folder."""
    src = Path(src)
    if not src.is_dir():
        raise HFError(f"{src} is not a folder")
    try:
        hf_cfg = json.loads((src / HF_CONFIG).read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise HFError(f"{src} has no config.json; is it a Hugging Face model folder?") from e
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HFError(f"{src / HF_CONFIG} is not valid JSON: {e}") from e
    cfg = config_from_gpt2(hf_cfg)
    if not (src / HF_WEIGHTS).exists() and (src / PICKLE_WEIGHTS).exists():
        raise HFError(pickle_refusal(src))   # before the tokenizer: say the one thing that matters first
    tokenizer = read_gpt2_tokenizer(src)
    if tokenizer.vocab_size != cfg.vocab_size:
        raise HFError(f"vocab.json has {tokenizer.vocab_size} tokens but config.json says vocab_size "
                      f"{cfg.vocab_size}; the files do not belong together")
    try:
        tensors = load_file(str(src / HF_WEIGHTS))  # safetensors only: nothing is unpickled
    except FileNotFoundError as e:
        if (src / PICKLE_WEIGHTS).exists():
            raise HFError(pickle_refusal(src)) from e
        raise HFError(f"{src} has no {HF_WEIGHTS} (or it is a link to a missing file)") from e
    except (SafetensorError, OSError) as e:
        raise HFError(f"{src / HF_WEIGHTS} is unreadable: {e}") from e
    model = GPT(cfg)
    try:
        model.load_state_dict(state_dict_from_gpt2(tensors, cfg), strict=True)
    except RuntimeError as e:
        raise HFError(f"model.safetensors does not match config.json: {str(e).splitlines()[0][:300]}") from e
    return model.eval(), tokenizer, hf_cfg


def run_dir_for(target: str | Path) -> Path:
    """A bare name goes under checkpoints/ (sanitised); anything with a slash is used as a path."""
    target = str(target)
    return runs.run_path(target) if "/" not in target and "\\" not in target else Path(target)


def import_gpt2(src: str | Path, target: str | Path) -> Path:
    """Write a normal run folder (config.json, tokenizer.json, model.safetensors) from a GPT-2 folder, or from a
    repo id ("gpt2", "openai-community/gpt2") found in the local Hugging Face cache (gpt/hf/cache.py). The folder
    is written under a temporary name and renamed into place, so a failed import leaves no half-made run."""
    out = run_dir_for(target)
    if out.exists() and any(out.iterdir()):
        raise HFError(f"{out} already exists and is not empty; pick another name")
    repo_id = str(src) if hf_cache.is_repo_id(str(src)) else None
    folder = hf_cache.resolve(repo_id) if repo_id else Path(src)
    model, tokenizer, _ = load_gpt2(folder)
    train_cfg = TrainConfig(dtype="auto")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.parent / f".{out.name}.importing"
    shutil.rmtree(partial, ignore_errors=True)   # the leftover of an import that was killed
    try:
        partial.mkdir()
        runs.write_config(partial, model.config, train_cfg, corpus=None, corpus_sha256=None,
                          tokenizer=tokenizer.kind, init_from=None, imported_from=str(folder.resolve()),
                          hf_repo=repo_id, source="gpt2")
        save_tokenizer(tokenizer, partial / runs.TOKENIZER)
        runs.atomic_save_model(model, partial / runs.WEIGHTS, {"step": "0", "source": "gpt2"})
        if out.exists():
            out.rmdir()   # checked empty above
        partial.rename(out)
    except OSError as e:
        shutil.rmtree(partial, ignore_errors=True)
        raise HFError(f"could not write {out}: {e.strerror or e}; nothing was imported") from e
    return out


# ---- export ----
def gpt2_config(cfg: GPTConfig, bos_eos: int | None = None) -> dict:
    if cfg.arch == "bigram":
        raise HFError("a bigram model has no attention and an untied LM head; GPT-2's format cannot hold it")
    unsupported = cfg.gpt2_incompatible
    if unsupported:
        raise HFError(f"GPT-2's architecture cannot represent this model's {', '.join(unsupported)} (GPT-2 has "
                      "learned positions, LayerNorm, no QK-norm, a tied LM head, no logit cap and a GELU MLP); "
                      "only a model trained with those defaults can be exported")
    return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": cfg.vocab_size,
            "n_positions": cfg.block_size, "n_embd": cfg.n_embd, "n_layer": cfg.n_layer,
            "n_head": cfg.effective_n_head, "n_inner": None, "activation_function": ACTIVATION_OUT[cfg.activation],
            "resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout, "attn_pdrop": cfg.dropout,
            "layer_norm_epsilon": cfg.layer_norm_eps, "initializer_range": 0.02, "scale_attn_weights": True,
            "tie_word_embeddings": True, "bos_token_id": bos_eos, "eos_token_id": bos_eos, "dtype": "float32"}


def gpt2_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """GPT-2 keys and layouts. Missing biases become zeros; an attention-only rung gets a zero MLP (adds 0)."""
    cfg, sd = model.config, model.state_dict()
    C = cfg.n_embd
    out = {"transformer.wte.weight": sd["wte.weight"], "transformer.wpe.weight": sd["wpe.weight"],
           "transformer.ln_f.weight": sd["ln_f.weight"],
           "transformer.ln_f.bias": sd.get("ln_f.bias", torch.zeros(C))}
    zero_mlp = {"ln_2.weight": torch.ones(C), "ln_2.bias": torch.zeros(C),
                "mlp.c_fc.weight": torch.zeros(C, 4 * C), "mlp.c_fc.bias": torch.zeros(4 * C),
                "mlp.c_proj.weight": torch.zeros(4 * C, C), "mlp.c_proj.bias": torch.zeros(C)}
    for i in range(cfg.n_layer):
        ours, theirs = f"blocks.{i}.", f"transformer.h.{i}."
        names = ["ln_1", "attn.c_attn", "attn.c_proj"] + (["ln_2", "mlp.c_fc", "mlp.c_proj"] if cfg.has_mlp else [])
        for name in names:
            weight = sd[ours + name + ".weight"]
            out[theirs + name + ".weight"] = weight.t() if (name + ".weight") in CONV1D else weight
            bias = sd.get(ours + name + ".bias")
            out[theirs + name + ".bias"] = bias if bias is not None else torch.zeros(weight.size(0))
        if not cfg.has_mlp:
            out.update({theirs + k: v for k, v in zero_mlp.items()})
    return {k: v.detach().float().contiguous().clone() for k, v in out.items()}


def char_gpt2_vocab(tok: CharTokenizer) -> dict[str, int] | None:
    """A merge-free GPT-2 vocabulary giving exactly our char ids, or None if a character is multi-byte."""
    from gpt.tokenizers import _bytes_to_unicode
    char_of = _bytes_to_unicode()
    if any(len(c.encode("utf-8")) != 1 for c in tok.chars):
        return None
    return {char_of[c.encode("utf-8")[0]]: i for i, c in enumerate(tok.chars)}


def export_gpt2(run_dir: str | Path, out_dir: str | Path, step: int | None = None) -> Path:
    """Write OUT_DIR so that transformers' GPT2LMHeadModel.from_pretrained(OUT_DIR) gives our logits."""
    run = runs.load_run(run_dir, step=step)
    return save_gpt2_folder(run.model, run.tokenizer, out_dir)


def train_gpt2_tokenizer(text: str, vocab_size: int) -> BPETokenizer:
    """A byte-level BPE trained on text, plus GPT-2's <|endoftext|> as its last token (vocab_size in all)."""
    bpe = BPETokenizer.train(text, vocab_size - 1)
    return BPETokenizer(bpe.vocab_bytes + [ENDOFTEXT.encode()], bpe.merge_list,
                        special_tokens={ENDOFTEXT: len(bpe.vocab_bytes)})


def save_gpt2_folder(model: GPT, tok, out_dir: str | Path) -> Path:
    """A model and its tokenizer as a Hugging Face GPT-2 folder (what export writes; tests and bench/ build
    GPT-2-shaped folders with it)."""
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise HFError(f"{out} already exists and is not empty")
    if model.config.arch == "gpt" and model.config.n_layer == 0:
        raise HFError("nothing to export")
    files: dict[str, str] = {}
    bos_eos = None
    if isinstance(tok, BPETokenizer):
        if tok.pattern != GPT2_PATTERN:
            raise HFError("this BPE tokenizer uses a custom pre-split pattern that GPT-2's format cannot express")
        try:
            vocab, merges = tok.to_gpt2_vocab()
        except TokenizerError as e:
            raise HFError(str(e)) from e
        bos_eos = tok.special_tokens.get(ENDOFTEXT)
        files[HF_VOCAB] = json.dumps(vocab, ensure_ascii=False)
        files[HF_MERGES] = "#version: 0.2\n" + "".join(m + "\n" for m in merges)
    else:
        vocab = char_gpt2_vocab(tok)
        if vocab is None:
            files[CHARS] = json.dumps({str(i): c for i, c in enumerate(tok.chars)}, ensure_ascii=False)
        else:
            files[HF_VOCAB] = json.dumps(vocab, ensure_ascii=False)
            files[HF_MERGES] = "#version: 0.2\n"
    config = gpt2_config(model.config, bos_eos)
    tensors = gpt2_state_dict(model)
    out.mkdir(parents=True, exist_ok=True)
    runs.atomic_write_json(out / HF_CONFIG, config)
    runs.atomic_save_file(tensors, out / HF_WEIGHTS, {"format": "pt"})
    for name, text in files.items():
        runs.atomic_write_text(out / name, text)
    return out


# ---- CLI ----
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gpt.hf", description="GPT-2 (Hugging Face folder) import/export")
    sub = p.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("import", help="GPT-2 folder -> run folder")
    imp.add_argument("src", help="folder with config.json, model.safetensors, vocab.json, merges.txt; or a repo id "
                                 "(gpt2, openai-community/gpt2...) already in the local Hugging Face cache")
    imp.add_argument("run", help="run folder to create (a bare name goes under checkpoints/)")
    exp = sub.add_parser("export", help="run folder -> GPT-2 folder")
    exp.add_argument("run", help="run folder to export")
    exp.add_argument("out", help="folder to create")
    exp.add_argument("--step", type=int, help="export the snapshot at this step instead of the latest weights")
    args = p.parse_args(argv)
    try:
        if args.command == "import":
            path = import_gpt2(args.src, args.run)
        else:
            path = export_gpt2(args.run, args.out, args.step)
    except (HFError, runs.RunError, ConfigError, TokenizerError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
