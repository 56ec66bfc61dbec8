#!/usr/bin/env python3
"""Self-test of gen_repo.py, fake_hub.py and st_load.py. Run: python3 tests/testing/fake_hub_selftest.py

Generates small repos in a temp dir, starts fake_hub.py as a subprocess and checks the protocol with
http.client (redirects never auto-followed). Last line: "N passed, N failed"; exit 1 on any failure.
"""

import base64
import hashlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
PY = sys.executable or "python3"
TOKEN = "hf_selftest_token"
UNAPPROVED = "hf_unapproved_token"

passed = 0
failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL: %s" % what, flush=True)


def section(fn):
    """Runs one test function; an exception counts as one failure."""
    global failed
    t = time.time()
    try:
        fn()
        print("ok   %-28s %.2fs" % (fn.__name__, time.time() - t), flush=True)
    except Exception:
        failed += 1
        print("FAIL: %s raised:" % fn.__name__, flush=True)
        traceback.print_exc(file=sys.stdout)


class Hub:
    def __init__(self, root, *extra):
        self.dir = tempfile.mkdtemp(prefix="fakehub-run-")
        ready = os.path.join(self.dir, "ready.json")
        self.proc = subprocess.Popen([PY, os.path.join(HERE, "fake_hub.py"), "--root", root, "--ready-file", ready,
                                      "--seed", "7", "--log", os.path.join(self.dir, "log.jsonl")] + list(extra),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 20
        while not os.path.exists(ready):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("fake_hub did not start: %s" % self.proc.stderr.read().decode())
            time.sleep(0.05)
        with open(ready) as f:
            info = json.load(f)
        line = json.loads(self.proc.stdout.readline())
        assert line == info, (line, info)
        self.hub_port = info["hub_port"]
        self.cdn_port = info["cdn_port"]
        self.pid = info["pid"]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def req(self, method, url, headers=None, body=None, port=None, conn=None):
        """Returns (status, headers-with-lowercase-keys, body). url may be absolute or a path."""
        if url.startswith("http://"):
            u = urllib.parse.urlsplit(url)
            port = u.port
            url = u.path + ("?" + u.query if u.query else "")
        c = conn or http.client.HTTPConnection("127.0.0.1", port or self.hub_port, timeout=20)
        c.request(method, url, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        hs = {k.lower(): v for k, v in r.getheaders()}
        if conn is None:
            c.close()
        return r.status, hs, data

    def admin(self, method, path, obj=None):
        body = json.dumps(obj).encode() if obj is not None else None
        s, _, data = self.req(method, "/_admin/" + path, body=body,
                              headers={"Content-Type": "application/json"} if body else {})
        assert s == 200, (path, s, data)
        return json.loads(data)


def make_fixtures(root):
    gen = os.path.join(HERE, "gen_repo.py")
    runs = [["--repo", "org/tiny", "--total-size", "3MiB", "--shards", "2", "--extra-revision"],
            ["--repo", "org/secret", "--total-size", "64KiB", "--shards", "1", "--private"],
            ["--repo", "org/gatedm", "--total-size", "64KiB", "--shards", "1", "--gated"],
            ["--repo", "org/ds", "--type", "dataset", "--total-size", "64KiB", "--shards", "1"]]
    for r in runs:
        subprocess.check_call([PY, gen, "--root", root, "--quiet"] + r)
    # Add a zero-length LFS file to org/tiny's head commit (tests the CDN's zero-length answer).
    mp = os.path.join(root, "models", "org", "tiny", "manifest.json")
    with open(mp) as f:
        m = json.load(f)
    head = m["refs"]["main"]
    files = m["commits"][head]["files"]
    empty = next(e for e in files if e["path"] == "empty.txt")
    ptr = ("version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize 0\n" % hashlib.sha256(b"").hexdigest())
    files.append({"path": "empty.bin", "size": 0, "lfs": True, "sha256": hashlib.sha256(b"").hexdigest(),
                  "git_oid": hashlib.sha1(b"blob %d\0" % len(ptr) + ptr.encode()).hexdigest(),
                  "pointer_size": len(ptr), "content": empty["content"]})
    with open(mp, "w") as f:
        json.dump(m, f)
    return m


def main():
    t0 = time.time()
    root = tempfile.mkdtemp(prefix="fakehub-selftest-")
    hub = None
    try:
        m = make_fixtures(root)
        repo_dir = os.path.join(root, "models", "org", "tiny")
        head = m["refs"]["main"]
        old = m["refs"]["v1.0"]
        files = {e["path"]: e for e in m["commits"][head]["files"]}
        shard = "model-00001-of-00002.safetensors"
        shard_e = files[shard]
        shard_bytes = open(os.path.join(repo_dir, shard_e["content"]), "rb").read()

        # --- generator + loader ---------------------------------------------------------------
        def test_gen_repo():
            check(len(head) == 40 and len(old) == 40 and head != old, "commit ids")
            check(set(files) >= {"config.json", "tokenizer.json", "README.md", "generation_config.json",
                                 ".gitattributes", "empty.txt", "sub/dir/notes.txt", shard,
                                 "model.safetensors.index.json"}, "head files")
            oldf = {e["path"]: e for e in m["commits"][old]["files"]}
            check("generation_config.json" not in oldf, "old commit lacks generation_config.json")
            check(oldf["config.json"]["git_oid"] != files["config.json"]["git_oid"], "old config differs")
            a = os.stat(os.path.join(repo_dir, oldf[shard]["content"]))
            b = os.stat(os.path.join(repo_dir, shard_e["content"]))
            check(a.st_ino == b.st_ino, "shards hard-linked between commits")
            for e in files.values():
                data = open(os.path.join(repo_dir, e["content"]), "rb").read()
                check(len(data) == e["size"], "size of %s" % e["path"])
                if e["lfs"]:
                    check(hashlib.sha256(data).hexdigest() == e["sha256"], "sha256 of %s" % e["path"])
                    ptr = "version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n" % (e["sha256"],
                                                                                                   e["size"])
                    check(hashlib.sha1(b"blob %d\0" % len(ptr) + ptr.encode()).hexdigest() == e["git_oid"],
                          "pointer oid of %s" % e["path"])
                else:
                    check(e["sha256"] is None, "non-LFS sha256 null")
                    check(hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest() == e["git_oid"],
                          "git oid of %s" % e["path"])
            check(files["empty.txt"]["size"] == 0, "empty.txt is empty")
            json.loads(open(os.path.join(repo_dir, files["config.json"]["content"])).read())
            json.loads(open(os.path.join(repo_dir, files["tokenizer.json"]["content"])).read())
            # idempotent re-run is fast and keeps the manifest
            t = time.time()
            out = subprocess.check_output([PY, os.path.join(HERE, "gen_repo.py"), "--root", root, "--repo",
                                           "org/secret", "--total-size", "64KiB", "--shards", "1", "--private"])
            check(b"up to date" in out and time.time() - t < 5, "re-run skips")

        def test_safetensors():
            cdir = os.path.join(repo_dir, "commits", head)
            for mode in ([], ["--mmap", "--order", "random"]):
                r = subprocess.run([PY, os.path.join(HERE, "st_load.py"), cdir, "--manifest",
                                    os.path.join(repo_dir, "manifest.json"), "--json"] + mode,
                                   capture_output=True, text=True)
                res = json.loads(r.stdout)
                check(r.returncode == 0 and res["ok"], "st_load ok %s: %s" % (mode, res.get("errors")))
            idx = json.load(open(os.path.join(cdir, "model.safetensors.index.json")))
            names = set()
            big = tiny = 0
            dtypes = set()
            for s in sorted(set(idx["weight_map"].values())):
                data = open(os.path.join(cdir, s), "rb").read()
                n = int.from_bytes(data[:8], "little")
                check((8 + n) % 8 == 0, "header padded to 8 bytes")
                h = json.loads(data[8:8 + n])
                check(h.pop("__metadata__") == {"format": "pt"}, "metadata format pt")
                for k, v in h.items():
                    names.add(k)
                    dtypes.add(v["dtype"])
                    sz = v["data_offsets"][1] - v["data_offsets"][0]
                    big += sz > 64 << 10
                    tiny += sz < 64
            check(names == set(idx["weight_map"]), "weight_map covers all tensors")
            check(dtypes >= {"F32", "F16", "BF16"}, "dtypes F32/F16/BF16")
            check(big > 0 and tiny > 0, "varied tensor sizes")
            # a corrupted copy must fail st_load
            bad = tempfile.mkdtemp(prefix="stbad-")
            try:
                for fn in os.listdir(cdir):
                    if fn.endswith(".safetensors") or fn.endswith(".index.json"):
                        shutil.copy(os.path.join(cdir, fn), bad)
                with open(os.path.join(bad, shard), "r+b") as f:
                    f.seek(len(shard_bytes) - 1)
                    f.write(bytes([shard_bytes[-1] ^ 1]))
                r = subprocess.run([PY, os.path.join(HERE, "st_load.py"), bad, "--manifest",
                                    os.path.join(repo_dir, "manifest.json")], capture_output=True)
                check(r.returncode != 0, "st_load detects sha256 mismatch")
                with open(os.path.join(bad, shard), "r+b") as f:
                    f.truncate(len(shard_bytes) - 3)
                r = subprocess.run([PY, os.path.join(HERE, "st_load.py"), bad], capture_output=True)
                check(r.returncode != 0, "st_load detects truncated shard")
            finally:
                shutil.rmtree(bad)

        section(test_gen_repo)
        section(test_safetensors)

        hub = Hub(root, "--page-size", "2", "--token", TOKEN, "--unapproved-token", UNAPPROVED,
                  "--alias", "org/oldname=org/tiny")
        api = "/api/models/org/tiny"

        # --- API --------------------------------------------------------------------------------
        def test_tree_pagination():
            all_files = set(files)
            all_dirs = {"sub", "sub/dir"}
            for spelling in ("true", "True", "1"):
                url = api + "/tree/main?recursive=%s&expand=False" % spelling
                got = []
                pages = 0
                while url:
                    s, h, body = hub.req("GET", url)
                    check(s == 200, "tree page status %d" % s)
                    page = json.loads(body)
                    got += page
                    pages += 1
                    link = h.get("link")
                    url = None
                    if link:
                        check(link.startswith("<http://127.0.0.1:%d/" % hub.hub_port) and link.endswith('>; rel="next"'),
                              "absolute Link: %s" % link)
                        url = link[1:link.index(">")]
                        q = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
                        check(q.get("recursive") == [spelling] and "cursor" in q, "Link keeps params")
                        base64.b64decode(q["cursor"][0])
                    check(len(page) <= 2, "page size 2")
                check(pages == (len(all_files) + len(all_dirs) + 1) // 2, "pages %d" % pages)
                paths = [e["path"] for e in got]
                check(len(paths) == len(set(paths)), "no duplicates across pages")
                check({e["path"] for e in got if e["type"] == "file"} == all_files, "tree files complete")
                check({e["path"] for e in got if e["type"] == "directory"} == all_dirs, "tree dirs included")
            # limit param, expand, sub-path with %2F, non-recursive
            s, h, body = hub.req("GET", api + "/tree/main?limit=100&expand=true")
            top = json.loads(body)
            check("link" not in h, "no Link on last page")
            check({e["path"] for e in top} == {p for p in all_files if "/" not in p} | {"sub"}, "non-recursive root")
            check(all("lastCommit" in e for e in top), "expand adds lastCommit")
            sh = next(e for e in top if e["path"] == shard)
            check(sh["lfs"] == {"oid": shard_e["sha256"], "size": shard_e["size"],
                                "pointerSize": shard_e["pointer_size"]} and sh["oid"] == shard_e["git_oid"],
                  "tree lfs entry")
            check("xetHash" not in sh, "no xetHash by default")
            s, h, body = hub.req("GET", api + "/tree/main/sub%2Fdir")
            check(s == 200 and [e["path"] for e in json.loads(body)] == ["sub/dir/notes.txt"], "sub-path listing")
            s, h, body = hub.req("GET", api + "/tree/main/nope")
            check(s == 404, "missing tree path 404")
            s, h, body = hub.req("GET", api + "/tree/v1.0?recursive=true&limit=100")
            check("generation_config.json" not in {e["path"] for e in json.loads(body)}, "tree at tag")

        def test_revisions():
            for rev, want in (("main", head), ("v1.0", old), (old[:7], old), (head, head), (head[:12], head),
                              ("refs%2Fpr%2F1", head), ("refs%2Fheads%2Fmain", head)):
                s, h, body = hub.req("GET", api + "/revision/" + rev)
                check(s == 200 and json.loads(body)["sha"] == want, "revision %s" % rev)
            s, h, body = hub.req("GET", api)
            info = json.loads(body)
            check(info["sha"] == head and info["id"] == "org/tiny" and info["private"] is False
                  and info["gated"] is False and "lastModified" in info, "repo info fields")
            check(all(set(x) == {"rfilename"} for x in info["siblings"]), "siblings without blobs")
            s, h, body = hub.req("GET", api + "/revision/main?blobs=true")
            sib = {x["rfilename"]: x for x in json.loads(body)["siblings"]}
            check(sib[shard]["lfs"] == {"sha256": shard_e["sha256"], "size": shard_e["size"],
                                        "pointerSize": shard_e["pointer_size"]}, "siblings lfs.sha256")
            check(sib["config.json"]["blobId"] == files["config.json"]["git_oid"] and "lfs" not in sib["config.json"],
                  "siblings blobId")
            s, h, body = hub.req("GET", api + "/revision/nope")
            check(s == 404 and h.get("x-error-code") == "RevisionNotFound"
                  and h.get("x-error-message") == "Invalid rev id: nope"
                  and json.loads(body) == {"error": "Invalid rev id: nope"}, "unknown revision")
            s, h, body = hub.req("GET", api + "/refs?include_prs=1")
            refs = json.loads(body)
            check(refs["branches"] == [{"name": "main", "ref": "refs/heads/main", "targetCommit": head}]
                  and refs["tags"][0]["targetCommit"] == old and refs["pullRequests"][0]["ref"] == "refs/pr/1",
                  "refs")
            s, h, body = hub.req("GET", api + "/refs")
            check("pullRequests" not in json.loads(body), "refs without include_prs")
            s, h, body = hub.req("GET", api + "/treesize/main")
            check(json.loads(body)["size"] == sum(e["size"] for e in files.values()), "treesize")
            s, h, body = hub.req("POST", api + "/paths-info/main",
                                 body=urllib.parse.urlencode([("paths", "config.json"), ("paths", "nope"),
                                                              ("paths", "sub"), ("expand", "false")]),
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
            pi = json.loads(body)
            check([e["path"] for e in pi] == ["config.json", "sub"] and pi[1]["type"] == "directory", "paths-info")
            s, h, body = hub.req("GET", api + "/commits/main")
            check([c["id"] for c in json.loads(body)] == [head, old], "commits")
            s, h, body = hub.req("GET", "/api/models/org/oldname/revision/main")
            check(s == 307 and h.get("location") == api + "/revision/main", "renamed repo 307")
            s, h, body = hub.req("GET", "/api/models/ORG/Tiny")
            check(s == 307 and h.get("location") == api, "case mismatch 307")
            s, h, body = hub.req("GET", "/tiny/resolve/main/config.json")
            check(s == 307 and h.get("location") == "/org/tiny/resolve/main/config.json", "legacy id 307")
            s, h, body = hub.req("GET", "/api/datasets/org/ds")
            check(s == 200 and json.loads(body)["id"] == "org/ds", "dataset info")
            s, h, body = hub.req("GET", "/datasets/org/ds/resolve/main/README.md")
            check(s == 200 and b"task_categories" in body, "dataset resolve")

        # --- resolve ---------------------------------------------------------------------------------
        def test_resolve_small():
            cfg = open(os.path.join(repo_dir, files["config.json"]["content"]), "rb").read()
            conn = http.client.HTTPConnection("127.0.0.1", hub.hub_port, timeout=20)  # keep-alive
            s, h, body = hub.req("HEAD", "/org/tiny/resolve/main/config.json",
                                 headers={"Accept-Encoding": "identity"}, conn=conn)
            check(s == 200 and h.get("content-length") == str(len(cfg)) and body == b"", "HEAD small exact length")
            check(h.get("etag") == '"%s"' % files["config.json"]["git_oid"] and h.get("x-repo-commit") == head
                  and h.get("accept-ranges") == "bytes" and "filename*=UTF-8''config.json" in h.get("content-disposition", ""),
                  "small file headers")
            s, h, body = hub.req("GET", "/org/tiny/resolve/main/config.json", conn=conn)
            check(s == 200 and body == cfg, "GET small body")
            s, h, body = hub.req("GET", "/org/tiny/resolve/main/config.json", headers={"Range": "bytes=2-9"}, conn=conn)
            check(s == 206 and body == cfg[2:10] and h.get("content-range") == "bytes 2-9/%d" % len(cfg), "small range")
            s, h, body = hub.req("GET", "/org/tiny/resolve/v1.0/config.json", conn=conn)
            check(s == 200 and body != cfg and h.get("x-repo-commit") == old, "small at tag")
            s, h, body = hub.req("GET", "/org/tiny/resolve/main/empty.txt", conn=conn)
            check(s == 200 and body == b"" and h.get("content-length") == "0", "zero-length small file")
            s, h, body = hub.req("GET", "/org/tiny/resolve/main/sub/dir/notes.txt", conn=conn)
            check(s == 200 and body.startswith(b"Nested"), "nested small file")
            s, h, body = hub.req("HEAD", "/org/tiny/resolve/main/nope.txt", conn=conn)
            check(s == 404 and h.get("x-error-code") == "EntryNotFound" and h.get("x-repo-commit") == head
                  and h.get("x-error-message") == "Entry not found", "EntryNotFound on HEAD")
            s, h, body = hub.req("GET", "/org/tiny/resolve/nope/config.json", conn=conn)
            check(s == 404 and h.get("x-error-code") == "RevisionNotFound", "resolve bad revision")
            s, h, body = hub.req("GET", "/org/tiny/resolve/refs/pr/1/config.json", conn=conn)
            check(s == 404 and h.get("x-error-message") == "Invalid rev id: refs", "unencoded refs/pr/1")
            s, h, body = hub.req("GET", "/org/tiny/resolve/refs%2Fpr%2F1/config.json", conn=conn)
            check(s == 200 and body == cfg, "encoded refs%2Fpr%2F1")
            conn.close()
            # redirect mode (runtime switch; the CLI flag --small-mode sets the same thing)
            hub.admin("POST", "config", {"small_mode": "redirect"})
            try:
                s, h, body = hub.req("HEAD", "/org/tiny/resolve/main/config.json")
                loc = h.get("location", "")
                check(s == 307 and loc.startswith("/api/resolve-cache/models/org/tiny/%s/config.json?" % head)
                      and "etag=" in loc, "307 to resolve-cache: %s" % loc)
                check(h.get("x-linked-etag") == '"%s"' % files["config.json"]["git_oid"] and h.get("x-repo-commit") == head
                      and "x-linked-size" not in h, "307 headers")
                for target in (loc, loc.split("?")[0]):
                    s, h2, body = hub.req("HEAD", target)
                    check(s == 200 and h2.get("content-length") == str(len(cfg)) and h2.get("x-repo-commit") == head,
                          "resolve-cache HEAD %s" % target[-20:])
                s, h2, body = hub.req("GET", loc.split("?")[0])
                check(s == 200 and body == cfg, "resolve-cache GET")
                s, h2, body = hub.req("GET", loc.split("?")[0], headers={"If-None-Match": h.get("x-linked-etag")})
                check(s == 304 and body == b"", "resolve-cache 304")
                s, h, body = hub.req("HEAD", "/org/tiny/resolve/main/%s" % shard)
                check(s == 302, "LFS still 302 in redirect mode")
            finally:
                hub.admin("POST", "config", {"small_mode": "direct"})

        def lfs_location(path=shard, rev="main", headers=None):
            s, h, body = hub.req("HEAD", "/org/tiny/resolve/%s/%s" % (rev, path), headers=headers)
            assert s == 302, (s, h)
            return h["location"], h

        def test_resolve_lfs():
            for method in ("HEAD", "GET"):
                s, h, body = hub.req(method, "/org/tiny/resolve/main/%s" % shard, headers={"Range": "bytes=0-9"})
                loc = h.get("location", "")
                check(s == 302 and loc.startswith("http://127.0.0.1:%d/xet-bridge-us/" % hub.cdn_port), "LFS 302 %s" % method)
                q = urllib.parse.parse_qs(urllib.parse.urlsplit(loc).query)
                check({"X-Amz-Expires", "Expires", "Signature"} <= set(q), "signed URL params")
                check(h.get("x-linked-size") == str(shard_e["size"]) and h.get("x-linked-etag") == '"%s"' % shard_e["sha256"]
                      and h.get("x-repo-commit") == head and h.get("cache-control") == "no-store"
                      and h.get("accept-ranges") == "bytes", "LFS redirect headers")
                check(int(h["content-length"]) != shard_e["size"] and (method == "HEAD" or int(h["content-length"]) == len(body)),
                      "redirect Content-Length is the redirect body")
                check("x-xet-hash" not in h, "no xet headers by default")
            hub.admin("POST", "config", {"lfs_redirect": 307})
            s, h, body = hub.req("HEAD", "/org/tiny/resolve/main/%s" % shard)
            check(s == 307, "307 LFS redirect knob")
            hub.admin("POST", "config", {"lfs_redirect": 302})

        def test_cdn():
            loc, _ = lfs_location()
            n = shard_e["size"]
            conn = http.client.HTTPConnection("127.0.0.1", hub.cdn_port, timeout=20)
            s, h, body = hub.req("GET", loc, conn=conn)
            check(s == 200 and body == shard_bytes and h.get("content-length") == str(n), "CDN 200 full")
            check(h.get("etag") and h["etag"].strip('"') != shard_e["sha256"], "CDN ETag differs from sha256")
            s, h, body = hub.req("HEAD", loc, conn=conn)
            check(s == 200 and h.get("content-length") == str(n) and h.get("accept-ranges") == "bytes" and body == b"",
                  "CDN HEAD")
            cases = [("bytes=0-99", 0, 99), ("bytes=100-", 100, n - 1), ("bytes=-10", n - 10, n - 1),
                     ("bytes=%d-%d" % (n - 5, n + 100), n - 5, n - 1), ("bytes=-%d" % (n + 5), 0, n - 1),
                     ("bytes=7-7", 7, 7)]
            for rng, a, b in cases:
                s, h, body = hub.req("GET", loc, headers={"Range": rng}, conn=conn)
                check(s == 206 and body == shard_bytes[a:b + 1] and h.get("content-range") == "bytes %d-%d/%d" % (a, b, n)
                      and h.get("content-length") == str(b - a + 1), "CDN range %s" % rng)
            for rng in ("bytes=%d-" % n, "bytes=%d-%d" % (n + 10, n + 20)):
                s, h, body = hub.req("GET", loc, headers={"Range": rng}, conn=conn)
                check(s == 416 and h.get("content-range") == "bytes */%d" % n, "CDN 416 %s" % rng)
            conn.close()
            eloc, eh = lfs_location("empty.bin")
            check(eh.get("x-linked-size") == "0", "zero-length LFS linked size")
            s, h, body = hub.req("GET", eloc)
            check(s == 200 and h.get("content-length") == "0" and body == b"" and "content-range" not in h, "CDN zero-length")
            s, h, body = hub.req("GET", eloc, headers={"Range": "bytes=0-"})
            check(s == 200 and h.get("content-length") == "0", "CDN zero-length with Range")
            bad = loc.replace("Signature=", "Signature=0")
            s, h, body = hub.req("GET", bad)
            check(s == 403 and b"<Code>AccessDenied</Code>" in body, "bad signature 403")
            # the other file of the same repo with this signature
            other = loc.replace(loc.split("?")[0].rsplit("/", 1)[1], "0" * 64)
            s, h, body = hub.req("GET", other)
            check(s in (403, 404), "unknown CDN key rejected")

        def test_cdn_auth_violation():
            loc, _ = lfs_location()
            before = hub.admin("GET", "stats")["auth_to_cdn"]
            hub.admin("POST", "log/clear")
            s, h, body = hub.req("GET", loc, headers={"Authorization": "Bearer " + TOKEN, "Range": "bytes=0-0"})
            check(s == 206, "CDN still serves (flag mode)")
            st = hub.admin("GET", "stats")
            check(st["auth_to_cdn"] == before + 1, "auth_to_cdn counted")
            log = hub.admin("GET", "log")
            rec = [r for r in log if r["listener"] == "cdn"]
            check(len(rec) == 1 and rec[0]["auth"] is True and rec[0]["range"] == "bytes=0-0" and rec[0]["status"] == 206
                  and rec[0]["bytes"] == 1, "log records CDN auth")
            s, h, body = hub.req("GET", "/org/tiny/resolve/main/config.json", headers={"Accept-Encoding": "identity"})
            log = hub.admin("GET", "log")
            r = log[-1]
            check(r["listener"] == "hub" and r["method"] == "GET" and r["path"] == "/org/tiny/resolve/main/config.json"
                  and r["accept_encoding"] == "identity" and r["auth"] is False and r["status"] == 200
                  and r["bytes"] == files["config.json"]["size"], "hub log record")
            check(all(k in st for k in ("requests", "bytes_sent")) and st["requests"]["cdn"] > 0, "stats shape")

        def test_errors_auth():
            s, h, body = hub.req("GET", "/api/models/org/nothere")
            check(s == 401 and "x-error-code" not in h and json.loads(body) == {"error": "Invalid username or password."},
                  "unknown repo anonymous 401")
            s, h, body = hub.req("GET", "/api/models/org/nothere", headers={"Authorization": "Bearer " + TOKEN})
            check(s == 404 and h.get("x-error-code") == "RepoNotFound", "unknown repo with token 404")
            s, h, body = hub.req("GET", "/org/nothere/resolve/main/config.json")
            check(s == 401 and "x-error-code" not in h, "resolve unknown repo 401")
            s, h, body = hub.req("GET", api, headers={"Authorization": "Bearer wrong"})
            check(s == 401 and h.get("x-error-message") == "Invalid credentials in Authorization header", "bad token 401")
            for url in ("/api/models/org/secret", "/org/secret/resolve/main/config.json",
                        "/api/models/org/secret/tree/main"):
                s, h, body = hub.req("GET", url)
                check(s == 401 and "x-error-code" not in h, "private anonymous 401 %s" % url)
                s, h, body = hub.req("GET", url, headers={"Authorization": "Bearer " + TOKEN})
                check(s == 200, "private with token 200 %s" % url)
            s, h, body = hub.req("HEAD", "/org/secret/resolve/main/model-00001-of-00001.safetensors",
                                 headers={"Authorization": "Bearer " + TOKEN})
            check(s == 302, "private LFS 302 with token")
            loc = h["location"]
            s, h, body = hub.req("GET", loc)
            check(s == 200, "private CDN URL works without token")
            s, h, body = hub.req("GET", "/api/models/org/gatedm")
            check(s == 200 and json.loads(body)["gated"] == "manual", "gated metadata public")
            s, h, body = hub.req("GET", "/org/gatedm/resolve/main/config.json")
            check(s == 401 and h.get("x-error-code") == "GatedRepo", "gated anonymous 401")
            s, h, body = hub.req("GET", "/org/gatedm/resolve/main/config.json",
                                 headers={"Authorization": "Bearer " + UNAPPROVED})
            check(s == 403 and h.get("x-error-code") == "GatedRepo", "gated unapproved 403")
            s, h, body = hub.req("GET", "/org/gatedm/resolve/main/config.json", headers={"Authorization": "Bearer " + TOKEN})
            check(s == 200, "gated approved 200")

        # --- faults ----------------------------------------------------------------------------------
        def test_faults():
            loc, _ = lfs_location()
            n = shard_e["size"]
            try:
                hub.admin("POST", "faults", {"fail_next": 2})
                st = [hub.req("GET", loc, headers={"Range": "bytes=0-9"})[0] for _ in range(3)]
                check(st == [503, 503, 206], "fail_next: %s" % st)
                hub.admin("POST", "faults", {"fail_next": 1, "where": "hub"})
                s1 = hub.req("GET", "/org/tiny/resolve/main/config.json")[0]
                s2 = hub.req("GET", "/org/tiny/resolve/main/config.json")[0]
                check((s1, s2) == (503, 200), "fail_next on hub")
                hub.admin("POST", "faults", {"status_override": {"code": 429, "retry_after": 2, "count": 1},
                                             "where": "hub"})
                s, h, body = hub.req("HEAD", "/org/tiny/resolve/main/config.json")
                check(s == 429 and h.get("retry-after") == "2" and h.get("ratelimit", "").startswith('"resolvers";r=0')
                      and "ratelimit-policy" in h, "429 override")
                check(hub.req("HEAD", "/org/tiny/resolve/main/config.json")[0] == 200, "override count exhausted")
                hub.admin("POST", "faults", {"error_rate": 1.0, "only_paths": ["config.json"], "where": "both"})
                check(hub.req("GET", "/org/tiny/resolve/main/config.json")[0] == 503, "error_rate on matching path")
                check(hub.req("GET", "/org/tiny/resolve/main/README.md")[0] == 200, "only_paths excludes others")
                hub.admin("POST", "faults", {"corrupt_paths": [shard]})
                s, h, body = hub.req("GET", loc)
                diff = sum(1 for a, b in zip(body, shard_bytes) if a != b)
                check(s == 200 and len(body) == n and diff == 1, "corrupt_paths flips one byte (diff=%d)" % diff)
                s, h, body = hub.req("GET", loc, headers={"Range": "bytes=0-999"})
                check(s == 206 and len(body) == 1000 and body != shard_bytes[:1000], "corrupt on range")
                hub.admin("POST", "faults", {"truncate_rate": 1.0})
                try:
                    s, h, body = hub.req("GET", loc)
                    got = len(body)
                except http.client.IncompleteRead as e:
                    got = len(e.partial)
                check(got < n, "truncate gives a short body (%d < %d)" % (got, n))
                hub.admin("POST", "faults", {"reset_rate": 1.0})
                try:
                    s, h, body = hub.req("GET", loc)
                    got = len(body)
                except http.client.IncompleteRead as e:
                    got = len(e.partial)
                except (ConnectionError, socket.error):
                    got = -1
                check(got < n, "reset gives an error or short body")
                hub.admin("POST", "faults", {"latency_ms": 300})
                t = time.time()
                s = hub.req("HEAD", loc)[0]
                check(s == 200 and time.time() - t >= 0.29, "latency_ms")
                hub.admin("POST", "faults", {"rate_bytes_per_s": 400000})
                t = time.time()
                s, h, body = hub.req("GET", loc, headers={"Range": "bytes=0-199999"})
                el = time.time() - t
                check(s == 206 and len(body) == 200000 and el >= 0.4, "rate_bytes_per_s (%.2fs)" % el)
                hub.admin("POST", "faults", {"stall_s": 1.0})
                t = time.time()
                s, h, body = hub.req("GET", loc, headers={"Range": "bytes=0-9999"})
                el = time.time() - t
                check(s == 206 and body == shard_bytes[:10000] and el >= 0.95, "stall_s (%.2fs)" % el)
                hub.admin("POST", "faults", {"warning": "test; fake hub warning", "where": "hub"})
                s, h, body = hub.req("GET", api)
                check(h.get("x-hf-warning") == "test; fake hub warning", "X-HF-Warning")
                hub.admin("POST", "faults", {"bounce_host": "http://127.0.0.2:1", "where": "hub"})
                s, h, body = hub.req("GET", "/org/tiny/resolve/main/config.json")
                check(s == 308 and h.get("location") == "http://127.0.0.2:1/org/tiny/resolve/main/config.json", "bounce 308")
                s, h, body = hub.req("POST", "/_admin/faults", body=b'{"nonsense": 1}')
                check(s == 400, "unknown fault key rejected")
                st = hub.admin("GET", "stats")
                check(st["faults_injected"] > 0, "faults counted")
            finally:
                hub.admin("POST", "faults", {})
            check(hub.admin("GET", "faults") == {}, "faults cleared")
            s, h, body = hub.req("GET", loc)
            check(s == 200 and body == shard_bytes, "clean after faults")

        def test_expiry():
            h2 = Hub(root, "--url-ttl", "1", "--small-mode", "redirect", "--lfs-redirect", "307",
                     "--page-size", "1000")
            try:
                s, h, _ = h2.req("HEAD", "/org/tiny/resolve/main/%s" % shard)
                check(s == 307, "--lfs-redirect 307")
                loc = h["location"]
                s, h, _ = h2.req("GET", loc, headers={"Range": "bytes=0-0"})
                check(s == 206, "fresh URL works")
                s, h, _ = h2.req("HEAD", "/org/tiny/resolve/main/config.json")
                check(s == 307 and h["location"].startswith("/api/resolve-cache/"), "--small-mode redirect")
                s, h, body = h2.req("GET", "/api/models/org/tiny/tree/main?recursive=true")
                check("link" not in h and len(json.loads(body)) == len(files) + 2, "--page-size 1000 single page")
                time.sleep(2.1)
                s, h, body = h2.req("GET", loc, headers={"Range": "bytes=0-0"})
                check(s == 403 and b"AccessDenied" in body and h.get("content-type") == "application/xml",
                      "expired URL 403 AccessDenied")
                logf = os.path.join(h2.dir, "log.jsonl")
                for _ in range(100):  # the record is appended just after the response went out
                    recs = [json.loads(x) for x in open(logf)]
                    if recs and recs[-1]["status"] == 403:
                        break
                    time.sleep(0.02)
                check(len(recs) >= 5 and recs[-1]["status"] == 403, "--log JSON lines")
            finally:
                h2.stop()

        def test_hostile():
            tree = "/api/models/org/tiny/tree/%s?recursive=true" % head
            try:
                for case, bad in (("tree_dotdot", "../"), ("tree_nul", "\\u0000"), ("tree_huge_size", "18446744073709551621")):
                    hub.admin("POST", "config", {"hostile": case})
                    s, h, body = hub.req("GET", tree)
                    check(s == 200 and bad in body.decode(), "hostile %s listing" % case)
                hub.admin("POST", "config", {"hostile": "json_deep"})
                s, h, body = hub.req("GET", "/api/models/org/tiny")
                check(s == 200 and body.startswith(b"[" * 100) and len(body) == 20000, "hostile json_deep")
                hub.admin("POST", "config", {"hostile": "redirect_file"})
                s, h, _ = hub.req("HEAD", "/org/tiny/resolve/main/%s" % shard)
                check(s == 302 and h.get("location", "").startswith("file://"), "hostile redirect_file")
                hub.admin("POST", "config", {"hostile": ""})
                loc, _ = lfs_location()
                hub.admin("POST", "config", {"hostile": "wrong_content_range"})
                s, h, body = hub.req("GET", loc, headers={"Range": "bytes=0-99"})
                check(s == 206 and h.get("content-range") == "bytes 1-100/%d" % shard_e["size"] and
                      body == shard_bytes[1:101], "hostile wrong_content_range")
                hub.admin("POST", "config", {"hostile": "full_200"})
                s, h, body = hub.req("GET", loc, headers={"Range": "bytes=0-99"})
                check(s == 200 and body == shard_bytes, "hostile full_200")
            finally:
                hub.admin("POST", "config", {"hostile": ""})

        def test_external_cdn():
            # --cdn-url sends LFS redirects to an external server (bench/: nginx) at the CDN path, and
            # --cdn-tree lays out that path as symlinks to the content; the default stays unchanged.
            tree = tempfile.mkdtemp(prefix="fakehub-cdntree-")
            ext = Hub(root, "--cdn-url", "http://198.18.9.2:8081/", "--cdn-tree", tree)
            try:
                s, h, _ = ext.req("HEAD", "/org/tiny/resolve/main/%s" % shard)
                loc = h.get("location", "")
                prefix = "http://198.18.9.2:8081/xet-bridge-us/"
                check(s == 302 and loc.startswith(prefix), "external CDN redirect: %s" % loc)
                rel = urllib.parse.urlsplit(loc).path.lstrip("/")
                check(open(os.path.join(tree, rel), "rb").read() == shard_bytes, "cdn tree file has the content")
                check(loc.split("?")[0] == lfs_location()[0].split("?")[0].replace(
                    "http://127.0.0.1:%d/" % hub.cdn_port, "http://198.18.9.2:8081/"), "same path as the CDN listener")
                n = sum(len(fs) for _, _, fs in os.walk(tree))
                lfs = sum(1 for e in files.values() if e.get("lfs"))
                check(n >= lfs, "cdn tree holds every LFS file (%d links, %d LFS files at head)" % (n, lfs))
            finally:
                ext.stop()
                shutil.rmtree(tree, ignore_errors=True)

        def test_client_port():
            # Each log record names its TCP connection by the client's port (keep-alive tests).
            hub.admin("POST", "log/clear", {})
            c = http.client.HTTPConnection("127.0.0.1", hub.hub_port, timeout=20)
            for _ in range(2):
                hub.req("GET", "/api/models/org/tiny", conn=c)
            port = c.sock.getsockname()[1]
            # The fresh connection opens while the kept-alive one is still open, so its port differs.
            hub.req("GET", "/api/models/org/tiny")
            c.close()
            # Records are appended after each response is sent, so two connections' records can land
            # in either order: compare the ports as a multiset.
            ports = sorted(r.get("client_port") for r in hub.admin("GET", "log")
                           if r["path"] == "/api/models/org/tiny")
            check(len(ports) == 3 and ports.count(port) == 2 and None not in ports,
                  "client_port per connection: %r (keep-alive port %d)" % (ports, port))

        for fn in (test_tree_pagination, test_revisions, test_resolve_small, test_resolve_lfs, test_cdn,
                   test_cdn_auth_violation, test_errors_auth, test_faults, test_expiry, test_hostile,
                   test_external_cdn, test_client_port):
            section(fn)
        if hub.proc.poll() is not None:
            check(False, "fake_hub died: %s" % hub.proc.stderr.read().decode())
    finally:
        if hub:
            hub.stop()
            err = hub.proc.stderr.read().decode() if hub.proc.stderr else ""
            if "Traceback" in err:
                check(False, "fake_hub printed a traceback:\n" + err)
        shutil.rmtree(root, ignore_errors=True)
    print("elapsed %.1fs" % (time.time() - t0))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
