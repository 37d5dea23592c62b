"""h5py reads a store written by `longhaul prep` (data_cli_prep writes it; LONGHAUL_STORE names it)."""
import os

import h5py
import numpy as np

STORE = os.environ.get("LONGHAUL_STORE", "")


def test_layout_dtypes_and_attributes():
    with h5py.File(STORE, "r") as f:
        assert set(f.keys()) == {"tokens", "doc_offsets"}
        tokens, offsets = f["tokens"], f["doc_offsets"]
        assert tokens.dtype == np.uint16 and tokens.ndim == 1
        assert offsets.dtype == np.uint64 and offsets.ndim == 1
        assert tokens.chunks is not None and tokens.compression == "gzip" and tokens.shuffle and tokens.fletcher32
        # Fixed-length strings (format version 2): h5py returns bytes.
        assert f.attrs["format"] == b"longhaul-tokens"
        assert int(f.attrs["version"]) == 2
        assert f.attrs["tokenizer"] == b"bytes"
        assert int(f.attrs["vocab_size"]) == 257
        assert int(f.attrs["eos_id"]) == 256


def test_documents():
    with h5py.File(STORE, "r") as f:
        tokens = f["tokens"][:]
        offsets = f["doc_offsets"][:]
    assert offsets[0] == 0 and offsets[-1] == len(tokens)
    assert np.all(np.diff(offsets.astype(np.int64)) > 0)
    docs = [tokens[offsets[d]:offsets[d + 1]] for d in range(len(offsets) - 1)]
    assert all(d[-1] == 256 for d in docs), "every document ends with EOS"
    text = [bytes(d[:-1].astype(np.uint8)).decode() for d in docs]
    assert text == ["hello world\n", "second document", "json one", "json two"]
