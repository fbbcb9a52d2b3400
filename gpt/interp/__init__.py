"""The interpretability layer: what the app's "Look deeper" pages compute. The core imports it only for the
trainer's per-evaluation probes (gpt/lab/probes.py).

One way in: `run_with_cache(model, ids)` runs the model once through its named capture points (gpt.model.Trace)
and returns the recorded activations; every module here builds on it, and every bad request raises
`InterpError` with a message a page can show as it is.

    capture      run_with_cache, attention_patterns, check_ids, InterpError
    attention    a prompt's attention for the Attention page, per-head summaries, pooled thumbnails
    embeddings   token/position tables, PCA, cosine similarity, nearest neighbours
    next_token   the next-token distribution and its top entries
    detectors    previous-token / first-token / duplicate-token / induction scores per head, probes
    lens         the logit lens
    ablation     zeroing heads: loss change, changed predictions, re-generation
    token_loss   per-token loss over the validation text
    timemachine  replaying a run's snapshots (head scores, aligned embeddings)
    rundiff      two runs or snapshots on one prompt
    forward      forward_steps: one prediction recomputed stage by stage from the weights (landing page)
    neurons      MLP neurons: activations, top-activating validation contexts, promoted/suppressed tokens
    experiments  guided copy / reverse / sort tasks and their automatic checks
    attribution  direct logit attribution: each head / MLP / embedding's direct share of one logit
    patching     activation patching: how much of a clean-vs-corrupted difference flows through each activation
    steering     adding a vector to the residual stream while generating
"""
from gpt.interp.attribution import direct_logit_attribution
from gpt.interp.capture import ActivationCache, InterpError, attention_patterns, check_ids, run_with_cache
from gpt.interp.forward import ForwardSteps, forward_steps
from gpt.interp.patching import patch_heads, patch_mlps, patch_residual

__all__ = ["ActivationCache", "ForwardSteps", "InterpError", "attention_patterns", "check_ids", "forward_steps",
           "run_with_cache", "direct_logit_attribution", "patch_residual", "patch_heads", "patch_mlps"]
