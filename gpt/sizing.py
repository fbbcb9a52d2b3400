"""What a model config costs, from the config alone (nothing allocated): parameters, training FLOPs per token,
training memory. The Train form's estimates and the pages' size lines read these."""
from __future__ import annotations

from gpt.config import GPTConfig


def count_params(config: GPTConfig) -> int:
    """Parameter count from the config alone (no allocation; the gpt2 preset would take 0.5 GB)."""
    C, V, L = config.n_embd, config.vocab_size, config.n_layer
    b = 1 if config.bias else 0
    ln = {"layernorm": C * (1 + b), "rmsnorm": C, "none": 0}[config.norm]
    n = V * C + ln  # wte + ln_f
    if not config.has_attention:
        return n + V * C  # untied lm_head
    if not config.ties_embeddings:
        n += V * C  # lm_head
    if config.has_position_table:
        n += config.block_size * C
    attn = C * 3 * C + 3 * C * b + C * C + C * b
    mlp = C * 4 * C + 4 * C * b + 4 * C * C + C * b if config.has_mlp else 0
    per_block = ln + attn + ((ln + mlp) if config.has_mlp else 0)
    return n + L * per_block


def flops_per_token(config: GPTConfig, context: int | None = None) -> int:
    """Training FLOPs per token (forward + backward), PaLM appendix B as in nanoGPT's estimate_mfu."""
    T = context or config.block_size
    n = count_params(config)
    if config.has_attention:
        if config.has_position_table:
            n -= config.block_size * config.n_embd  # a lookup, no arithmetic
        if not config.ties_embeddings:
            n -= config.vocab_size * config.n_embd  # wte is a lookup; lm_head (counted in n) is the matmul
        attention = 12 * config.n_layer * config.n_embd * T
    else:
        attention = 0
    return 6 * n + attention


def memory_estimate(config: GPTConfig, batch_size: int, bytes_per_elem: int = 4,
                    grad_checkpoint: bool = False) -> dict[str, int]:
    """Rough training memory in bytes: weights + grads + AdamW moments, plus activations.

    Activations follow Korthikanti et al. 2022 (sbh(34 + 5as/h) per layer at 2 bytes per element),
    scaled to the element size; the attention-matrix term is kept as an upper bound.
    """
    n = count_params(config)
    states = n * 4 * 4  # fp32 weights, grads, exp_avg, exp_avg_sq
    s, b, h, a = config.block_size, batch_size, config.n_embd, config.effective_n_head
    per_layer = s * b * h * (34 + 5 * a * s / h) * bytes_per_elem / 2
    layers = config.n_layer if config.has_attention else 0
    activations = per_layer * (1 if grad_checkpoint and layers else layers)
    if grad_checkpoint:
        activations += layers * s * b * h * bytes_per_elem  # the saved block inputs
    logits = 3 * s * b * config.vocab_size * 4  # logits, softmax and its gradient in fp32
    return {"parameters": n, "states_bytes": int(states), "activation_bytes": int(activations + logits),
            "total_bytes": int(states + activations + logits)}
