"""Sparse dictionaries of a model's activations: transcoders (MLP in -> MLP out) and SAEs (a residual site),
their file format, training, evaluation and the feature cards the app shows.

    dictionary  the format and formula (Dictionary, DictionaryConfig, load/save/list, weights_digest)
    crosslayer  cross-layer transcoders (CLTs): one encoder per layer, decoders to that and every later MLP output
    stack       Transcoders: one PLT per layer or one CLT, what replaces every MLP at once
    training    streaming training from the run's training text (TopK / JumpReLU / ReLU, AuxK)
    clt_training  the same for a CLT (--kind clt)
    evaluate    whole-split metrics: variance explained, L0, dead/dense features, CE loss recovered (one MLP or all)
    cards       feature cards: density, top and quantile contexts, promoted tokens, features at a prompt
    export      SAELens and circuit-tracer layouts (`gpt-features export`), the reader of labels.json
"""
from gpt.interp.features.dictionary import (
    Dictionary,
    DictionaryConfig,
    DictionaryError,
    LoadedDictionary,
    list_dictionaries,
    load_dictionary,
    save_dictionary,
    weights_digest,
)

__all__ = ["Dictionary", "DictionaryConfig", "DictionaryError", "LoadedDictionary", "list_dictionaries",
           "load_dictionary", "save_dictionary", "weights_digest"]
