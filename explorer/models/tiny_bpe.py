"""``tiny-random-bpe``: a seeded two-layer Llama with a tokenizer of its own (a small byte-level BPE trained here), a
draft whose vocabulary differs from ``tiny-random``'s and SmolLM2's, for universal assisted decoding."""

from __future__ import annotations

from tokenizers import Tokenizer as BackendTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

from explorer.models.hf import HFCausalLM
from explorer.models.tiny import seeded_llama, tiny_config
from explorer.models.tokenizer import Tokenizer

__all__ = ["NAME", "SEED", "VOCAB", "bpe_tokenizer", "build_model", "load_tiny_bpe"]

NAME = "tiny-random-bpe"
SEED = 1
#: The vocabulary size asked of the trainer (the three special tokens, the 256 bytes, and merges).
VOCAB = 400
#: SmolLM2's special tokens at the same ids (0, 1, 2), so that eos is ``<|im_end|>`` = 2 in both vocabularies:
#: the reference's assistant stops at the target's eos id, read in the draft's vocabulary.
SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
#: The training text: the kind of English the explorer's prompts are written in.
CORPUS = (
    "The best way to bake bread is to mix flour, water, salt and yeast, knead the dough, let it rise, shape it and "
    "bake it in a hot oven. The days of the week are Monday, Tuesday, Wednesday, Thursday, Friday, Saturday and "
    "Sunday. A language model reads the text so far and gives every token of its vocabulary a probability; greedy "
    "search takes the most likely token, sampling draws one, and beam search keeps the best few sequences. Once upon "
    "a time there was a little girl who lived in a village near the forest. The quick brown fox jumps over the lazy "
    "dog. One two three four, one two three four. Speculative decoding lets a small draft model propose several "
    "tokens and the large target model check all of them in one forward pass, keeping those it would have chosen. "
    "The weather today is sunny with a light breeze, and the children are playing in the park after school. "
    "Paris is the capital of France, Berlin is the capital of Germany, and Rome is the capital of Italy."
)


def bpe_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on :data:`CORPUS` (any text encodes; the same merges on every run), with SmolLM2's
    special tokens at ids 0-2 and no token added when encoding.

    >>> tok = bpe_tokenizer()
    >>> tok.decode(tok("The best way")["input_ids"]), tok.eos_token_id
    ('The best way', 2)
    """
    backend = BackendTokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB, special_tokens=list(SPECIAL), initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False)
    backend.train_from_iterator([CORPUS], trainer=trainer)
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=backend, bos_token=SPECIAL[1], eos_token=SPECIAL[2], pad_token=SPECIAL[2],
        unk_token=SPECIAL[0], clean_up_tokenization_spaces=False)


def build_model(vocab_size: int) -> LlamaForCausalLM:
    """Seed 1, then a Llama shaped as ``tiny-random`` over ``vocab_size`` tokens (eos = pad = 2, whose logit is 0)."""
    config = tiny_config()
    config.vocab_size = vocab_size
    return seeded_llama(config, SEED)


def load_tiny_bpe() -> HFCausalLM:
    """``tiny-random-bpe`` as a ``CausalLM`` (well under a second: the tokenizer is trained on a paragraph)."""
    tokenizer = bpe_tokenizer()
    return HFCausalLM(build_model(len(tokenizer)), Tokenizer(tokenizer), NAME)
