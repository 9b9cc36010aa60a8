#!/usr/bin/env python3
"""An independent safetensors writer and reader, standard library only (struct + json).

It follows the format as https://github.com/huggingface/safetensors specifies it
and is the other side of tandem's checkpoint tests:

  safetensors_ref.py write-fixtures DIR   writes DIR/good/*.safetensors (files tandem
                                          must read) and DIR/bad/*.safetensors (one
                                          violation each, which tandem must reject)
  safetensors_ref.py check-fixtures DIR   regenerates them and fails unless DIR holds
                                          exactly those bytes (ctest: the checked-in
                                          tests/data/safetensors cannot drift)
  safetensors_ref.py read FILE            reads FILE strictly and prints its tensors
                                          as JSON: {name: {dtype, shape, values}},
                                          plus "__metadata__" (tests/test_serialize.cpp
                                          reads files tandem wrote with it)
"""

import json
import math
import os
import struct
import sys

FORMATS = {"F32": "f", "F64": "d", "I32": "i", "I64": "q", "U8": "B"}
SIZES = {"F32": 4, "F64": 8, "I32": 4, "I64": 8, "U8": 1}


def pack(dtype, values):
    return struct.pack("<%d%s" % (len(values), FORMATS[dtype]), *values)


def assemble(header, data, pad=True):
    """8-byte little-endian length, JSON header (space-padded to 8 bytes), data."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode("utf-8")
    if pad:
        text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + data


def tensors_file(tensors, metadata=None, order=None):
    """tensors: name -> (dtype, shape, values). Data is laid out in `order`
    (default: reverse name order, so readers cannot assume sorted offsets)."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    data = b""
    for name in order or sorted(tensors, reverse=True):
        dtype, shape, values = tensors[name]
        blob = pack(dtype, values)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    return assemble(header, data)


def good_files():
    # The values are formulas that tests/test_serialize.cpp recomputes.
    f32 = [i * 0.25 - 1.0 for i in range(6)]
    f64 = [(i + 1) / 3.0 for i in range(5)]
    tensors = {
        "f32": ("F32", [2, 3], f32),
        "f64": ("F64", [5], f64),
        "i32": ("I32", [4], [-7, 0, 2**31 - 1, -(2**31)]),
        "i64": ("I64", [3], [-(2**63), 2**63 - 1, 42]),
        "u8": ("U8", [5], [0, 1, 127, 128, 255]),
        "scalar": ("F64", [], [math.pi]),
        "empty": ("F32", [0, 3], []),
        "nested.name.weight": ("F32", [1, 1, 1], [2.5]),
    }
    meta = {"format": "pt", "written_by": "tests/safetensors_ref.py"}
    return {"python_all_dtypes": tensors_file(tensors, meta)}


def one(dtype="F32", shape=(2,), offsets=None, **extra):
    """A header entry for one F32-ish tensor, with overrides."""
    n = SIZES.get(dtype, 4) * math.prod(shape) if all(isinstance(d, int) for d in shape) else 8
    entry = {"dtype": dtype, "shape": list(shape), "data_offsets": offsets or [0, n]}
    entry.update(extra)
    return entry


def bad_files():
    ok_data = pack("F32", [1.0, 2.0])
    files = {
        "too_short": b"\x05\x00\x00",
        "header_too_large": struct.pack("<Q", 100_000_001) + b"{}      ",
        "header_past_end": struct.pack("<Q", 1000) + b'{"a": 1}' + b"\0" * 40,
        "header_length_zero": struct.pack("<Q", 0) + b"\0" * 8,
        "not_json": assemble(b'{"a": {"dtype": "F32",', ok_data),
        "not_an_object": assemble(b"[1, 2, 3]", b""),
        "invalid_utf8": assemble(b'{"w\xff": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}', ok_data),
        "duplicate_key": assemble(
            b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},'
            b' "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}',
            ok_data,
        ),
        "too_deep": assemble({"a": one(shape=[[[2]]])}, ok_data),
        "empty_name": assemble({"": one()}, ok_data),
        "info_not_object": assemble({"a": 5}, ok_data),
        "unknown_field": assemble({"a": one(extra_field=1)}, ok_data),
        "missing_offsets": assemble({"a": {"dtype": "F32", "shape": [2]}}, ok_data),
        "dtype_not_string": assemble({"a": one(dtype=3)}, ok_data),
        "unsupported_dtype": assemble({"a": one(dtype="BF16", shape=(4,), offsets=[0, 8])}, ok_data),
        "shape_not_array": assemble({"a": {"dtype": "F32", "shape": 2, "data_offsets": [0, 8]}}, ok_data),
        "negative_dim": assemble({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, ok_data),
        "fractional_dim": assemble({"a": {"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]}}, ok_data),
        "shape_overflow": assemble(
            {"a": {"dtype": "F32", "shape": [2**62, 2**62], "data_offsets": [0, 8]}}, ok_data
        ),
        "offsets_not_pair": assemble({"a": one(offsets=[0])}, ok_data),
        "offsets_reversed": assemble({"a": one(offsets=[8, 0])}, ok_data),
        "size_mismatch": assemble({"a": one(shape=(2, 3), offsets=[0, 8])}, ok_data),
        "truncated_data": assemble({"a": one(shape=(4,))}, ok_data),
        "overlap": assemble(
            {"a": one(shape=(2,), offsets=[0, 8]), "b": one(shape=(2,), offsets=[4, 12])},
            pack("F32", [1.0, 2.0, 3.0]),
        ),
        "gap": assemble(
            {"a": one(shape=(1,), offsets=[0, 4]), "b": one(shape=(1,), offsets=[8, 12])},
            pack("F32", [1.0, 2.0, 3.0]),
        ),
        "trailing_bytes": assemble({"a": one()}, ok_data + b"\0" * 8),
        "metadata_not_object": assemble({"__metadata__": ["x"], "a": one()}, ok_data),
        "metadata_not_string": assemble({"__metadata__": {"epoch": 3}, "a": one()}, ok_data),
    }
    return files


def write_fixtures(root):
    for sub, files in (("good", good_files()), ("bad", bad_files())):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
        for name, blob in files.items():
            with open(os.path.join(root, sub, name + ".safetensors"), "wb") as f:
                f.write(blob)


def check_fixtures(root):
    problems = []
    for sub, files in (("good", good_files()), ("bad", bad_files())):
        present = set(os.listdir(os.path.join(root, sub)))
        wanted = {name + ".safetensors" for name in files}
        for extra in sorted(present - wanted):
            problems.append("%s/%s is not made by this script" % (sub, extra))
        for name, blob in files.items():
            path = os.path.join(root, sub, name + ".safetensors")
            if not os.path.exists(path):
                problems.append("%s is missing" % path)
            elif open(path, "rb").read() != blob:
                problems.append("%s differs from what this script writes" % path)
    for p in problems:
        print("check-fixtures:", p, file=sys.stderr)
    if problems:
        print("check-fixtures: run tests/safetensors_ref.py write-fixtures tests/data/safetensors", file=sys.stderr)
        return 1
    print("check-fixtures: %s matches" % root)
    return 0


def read(path):
    """Strict reader: everything the spec requires, nothing tandem-specific."""
    blob = open(path, "rb").read()
    if len(blob) < 8:
        raise ValueError("too short")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > 100_000_000 or 8 + n > len(blob):
        raise ValueError("bad header length %d" % n)
    text = blob[8 : 8 + n]
    if not text.startswith(b"{"):
        raise ValueError("header does not start with {")

    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        if len(keys) != len(set(keys)):
            raise ValueError("duplicate keys")
        return dict(pairs)

    header = json.loads(text.decode("utf-8"), object_pairs_hook=no_duplicates)
    data = blob[8 + n :]
    out = {}
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in info.items()):
                raise ValueError("metadata must map strings to strings")
            out[name] = info
            continue
        if set(info) != {"dtype", "shape", "data_offsets"}:
            raise ValueError("bad fields for %s" % name)
        dtype, shape, (b, e) = info["dtype"], info["shape"], info["data_offsets"]
        count = math.prod(shape)
        if e - b != count * SIZES[dtype] or e > len(data):
            raise ValueError("bad offsets for %s" % name)
        spans.append((b, e))
        values = list(struct.unpack("<%d%s" % (count, FORMATS[dtype]), data[b:e]))
        out[name] = {"dtype": dtype, "shape": shape, "values": values}
    pos = 0
    for b, e in sorted(spans):
        if b != pos:
            raise ValueError("data not tiled at byte %d" % pos)
        pos = e
    if pos != len(data):
        raise ValueError("trailing data")
    json.dump(out, sys.stdout)
    return 0


def main(argv):
    if len(argv) == 3 and argv[1] == "write-fixtures":
        write_fixtures(argv[2])
        return 0
    if len(argv) == 3 and argv[1] == "check-fixtures":
        return check_fixtures(argv[2])
    if len(argv) == 3 and argv[1] == "read":
        return read(argv[2])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
