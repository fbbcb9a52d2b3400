"""`python -m gpt.interp.features` (console script `gpt-features`): sparse dictionaries of a run's activations.

    gpt-features train RUN_DIR [--kind transcoder|sae] [--layers all|0,2] [--site resid_mid] [--n-features N]
                               [--k K] [--tokens N] [--name NAME] [--activation topk|jumprelu|relu]
    gpt-features eval RUN_DIR [NAME]
    gpt-features label RUN_DIR [NAME ...]
    gpt-features list RUN_DIR

train streams activations from the run's training text and writes features/<name>/ (config.json +
dictionary.safetensors) atomically, then evaluates each new dictionary on the whole validation split (--no-eval
skips it). eval prints variance explained, mean L0, dead and dense features and CE loss recovered and writes them
to features/<name>/metrics.json. label writes features/<name>/labels.json: a label and a held-out score for every
live feature (gpt/interp/features/labels.py); train runs it too (--no-label skips it). The file format and formula:
gpt/interp/features/dictionary.py and the README.
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

from gpt.data import CorpusError, load_corpus, split_ids
from gpt.interp.features.dictionary import (
    FOLDER,
    DictionaryError,
    check_name,
    list_dictionaries,
    save_dictionary,
    weights_digest,
    write_metrics,
)
from gpt.interp.features.evaluate import evaluate_dictionaries
from gpt.interp.features.labels import LabelsError
from gpt.interp.features.training import FeatureTrainConfig, train_dictionaries
from gpt.runs import WEIGHTS, RunError, atomic, load_run

PROGRESS = ".training.json"   # features/.training.json: what the app shows while a training runs
STOP = ".stop_request"        # features/.stop_request: the app's request to stop (a file of its own)


def default_names(cfg: FeatureTrainConfig, layers: list[int], name: str | None) -> list[str]:
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


def training_splits(run, corpus: str | None):
    spec = corpus or run.extra.get("corpus")
    if not spec:
        raise DictionaryError("this run does not record its corpus; pass --corpus (a built-in name or a text file) "
                              "to say which text to learn features from")
    text, _ = load_corpus(str(spec))
    return split_ids(run.tokenizer.encode(text), run.config.block_size)


def install(folder_root: Path, name: str, dictionary) -> Path:
    """Save into a temporary folder, then rename it into place: a stopped or killed training never leaves a
    half-written dictionary that a listing shows (temporary folders start with '.')."""
    tmp = folder_root / f"{atomic.TMP_PREFIX}{name}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    save_dictionary(tmp, dictionary)
    final = folder_root / name
    old = folder_root / f"{atomic.TMP_PREFIX}old-{name}.{os.getpid()}"
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def print_metrics(name: str, m: dict) -> None:
    print(f"{name:<24} variance explained {m['variance_explained']:.3f} · L0 {m['mean_l0']:.1f} · "
          f"dead {m['dead']} ({m['dead_share']:.1%}) · dense {m['dense']} ({m['dense_share']:.1%}) · "
          f"CE loss recovered {m['ce_loss_recovered']:.3f} (clean {m['loss_clean']:.3f}, spliced "
          f"{m['loss_spliced']:.3f}, zero {m['loss_zero']:.3f})")


def evaluate_run(run, names: list[str] | None, corpus: str | None = None) -> dict[str, dict]:
    chosen = chosen_dictionaries(run, names)
    val = training_splits(run, corpus).val
    t0 = time.perf_counter()
    results = evaluate_dictionaries(run.model, [d.module for d in chosen], val)
    out = {}
    for d, m in zip(chosen, results):
        m["eval_seconds"] = round(time.perf_counter() - t0, 1)
        write_metrics(d.path, m)
        print_metrics(d.name, m)
        out[d.name] = m
    return out


def chosen_dictionaries(run, names: list[str] | None):
    """The run's usable dictionaries named (all when names is None); broken ones are reported and skipped."""
    digest = weights_digest(run.path / WEIGHTS)
    good, broken = list_dictionaries(run.path, run.config, digest)
    for b in broken:
        if names is None or b.name in names:
            print(f"skipped {b.name}: {b.error}", file=sys.stderr)
    chosen = [d for d in good if names is None or d.name in names]
    missing = set(names or []) - {d.name for d in chosen} - {b.name for b in broken}
    if missing:
        raise DictionaryError(f"no dictionary named {', '.join(sorted(missing))} in {run.path / FOLDER}")
    if not chosen:
        raise DictionaryError(f"no usable dictionaries in {run.path / FOLDER}; train some with gpt-features train")
    return chosen


def label_run(run, names: list[str] | None, corpus: str | None = None) -> dict[str, dict]:
    """Label every live feature of the chosen dictionaries (labels.py) and write each labels.json; prints the
    score distribution."""
    from gpt.interp.features.labels import label_dictionaries, score_summary, write_labels
    chosen = chosen_dictionaries(run, names)
    val = training_splits(run, corpus).val
    bar = None
    if sys.stderr.isatty():
        from tqdm import tqdm
        bar = tqdm(total=1000, desc=f"labelling {len(chosen)} dictionar{'y' if len(chosen) == 1 else 'ies'}",
                   bar_format="{l_bar}{bar}| {elapsed}<{remaining}")

    def progress(fraction: float) -> None:
        if bar is not None:
            bar.update(int(1000 * fraction) - bar.n)
    t0 = time.perf_counter()
    try:
        results = label_dictionaries(run.model, chosen, run.tokenizer, val, progress)
    finally:
        if bar is not None:
            bar.close()
    out = {}
    for d, labels in zip(chosen, results):
        write_labels(d, labels)
        s = score_summary(labels)
        if s["labelled"]:
            print(f"{d.name:<24} {s['labelled']} live features labelled · held-out score quartiles {s['q1']:.2f} / "
                  f"{s['median']:.2f} / {s['q3']:.2f} · {s['strong_share']:.0%} score >= {labels['weak_below']}")
        else:
            print(f"{d.name:<24} no live features on this text")
        out[d.name] = labels
    print(f"labelled in {time.perf_counter() - t0:.1f} s; written to features/<name>/labels.json", flush=True)
    return out


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
        dictionaries = train_dictionaries(run.model, splits.train, cfg, digest, progress,
                                          should_stop=stop_file.exists)
    finally:
        if bar is not None:
            bar.close()
    if dictionaries is None:
        stop_file.unlink(missing_ok=True)
        atomic.write_json(progress_file, {"state": "stopped", "names": names})
        print("stopped: nothing was saved")
        return 1
    for name, d in zip(names, dictionaries):
        install(root, name, d)
    print(f"trained in {time.perf_counter() - t0:.1f} s; saved to {root}", flush=True)
    if args.eval:
        atomic.write_json(progress_file, {"state": "evaluating", "pid": os.getpid(), "names": names})
        evaluate_run(run, names, args.corpus)
    if args.label:
        atomic.write_json(progress_file, {"state": "labelling", "pid": os.getpid(), "names": names})
        label_run(run, names, args.corpus)
    atomic.write_json(progress_file, {"state": "done", "names": names, "seconds": time.perf_counter() - t0})
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
    for b in broken:
        print(f"{b.name:<24} not usable: {b.error}")
    if not good and not broken:
        print(f"no dictionaries in {run.path / FOLDER}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="gpt-features", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    d = FeatureTrainConfig()
    t = sub.add_parser("train", help="train dictionaries on a run's activations")
    t.add_argument("run_dir")
    t.add_argument("--kind", choices=["transcoder", "sae"], default=d.kind)
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
    ls = sub.add_parser("list", help="the run's dictionaries and their metrics")
    ls.add_argument("run_dir")
    args = p.parse_args(argv)
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    try:
        if args.command == "train":
            return cmd_train(args)
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
