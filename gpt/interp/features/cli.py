"""`python -m gpt.interp.features` (console script `gpt-features`): sparse dictionaries of a run's activations.

    gpt-features train RUN_DIR [--kind transcoder|sae|clt] [--layers all|0,2] [--site resid_mid] [--n-features N]
                               [--k K] [--tokens N] [--name NAME] [--activation topk|jumprelu|relu]
                               [--save-dtype float32|float16|bfloat16]
    gpt-features eval RUN_DIR [NAME]
    gpt-features cast RUN_DIR [NAME ...] --dtype float16|bfloat16|float32
    gpt-features label RUN_DIR [NAME ...]
    gpt-features list RUN_DIR
    gpt-features export RUN_DIR NAME OUT --format saelens|circuit-tracer [--allow-topk]

train streams activations from the run's training text and writes features/<name>/ (config.json +
dictionary.safetensors) atomically, then evaluates each new dictionary on the whole validation split (--no-eval
skips it). eval prints variance explained, mean L0, dead and dense features and CE loss recovered and writes them
to features/<name>/metrics.json. label writes features/<name>/labels.json: a label and a held-out score for every
live feature (gpt/interp/features/labels.py); train runs it too (--no-label skips it). cast re-saves dictionaries with
their tensors in another dtype (half precision halves the files; loading upcasts to float32), dropping their metrics:
evaluate the saved files again. export writes dictionaries in the layouts SAELens and circuit-tracer load (NAME: one
dictionary, or a prefix P naming P-L0, P-L1, ...). The file format and formula: gpt/interp/features/dictionary.py and
the README.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import torch

from gpt.data import CorpusError
from gpt.interp.features.clt_training import train_crosslayer
from gpt.interp.features.crosslayer import CrossLayerTranscoder, list_crosslayers, save_crosslayer
from gpt.interp.features.dictionary import (
    DTYPES,
    FOLDER,
    DictionaryError,
    check_name,
    list_dictionaries,
    save_dictionary,
    weights_digest,
)
from gpt.interp.features.labels import LabelsError
from gpt.interp.features.run_eval import (
    evaluate_run,
    label_run,
    print_crosslayer_metrics,
    print_metrics,
    training_splits,
)
from gpt.interp.features.training import FeatureTrainConfig, train_dictionaries
from gpt.runs import WEIGHTS, RunError, atomic, load_run

PROGRESS = ".training.json"   # features/.training.json: what the app shows while a training runs
STOP = ".stop_request"        # features/.stop_request: the app's request to stop (a file of its own)


def default_names(cfg: FeatureTrainConfig, layers: list[int], name: str | None) -> list[str]:
    if cfg.kind == "clt":  # one folder for every layer
        return [check_name(name or "clt")]
    if name and len(layers) == 1:
        return [check_name(name)]
    prefix = name or ("transcoder" if cfg.kind == "transcoder" else f"sae-{cfg.site.replace('_', '-')}")
    return [check_name(f"{prefix}-L{layer}") for layer in layers]


def parse_layers(text: str, n_layer: int) -> list[int] | None:
    if text in ("all", ""):
        return None
    try:
        return [int(t) for t in text.split(",")]
    except ValueError:
        raise DictionaryError(f"--layers must be 'all' or comma-separated layer numbers (0..{n_layer - 1}), "
                              f"got {text!r}") from None


def install(folder_root: Path, name: str, dictionary, dtype: str | None = None) -> Path:
    """Save into a temporary folder, then rename it into place: a stopped or killed training never leaves a
    half-written dictionary that a listing shows (temporary folders start with '.')."""
    tmp = folder_root / f"{atomic.TMP_PREFIX}{name}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    if isinstance(dictionary, CrossLayerTranscoder):
        if dtype not in (None, "float32"):
            raise DictionaryError("a cross-layer transcoder is saved in float32 only (--save-dtype is for per-layer "
                                  "dictionaries and SAEs)")
        save_crosslayer(tmp, dictionary)
    else:
        save_dictionary(tmp, dictionary, dtype)
    final = folder_root / name
    old = folder_root / f"{atomic.TMP_PREFIX}old-{name}.{os.getpid()}"
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def cmd_train(args) -> int:
    run = load_run(args.run_dir)
    cfg = FeatureTrainConfig(kind=args.kind, site=args.site, activation=args.activation, n_features=args.n_features,
                             k=args.k, tokens=args.tokens, lr=args.lr, seed=args.seed,
                             skip=args.skip,
                             layers=parse_layers(args.layers, run.config.n_layer))
    cfg.validate(run.config)
    layers = cfg.layers or list(range(run.config.n_layer))
    names = default_names(cfg, layers, args.name)
    root = run.path / FOLDER
    root.mkdir(exist_ok=True)
    splits = training_splits(run, args.corpus)
    digest = weights_digest(run.path / WEIGHTS)
    progress_file, stop_file = root / PROGRESS, root / STOP
    stop_file.unlink(missing_ok=True)
    bar = None
    if sys.stderr.isatty():
        from tqdm import tqdm
        bar = tqdm(total=max(1, cfg.tokens // (max(1, cfg.batch_tokens // run.config.block_size)
                                                * run.config.block_size)), desc="features", unit="step")
    last_write = [0.0]

    def progress(step, total, stats):
        if bar is not None:
            bar.update(1)
            bar.set_postfix(fvu=f"{sum(stats['fvu']) / len(stats['fvu']):.3f}")
        now = time.monotonic()
        if now - last_write[0] > 0.5 or step == total:
            last_write[0] = now
            eta = stats["seconds"] / step * (total - step)
            atomic.write_json(progress_file, {"state": "training", "pid": os.getpid(), "names": names, "step": step,
                                              "total": total, "eta_s": eta, "fvu": stats["fvu"], "l0": stats["l0"]})

    print(f"training {len(names)} {cfg.kind}(s) on {run.path.name}: {', '.join(names)} "
          f"({cfg.n_features} features, {cfg.activation}{f' k={cfg.k}' if cfg.activation == 'topk' else ''}, "
          f"{cfg.tokens:,} tokens)", flush=True)
    t0 = time.perf_counter()
    try:
        trainer = train_crosslayer if cfg.kind == "clt" else train_dictionaries
        dictionaries = trainer(run.model, splits.train, cfg, digest, progress, should_stop=stop_file.exists)
    finally:
        if bar is not None:
            bar.close()
    if dictionaries is None:
        stop_file.unlink(missing_ok=True)
        atomic.write_json(progress_file, {"state": "stopped", "names": names})
        print("stopped: nothing was saved")
        return 1
    for name, d in zip(names, dictionaries):
        install(root, name, d, args.save_dtype)
    print(f"trained in {time.perf_counter() - t0:.1f} s; saved to {root}", flush=True)
    if args.eval:
        atomic.write_json(progress_file, {"state": "evaluating", "pid": os.getpid(), "names": names})
        evaluate_run(run, names, args.corpus)
    if args.label and args.kind != "clt":   # labels are per-layer dictionaries' (a CLT's are not written yet)
        atomic.write_json(progress_file, {"state": "labelling", "pid": os.getpid(), "names": names})
        label_run(run, names, args.corpus)
    atomic.write_json(progress_file, {"state": "done", "names": names, "seconds": time.perf_counter() - t0})
    return 0


def cmd_cast(args) -> int:
    """Re-save dictionaries in another on-disk dtype (atomically, folder by folder); their metrics are dropped,
    since they were measured on the old weights."""
    run = load_run(args.run_dir)
    good, broken = list_dictionaries(run.path, run.config, weights_digest(run.path / WEIGHTS))
    names = args.names or [d.name for d in good]
    unusable = {b.name: b.error for b in broken if b.name in names}
    missing = set(names) - {d.name for d in good} - set(unusable)
    if unusable or missing:
        why = [f"{n}: {e}" for n, e in unusable.items()] + [f"no dictionary named {n}" for n in sorted(missing)]
        raise DictionaryError("; ".join(why) + " (nothing was changed)")
    for d in good:
        if d.name in names and d.config.dtype == args.dtype:
            print(f"{d.name:<24} already {args.dtype}: unchanged")
        elif d.name in names:
            install(run.path / FOLDER, d.name, d.module, args.dtype)
            size = (run.path / FOLDER / d.name / "dictionary.safetensors").stat().st_size
            print(f"{d.name:<24} {d.config.dtype} -> {args.dtype} ({size / 1e6:.2f} MB); evaluate it again: "
                  f"gpt-features eval {args.run_dir} {d.name}")
    return 0


def cmd_list(args) -> int:
    run = load_run(args.run_dir)
    good, broken = list_dictionaries(run.path, run.config)
    for d in good:
        c = d.config
        k = f" k={c.k}" if c.activation == "topk" else ""
        print(f"{d.name:<24} {c.kind:<10} {c.input} -> {c.output} · {c.n_features} features · {c.activation}{k}")
        if d.metrics:
            print_metrics("", d.metrics)
    clts, broken_clts = list_crosslayers(run.path, run.config)
    for c in clts:
        k = f" k={c.config.k}" if c.config.activation == "topk" else ""
        print(f"{c.name:<24} {'clt':<10} blocks.i.mlp.in -> blocks.j.mlp.out (j >= i), {c.config.n_layers} layers · "
              f"{c.config.n_features} features per layer · {c.config.activation}{k}")
        if c.metrics:
            print_crosslayer_metrics("", c.metrics)
    for b in broken + broken_clts:
        print(f"{b.name:<24} not usable: {b.error}")
    if not good and not broken and not clts and not broken_clts:
        print(f"no dictionaries in {run.path / FOLDER}")
    return 0


def cmd_export(args) -> int:
    """NAME is one dictionary or a prefix P of P-L0..P-L{n-1}; saelens writes one folder per dictionary (OUT itself
    for one, OUT/<name> for several), circuit-tracer one transcoder set (a prefix, one per layer) in OUT."""
    from gpt.interp.features.export import export_circuit_tracer, export_circuit_tracer_clt, export_saelens
    run = load_run(args.run_dir)
    clt = next((c for c in list_crosslayers(run.path, run.config)[0] if c.name == args.name), None)
    if clt is not None:   # a cross-layer transcoder: circuit-tracer's CLT layout (SAELens has no such class)
        if args.format != "circuit-tracer":
            raise DictionaryError(f"{args.name} is a cross-layer transcoder: SAELens has no class for one; "
                                  "export it with --format circuit-tracer")
        export_circuit_tracer_clt(clt, args.out, scan=f"{run.path.name}/{args.name}", model_name=run.path.name,
                                  allow_topk=args.allow_topk)
        print(f"wrote {args.out}: circuit_tracer.transcoder.cross_layer_transcoder.load_clt({str(args.out)!r}, "
              f"feature_input_hook='mlp.hook_in', feature_output_hook='mlp.hook_out')")
        return 0
    good, broken = list_dictionaries(run.path, run.config)
    by_name = {d.name: d for d in good}
    refused = {b.name: b.error for b in broken}
    layered = [by_name.get(f"{args.name}-L{layer}") for layer in range(run.config.n_layer)]
    if args.name in by_name:
        chosen = [by_name[args.name]]
    elif any(layered):
        chosen = [d for d in layered if d is not None]
        if args.format == "circuit-tracer" and len(chosen) < len(layered):
            missing = [f"{args.name}-L{i}" for i, d in enumerate(layered) if d is None]
            raise DictionaryError(f"circuit-tracer needs one transcoder per layer; missing {', '.join(missing)}"
                                  + "".join(f" ({m}: {refused[m]})" for m in missing if m in refused))
    else:
        why = refused.get(args.name)
        raise DictionaryError(f"{args.name} is not usable: {why}" if why else
                              f"no dictionary {args.name} (nor {args.name}-L0...) in {run.path / FOLDER}; "
                              f"have: {', '.join(by_name) or 'none'}")
    out = Path(args.out)
    if args.format == "circuit-tracer":
        export_circuit_tracer(chosen, out, scan=f"{run.path.name}/{args.name}", model_name=run.path.name,
                              allow_topk=args.allow_topk)
        print(f"wrote {len(chosen)} layer file(s) and config.yaml to {out}; load with circuit_tracer.utils.caching."
              f"load_transcoders_from_cache({out.name!r}, cache_dir={str(out.parent)!r})")
        return 0
    for d in chosen:
        folder = export_saelens(d, out if len(chosen) == 1 else out / d.name, model_name=run.path.name)
        print(f"wrote {folder}: sae_lens.SAE.load_from_disk({str(folder)!r})")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="gpt-features", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    d = FeatureTrainConfig()
    t = sub.add_parser("train", help="train dictionaries on a run's activations")
    t.add_argument("run_dir")
    t.add_argument("--kind", choices=["transcoder", "sae", "clt"], default=d.kind,
                   help="clt: one cross-layer transcoder over every layer (one folder, default name 'clt')")
    t.add_argument("--layers", default="all", help="'all' or comma-separated layers, e.g. 0,2")
    t.add_argument("--site", default=d.site, help="SAEs: resid_pre, resid_mid or resid_post")
    t.add_argument("--activation", choices=["topk", "jumprelu", "relu"], default=d.activation)
    t.add_argument("--n-features", type=int, default=d.n_features)
    t.add_argument("--k", type=int, default=d.k, help="active features per token (TopK)")
    t.add_argument("--skip", action="store_true",
                   help="transcoders: add a dense linear skip path x @ W_skip beside the features (a skip transcoder)")
    t.add_argument("--tokens", type=int, default=d.tokens, help="training tokens per dictionary")
    t.add_argument("--lr", type=float, default=d.lr)
    t.add_argument("--seed", type=int, default=d.seed)
    t.add_argument("--name", default=None, help="folder name (with several layers: NAME-L<i>)")
    t.add_argument("--corpus", default=None, help="text to learn from (default: the run's own corpus)")
    t.add_argument("--threads", type=int, default=None, help="torch threads (default: every core)")
    t.add_argument("--no-eval", dest="eval", action="store_false", help="skip the evaluation after training")
    t.add_argument("--save-dtype", choices=list(DTYPES), default="float32",
                   help="how the weights are stored on disk (half precision halves the files; loading upcasts)")
    t.add_argument("--no-label", dest="label", action="store_false",
                   help="skip labelling the new features (gpt-features label) after training")
    lab = sub.add_parser("label", help="a label and a held-out score for every live feature (labels.json)")
    lab.add_argument("run_dir")
    lab.add_argument("names", nargs="*", help="dictionaries to label (default: all)")
    lab.add_argument("--corpus", default=None)
    lab.add_argument("--threads", type=int, default=None)
    e = sub.add_parser("eval", help="metrics over the whole validation split")
    e.add_argument("run_dir")
    e.add_argument("names", nargs="*", help="dictionaries to evaluate (default: all)")
    e.add_argument("--corpus", default=None)
    e.add_argument("--threads", type=int, default=None)
    c = sub.add_parser("cast", help="re-save dictionaries with their tensors in another dtype")
    c.add_argument("run_dir")
    c.add_argument("names", nargs="*", help="dictionaries to re-save (default: all)")
    c.add_argument("--dtype", choices=list(DTYPES), required=True)
    ls = sub.add_parser("list", help="the run's dictionaries and their metrics")
    ls.add_argument("run_dir")
    x = sub.add_parser("export", help="write dictionaries in SAELens' or circuit-tracer's layout")
    x.add_argument("run_dir")
    x.add_argument("name", help="a dictionary, or a prefix P of P-L0, P-L1, ... (e.g. transcoder)")
    x.add_argument("out", help="the folder to write")
    x.add_argument("--format", choices=["saelens", "circuit-tracer"], required=True)
    x.add_argument("--allow-topk", action="store_true",
                   help="circuit-tracer: write TopK transcoders although its loader reads them as ReLU (README)")
    args = p.parse_args(argv)
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    try:
        if args.command == "train":
            return cmd_train(args)
        if args.command == "export":
            return cmd_export(args)
        if args.command == "cast":
            return cmd_cast(args)
        if args.command == "label":
            label_run(load_run(args.run_dir), args.names or None, args.corpus)
            return 0
        if args.command == "eval":
            evaluate_run(load_run(args.run_dir), args.names or None, args.corpus)
            return 0
        return cmd_list(args)
    except (DictionaryError, RunError, CorpusError, LabelsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except json.JSONDecodeError as e:  # pragma: no cover - config files are checked before use
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
