#!/usr/bin/env python3
"""Generate a Hugging Face hub repo fixture in real formats (stdlib only).

Layout written under DIR/<type>s/<ORG>/<NAME>/ (or DIR/<type>s/<NAME>/ for a legacy one-segment id):

    manifest.json                      repo description read by fake_hub.py and by the C++ tests
    commits/<commit>/<path>            file contents of each commit; identical files are hard links

See tests/testing/README.md for the manifest format.
"""

import argparse
import hashlib
import json
import math
import os
import random
import re
import shutil
import struct
import sys
import time

GEN_VERSION = 3
LFS_THRESHOLD = 10 * 1024 * 1024
CHUNK = 4 << 20

DTYPE_SIZE = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8, "I32": 4, "I8": 1, "U8": 1, "BOOL": 1}

GITATTRIBUTES = """*.7z filter=lfs diff=lfs merge=lfs -text
*.arrow filter=lfs diff=lfs merge=lfs -text
*.bin filter=lfs diff=lfs merge=lfs -text
*.bz2 filter=lfs diff=lfs merge=lfs -text
*.ckpt filter=lfs diff=lfs merge=lfs -text
*.ftz filter=lfs diff=lfs merge=lfs -text
*.gz filter=lfs diff=lfs merge=lfs -text
*.h5 filter=lfs diff=lfs merge=lfs -text
*.joblib filter=lfs diff=lfs merge=lfs -text
*.lfs.* filter=lfs diff=lfs merge=lfs -text
*.mlmodel filter=lfs diff=lfs merge=lfs -text
*.model filter=lfs diff=lfs merge=lfs -text
*.msgpack filter=lfs diff=lfs merge=lfs -text
*.npy filter=lfs diff=lfs merge=lfs -text
*.npz filter=lfs diff=lfs merge=lfs -text
*.onnx filter=lfs diff=lfs merge=lfs -text
*.ot filter=lfs diff=lfs merge=lfs -text
*.parquet filter=lfs diff=lfs merge=lfs -text
*.pb filter=lfs diff=lfs merge=lfs -text
*.pickle filter=lfs diff=lfs merge=lfs -text
*.pkl filter=lfs diff=lfs merge=lfs -text
*.pt filter=lfs diff=lfs merge=lfs -text
*.pth filter=lfs diff=lfs merge=lfs -text
*.rar filter=lfs diff=lfs merge=lfs -text
*.safetensors filter=lfs diff=lfs merge=lfs -text
saved_model/**/* filter=lfs diff=lfs merge=lfs -text
*.tar.* filter=lfs diff=lfs merge=lfs -text
*.tar filter=lfs diff=lfs merge=lfs -text
*.tflite filter=lfs diff=lfs merge=lfs -text
*.tgz filter=lfs diff=lfs merge=lfs -text
*.wasm filter=lfs diff=lfs merge=lfs -text
*.xz filter=lfs diff=lfs merge=lfs -text
*.zip filter=lfs diff=lfs merge=lfs -text
*.zst filter=lfs diff=lfs merge=lfs -text
*tfevents* filter=lfs diff=lfs merge=lfs -text
"""


def parse_size(s):
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B)?\s*", s, re.I)
    if not m:
        raise argparse.ArgumentTypeError("bad size: %r (use e.g. 64MiB, 1GiB, 4096)" % s)
    mult = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[m.group(2).upper()]
    return int(float(m.group(1)) * mult)


def git_blob_sha1(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256_hex, size):
    return ("version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n" % (sha256_hex, size)).encode()


def commit_id(repo_id, seed, label):
    return hashlib.sha1(("modelfs-fixture:%s:%d:%s" % (repo_id, seed, label)).encode()).hexdigest()


# ---------------------------------------------------------------------------------------------------
# Tensor plan: a llama-like model whose size is ~total bytes.


def plan_tensors(total, shards):
    """Returns a list of (name, dtype, shape). Varied sizes: big matrices (>4 MiB when total allows),
    tiny norms/biases, a scalar and an odd-sized F16 vector (so data offsets are not aligned)."""
    budget = max(total, 4096)
    layers_target = 8
    h = int(math.sqrt(0.85 * budget / (layers_target * 20)))
    h = max(8, (h // 64) * 64 if h >= 64 else (h // 8) * 8)
    h = min(h, 8192)
    inter = 2 * h
    per_layer = (4 * h * h + 3 * h * inter) * 2 + 2 * h * 4 + 3 * h * 4
    vocab = max(64, int(0.07 * budget / (h * 2)))
    fixed = vocab * h * 2 + h * 4 + 4 + 6 + (h // 2) * 4
    layers = max(1, int((budget - fixed - vocab * h * 4 * 0) / per_layer))
    layers = max(layers, shards)
    tensors = [("model.embed_tokens.weight", "F16", [vocab, h]),
               ("model.rotary_emb.inv_freq", "F32", [h // 2]),
               ("model.scale", "F32", [])]
    for i in range(layers):
        p = "model.layers.%d." % i
        tensors += [
            (p + "input_layernorm.weight", "F32", [h]),
            (p + "self_attn.q_proj.weight", "BF16", [h, h]),
            (p + "self_attn.q_proj.bias", "F32", [h]),
            (p + "self_attn.k_proj.weight", "BF16", [h, h]),
            (p + "self_attn.k_proj.bias", "F32", [h]),
            (p + "self_attn.v_proj.weight", "BF16", [h, h]),
            (p + "self_attn.v_proj.bias", "F32", [h]),
            (p + "self_attn.o_proj.weight", "BF16", [h, h]),
            (p + "post_attention_layernorm.weight", "F32", [h]),
            (p + "mlp.gate_proj.weight", "F16", [inter, h]),
            (p + "mlp.up_proj.weight", "F16", [inter, h]),
            (p + "mlp.down_proj.weight", "F16", [h, inter]),
        ]
    tensors += [("model.norm.weight", "F32", [h]),
                ("model.odd_vector", "F16", [3]),
                ("lm_head.weight", "F16", [vocab, h])]
    return tensors, dict(hidden=h, inter=inter, layers=layers, vocab=vocab)


def nbytes(dtype, shape):
    n = DTYPE_SIZE[dtype]
    for d in shape:
        n *= d
    return n


def split_shards(tensors, shards):
    total = sum(nbytes(d, s) for _, d, s in tensors)
    target = total / shards
    out = [[] for _ in range(shards)]
    acc = 0
    k = 0
    remaining = len(tensors)
    for t in tensors:
        # move on when this shard reached its cumulative target, but keep >= 1 tensor per shard left
        while k < shards - 1 and out[k] and (acc >= target * (k + 1) or remaining <= shards - 1 - k):
            k += 1
        out[k].append(t)
        acc += nbytes(t[1], t[2])
        remaining -= 1
    return out


def write_safetensors(path, tensors, rng):
    header = {"__metadata__": {"format": "pt"}}
    off = 0
    for name, dtype, shape in tensors:
        n = nbytes(dtype, shape)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + n]}
        off += n
    hj = json.dumps(header, separators=(",", ":")).encode()
    pad = (8 - (8 + len(hj)) % 8) % 8
    hj += b" " * pad
    sha = hashlib.sha256()
    with open(path, "wb") as f:
        head = struct.pack("<Q", len(hj)) + hj
        f.write(head)
        sha.update(head)
        left = off
        while left > 0:
            b = rng.randbytes(min(CHUNK, left))
            f.write(b)
            sha.update(b)
            left -= len(b)
    return 8 + len(hj) + off, sha.hexdigest(), off


# ---------------------------------------------------------------------------------------------------
# Small text files


def config_json(info, variant):
    cfg = {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": True,
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": info["hidden"],
        "initializer_range": 0.02,
        "intermediate_size": info["inter"],
        "max_position_embeddings": 4096,
        "model_type": "llama",
        "num_attention_heads": max(1, info["hidden"] // 64),
        "num_hidden_layers": info["layers"],
        "num_key_value_heads": max(1, info["hidden"] // 64),
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": None,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.44.2",
        "use_cache": True,
        "vocab_size": info["vocab"],
    }
    if variant == "old":
        cfg["transformers_version"] = "4.38.0"
        cfg["torch_dtype"] = "float16"
        cfg["rope_theta"] = 500000.0
    return (json.dumps(cfg, indent=2, sort_keys=True) + "\n").encode()


def generation_config_json():
    return (json.dumps({"_from_model_config": True, "bos_token_id": 1, "eos_token_id": 2,
                        "do_sample": True, "temperature": 0.6, "top_p": 0.9,
                        "transformers_version": "4.44.2"}, indent=2) + "\n").encode()


def tokenizer_json():
    specials = ["<unk>", "<s>", "</s>"]
    chars = list("abcdefghijklmnopqrstuvwxyz") + ["\u2581"] + list("0123456789.,!?")
    vocab = {t: i for i, t in enumerate(specials + ["<0x%02X>" % b for b in range(256)] + chars)}
    merges = ["\u2581 t", "h e", "i n", "\u2581t he", "e r", "a n", "o n", "\u2581 a", "r e", "e n"]
    for m in merges:
        tok = m.replace(" ", "")
        if tok not in vocab:
            vocab[tok] = len(vocab)
    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for i, t in enumerate(specials)],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"}, {"type": "Replace", "pattern": {"String": " "},
                                                      "content": "\u2581"}]},
        "pre_tokenizer": None,
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                    {"Sequence": {"id": "A", "type_id": 0}},
                                    {"SpecialToken": {"id": "<s>", "type_id": 1}},
                                    {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1,
                                                          "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True,
                  "ignore_merges": False, "vocab": vocab, "merges": merges},
    }
    return (json.dumps(tok, indent=2, ensure_ascii=False) + "\n").encode()


def readme_md(repo_id, rtype, gated):
    y = ["---", "license: apache-2.0", "language:", "- en"]
    if rtype == "model":
        y += ["library_name: transformers", "pipeline_tag: text-generation", "tags:", "- llama",
              "- modelfs-fixture"]
    else:
        y += ["task_categories:", "- text-generation", "size_categories:", "- n<1K"]
    if gated:
        y += ["extra_gated_prompt: You agree to not use this fixture for anything real."]
    y += ["---", "", "# %s" % repo_id, "",
          "Synthetic %s generated by modelfs `tests/testing/gen_repo.py`. The weights are" % rtype,
          "deterministic pseudo-random bytes in real safetensors format.", "",
          "## Usage", "", "```python", "from transformers import AutoModelForCausalLM",
          "model = AutoModelForCausalLM.from_pretrained(%r)" % repo_id, "```", ""]
    return "\n".join(y).encode()


# ---------------------------------------------------------------------------------------------------


class Builder:
    def __init__(self, repo_dir):
        self.repo_dir = repo_dir
        self.blob_cache = {}  # (label) -> entry without path

    def put_bytes(self, commit, path, data):
        rel = os.path.join("commits", commit, path)
        full = os.path.join(self.repo_dir, rel)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(data)
        return self.entry(path, rel, len(data), data=data)

    def link(self, entry, commit):
        """Hard-links an existing entry's content into another commit's tree."""
        rel = os.path.join("commits", commit, entry["path"])
        full = os.path.join(self.repo_dir, rel)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        src = os.path.join(self.repo_dir, entry["content"])
        if os.path.lexists(full):
            os.unlink(full)
        try:
            os.link(src, full)
        except OSError:
            shutil.copyfile(src, full)
        e = dict(entry)
        e["content"] = rel
        return e

    def entry(self, path, rel, size, data=None, sha256=None):
        lfs = path.endswith(".safetensors") or size >= LFS_THRESHOLD
        if lfs:
            if sha256 is None:
                sha256 = hashlib.sha256(data).hexdigest()
            ptr = lfs_pointer(sha256, size)
            return {"path": path, "size": size, "git_oid": git_blob_sha1(ptr), "sha256": sha256,
                    "lfs": True, "pointer_size": len(ptr), "content": rel}
        return {"path": path, "size": size, "git_oid": git_blob_sha1(data), "sha256": None,
                "lfs": False, "content": rel}


def generate(args):
    rtype = args.type
    repo_id = args.repo
    parts = repo_id.split("/")
    if not (1 <= len(parts) <= 2) or any(not p for p in parts):
        sys.exit("gen_repo: --repo must be ORG/NAME or NAME")
    repo_dir = os.path.join(args.root, rtype + "s", *parts)
    manifest_path = os.path.join(repo_dir, "manifest.json")
    gen_args = {"version": GEN_VERSION, "repo": repo_id, "type": rtype, "total_size": args.total_size,
                "shards": args.shards, "seed": args.seed, "extra_revision": args.extra_revision,
                "private": args.private, "gated": args.gated, "disabled": args.disabled}

    if os.path.exists(manifest_path):
        try:
            with open(manifest_path) as f:
                old = json.load(f)
            if old.get("gen_args") == gen_args and all(
                    os.path.isfile(os.path.join(repo_dir, fe["content"])) and
                    os.path.getsize(os.path.join(repo_dir, fe["content"])) == fe["size"]
                    for c in old["commits"].values() for fe in c["files"]):
                return manifest_path, True
        except (OSError, ValueError, KeyError):
            pass
    if os.path.isdir(repo_dir):
        shutil.rmtree(repo_dir)
    os.makedirs(repo_dir)

    b = Builder(repo_dir)
    head = commit_id(repo_id, args.seed, "main")
    old_commit = commit_id(repo_id, args.seed, "v1.0") if args.extra_revision else None
    shards = max(1, args.shards)
    tensors, info = plan_tensors(args.total_size, shards)
    groups = split_shards(tensors, shards)

    files = []
    files.append(b.put_bytes(head, ".gitattributes", GITATTRIBUTES.encode()))
    files.append(b.put_bytes(head, "README.md", readme_md(repo_id, rtype, args.gated)))
    files.append(b.put_bytes(head, "config.json", config_json(info, "new")))
    files.append(b.put_bytes(head, "generation_config.json", generation_config_json()))
    files.append(b.put_bytes(head, "tokenizer.json", tokenizer_json()))
    files.append(b.put_bytes(head, "empty.txt", b""))
    files.append(b.put_bytes(head, "sub/dir/notes.txt",
                             b"Nested file used to test directory listings.\nLine two.\n"))

    weight_map = {}
    data_total = 0
    shard_entries = []
    for i, group in enumerate(groups):
        name = "model-%05d-of-%05d.safetensors" % (i + 1, shards)
        rel = os.path.join("commits", head, name)
        full = os.path.join(repo_dir, rel)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        rng = random.Random("%d:%s:%d" % (args.seed, repo_id, i))
        size, sha, data_bytes = write_safetensors(full, group, rng)
        data_total += data_bytes
        for t in group:
            weight_map[t[0]] = name
        shard_entries.append(b.entry(name, rel, size, sha256=sha))
    files += shard_entries
    index = {"metadata": {"total_size": data_total}, "weight_map": dict(sorted(weight_map.items()))}
    files.append(b.put_bytes(head, "model.safetensors.index.json",
                             (json.dumps(index, indent=2) + "\n").encode()))

    now = 1700000000 + (args.seed % 1000) * 86400
    commits = {head: {"title": "Upload model", "date": iso(now), "parent": old_commit,
                      "files": sorted(files, key=lambda e: e["path"])}}
    refs = {"main": head, "refs/pr/1": head}
    branches = ["main"]
    tags = []
    if old_commit:
        ofiles = []
        for e in files:
            if e["path"] == "generation_config.json":
                continue  # the old commit lacks this file
            if e["path"] == "config.json":
                ofiles.append(b.put_bytes(old_commit, "config.json", config_json(info, "old")))
            else:
                ofiles.append(b.link(e, old_commit))
        commits[old_commit] = {"title": "Initial commit", "date": iso(now - 30 * 86400), "parent": None,
                               "files": sorted(ofiles, key=lambda e: e["path"])}
        refs["v1.0"] = old_commit
        tags.append("v1.0")

    manifest = {
        "id": repo_id,
        "type": rtype,
        "private": bool(args.private),
        "gated": "manual" if args.gated else False,
        "disabled": bool(args.disabled),
        "default_branch": "main",
        "refs": refs,
        "branches": branches,
        "tags": tags,
        "pull_requests": ["refs/pr/1"],
        "created_at": iso(now - 60 * 86400),
        "commits": commits,
        "model_info": info,
        "gen_args": gen_args,
    }
    tmp = manifest_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1)
    os.replace(tmp, manifest_path)
    return manifest_path, False


def iso(epoch):
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(epoch))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", required=True)
    ap.add_argument("--repo", required=True, help="ORG/NAME (or NAME for a legacy id)")
    ap.add_argument("--type", default="model", choices=["model", "dataset", "space"])
    ap.add_argument("--total-size", type=parse_size, default=parse_size("64MiB"))
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--extra-revision", action="store_true",
                    help="add an older commit tagged v1.0 (different config.json, no generation_config.json)")
    ap.add_argument("--private", action="store_true")
    ap.add_argument("--gated", action="store_true")
    ap.add_argument("--disabled", action="store_true")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    t = time.time()
    path, skipped = generate(args)
    if not args.quiet:
        print("%s %s (%.2fs)" % ("up to date:" if skipped else "wrote", path, time.time() - t))
    return 0


if __name__ == "__main__":
    sys.exit(main())
