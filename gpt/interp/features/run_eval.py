"""A run's dictionaries evaluated and labelled, as `gpt-features eval` and `gpt-features label` do it: which
dictionaries, the split they are read on, the whole-split metrics (every MLP replaced at once too), labels.json."""
from __future__ import annotations

import sys
import time

from gpt.data import corpus_splits, load_corpus
from gpt.interp.features.crosslayer import list_crosslayers
from gpt.interp.features.dictionary import (
    FOLDER,
    DictionaryError,
    list_dictionaries,
    weights_digest,
    write_metrics,
)
from gpt.interp.features.evaluate import evaluate_all_replaced, evaluate_dictionaries
from gpt.interp.features.stack import Transcoders
from gpt.runs import WEIGHTS


def training_splits(run, corpus: str | None):
    spec = corpus or run.extra.get("corpus")
    if not spec:
        raise DictionaryError("this run does not record its corpus; pass --corpus (a built-in name or a text file) "
                              "to say which text to learn features from")
    text, _ = load_corpus(str(spec))
    return corpus_splits(text, run.tokenizer, run.config.block_size)  # the split the run's trainer used


def print_metrics(name: str, m: dict) -> None:
    print(f"{name:<24} variance explained {m['variance_explained']:.3f} · L0 {m['mean_l0']:.1f} · "
          f"dead {m['dead']} ({m['dead_share']:.1%}) · dense {m['dense']} ({m['dense_share']:.1%}) · "
          f"CE loss recovered {m['ce_loss_recovered']:.3f} (clean {m['loss_clean']:.3f}, spliced "
          f"{m['loss_spliced']:.3f}, zero {m['loss_zero']:.3f})")


def print_crosslayer_metrics(name: str, m: dict) -> None:
    per_layer = " · ".join(f"L{i}: VE {ve:.3f}, L0 {l0:.1f}, dead {dead}" for i, (ve, l0, dead) in
                           enumerate(zip(m["variance_explained"], m["mean_l0"], m["dead"])))
    print(f"{name:<24} {per_layer} · CE loss recovered, every MLP replaced: {m['ce_loss_recovered_all']:.3f} "
          f"(clean {m['loss_clean']:.3f}, spliced {m['loss_spliced_all']:.3f}, zero {m['loss_zero_all']:.3f})")


def skip_broken(broken: list, names: list[str] | None) -> None:
    """Say on stderr which of the named (or of all) dictionaries cannot be used, and why."""
    for b in broken:
        if names is None or b.name in names:
            print(f"skipped {b.name}: {b.error}", file=sys.stderr)


def check_found(run, names: list[str] | None, found: set[str], broken: list) -> None:
    """DictionaryError when a named dictionary does not exist, or when none is usable."""
    missing = set(names or []) - found - {b.name for b in broken}
    if missing:
        raise DictionaryError(f"no dictionary named {', '.join(sorted(missing))} in {run.path / FOLDER}")
    if not found:
        raise DictionaryError(f"no usable dictionaries in {run.path / FOLDER}; train some with gpt-features train")


def evaluate_run(run, names: list[str] | None, corpus: str | None = None) -> dict[str, dict]:
    digest = weights_digest(run.path / WEIGHTS)
    good, broken = list_dictionaries(run.path, run.config, digest)
    clts, broken_clts = list_crosslayers(run.path, run.config, digest)
    skip_broken(broken + broken_clts, names)
    chosen = [d for d in good if names is None or d.name in names]
    check_found(run, names, {d.name for d in chosen} | {c.name for c in clts if names is None or c.name in names},
                broken + broken_clts)
    val = training_splits(run, corpus).val
    t0 = time.perf_counter()
    results = evaluate_dictionaries(run.model, [d.module for d in chosen], val) if chosen else []
    plt_set = transcoder_set(good, run.config.n_layer) if run.config.has_mlp else None
    all_replaced = {}
    if plt_set is not None and (names is None or set(names) & set(plt_set.names)):
        m = evaluate_all_replaced(run.model, plt_set, val)
        all_replaced = {k: m[k] for k in ("ce_loss_recovered_all", "loss_spliced_all", "loss_zero_all", "dictionaries")}
        print(f"{'every MLP replaced':<24} by {', '.join(plt_set.names)}: CE loss recovered "
              f"{m['ce_loss_recovered_all']:.3f} (clean {m['loss_clean']:.3f}, spliced {m['loss_spliced_all']:.3f}, "
              f"zero {m['loss_zero_all']:.3f})")
    out = {}
    for d, m in zip(chosen, results):
        m["eval_seconds"] = round(time.perf_counter() - t0, 1)
        if plt_set is not None and d.name in plt_set.names:
            m.update(all_replaced)
        write_metrics(d.path, m)
        print_metrics(d.name, m)
        out[d.name] = m
    for clt in clts:
        if names is None or clt.name in names:
            m = evaluate_all_replaced(run.model, Transcoders(clt=clt), val)
            m["eval_seconds"] = round(time.perf_counter() - t0, 1)
            write_metrics(clt.path, m)
            print_crosslayer_metrics(clt.name, m)
            out[clt.name] = m
    return out


def chosen_dictionaries(run, names: list[str] | None):
    """The run's usable dictionaries named (all when names is None); broken ones are reported and skipped."""
    digest = weights_digest(run.path / WEIGHTS)
    good, broken = list_dictionaries(run.path, run.config, digest)
    skip_broken(broken, names)
    chosen = [d for d in good if names is None or d.name in names]
    check_found(run, names, {d.name for d in chosen}, broken)
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


def transcoder_set(good: list, n_layer: int) -> Transcoders | None:
    """One transcoder per layer (transcoder-L{i} where there are several, else the first by name), or None."""
    chosen = []
    for layer in range(n_layer):
        options = sorted((d for d in good if d.config.kind == "transcoder" and d.config.layer == layer),
                         key=lambda d: (d.name != f"transcoder-L{layer}", d.name))
        if not options:
            return None
        chosen.append(options[0])
    return Transcoders(plts=chosen)
