#!/usr/bin/env python3
"""Resolve every file of a repo from a Hugging Face hub cache offline, exactly as huggingface_hub does.

    hf_cache_offline.py CACHE_DIR REPO_ID REPO_TYPE MANIFEST_JSON [REVISION ...]

huggingface_hub is not packaged in Debian 12, so this script performs the file-access pattern of its
offline resolution instead of importing it. Each function below follows huggingface_hub's code
(file_download.py, _snapshot_download.py) line for line in what it
touches on disk: os.path.isdir / isfile / exists, os.listdir, and open().read() WITHOUT strip().
Nothing here writes to the cache (a read-only cache is supported upstream when pointers exist).

For each REVISION (default "main") it resolves the commit through refs/, then for every file of
that commit in MANIFEST_JSON (the fake hub's manifest) it checks that try_to_load_from_cache and the
offline hf_hub_download return the snapshot path, that transformers' commit-hash regex finds the
commit in it, and that the bytes match the manifest's SHA-256 (LFS) or git blob id. It also checks
that snapshot_download(local_files_only=True) returns the snapshot folder and that an optional file
that does not exist resolves to "not cached" (None / LocalEntryNotFoundError), as transformers'
probes need. Prints one summary line; exits 1 on the first mismatch.
"""

import hashlib
import json
import os
import re
import sys

REGEX_COMMIT_HASH = re.compile(r"^[0-9a-f]{40}$")          # huggingface_hub constants
TRANSFORMERS_COMMIT_RE = re.compile(r"snapshots/([^/]+)/")  # transformers utils/hub.py
_CACHED_NO_EXIST = object()


class LocalEntryNotFoundError(Exception):
    pass


def repo_folder_name(repo_id, repo_type):
    # file_download.repo_folder_name: "{type}s--" + repo_id.replace("/", "--")
    return "--".join([repo_type + "s"] + repo_id.split("/"))


def try_to_load_from_cache(cache_dir, repo_id, filename, revision="main", repo_type="model"):
    # file_download.try_to_load_from_cache
    repo_cache = os.path.join(cache_dir, repo_folder_name(repo_id, repo_type))
    if not os.path.isdir(repo_cache):
        return None
    refs_dir = os.path.join(repo_cache, "refs")
    snapshots_dir = os.path.join(repo_cache, "snapshots")
    no_exist_dir = os.path.join(repo_cache, ".no_exist")
    if os.path.isdir(refs_dir):
        revision_file = os.path.join(refs_dir, revision)
        if os.path.isfile(revision_file):
            with open(revision_file) as f:
                revision = f.read()
    if os.path.isfile(os.path.join(no_exist_dir, revision, filename)):
        return _CACHED_NO_EXIST
    if not os.path.exists(snapshots_dir):
        return None
    cached_shas = os.listdir(snapshots_dir)
    if revision not in cached_shas:
        return None
    cached_file = os.path.join(snapshots_dir, revision, filename)
    return cached_file if os.path.isfile(cached_file) else None


def _get_pointer_path(storage_folder, revision, relative_filename):
    snapshot_path = os.path.join(storage_folder, "snapshots")
    pointer_path = os.path.join(snapshot_path, revision, relative_filename)
    if os.path.abspath(snapshot_path) not in [str(p) for p in _parents(os.path.abspath(pointer_path))]:
        raise ValueError("invalid pointer path " + pointer_path)
    return pointer_path


def _parents(path):
    out = []
    while True:
        parent = os.path.dirname(path)
        if parent == path:
            return out
        out.append(parent)
        path = parent


def hf_hub_download_offline(cache_dir, repo_id, filename, revision="main", repo_type="model"):
    # file_download._hf_hub_download_to_cache_dir with HF_HUB_OFFLINE=1: the HEAD call fails with
    # OfflineModeIsEnabled, then the pointer is resolved from refs/.
    storage_folder = os.path.join(cache_dir, repo_folder_name(repo_id, repo_type))
    relative_filename = filename
    if REGEX_COMMIT_HASH.match(revision):
        pointer_path = _get_pointer_path(storage_folder, revision, relative_filename)
        if os.path.exists(pointer_path):
            return pointer_path
    commit_hash = None
    if REGEX_COMMIT_HASH.match(revision):
        commit_hash = revision
    else:
        ref_path = os.path.join(storage_folder, "refs", revision)
        if os.path.isfile(ref_path):
            with open(ref_path) as f:
                commit_hash = f.read()
    if commit_hash is not None:
        pointer_path = _get_pointer_path(storage_folder, commit_hash, relative_filename)
        if os.path.exists(pointer_path):
            return pointer_path
    raise LocalEntryNotFoundError(filename)


def snapshot_download_offline(cache_dir, repo_id, revision="main", repo_type="model"):
    # _snapshot_download.snapshot_download with local_files_only=True (repo_info is None).
    storage_folder = os.path.join(cache_dir, repo_folder_name(repo_id, repo_type))
    commit_hash = None
    if REGEX_COMMIT_HASH.match(revision):
        commit_hash = revision
    else:
        ref_path = os.path.join(storage_folder, "refs", revision)
        if os.path.exists(ref_path):
            with open(ref_path) as f:
                commit_hash = f.read()
    if commit_hash is not None:
        snapshot_folder = os.path.join(storage_folder, "snapshots", commit_hash)
        if os.path.exists(snapshot_folder):
            # _raise_if_incomplete_snapshot: only when trees/<commit>.json exists.
            tree_file = os.path.join(storage_folder, "trees", commit_hash + ".json")
            if os.path.exists(tree_file):
                with open(tree_file) as f:
                    tree = json.load(f)
                for path in tree.get("files", {}):
                    if not os.path.exists(os.path.join(snapshot_folder, path)):
                        raise LocalEntryNotFoundError("incomplete snapshot: " + path)
            return snapshot_folder
    raise LocalEntryNotFoundError("snapshot of " + repo_id + "@" + revision)


def git_blob_sha1(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def main():
    cache_dir, repo_id, repo_type, manifest_path = sys.argv[1:5]
    revisions = sys.argv[5:] or ["main"]
    with open(manifest_path) as f:
        manifest = json.load(f)
    files = nbytes = 0
    for revision in revisions:
        commit = manifest["refs"].get(revision, revision)
        entries = manifest["commits"][commit]["files"]
        folder = snapshot_download_offline(cache_dir, repo_id, revision, repo_type)
        if os.path.basename(folder) != commit:
            fail("snapshot_download gave %s, want commit %s" % (folder, commit))
        for e in entries:
            path = e["path"]
            cached = try_to_load_from_cache(cache_dir, repo_id, path, revision, repo_type)
            got = hf_hub_download_offline(cache_dir, repo_id, path, revision, repo_type)
            if cached != got:
                fail("%s: try_to_load_from_cache %r != hf_hub_download %r" % (path, cached, got))
            m = TRANSFORMERS_COMMIT_RE.search(got)
            if not m or m.group(1) != commit:
                fail("%s: commit hash regex on %s" % (path, got))
            with open(got, "rb") as f:
                data = f.read()
            if len(data) != e["size"]:
                fail("%s: %d bytes, want %d" % (path, len(data), e["size"]))
            if e.get("sha256"):
                ok = hashlib.sha256(data).hexdigest() == e["sha256"]
            else:
                ok = git_blob_sha1(data) == e["git_oid"]
            if not ok:
                fail("%s: content hash mismatch" % path)
            files += 1
            nbytes += len(data)
        # An optional file transformers probes for and the repo lacks: "not cached", no error.
        if try_to_load_from_cache(cache_dir, repo_id, "adapter_config.json", revision, repo_type) is not None:
            fail("missing file resolved from the cache")
        try:
            hf_hub_download_offline(cache_dir, repo_id, "adapter_config.json", revision, repo_type)
            fail("missing file downloaded offline")
        except LocalEntryNotFoundError:
            pass
    # A repo that does not exist is simply absent.
    if try_to_load_from_cache(cache_dir, repo_id + "-nope", "config.json", "main", repo_type) is not None:
        fail("nonexistent repo resolved")
    print("OK %d files %d bytes %s" % (files, nbytes, " ".join(revisions)))


if __name__ == "__main__":
    main()
