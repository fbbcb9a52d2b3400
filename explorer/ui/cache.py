"""Every Streamlit cache of the app, in one place.

`st.cache_resource` holds shared objects (loaded eval-mode models: shared by all sessions, so never mutated or
hooked; capture per call with gpt.model.Trace); `st.cache_data` holds computed results. Each wrapper's
arguments are its cache key and are named for what they key: `weights_mtime` re-keys a run that is still
training, `snapshot_step` picks a time-machine snapshot (None = the latest weights).
"""
from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st

from explorer.jobs import training as jobs
from explorer.ui.scans import all_cores_unless_training
from explorer.ui.text import token_text
from gpt.data import CorpusError, load_corpus
from gpt.evaltext import evaluation_text, source_text
from gpt.interp.detectors import PROBES, build_probe, head_scores
from gpt.interp.embeddings import pca, token_embeddings
from gpt.interp.neurons import cached_top_contexts
from gpt.interp.timemachine import embedding_frames
from gpt.runs import WEIGHTS, RunError, load_run, snapshot_path


# ---- models ----
def weights_file(run_dir: Path, snapshot_step: int | None) -> Path:
    return snapshot_path(run_dir, snapshot_step) if snapshot_step is not None else run_dir / WEIGHTS


@st.cache_resource(max_entries=6, show_spinner="Loading model...")
def _load(run_dir: str, snapshot_step: int | None, weights_mtime: float):
    del weights_mtime  # part of the cache key only: a run still training reloads when its weights change
    return load_run(run_dir, step=snapshot_step)


def weights_mtime(run_dir: str | Path, snapshot_step: int | None = None) -> float:
    """When the weights were last written: the key that makes every cache below follow a run still training.
    Raises RunError with a clear message when there are none yet."""
    run_dir = Path(run_dir)
    weights = weights_file(run_dir, snapshot_step)
    try:
        return weights.stat().st_mtime
    except OSError as e:
        raise RunError(f"{run_dir.name} has no weights yet ({weights.name}); a run writes them at its first "
                       "evaluation") from e


def cached_run(run_dir: str | Path, snapshot_step: int | None = None):
    """The LoadedRun for a run folder (latest weights, or the snapshot at `snapshot_step`), loaded once per
    weights file and shared by every session (read only)."""
    return _load(str(run_dir), snapshot_step, weights_mtime(run_dir, snapshot_step))


@st.cache_resource(max_entries=8, show_spinner="Reading the run's feature dictionaries...")
def _dictionaries(run_dir: str, weights_mtime: float):
    del weights_mtime  # new weights: the digest check must run again
    from gpt.interp.features import list_dictionaries
    return list_dictionaries(run_dir, cached_run(run_dir).config)


def run_dictionaries(run_dir: str | Path):
    """(usable dictionaries, broken ones with their reason) of a run's features/ folder, checked against its latest
    weights (gpt.interp.features.list_dictionaries); shared read-only by every session."""
    return _dictionaries(str(run_dir), weights_mtime(run_dir))


@st.cache_resource(max_entries=8, show_spinner="Reading the run's cross-layer transcoders...")
def _crosslayers(run_dir: str, weights_mtime: float):
    del weights_mtime  # new weights: the digest check must run again
    from gpt.interp.features.crosslayer import list_crosslayers
    return list_crosslayers(run_dir, cached_run(run_dir).config)


def run_crosslayers(run_dir: str | Path):
    """(usable cross-layer transcoders, refused ones with their reason) of a run, as run_dictionaries."""
    return _crosslayers(str(run_dir), weights_mtime(run_dir))


def forget_dictionaries() -> None:
    """A dictionary training just finished: list the run's folders again."""
    _dictionaries.clear()
    _crosslayers.clear()


@st.cache_resource(max_entries=64, show_spinner=False)   # shared read-only: unpickling a copy cost 20 ms a read
def _labels(folder: str, labels_mtime: float, weights_mtime: float):
    del labels_mtime, weights_mtime  # part of the key only: a new labels.json or new weights are read again
    from gpt.interp.features.labels import LabelsError, load_labels
    try:
        return load_labels(folder), None
    except LabelsError as e:
        return None, str(e)


def feature_labels(dic):
    """(gpt.interp.features.labels.FeatureLabels or None, the note why there are none) of a loaded dictionary: its
    labels.json, checked against its weights file (labels of other weights are never shown). Shared by every
    session: read only."""
    from gpt.interp.features.dictionary import WEIGHTS_FILE
    from gpt.interp.features.labels import LABELS_FILE

    def mtime(path: Path) -> float:
        try:
            return path.stat().st_mtime
        except OSError:
            return 0.0
    folder = Path(dic.path)
    return _labels(str(folder), mtime(folder / LABELS_FILE), mtime(folder / WEIGHTS_FILE))


# ---- computed results ----
# The evaluation text (gpt/evaltext.py) is keyed by (source, pasted text): `pasted` is None unless the source is
# the learner's own text, so a built-in corpus is read once however many texts were pasted.
@st.cache_data(max_entries=8, show_spinner="Reading the evaluation text with this model's tokenizer...")
def _eval_text(run_dir: str, weights_mtime: float, source: str, pasted: str | None, pasted_name: str):
    del weights_mtime  # part of the key only: new weights may come with a new tokenizer (a run restarted in place)
    return evaluation_text(cached_run(run_dir), source, pasted, pasted_name)


def run_eval_text(run_dir: str | Path, source: str, pasted: str | None = None, pasted_name: str = "pasted text"):
    """gpt.evaltext.EvalText of a run for an evaluation-text source (CorpusError when it cannot be read)."""
    return _eval_text(str(run_dir), weights_mtime(run_dir), source, pasted, pasted_name)


@st.cache_data(max_entries=8, show_spinner=False)
def eval_source_text(run_corpus: str | None, source: str, pasted: str | None = None,
                     pasted_name: str = "pasted text") -> tuple[str, str]:
    """(label, raw text) of an evaluation-text source, untokenized (for default prompts; CorpusError passes)."""
    return source_text(run_corpus, source, pasted, pasted_name)


@st.cache_resource(max_entries=4, show_spinner="Finding where each neuron fires most in the evaluation text "
                  "(once per run, step and text; kept in the run folder)...")
def _top_contexts(run_dir: str, snapshot_step: int | None, weights_mtime: float, source: str, pasted: str | None,
                  pasted_name: str, n_tokens: int):
    del weights_mtime
    # a one-off scan takes every core while no trainer runs (shipped model, whole validation split, bf16: 5.1 s
    # on one thread, 2.8 s on two; bench/neurons.py)
    with all_cores_unless_training():
        return cached_top_contexts(cached_run(run_dir, snapshot_step),
                                   run_eval_text(run_dir, source, pasted, pasted_name).ids[:n_tokens])


def run_top_contexts(run_dir: str | Path, eval_key: tuple, n_tokens: int, snapshot_step: int | None = None):
    """gpt.interp.neurons.TopContexts of a run's MLP neurons over the first n_tokens of an evaluation text
    (eval_key: explorer.ui.eval_text.eval_key), read only (shared), kept on disk in the run folder too, so a restart
    does not scan again."""
    return _top_contexts(str(run_dir), snapshot_step, weights_mtime(run_dir, snapshot_step), *eval_key, n_tokens)


@st.cache_data(max_entries=256, show_spinner="Scoring every head...")
def _head_scores(run_dir: str, snapshot_step: int | None, weights_mtime: float, probe_kind: str, probe_seed: int,
                 eval_key: tuple | None):
    del weights_mtime
    loaded = cached_run(run_dir, snapshot_step)  # the model is only read; the capture lives in this call
    val = run_eval_text(run_dir, *eval_key).ids if probe_kind == PROBES[1] else None
    return head_scores(loaded.model, build_probe(loaded.model, probe_kind, probe_seed, val))


def run_head_scores(run_dir: str | Path, snapshot_step: int | None = None, probe_kind: str = PROBES[0],
                    probe_seed: int = 0, eval_key: tuple | None = None):
    """gpt.interp.detectors.HeadScores of a run (or one snapshot) on the chosen probe; the text probe reads the
    evaluation text eval_key = (source, pasted, pasted_name) (explorer.ui.eval_text.eval_key)."""
    if probe_kind != PROBES[1]:
        eval_key = None   # the random probe reads no text: one cache entry whatever text is chosen
    elif eval_key is None:
        raise CorpusError("the repeated-text probe needs an evaluation text")
    return _head_scores(str(run_dir), snapshot_step, weights_mtime(run_dir, snapshot_step), probe_kind, probe_seed,
                        eval_key)


@st.cache_data(max_entries=32, show_spinner="Running the model with and without those heads...")
def _ablation(run_dir: str, weights_mtime: float, eval_key: tuple, heads: tuple, prompt_ids: tuple):
    del weights_mtime
    from gpt.interp.ablation import ablate, loss_windows
    run = cached_run(run_dir)
    window, n_windows = loss_windows(run.config)
    return ablate(run.model, list(prompt_ids), run_eval_text(run_dir, *eval_key).ids, list(heads),
                  n_windows=n_windows, window=window)


def run_ablation(run_dir: str | Path, eval_key: tuple, heads: tuple, prompt_ids: tuple):
    """gpt.interp.ablation.AblationResult of zeroing `heads` ((layer, head) pairs), measured on the evaluation text
    eval_key and the prompt; kept per choice, so a rerun with the same heads costs nothing (InterpError passes)."""
    return _ablation(str(run_dir), weights_mtime(run_dir), eval_key, tuple(heads), tuple(prompt_ids))


@dataclass(frozen=True)
class VocabMap:
    """What the Embeddings page draws of a token table, computed once per weights (GPT-2 small: 50,257 rows)."""
    points: np.ndarray      # (V, 3) the tokens on the first three principal components (2D shows the first two)
    explained: np.ndarray   # (3,) share of the variance each component keeps
    labels: list[str]       # each token as the pages show it (explorer.ui.text.token_text)
    norms: np.ndarray       # (V,) each row's length, for cosine neighbours without a second pass


@st.cache_resource(max_entries=4, show_spinner="Projecting every token's embedding (once per weights)...")
def _vocab_map(run_dir: str, snapshot_step: int | None, weights_mtime: float) -> VocabMap:
    del weights_mtime

    run = cached_run(run_dir, snapshot_step)
    emb = token_embeddings(run.model)
    proj = pca(emb, 3)
    return VocabMap(proj.points.astype(np.float32), proj.explained,
                    [token_text(run.tokenizer, i) for i in range(len(emb))], np.linalg.norm(emb, axis=1))


def vocab_map(run_dir: str | Path, snapshot_step: int | None = None) -> VocabMap:
    """The Embeddings page's projection and labels of a run's whole vocabulary (read only: shared by sessions)."""
    return _vocab_map(str(run_dir), snapshot_step, weights_mtime(run_dir, snapshot_step))


@st.cache_data(max_entries=32, show_spinner="Aligning embeddings across snapshots...")
def snapshot_embedding_frames(run_dir: str, snapshot_steps: tuple[int, ...]):
    """gpt.interp.timemachine.embedding_frames over the given snapshot steps (snapshots never change)."""
    return embedding_frames(run_dir, list(snapshot_steps))[1]


@st.cache_data(max_entries=8, show_spinner="Reading the corpus...")
def corpus_text(corpus_spec: str) -> tuple[str, str | None]:
    """(text, error) of a corpus spec: a built-in name or a file path; text is "" when it cannot be read."""
    try:
        return load_corpus(corpus_spec)[0], None
    except (CorpusError, OSError) as e:
        return "", str(e)


@st.cache_data(max_entries=4, show_spinner="Counting tokens in the corpus...")
def corpus_token_counts(run_dir: str, corpus_spec: str, n_chars: int) -> tuple[dict[int, int], int]:
    """({token id: count}, characters counted) over the first n_chars of a run's corpus, with its tokenizer."""
    text = corpus_text(corpus_spec)[0][:n_chars]
    tok = cached_run(run_dir).tokenizer
    if not text or tok.unknown_chars(text):
        return {}, 0
    return dict(Counter(tok.encode(text))), len(text)


# ---- Why this token / Patching / Steering ----


PATCHING_KEPT = 16   # prompt pairs whose grids the server keeps (a few MB each at GPT-2 small's size)


@st.cache_resource
def _patching_results() -> OrderedDict:
    """{(run, weights mtime, clean, corrupted, answer, wrong): grids}, shared by every session, newest last. Not
    st.cache_data: the computation reports progress to the page that asked (explorer/ui/scans.py)."""
    return OrderedDict()


def known_patching_grids(*key) -> dict | None:
    """The grids of patching_grids(*key) when some session computed them already, else None."""
    found = _patching_results().get(key)
    return None if found is None else dict(found)


def patching_grids(run_path: str, weights_mtime: float, clean_ids: tuple, corrupted_ids: tuple, answer: int,
                   wrong: int, progress=None) -> dict:
    """The three patching results for one prompt pair (numpy), and the baselines; kept for every session.
    weights_mtime keys a run whose weights moved on; InterpError passes through (nothing is kept);
    progress(fraction done) as in gpt.interp.patching.recovered_fractions."""
    from gpt.interp.patching import patch_heads, patch_mlps, patch_residual, patching_baseline
    key = (run_path, weights_mtime, clean_ids, corrupted_ids, answer, wrong)
    found = known_patching_grids(*key)
    if found is not None:
        return found
    model = cached_run(run_path).model
    cfg = model.config
    args = (model, list(clean_ids), list(corrupted_ids), answer, wrong)
    # each grid's share of the work: its number of patched forward rows
    rows = [(cfg.n_layer + 1) * len(clean_ids), cfg.n_layer * cfg.effective_n_head, cfg.n_layer if cfg.has_mlp else 0]
    total = sum(rows)

    def part(before: int, size: int):
        return None if progress is None else (lambda f: progress((before + f * size) / total))
    base = patching_baseline(*args)
    grids = {"residual": patch_residual(*args, progress=part(0, rows[0])).numpy(),
             "heads": patch_heads(*args, progress=part(rows[0], rows[1])).numpy(),
             "mlps": patch_mlps(*args, progress=part(rows[0] + rows[1], rows[2])).numpy() if cfg.has_mlp else None,
             "clean": base.clean_metric, "corrupted": base.corrupted_metric}
    kept = _patching_results()
    kept[key] = grids
    while len(kept) > PATCHING_KEPT:
        kept.popitem(last=False)
    return dict(grids)


# ---- training speed (the Train form's expected wall time) ----
@st.cache_data(max_entries=64, show_spinner="Timing a few training steps of this shape on this machine...")
def _timing(model_json: str, train_json: str, threads: int) -> dict:
    import json

    from explorer.jobs.train_form import measure_timing
    from gpt.config import GPTConfig, TrainConfig
    return measure_timing(GPTConfig.from_dict(json.loads(model_json)), TrainConfig.from_dict(json.loads(train_json)),
                          threads)


def training_timing(model, train, threads: int) -> dict:
    """Seconds per step / per evaluation batch / start-up for a shape on this machine, measured once per shape
    (explorer.jobs.train_form.measure_timing also remembers it on disk for a day)."""
    import json
    return _timing(json.dumps(model.to_dict(), sort_keys=True), json.dumps(train.to_dict(), sort_keys=True),
                   threads)


# ---- the sidebar's training status ----
@st.cache_data(ttl=1.0, max_entries=4, show_spinner=False)
def shared_live_jobs(checkpoints_root: str) -> list:
    """explorer.jobs.training.live_jobs, shared by every open tab for a second (each tab polls the sidebar status)."""
    return jobs.live_jobs(checkpoints_root)
