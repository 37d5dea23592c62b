"""Tokens on disk and dataset-decomposition batches (the C++ data module, data/).

    store = longhaul.data.TokenStore("tokens.h5")
    for batch in longhaul.data.DDSampler(store, tokens_per_step=4096, min_log2=6, max_log2=9,
                                         dp_size=dp, dp_rank=dp_rank, seed=0):
        plan = cp.plan(batch.num_tokens, batch.cu_seqlens)
        tokens, targets = plan.shard(batch.tokens), plan.shard(batch.targets)

A batch packs independent sequences (each a piece of one document; batch.cu_seqlens are their
offsets). causal=True keeps each causal on itself; a long-context mask family must not join them
either: build it with longhaul.Mask.packed_family(name, batch.cu_seqlens, param=...) (a window,
prefix or global tokens restart in every sequence), not Mask.family(name, T), which spans the
whole batch.

Options and semantics are the C++ DDSampler's (data/sampler.h): every step holds exactly
tokens_per_step tokens over the data-parallel group; one bucket 2^i is drawn per step (the same on
every rank, from the seed) and this rank gets tokens_per_step / (dp_size · 2^i) pieces of it, packed
back to back. Iteration ends with the epoch (all `cycles` cycles).

With a CP degree per bucket (longhaul.CpDegrees), give the sampler the degrees instead of
dp_size/dp_rank: each batch is then this rank's CP group's share of the step (possibly empty when
the step has fewer sequences than groups), and batch.cp_degree says which degree it runs on:

    degrees = longhaul.CpDegrees("auto", tokens_per_step=4096, min_log2=6, max_log2=11, heads=4, ...)
    for batch in longhaul.data.DDSampler(store, 4096, min_log2=6, max_log2=11, degrees=degrees):
        cp = degrees.cp_for(batch.seq_len)
"""
import random
from dataclasses import dataclass

import torch

from ._C import data as _data

TokenSource = _data.TokenSource
MemoryStore = _data.MemoryStore  # MemoryStore(documents, vocab_size, eos_id): documents held in memory


def _without_hdf5(name):
    def refuse(*args, **kwargs):
        raise RuntimeError(f"longhaul.data.{name}: this build of longhaul has no HDF5 (LONGHAUL_WITH_HDF5=OFF)")
    return refuse


# The HDF5 token store exists only in builds with HDF5.
TokenStore = getattr(_data, "TokenStore", None) or _without_hdf5("TokenStore")
write_store = getattr(_data, "write_store", None) or _without_hdf5("write_store")
IGNORE_TARGET = -100  # targets across a document boundary (torch's cross-entropy ignore_index)


@dataclass
class Batch:
    """One step's tokens on one data-parallel rank."""
    step: int
    cycle: int
    seq_len: int
    tokens: torch.Tensor      # int64 [N]: the sequences back to back
    targets: torch.Tensor     # int64 [N]: the next token of the same document, else -100
    positions: torch.Tensor   # int64 [N]: 0, 1, ... restarting in every sequence
    cu_seqlens: torch.Tensor  # int64 [sequences + 1]: global offsets in this packed batch
    cp_degree: int = 1        # ranks of the CP group that runs it (with CpDegrees; else 1)

    @property
    def num_tokens(self):
        return int(self.tokens.numel())

    @property
    def num_sequences(self):
        return int(self.cu_seqlens.numel()) - 1


def _long(a):
    return torch.from_numpy(a).to(torch.int64)


class DDSampler:
    """This rank's batches of dataset decomposition over a TokenStore (see the module doc).

    tokens_per_step: b, divisible by dp_size · 2^max_log2. Buckets hold pieces of 2^min_log2 ...
    2^max_log2 tokens. curriculum: grow_p2, grow_linear, uniform or natural. degrees: a
    longhaul.CpDegrees; each batch is then the share of this rank's group of that step's degree
    (dp_size and dp_rank must stay 1 and 0).
    """

    def __init__(self, store, tokens_per_step, *, min_log2=8, max_log2=13, dp_size=1, dp_rank=0,
                 curriculum="grow_p2", cycles=8, seed=0, degrees=None):
        if not isinstance(store, TokenSource):
            raise TypeError(f"store must be a longhaul.data.TokenStore, got {type(store).__name__}")
        if degrees is not None and (dp_size != 1 or dp_rank != 0):
            raise ValueError("DDSampler: with degrees= the groups come from the degrees; leave dp_size=1, dp_rank=0")
        self.store = store
        self.degrees = degrees
        self._s = _data.DDSampler(store, int(tokens_per_step), int(min_log2), int(max_log2), int(dp_size),
                                  int(dp_rank), str(curriculum), int(cycles), int(seed))

    def next(self):
        """The next Batch, or None once the epoch is over."""
        d = self._s.next(self.degrees.share_of if self.degrees is not None else None)
        if d is None:
            return None
        degree = self.degrees.degree(d["seq_len"]) if self.degrees is not None else 1
        return Batch(d["step"], d["cycle"], d["seq_len"], _long(d["tokens"]), _long(d["targets"]),
                     _long(d["positions"]), torch.from_numpy(d["cu_seqlens"]), degree)

    def __iter__(self):
        while (b := self.next()) is not None:
            yield b

    def __len__(self):
        """Steps of one epoch (fixed by the bucket sizes, whatever the draws)."""
        return self._s.steps_per_epoch

    def state_dict(self):
        """The exact position in the epoch (restore it into a sampler with the same options)."""
        return {"state": self._s.save_state()}

    def load_state_dict(self, state):
        self._s.restore_state(state["state"])

    @property
    def step(self):
        return self._s.step

    @property
    def cycle(self):
        return self._s.cycle

    @property
    def dropped_tokens(self):
        """Tokens dropped so far: the leftovers once the last cycle has ended."""
        return self._s.dropped_tokens


def synthetic_documents(n_docs=400, vocab=64, seed=0, lengths=(40, 300)):
    """Documents of lengths[0]-lengths[1] tokens repeating a random phrase of 3-10 tokens, each
    ending with EOS (= vocab): after a phrase's first period attention can copy the rest, so a
    model's loss falls fast. The examples' embedded default (no data to bring)."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n_docs):
        phrase = [rng.randrange(vocab) for _ in range(rng.randint(3, 10))]
        length = rng.randint(*lengths)
        docs.append([phrase[i % len(phrase)] for i in range(length - 1)] + [vocab])
    return docs


def write_synthetic_store(path, n_docs=400, vocab=64, seed=0, lengths=(40, 300)):
    """A token store of synthetic_documents at path (vocab_size vocab + 1, EOS = vocab); every
    rank may write its own copy: the same arguments give the same file contents."""
    write_store(path, synthetic_documents(n_docs, vocab, seed, lengths), vocab_size=vocab + 1, eos_id=vocab,
                tokenizer="synthetic")
    return TokenStore(path)


def synthetic_store(n_docs=400, vocab=64, seed=0, lengths=(40, 300)):
    """synthetic_documents in memory (a MemoryStore: vocab_size vocab + 1, EOS = vocab), in every
    build, HDF5 or not."""
    return MemoryStore(synthetic_documents(n_docs, vocab, seed, lengths), vocab_size=vocab + 1, eos_id=vocab)


def dd_batches(store, tokens_per_step, *, seed=0, **options):
    """DDSampler batches epoch after epoch, endlessly; epoch e draws its order from seed + e.
    options: DDSampler's (min_log2, max_log2, degrees, ...)."""
    epoch = 0
    while True:
        yield from DDSampler(store, tokens_per_step, seed=seed + epoch, **options)
        epoch += 1
