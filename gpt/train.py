"""The `python -m gpt.train` command line (and `gpt-train`): flags -> configs, run-folder setup, then the Trainer.

gpt/training/trainer.py holds the training loop itself. Exit codes: 0 finished or stopped, 1 training crashed, 2 bad input.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path

import torch

from gpt import runs
from gpt.config import ACTIVATIONS, NORMS, POS_EMBEDDINGS, ConfigError, GPTConfig, TrainConfig
from gpt.data import CorpusError, corpus_splits, load_corpus
from gpt.lab.induction_lab import repeated_corpus
from gpt.lab.probes import eval_probes
from gpt.model import GPT
from gpt.tokenizers import Tokenizer, TokenizerError, UnknownCharactersError, load_tokenizer, train_tokenizer
from gpt.training import distributed
from gpt.training.trainer import Trainer, TrainError, resolve_device, resolve_dtype


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gpt.train", description="Train a GPT into a run folder.")
    p.add_argument("--corpus", help="built-in name (tiny-shakespeare, python-docs) or a UTF-8 text file")
    p.add_argument("--out", required=True, help="run folder to write (created if missing)")
    p.add_argument("--preset", help="start from a named preset (gpt/config.py PRESETS)")
    p.add_argument("--tokenizer", choices=["char", "bpe"], default=None)
    p.add_argument("--vocab-size", type=int, default=None, help="BPE vocabulary size (>= 256)")
    p.add_argument("--arch", choices=["bigram", "single_head", "multi_head", "gpt"])
    for name in ("n-layer", "n-head", "n-embd", "block-size", "batch-size", "max-iters", "warmup-iters",
                 "eval-interval", "eval-iters", "seed", "grad-accum", "log-interval", "lr-decay-iters",
                 "sample-tokens", "snapshot-interval"):
        p.add_argument(f"--{name}", type=int)
    for name in ("dropout", "lr", "min-lr", "weight-decay", "beta1", "beta2", "grad-clip"):
        p.add_argument(f"--{name}", type=float)
    p.add_argument("--optimizer", choices=["adamw", "muon"],
                   help="muon: Muon on the blocks' weight matrices, AdamW on embeddings, head, gains (gpt/training/optim.py)")
    p.add_argument("--muon-lr", type=float, help="Muon's peak learning rate (default 0.02)")
    p.add_argument("--muon-momentum", type=float, help="Muon's momentum (default 0.95)")
    p.add_argument("--schedule", choices=["cosine", "wsd"],
                   help="lr schedule after warmup: cosine decay (nanoGPT) or wsd (stable, then a linear cooldown)")
    p.add_argument("--cooldown-frac", type=float, help="wsd: share of the steps spent cooling down (default 0.4)")
    p.add_argument("--repeat-lines-frac", type=float,
                   help="share of each training batch from the training text with every line said twice, so copying "
                        "from the context pays and induction heads form (default 0; validation text untouched)")
    p.add_argument("--no-bias", action="store_true", help="no biases in Linear and LayerNorm layers")
    arch = p.add_argument_group("modern architecture (each off by default; see GPTConfig in gpt/config.py)")
    arch.add_argument("--pos-embedding", choices=POS_EMBEDDINGS,
                      help="learned: a position table (GPT-2); rotary: q and k rotated by position (RoPE, LLaMA)")
    arch.add_argument("--norm", choices=NORMS, help="layernorm (GPT-2), rmsnorm (LLaMA) or none")
    arch.add_argument("--activation", choices=ACTIVATIONS, help="feed-forward nonlinearity; relu2 = ReLU squared")
    arch.add_argument("--qk-norm", action=argparse.BooleanOptionalAction,
                      help="RMS-normalise each head's queries and keys (OLMo 2, Gemma 3)")
    arch.add_argument("--tie-embeddings", action=argparse.BooleanOptionalAction,
                      help="share the token embedding with the LM head (GPT-2; --no-tie-embeddings: untied head)")
    arch.add_argument("--zero-init-proj", action=argparse.BooleanOptionalAction,
                      help="start attention and MLP output projections at zero (modded-nanogpt)")
    arch.add_argument("--logit-softcap", type=float, metavar="CAP",
                      help="logits = CAP * tanh(logits / CAP) (Gemma 2); 0 = off")
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--snapshot-dtype", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--grad-checkpoint", action="store_true", help="recompute block activations in backward")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the model for training (as nanoGPT): a one-off compile, then faster steps; "
                        "worth it for long runs (CPU: ~10-40 s to compile, ~14%% faster steps at nanoGPT's CPU "
                        "shape; needs a C++ compiler)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--init-from", metavar="RUN_DIR", help="start from another run's weights (fine-tuning)")
    p.add_argument("--stop-after", type=int, help="checkpoint and stop at this step (the schedule still "
                                                  "spans --max-iters, so --resume continues it exactly)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


MODEL_ARGS = ("arch", "n_layer", "n_head", "n_embd", "block_size", "dropout", "pos_embedding", "norm", "activation",
              "qk_norm", "tie_embeddings", "zero_init_proj", "logit_softcap")
TRAIN_ARGS = ("batch_size", "max_iters", "lr", "min_lr", "warmup_iters", "eval_interval", "eval_iters", "seed",
              "dtype", "device", "grad_accum", "log_interval", "lr_decay_iters", "weight_decay", "beta1", "beta2",
              "grad_clip", "sample_tokens", "snapshot_interval", "snapshot_dtype", "optimizer", "muon_lr", "muon_momentum", "schedule",
              "cooldown_frac", "repeat_lines_frac")


def configs_from_args(args, base_model: GPTConfig, base_train: TrainConfig) -> tuple[GPTConfig, TrainConfig]:
    model_kw = base_model.to_dict()
    train_kw = base_train.to_dict()
    for key in MODEL_ARGS:
        if getattr(args, key, None) is not None:
            model_kw[key] = getattr(args, key)
    if args.no_bias:
        model_kw["bias"] = False
    for key in TRAIN_ARGS:
        if getattr(args, key, None) is not None:
            train_kw[key] = getattr(args, key)
    if args.grad_checkpoint:
        train_kw["grad_checkpoint"] = True
    if args.compile:
        train_kw["compile"] = True
    return GPTConfig(**model_kw), TrainConfig(**train_kw).validate()


def corpus_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def available_memory_bytes() -> int | None:
    """RAM the trainer can use now: MemAvailable from /proc/meminfo, else os.sysconf; None when unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(model_cfg: GPTConfig, train_cfg: TrainConfig, device: torch.device, dtype: torch.dtype) -> None:
    """Refuse (before allocating anything) a CPU run whose memory estimate exceeds the available RAM."""
    from gpt.sizing import memory_estimate
    available = available_memory_bytes()
    if device.type != "cpu" or not available:
        return
    bytes_per_elem = 2 if dtype in (torch.bfloat16, torch.float16) else 4
    est = memory_estimate(model_cfg, train_cfg.batch_size, bytes_per_elem, train_cfg.grad_checkpoint)
    if est["total_bytes"] > available:
        raise TrainError(
            f"this model needs about {est['total_bytes'] / 2**30:.1f} GB to train ({est['parameters'] / 1e6:.1f}M "
            f"parameters: {est['states_bytes'] / 2**30:.1f} GB of weights and optimizer state, "
            f"{est['activation_bytes'] / 2**30:.1f} GB of activations at batch_size {train_cfg.batch_size}, "
            f"block_size {model_cfg.block_size}) but only {available / 2**30:.1f} GB of memory is available; "
            "use fewer or narrower layers, a smaller batch_size or block_size, or --grad-checkpoint")


def create_run_folder(out: Path, model_cfg: GPTConfig, train_cfg: TrainConfig, tokenizer: Tokenizer,
                      extra: dict) -> None:
    """tokenizer.json, then config.json (the file that makes a folder a run). When the folder cannot be written
    (read-only, disk full) remove what was written, so no half-made run is left, and say why."""
    from gpt.tokenizers import save_tokenizer
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        runs.lock_run(out)
        if (out / runs.CONFIG).exists():  # another trainer created it since our first check
            raise TrainError(f"{out} already holds a run; use --resume to continue it or pick a new --out")
        save_tokenizer(tokenizer, out / runs.TOKENIZER)
        runs.write_config(out, model_cfg, train_cfg, **extra)
    except OSError as e:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        else:
            for name in (runs.CONFIG, runs.TOKENIZER):
                (out / name).unlink(missing_ok=True)
        raise TrainError(f"cannot write the run folder {out}: {e.strerror or e}") from e


def prepare(args) -> tuple[Trainer, dict]:
    """Everything before the first step; raises ConfigError/CorpusError/TrainError with clear messages."""
    from gpt.config import preset
    out = Path(args.out)
    if args.resume:
        saved = runs.read_config(out)
        model_cfg, train_cfg = saved["model"], saved["train"]
        if args.max_iters:
            train_cfg.max_iters = args.max_iters
        if args.device:
            train_cfg.device = args.device
        corpus_spec = saved.get("corpus")
        text, _ = load_corpus(corpus_spec)
        if saved.get("corpus_sha256") and corpus_digest(text) != saved["corpus_sha256"]:
            raise TrainError(f"the corpus {corpus_spec!r} changed since this run started; cannot resume exactly")
        tokenizer = load_tokenizer(out / runs.TOKENIZER)
        extra = {k: v for k, v in saved.items() if k not in ("model", "train", "format_version")}
    else:
        if not args.corpus:
            raise TrainError("--corpus is required (a built-in name or a text file)")
        if out.exists() and not out.is_dir():
            raise TrainError(f"--out {out} is a file, not a folder")
        if out.exists() and any(out.iterdir()):
            status = runs.read_status(out)
            if runs.effective_state(status) == "running":
                raise TrainError(f"{out} is being trained by process {status.get('pid')}; not starting another")
            if (out / runs.CONFIG).exists():
                raise TrainError(f"{out} already holds a run; use --resume to continue it or pick a new --out")
        base_model, base_train = preset(args.preset) if args.preset else (GPTConfig(), TrainConfig())
        text, corpus_spec = load_corpus(args.corpus)
        corpus_spec = args.corpus if args.corpus in ("tiny-shakespeare", "python-docs") else str(Path(args.corpus).resolve())
        if args.init_from:
            parent = runs.load_run(args.init_from)
            tokenizer = parent.tokenizer
            unknown = tokenizer.unknown_chars(text)
            if unknown:
                raise UnknownCharactersError(unknown)
            model_cfg, train_cfg = configs_from_args(args, parent.config, base_train)
            if model_cfg != parent.config:
                raise TrainError("--init-from keeps the parent's architecture; drop the model-shape options")
        else:
            kind = args.tokenizer or "char"
            t0 = time.perf_counter()
            tokenizer = train_tokenizer(kind, text, args.vocab_size)
            print(f"{kind} tokenizer: {tokenizer.vocab_size} tokens in {time.perf_counter() - t0:.1f}s",
                  file=sys.stderr)
            base_model.vocab_size = tokenizer.vocab_size
            model_cfg, train_cfg = configs_from_args(args, base_model, base_train)
        model_cfg.vocab_size = tokenizer.vocab_size
        model_cfg.validate()
        extra = {"corpus": corpus_spec, "corpus_sha256": corpus_digest(text), "tokenizer": tokenizer.kind,
                 "init_from": str(Path(args.init_from).resolve()) if args.init_from else None}
    splits = corpus_splits(text, tokenizer, model_cfg.block_size)
    # under torchrun: join the process group (every rank has passed the checks above before rank 0 writes)
    dist_info, device_name = distributed.init(train_cfg.device)
    device = resolve_device(device_name)
    dtype = resolve_dtype(train_cfg.dtype, device)
    check_memory(model_cfg, train_cfg, device, dtype)
    if train_cfg.compile and device.type == "cpu" and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        raise TrainError("--compile on CPU needs a C++ compiler (g++ or clang++) and none is installed; "
                         "install one or train without --compile")
    torch.manual_seed(train_cfg.seed)
    model = GPT(model_cfg)
    if not args.resume and args.init_from:
        runs.load_weights(model, Path(args.init_from) / runs.WEIGHTS)
    model.to(device)
    ddp_model = distributed.wrap(model, dist_info, device)  # None in a single process
    trainer = Trainer(model, tokenizer, splits.train, splits.val, train_cfg, out, device, dtype,
                      rank=dist_info.rank, world_size=dist_info.world_size, ddp_model=ddp_model)
    if train_cfg.repeat_lines_frac > 0:  # the training split with every line said twice
        doubled = repeated_corpus(tokenizer.decode(splits.train.tolist()))
        trainer.repeated_ids = torch.tensor(tokenizer.encode(doubled), dtype=torch.long)
    trainer.eval_probes = eval_probes  # ICL score and the strongest induction/previous-token heads at each eval
    if args.resume:
        has_checkpoint = (out / runs.RESUME).exists()
        if has_checkpoint:
            trainer.load_checkpoint(out / runs.RESUME)  # every rank reads it: multi-node needs a shared folder
        else:  # stopped before its first checkpoint: start again from step 0 with the saved config
            print(f"{out} has no {runs.RESUME} yet; starting it from step 0", file=sys.stderr)
        if dist_info.is_main:
            runs.lock_run(out)  # refuses while another trainer holds this folder
            runs.truncate_metrics(out, trainer.step if has_checkpoint else -1)
        distributed.barrier(dist_info)
        if any(r.get("step") == trainer.step and "val_loss" in r for r in runs.read_jsonl(out / runs.METRICS)):
            trainer.skip_eval_at = trainer.step
    elif dist_info.is_main:
        create_run_folder(out, model_cfg, train_cfg, tokenizer, extra)
    info = {"device": str(device), "dtype": str(dtype).replace("torch.", "")}
    if dist_info.enabled:
        info["world_size"] = dist_info.world_size
    return trainer, info


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    try:
        dist_info = distributed.env_info()
        trainer, info = prepare(args)
    except (ConfigError, CorpusError, TokenizerError, runs.RunError, TrainError, RuntimeError, OSError) as e:
        runs.release_locks()
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        return _train(args, trainer, info, out, dist_info.is_main)
    finally:
        runs.release_locks()
        distributed.shutdown(dist_info)


def _train(args, trainer: Trainer, info: dict, out: Path, is_main: bool) -> int:
    """Run the prepared trainer; only rank 0 writes status.json."""
    def write_status(**fields):
        if is_main:
            runs.write_status(out, **fields)
    def request_stop(signum, frame):
        trainer.stop_requested = True
    # before the status names our pid: a Stop that reads it must find the handler in place
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        if is_main:
            runs.remove_stale_temp_files(out)
            (out / runs.STOP_REQUEST).unlink(missing_ok=True)  # a stop asked of an earlier trainer of this run
        write_status(state="running", pid=os.getpid(), step=trainer.step,
                     max_iters=trainer.cfg.max_iters, error=None, started_at=time.time(), **info)
    except OSError as e:  # a read-only or full disk: say so instead of a traceback
        print(f"error: cannot write to the run folder {out}: {e.strerror or e}", file=sys.stderr)
        return 2
    try:
        result = trainer.run(stop_after=args.stop_after, progress=sys.stderr.isatty() and not args.quiet)
    except BaseException as e:  # report any crash in the status file so the UI can show it
        try:
            write_status(state="failed", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc()[-4000:])
        except OSError:  # e.g. the disk is full: the message below still reaches the log
            pass
        print(f"error: training failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    state = "finished" if result["step"] >= trainer.cfg.max_iters else "stopped"
    write_status(state=state, step=result["step"], eta_s=0)
    if is_main:
        print(json.dumps({"state": state, **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
