"""A character-level tokenizer that needs no download and saves like any HF tokenizer.

Zoo models and synthetic tasks use printable ASCII, so one token per character keeps the
vocabulary tiny (100) and exact-match answers are exact token matches. The heavy imports
happen inside :func:`build_char_tokenizer`, so code that only needs the vocabulary size
(``lorasweep models list``) stays instant.
"""
from __future__ import annotations

import string

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]
CHARACTERS = [c for c in string.printable if c not in "\t\r\x0b\x0c"]
VOCAB_SIZE = len(SPECIAL_TOKENS) + len(CHARACTERS)
PAD_ID, BOS_ID, EOS_ID, UNK_ID = range(len(SPECIAL_TOKENS))


def build_char_tokenizer():
    """Byte-free char tokenizer: a BPE model with no merges splits text into characters."""
    from tokenizers import Tokenizer, models, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + CHARACTERS)}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    core.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", vocab["<s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        padding_side="right",
    )
