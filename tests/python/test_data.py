"""longhaul.data: the store the Python side writes is the documented HDF5 format (h5py reads it),
and longhaul.data.DDSampler yields exactly the batches of the C++ sampler: the `dd_batches`
helper (tests/python/dd_batches.cpp, plain C++, no binding; LONGHAUL_DD_BATCHES names it) prints
them for the same store, options and seed."""
import json
import os
import random
import subprocess

import h5py
import numpy as np
import pytest
import torch

import longhaul

DD_BATCHES = os.environ.get("LONGHAUL_DD_BATCHES", "")


@pytest.fixture(scope="module")
def documents():
    rng = random.Random(7)
    return [[rng.randrange(300) for _ in range(rng.randint(1, 700))] + [300] for _ in range(120)]


@pytest.fixture(scope="module")
def store_path(tmp_path_factory, documents):
    path = str(tmp_path_factory.mktemp("store") / "tokens.h5")
    n = longhaul.data.write_store(path, documents, vocab_size=301, eos_id=300, tokenizer="test")
    assert n == sum(len(d) for d in documents)
    return path


def test_written_store_is_the_documented_format(store_path, documents):
    with h5py.File(store_path, "r") as f:
        assert f.attrs["format"] == b"longhaul-tokens" and int(f.attrs["version"]) == 2
        assert int(f.attrs["vocab_size"]) == 301 and int(f.attrs["eos_id"]) == 300
        tokens, offsets = f["tokens"][:], f["doc_offsets"][:]
    assert tokens.dtype == np.uint16 and offsets.dtype == np.uint64
    assert [tokens[offsets[d]:offsets[d + 1]].tolist() for d in range(len(documents))] == documents
    store = longhaul.data.TokenStore(store_path)
    assert store.num_documents == len(documents) and store.vocab_size == 301 and store.tokenizer == "test"
    assert store.document(5).tolist() == documents[5]
    assert store.read(int(offsets[3]) + 1, 4).tolist() == documents[3][1:5]


def cpp_batches(store_path, tokens_per_step, min_log2, max_log2, dp_size, dp_rank, curriculum, cycles, seed):
    if not DD_BATCHES:
        pytest.skip("LONGHAUL_DD_BATCHES (the C++ dd_batches helper) is not set: run through ctest "
                    "(python_module sets it; the C++ sampler itself: tests/unit/data_sampler_test.cpp)")
    args = [DD_BATCHES, store_path] + [str(a) for a in (tokens_per_step, min_log2, max_log2, dp_size, dp_rank,
                                                          curriculum, cycles, seed)]
    out = subprocess.run(args, check=True, capture_output=True, text=True, timeout=60).stdout
    return [json.loads(line) for line in out.splitlines()]


@pytest.mark.parametrize("dp_size,dp_rank", [(1, 0), (2, 0), (2, 1)])
@pytest.mark.parametrize("curriculum,cycles,seed", [("grow_p2", 8, 0), ("uniform", 3, 11), ("natural", 1, 5)])
def test_sampler_yields_the_cpp_batches(store_path, dp_size, dp_rank, curriculum, cycles, seed):
    options = dict(tokens_per_step=1024, min_log2=4, max_log2=8, dp_size=dp_size, dp_rank=dp_rank,
                   curriculum=curriculum, cycles=cycles, seed=seed)
    expected = cpp_batches(store_path, *options.values())
    store = longhaul.data.TokenStore(store_path)
    got = list(longhaul.data.DDSampler(store, **options))
    assert len(got) == len(expected) > 10
    assert len(longhaul.data.DDSampler(store, **options)) == len(expected)  # steps per epoch
    for b, e in zip(got, expected):
        assert (b.step, b.cycle, b.seq_len) == (e["step"], e["cycle"], e["seq_len"])
        for name in ("tokens", "targets", "positions", "cu_seqlens"):
            t = getattr(b, name)
            assert t.dtype == torch.int64 and t.tolist() == e[name], f"step {b.step} {name}"
        assert b.num_tokens == 1024 // dp_size


def test_sampler_state_restores_exactly(store_path):
    store = longhaul.data.TokenStore(store_path)
    a = longhaul.data.DDSampler(store, 1024, min_log2=4, max_log2=8, seed=3)
    for _ in range(5):
        a.next()
    state = a.state_dict()
    rest = [b.tokens.tolist() for b in a]
    b = longhaul.data.DDSampler(store, 1024, min_log2=4, max_log2=8, seed=3)
    b.load_state_dict(state)
    assert [x.tokens.tolist() for x in b] == rest and len(rest) > 0


def test_bad_sampler_options_raise_value_error(store_path):
    store = longhaul.data.TokenStore(store_path)
    with pytest.raises(ValueError, match="must be a positive multiple of data-parallel size"):
        longhaul.data.DDSampler(store, 1000, min_log2=4, max_log2=8)
    with pytest.raises(ValueError, match="unknown curriculum 'zigzag'"):
        longhaul.data.DDSampler(store, 1024, min_log2=4, max_log2=8, curriculum="zigzag")
    with pytest.raises((ValueError, RuntimeError), match="test_data.py"):
        longhaul.data.TokenStore(__file__)  # not an HDF5 store: the error names the file


def test_verify_reads_the_store_in_a_child_process(store_path, documents):
    store = longhaul.data.TokenStore(store_path, verify=True)  # a good store opens as without it
    assert store.document(0).tolist() == documents[0]
    # A store on which libhdf5 itself crashes (SIGSEGV): the crash stays in the verifying child.
    crash = os.path.join(os.path.dirname(__file__), "..", "fuzz", "hdf5_crashes", "hdf5_crash_sigsegv")
    with pytest.raises(ValueError, match="hdf5_crash_sigsegv': the HDF5 library crashed reading it in a child"):
        longhaul.data.TokenStore(crash, verify=True)
    # By default too: a store is verified the first time this machine opens it.
    with pytest.raises(ValueError, match="the HDF5 library crashed reading it in a child"):
        longhaul.data.TokenStore(crash)
