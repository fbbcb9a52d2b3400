"""A Neuronpedia-style feature card, drawn where a feature is opened: the Features page and the Circuit page.

The numbers come from gpt.interp.features.cards (one scan per dictionary and text, cached in its folder).
"""
import streamlit as st

from explorer.figures.features import activation_histogram, density_figure
from explorer.figures.inside import effect_bars
from explorer.ui.cache import feature_labels
from explorer.ui.eval_text import eval_caption, eval_key, eval_text_or_note
from explorer.ui.feature_labels import label_markdown, score_markdown
from explorer.ui.scans import forget_stop, run_scan, was_stopped
from explorer.ui.text import chips_html, raw_token, token_text
from gpt.interp.features.cards import cached_scan, feature_logit_effect, is_card_scanned


def draw_feature_card(run, dic, feature: int, key: str = "card") -> None:
    """Density among all features, activation histogram, top and quantile contexts, promoted/suppressed tokens.
    `key` keeps the widget keys apart when a page draws more than one card."""
    tok = run.tokenizer
    st.subheader(f"Feature #{feature} of {dic.name}")
    labels, why_none = feature_labels(dic)
    if labels is not None and labels.entry(feature) is not None:
        st.markdown(f"**Label:** {label_markdown(labels, feature)} · {score_markdown(labels, feature)}")
        st.caption(f"Found without a language model: the rule (what it fires on) that best predicts its activation, "
                   f"chosen on half of the validation text and scored on the other half ({labels.measure}); "
                   "after → the tokens its decoder promotes most through the unembedding.")
    elif labels is not None:
        st.caption("No label: this feature never fired on the labelling text.")
    else:
        st.caption(f"No labels for {dic.name}: {why_none}")
    # a note, not st.stop(): the Circuit page draws this card inside its own page and goes on after it
    evaluation = eval_text_or_note(run, "A feature card")
    if evaluation is None:
        return
    val = evaluation.ids
    request = (str(dic.path), eval_key(run))
    if not is_card_scanned(dic, val):
        if was_stopped(f"{key}_scan", request):
            st.caption("The scan was stopped; nothing of it was kept.")
            if st.button(f"Scan the evaluation text with {dic.name} ({len(val):,} tokens; once, kept in its folder)",
                         key=f"{key}_scan_again"):
                forget_stop(f"{key}_scan")
                st.rerun()
            return
        scan = run_scan(f"{key}_scan", request, f"Scanning {len(val):,} tokens of the evaluation text with {dic.name} "
                        "(once per text; kept in its folder)", lambda progress: cached_scan(run.model, dic, val, progress))
        if scan is None:
            st.rerun()
    else:
        scan = cached_scan(run.model, dic, val)   # read back from the folder
    density = float(scan.density[feature])
    st.write(f"Fires on **{density:.2%}** of the {scan.n_tokens:,} evaluation-text tokens; its largest activation "
             f"is **{float(scan.top_values[feature, 0]):.2f}**.")
    st.caption(eval_caption(evaluation))
    c1, c2 = st.columns(2)
    with c1:
        st.plotly_chart(density_figure(scan.density.tolist(), density, feature), key=f"{key}_density")
        st.caption("How often each feature of this dictionary fires (one bar = many features); the orange line is "
                   "this one. Far left = rare and specific, far right = common.")
    with c2:
        st.plotly_chart(activation_histogram(scan.hist[feature].tolist(), float(scan.top_values[feature, 0])),
                        key=f"{key}_activation_hist")
        st.caption("How strongly it fires when it does (log scale): most firings are weak; the top contexts below "
                   "are the rare strong ones.")

    def context_rows(values, positions) -> str:
        rows = []
        for value, p in zip(values, positions):
            if p < 0:
                continue
            before, after = val[max(0, p - 32):p].tolist(), val[p + 1:p + 5].tolist()
            pieces = [(tok.decode(before), "context", "#f2f2f2"),
                      (raw_token(tok, int(val[p])), f"activation {value:.3f}", "#ffb347"),
                      (tok.decode(after), "after", "#fafafa")]
            rows.append(f"<div style='display:flex;gap:8px;align-items:baseline'><code style='min-width:4em'>"
                        f"{value:.2f}</code>{chips_html(pieces).replace('<br>', '')}</div>")
        return "".join(rows)

    left, right = st.columns([3, 2], gap="large")
    with left:
        st.markdown("**Top activations**")
        st.markdown(context_rows(scan.top_values[feature].tolist(), scan.top_positions[feature].tolist()),
                    unsafe_allow_html=True)
        st.caption(f"The {int((scan.top_positions[feature] >= 0).sum())} strongest firings over the whole evaluation "
                   "text: the activation, then the text up to the token it fires on (orange) and what follows.")
        st.markdown("**Typical activations** (from the strongest tenth down to the weakest)")
        st.markdown(context_rows(scan.quantile_values[feature].tolist(), scan.quantile_positions[feature].tolist()),
                    unsafe_allow_html=True)
        st.caption("One example at each tenth of its firings, strongest first: does the weak end still mean the "
                   "same?")
    with right:
        effect = feature_logit_effect(run.model, dic.module, feature)
        order = effect.argsort(descending=True).tolist()
        up, down = order[:8], order[::-1][:8]
        st.plotly_chart(effect_bars([token_text(tok, i) for i in up], [float(effect[i]) for i in up], "Promotes"),
                        key=f"{key}_promotes")
        st.plotly_chart(effect_bars([token_text(tok, i) for i in down], [float(effect[i]) for i in down], "Suppresses"),
                        key=f"{key}_suppresses")
        st.caption("Its decoder direction read through the unembedding: how much one unit of this feature raises "
                   "(blue) or lowers (red) each next-token logit directly, ignoring later layers and the final norm.")
