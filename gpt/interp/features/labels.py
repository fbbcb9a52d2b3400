"""A label and a score for every live feature of a dictionary, without a language model.

What it fires on: a *rule* from the small families of predicates in gpt/interp/features/rules.py (the current token,
the token after 1-3 given tokens, character classes, the k-th letter of a word or line, a place after a blank line,
and the token at such a place; up to three values of one family, or "at least k" for a place). It predicts the
feature's fitted mean activation on the tokens of each of its values, and 0 on every other token.

* **Fitted** on half of the run's validation split (the even-numbered 1,024-token blocks; `split="halves"` fits on
  the first half instead): for every family, every feature and every value at once (a bincount over the feature's
  non-zero activations), the Pearson correlation between the rule's prediction and the activation, in closed form;
  per feature, the rule with the best correlation wins (a simpler rule wins a near tie).
* **Scored** on the other half (the odd-numbered blocks, held out: not used to choose or fit the rule): the Pearson
  correlation between the rule's prediction and the feature's activation over every token of that half (`score`),
  and the F1 of "the rule applies" against "the feature fires" (`f1`). Alternating blocks put every scene in both.

What it does: its decoder row read through the unembedding (W_U @ W_dec[f], the direct path, as the feature card
shows it): the tokens it promotes most, and what it suppresses (a class such as "capitals" when most of the tokens
it lowers most are of one class): the label reads "`m` after `co` → f p b; not capitals". Stored as
features/<name>/labels.json, keyed to the weights file by sha256: a label never outlives its features.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from gpt.interp.features.cards import sparse_activations, sparse_activations_of
from gpt.interp.features.dictionary import WEIGHTS_FILE, LoadedDictionary, weights_digest
from gpt.interp.features.rules import CLASSES, PLURAL, Family, char_class, families
from gpt.runs import atomic
from gpt.token_display import display_token as token_label

LABELS_FILE = "labels.json"
FORMAT = "gpt-explorer feature labels v1"
MEASURE = ("pearson: correlation between the rule's predicted activation and the feature's activation over every "
           "token of the held-out text")
WEAK_BELOW = 0.5
MAX_VALUES = 3          # values one rule may hold ("`a`, `e` or `o`")
MIN_COUNT = 3           # a value must occur this often in the fitting half to be chosen
TIE = 0.01              # a rule one step more complex must beat a simpler one by this much of correlation
N_PROMOTES = 3          # promoted tokens a label names
SUPPRESS_LOOK = 8       # the tokens lowered most, read for a class ("suppresses capitals")
BLOCK = 1024            # tokens per block of the "blocks" split
SPLITS = {  # how the validation split is cut into a fitting part and a held-out part: (fit, held out)
    "blocks": (f"the even-numbered {BLOCK:,}-token blocks", f"the odd-numbered {BLOCK:,}-token blocks"),
    "halves": ("the first half", "the second half"),
}


def fitting_tokens(n_tokens: int, split: str) -> torch.Tensor:
    """(n_tokens,) True where a token belongs to the fitting part: alternate BLOCK-token blocks ("blocks", so both
    parts hold every scene), or the first half ("halves")."""
    if split not in SPLITS:
        raise LabelsError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    at = torch.arange(n_tokens)
    return at < n_tokens // 2 if split == "halves" else (at // BLOCK) % 2 == 0


class LabelsError(ValueError):
    """labels.json that cannot be used: the message says why."""


@dataclass
class Candidate:
    family: Family
    values: list[int]          # the family's keys the rule holds
    at_least: bool             # an ordinal "key >= values[0]" rule
    fit_corr: float


def _closed_form_fits(fam: Family, count: torch.Tensor, f_idx, keys, vals, n_features: int, n_tokens: int, mu, sd
                      ) -> list[Candidate | None]:
    """The best rule of one family for every feature, by the correlation on the fitting text. count (K,): the
    fitting text's tokens with each key; f_idx, keys, vals: its non-zero activations (feature, key, value)."""
    K = fam.size
    count = count.double()
    pair = f_idx * K + keys                                                   # (nnz,)
    distinct, inverse = torch.unique(pair, return_inverse=True)
    sums = torch.zeros(distinct.numel(), dtype=torch.float64).index_add_(0, inverse, vals.double())
    feat, value = distinct // K, distinct % K
    c = count[value]
    p = c / n_tokens
    mean = sums / c
    # corr(1_v, a) = p (mean_v - mu) / (sqrt(p (1 - p)) sd): one value of the family as the rule
    corr = p * (mean - mu[feat]) / ((p * (1 - p)).clamp(min=1e-12).sqrt() * sd[feat])
    ok = (c >= MIN_COUNT) & (mean > 0)
    if fam.zero_is_none:
        ok &= value > 0
    corr = torch.where(ok, corr, torch.full_like(corr, -2.0))
    order = torch.argsort(corr, descending=True)
    order = order[torch.argsort(feat[order], stable=True)]                   # by feature, best value first
    feat_o, value_o, corr_o, mean_o, p_o = feat[order], value[order], corr[order], mean[order], p[order]
    starts = torch.searchsorted(feat_o, torch.arange(n_features))
    ends = torch.searchsorted(feat_o, torch.arange(n_features), right=True)
    best: list[Candidate | None] = [None] * n_features
    value_l, corr_l, mean_l, p_l = value_o.tolist(), corr_o.tolist(), mean_o.tolist(), p_o.tolist()
    mu_l, sd_l = mu.tolist(), sd.tolist()
    for f in (ends > starts).nonzero().flatten().tolist():
        s, e = int(starts[f]), int(ends[f])
        if corr_l[s] <= -1.5:
            continue
        # greedily add the next-best compatible value while it helps; each value is predicted by its own mean, so
        # corr = (Q - P mu) / (sqrt(Q - P^2) sd) with Q = sum p_v mean_v^2, P = sum p_v mean_v
        taken, Q, P, chosen = [], 0.0, 0.0, -2.0
        for j in range(s, min(e, s + 4 * MAX_VALUES)):
            if corr_l[j] <= -1.5 or len(taken) == MAX_VALUES:
                break
            v = value_l[j]
            if taken and not fam.compatible(taken, v):
                continue
            q, pp = Q + p_l[j] * mean_l[j] ** 2, P + p_l[j] * mean_l[j]
            r = (q - pp * mu_l[f]) / (max(q - pp * pp, 1e-24) ** 0.5 * sd_l[f])
            if r > chosen + (TIE if taken else 0.0):
                taken, Q, P, chosen = taken + [v], q, pp, r
        best[f] = Candidate(fam, taken, False, chosen - TIE * fam.complexity)
    if fam.ordinal:   # "at least k": one mean over every key >= k
        dense = torch.zeros(n_features, K, dtype=torch.float64)
        dense[feat, value] = sums
        tail_sum = dense.flip(1).cumsum(1).flip(1)                            # (n, K) sum over keys >= k
        tail_p = count.flip(0).cumsum(0).flip(0) / n_tokens                   # (K,)
        tail_p = tail_p[2:].clamp(min=1e-12, max=1 - 1e-12)                   # k >= 2: k = 1 is "any letter"
        m = tail_sum[:, 2:] / (tail_p * n_tokens)
        r = tail_p * (m - mu[:, None]) / ((tail_p * (1 - tail_p)).sqrt() * sd[:, None])   # (n, K - 2)
        r = torch.where(m > 0, r, torch.full_like(r, -2.0)) - TIE
        r_best, k_best = r.max(1)
        for f in (r_best > -1).nonzero().flatten().tolist():
            if best[f] is None or float(r_best[f]) > best[f].fit_corr:
                best[f] = Candidate(fam, [int(k_best[f]) + 2], True, float(r_best[f]))
    return best


def _predict(c: Candidate, keys: torch.Tensor, means: dict[int, float]) -> torch.Tensor:
    if c.at_least:
        return torch.where(keys >= c.values[0], means[c.values[0]], 0.0)
    table = torch.zeros(c.family.size)
    for v in c.values:
        table[v] = means[v]
    return table[keys]


def _pearson(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x.double() - x.double().mean(), y.double() - y.double().mean()
    denom = (x.square().sum() * y.square().sum()).sqrt()
    return float((x * y).sum() / denom) if denom > 0 else 0.0


def _f1(predicted: torch.Tensor, fires: torch.Tensor) -> float:
    tp = float((predicted & fires).sum())
    denom = float(predicted.sum() + fires.sum())
    return 2 * tp / denom if denom else 0.0


def output_effect(model, dictionary, tokenizer) -> tuple[list[list[str]], list[list[str]], list[str | None]]:
    """Per feature: the tokens its decoder row promotes most (display forms), the ones it suppresses most, and the
    class it suppresses ("capitals") when most of its SUPPRESS_LOOK most-lowered tokens are of one class."""
    with torch.no_grad():
        effect = dictionary.W_dec.float() @ model.lm_head.weight.float().T      # (n, vocab)
    shown = [token_label(tokenizer, i) for i in range(effect.size(1))]
    cls = [char_class(tokenizer.decode([i])) for i in range(effect.size(1))]
    up = effect.topk(N_PROMOTES, dim=1).indices.tolist()
    down = (-effect).topk(min(SUPPRESS_LOOK, effect.size(1)), dim=1).indices.tolist()
    promotes = [[shown[i] for i in row] for row in up]
    suppresses = [[shown[i] for i in row[:N_PROMOTES]] for row in down]
    classes = []
    for row in down:
        counts = torch.bincount(torch.tensor([cls[i] for i in row]), minlength=len(CLASSES))
        top = int(counts.argmax())
        classes.append(PLURAL[CLASSES[top]] if counts[top] >= 0.75 * len(row) else None)
    return promotes, suppresses, classes


def label_text(rule: str, promotes: list[str], suppressed_class: str | None) -> str:
    return f"{rule} → {' '.join(promotes)}" + (f"; not {suppressed_class}" if suppressed_class else "")


def rule_string(c: Candidate) -> str:
    """Machine-readable: "<family> in [keys]" or "<family> >= k" (keys as rules.families numbers them)."""
    return f"{c.family.name} >= {c.values[0]}" if c.at_least else f"{c.family.name} in {json.dumps(c.values)}"


def check_text(model, ids: torch.Tensor) -> torch.Tensor:
    ids = torch.as_tensor(ids, dtype=torch.long).flatten()
    if ids.numel() < 4 * model.config.block_size:
        raise LabelsError(f"the labelling text is too short ({ids.numel()} tokens; need at least "
                          f"{4 * model.config.block_size}, two block sizes for each half)")
    return ids


@torch.no_grad()
def label_dictionaries(model, dictionaries: list[LoadedDictionary], tokenizer, ids: torch.Tensor, progress=None,
                       split: str = "blocks") -> list[dict]:
    """label_features for several dictionaries of one model, with one forward pass over the text for all of them.
    progress(fraction) as there."""
    ids = check_text(model, ids)
    if not dictionaries:
        return []
    share = 0.4   # of the work: the forward pass; the rest is split evenly between the dictionaries

    def report(fraction: float) -> None:
        if progress is not None:
            progress(min(1.0, fraction))
    found = sparse_activations_of(model, [d.module for d in dictionaries], ids, lambda f: report(share * f))
    fams = families(tokenizer, ids[:found[0][3]])
    step = (1 - share) / len(dictionaries)
    return [label_features(model, d, tokenizer, ids, activations=act, fams=fams, split=split,
                           progress=lambda f, i=i: report(share + step * (i + f)))
            for i, (d, act) in enumerate(zip(dictionaries, found))]


@torch.no_grad()
def label_features(model, loaded: LoadedDictionary, tokenizer, ids: torch.Tensor, progress=None,
                   activations=None, fams: list[Family] | None = None, split: str = "blocks") -> dict:
    """The labels.json content (module docstring) of one dictionary over ids (the run's validation split: the first
    half fits, the second half scores). progress(fraction) is called as the work goes (it may raise to stop).
    activations (cards.sparse_activations of this dictionary over ids) and fams (rules.families of the tokens read)
    are computed when not given."""
    ids = check_text(model, ids)

    def report(fraction: float) -> None:
        if progress is not None:
            progress(min(1.0, fraction))
    if activations is None:
        activations = sparse_activations(model, loaded.module, ids, lambda f: report(0.6 * f))
        report_from = 0.6
    else:
        report_from = 0.0
    pos, feat, val, n_read = activations
    n = loaded.config.n_features
    is_fit = fitting_tokens(n_read, split)                                  # (n_read,) bool
    fit_at = is_fit.nonzero().flatten()                                      # positions of the fitting tokens
    held_at = (~is_fit).nonzero().flatten()
    half, n_held = fit_at.numel(), held_at.numel()
    rank = torch.zeros(n_read, dtype=torch.long)                             # position -> index within its part
    rank[fit_at] = torch.arange(half)
    rank[held_at] = torch.arange(n_held)
    fams = fams or families(tokenizer, ids[:n_read])
    fit = is_fit[pos]
    held = ~fit
    f_fit, p_fit, v_fit = feat[fit], pos[fit], val[fit]
    sums = torch.bincount(f_fit, weights=v_fit.double(), minlength=n)
    sq = torch.bincount(f_fit, weights=v_fit.double().square(), minlength=n)
    mu = sums / half
    sd = (sq / half - mu.square()).clamp(min=0).sqrt().clamp(min=1e-12)
    best: list[Candidate | None] = [None] * n
    counts = {}   # family name -> (K,) fitting-text tokens with each key
    for i, fam in enumerate(fams):
        counts[fam.name] = torch.bincount(fam.keys[fit_at], minlength=fam.size)
        for f, c in enumerate(_closed_form_fits(fam, counts[fam.name], f_fit, fam.keys[p_fit], v_fit, n, half, mu, sd)):
            if c is not None and (best[f] is None or c.fit_corr > best[f].fit_corr):
                best[f] = c
        report(report_from + (0.85 - report_from) * (i + 1) / len(fams))
    promotes, suppresses, classes = output_effect(model, loaded.module, tokenizer)
    density = torch.bincount(feat, minlength=n).double() / max(1, n_read)
    # the held-out half, one feature at a time: its activations dense, the rule's prediction, two measures
    def by_feature(mask):
        order = torch.argsort(feat[mask], stable=True)
        f_sorted = feat[mask][order]
        return pos[mask][order], val[mask][order], torch.searchsorted(f_sorted, torch.arange(n + 1))
    p_held, v_held, starts = by_feature(held)
    p_fit_f, v_fit_f, starts_fit = by_feature(fit)
    out = {}
    for f in range(n):
        if density[f] == 0:
            continue   # dead on this text: no label
        entry = {"promotes": promotes[f], "suppresses": suppresses[f], "density": round(float(density[f]), 6)}
        c = best[f]
        act = torch.zeros(n_held)
        a, b = int(starts[f]), int(starts[f + 1])
        act[rank[p_held[a:b]]] = v_held[a:b]
        if c is None:
            entry.update(label=label_text("too rare to label", promotes[f], classes[f]), score=0.0, f1=0.0,
                         rule=None)
        else:
            fam_fit, fam_held = c.family.keys, c.family.keys[held_at]
            a, b = int(starts_fit[f]), int(starts_fit[f + 1])
            fired_keys, fired_vals = fam_fit[p_fit_f[a:b]], v_fit_f[a:b].double()
            count = counts[c.family.name]
            if c.at_least:
                k = c.values[0]
                means = {k: float(fired_vals[fired_keys >= k].sum() / max(1, int(count[k:].sum())))}
            else:
                means = {v: float(fired_vals[fired_keys == v].sum() / max(1, int(count[v]))) for v in c.values}
            pred = _predict(c, fam_held, means)
            entry.update(label=label_text(c.family.describe_set(c.values, c.at_least), promotes[f], classes[f]),
                         score=round(_pearson(pred, act), 4), f1=round(_f1(pred > 0, act > 0), 4),
                         rule=rule_string(c), rule_means=[round(means[v], 5) for v in means])
        entry["weak"] = entry["score"] < WEAK_BELOW
        out[str(f)] = entry
        if f % 64 == 0:
            report(0.85 + 0.15 * f / n)
    report(1.0)
    return {"format": FORMAT, "dictionary": loaded.name,
            "weights_digest": weights_digest(Path(loaded.path) / WEIGHTS_FILE),
            "fit_text": f"{SPLITS[split][0]} of the validation split ({half:,} tokens)",
            "scored_on": f"{SPLITS[split][1]} of the validation split ({n_held:,} tokens, held out from fitting)",
            "measure": MEASURE, "weak_below": WEAK_BELOW, "f1": "F1 of 'the rule applies' against 'the feature "
            "fires (activation > 0)' over the held-out tokens", "features": out}


def write_labels(loaded: LoadedDictionary, labels: dict) -> Path:
    """labels.json: the header fields one per line, then one compact line per feature (4,096 features: ~1 MB)."""
    head = json.dumps({k: v for k, v in labels.items() if k != "features"}, indent=1, ensure_ascii=False)[:-2]
    rows = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v, ensure_ascii=False, separators=(',', ':'))}"
                       for k, v in labels["features"].items())
    atomic.write_text(Path(loaded.path) / LABELS_FILE, f'{head},\n "features": {{\n{rows}\n }}\n}}\n')
    return Path(loaded.path) / LABELS_FILE


def read_labels(folder: str | Path) -> dict:
    """labels.json of a dictionary folder, checked against the folder's weights file. LabelsError when it is
    absent, unreadable, of another format, or made for other weights (never trusted then)."""
    folder = Path(folder)
    try:
        data = json.loads((folder / LABELS_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LabelsError(f"{folder.name} has no {LABELS_FILE} yet (gpt-features label RUN)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise LabelsError(f"{folder.name}/{LABELS_FILE} is not readable JSON ({e})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("features"), dict):
        raise LabelsError(f"{folder.name}/{LABELS_FILE} is not in the format {FORMAT!r}")
    try:
        digest = weights_digest(folder / WEIGHTS_FILE)
    except OSError as e:
        raise LabelsError(f"{folder.name}: cannot read {WEIGHTS_FILE} to check the labels ({e})") from None
    if data.get("weights_digest") != digest:
        raise LabelsError(f"{folder.name}/{LABELS_FILE} describes other weights than {WEIGHTS_FILE} (the dictionary "
                          "was trained again); ignored: run gpt-features label again")
    return data


def score_summary(labels: dict) -> dict:
    """Quartiles of the held-out scores and the share at or above weak_below."""
    scores = torch.tensor([e["score"] for e in labels["features"].values()], dtype=torch.float64)
    if scores.numel() == 0:
        return {"labelled": 0}
    q = torch.quantile(scores, torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)).tolist()
    return {"labelled": scores.numel(), "q1": q[0], "median": q[1], "q3": q[2],
            "strong_share": float((scores >= labels.get("weak_below", WEAK_BELOW)).double().mean())}


@dataclass
class FeatureLabels:
    """A dictionary's labels.json, read and checked (read_labels), for display."""
    features: dict[int, dict]     # feature index -> its entry (label, score, f1, rule, promotes, ...)
    weak_below: float
    measure: str
    scored_on: str

    def entry(self, feature: int) -> dict | None:
        return self.features.get(int(feature))

    def is_weak(self, feature: int) -> bool:
        e = self.entry(feature)
        return e is None or not e.get("score", 0.0) >= self.weak_below

    def text(self, feature: int, plain: bool = False) -> str:
        """The label ("" when the feature has none); ", weak" appended when its score is below weak_below; plain
        turns the markdown code spans into quotes (for plot labels, which show backticks as they are)."""
        e = self.entry(feature)
        if e is None:
            return ""
        label = str(e.get("label", ""))
        if plain:
            label = plain_label(label)
        return label + (" (weak)" if self.is_weak(feature) else "")


def plain_label(label: str) -> str:
    """`m` after `co` -> 'm' after 'co'."""
    return label.replace("``", "'").replace("`", "'")


def load_labels(folder: str | Path) -> FeatureLabels:
    """read_labels as a FeatureLabels (LabelsError passes through)."""
    data = read_labels(folder)
    features = {}
    for key, entry in data["features"].items():
        if isinstance(entry, dict) and str(key).isdigit() and isinstance(entry.get("label"), str):
            features[int(key)] = entry
    return FeatureLabels(features, float(data.get("weak_below", WEAK_BELOW)), str(data.get("measure", MEASURE)),
                         str(data.get("scored_on", "")))


def labels_by_layer(transcoders: list[LoadedDictionary]) -> dict[int, FeatureLabels]:
    """{layer: FeatureLabels} of the transcoders that have usable labels.json files (the rest are left out)."""
    out = {}
    for t in transcoders:
        try:
            out[t.config.layer] = load_labels(t.path)
        except LabelsError:
            pass
    return out


def node_clerps(graph, by_layer: dict[int, FeatureLabels]) -> dict[str, str]:
    """{node key: label} for the feature nodes of an attribution graph, the `clerp` of its JSON (to_json's labels)."""
    return {n.key: by_layer[n.layer].text(n.index) for n in graph.nodes
            if n.kind == "feature" and n.layer in by_layer and by_layer[n.layer].entry(n.index) is not None}
