#!/usr/bin/env python3
"""A faithful fake of the Hugging Face hub + its CDN, for modelfs tests (stdlib only).

Implements what modelfs relies on of the real hub (API, resolve redirects, signed CDN URLs, Range,
auth, errors). Two listeners:
  HUB  the endpoint a client gets as HF_ENDPOINT: /api/..., /{repo}/resolve/..., /api/resolve-cache/...,
       and the admin API /_admin/... (log, stats, faults, config)
  CDN  signed /xet-bridge-us/<repo-uid>/<hash>?...&Expires=..&Signature=.. URLs with Range support

Every repo found under --root (a manifest.json written by gen_repo.py) is served. See README.md.
"""

import argparse
import base64
import hashlib
import hmac
import http.server
import json
import os
import random
import re
import socket
import socketserver
import struct
import sys
import threading
import time
import urllib.parse

HEX40 = re.compile(r"^[0-9a-f]{40}$")
HEXSHORT = re.compile(r"^[0-9a-f]{7,40}$")
API_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
PREFIX_TYPES = {"datasets": "dataset", "spaces": "space"}
API_KEYWORDS = {"revision", "tree", "paths-info", "refs", "treesize", "commits", "xet-read-token"}
EXPOSE = ("X-Repo-Commit,X-Request-Id,X-Error-Code,X-Error-Message,X-Total-Count,ETag,Link,Accept-Ranges,"
          "Content-Range,X-Linked-Size,X-Linked-ETag,X-Xet-Hash")
TRUE_WORDS = {"true", "1", "yes", "on"}
FAULT_KEYS = {"where", "latency_ms", "rate_bytes_per_s", "error_rate", "fail_next", "reset_rate",
              "truncate_rate", "stall_s", "corrupt_paths", "status_override", "only_paths", "warning",
              "bounce_host", "error_status", "stall_rate", "rate_limit_rate", "retry_after"}


def qbool(v):
    return v is not None and v.strip().lower() in TRUE_WORDS


def iso_now():
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


class Blob:
    """A file at a commit."""
    __slots__ = ("path", "size", "git_oid", "sha256", "lfs", "pointer_size", "content", "xet", "commit")

    def __init__(self, e, repo_dir, commit):
        self.path = e["path"]
        self.size = e["size"]
        self.git_oid = e["git_oid"]
        self.sha256 = e.get("sha256")
        self.lfs = bool(e.get("lfs"))
        self.pointer_size = e.get("pointer_size", 134)
        self.content = os.path.join(repo_dir, e["content"])
        self.commit = commit
        # Fake xet hash: never equal to the sha256 (the CDN ETag must differ from it).
        self.xet = hashlib.sha256(b"xet:" + (self.sha256 or self.git_oid).encode()).hexdigest()


class Repo:
    def __init__(self, manifest_path):
        with open(manifest_path) as f:
            m = json.load(f)
        self.dir = os.path.dirname(os.path.abspath(manifest_path))
        self.m = m
        self.id = m["id"]
        self.type = m.get("type", "model")
        self.private = bool(m.get("private"))
        gated = m.get("gated", False)
        self.gated = ("manual" if gated is True else gated) or False
        self.disabled = bool(m.get("disabled"))
        self.default_branch = m.get("default_branch", "main")
        self.refs = dict(m["refs"])
        self.branches = m.get("branches") or [r for r in self.refs if not r.startswith("refs/")
                                              and r not in m.get("tags", [])]
        self.tags = m.get("tags", [])
        self.prs = m.get("pull_requests") or [r for r in self.refs if r.startswith("refs/pr/")]
        self.uid = hashlib.sha1(("%s/%s" % (self.type, self.id)).encode()).hexdigest()[:24]
        self.commits = {}
        for cid, c in m["commits"].items():
            files = {e["path"]: Blob(e, self.dir, cid) for e in c["files"]}
            dirs = set()
            for p in files:
                parts = p.split("/")
                for i in range(1, len(parts)):
                    dirs.add("/".join(parts[:i]))
            c2 = {"title": c.get("title", "Commit"), "date": c.get("date", "2024-01-01T00:00:00.000Z"),
                  "parent": c.get("parent"), "files": files, "dirs": dirs}
            # entries sorted by path (directories and files mixed), as one flat list
            c2["entries"] = sorted([(p, None) for p in dirs] + [(p, b) for p, b in files.items()],
                                   key=lambda x: x[0])
            c2["dir_oid"] = {d: hashlib.sha1(("tree:%s:%s" % (cid, d)).encode()).hexdigest() for d in dirs}
            self.commits[cid] = c2

    @property
    def api_prefix(self):
        return "/api/%ss/%s" % (self.type, self.id)

    @property
    def dl_prefix(self):
        return ("" if self.type == "model" else "/%ss" % self.type) + "/" + self.id

    def resolve_rev(self, rev):
        if rev in self.refs:
            return self.refs[rev]
        if rev.startswith("refs/heads/") and rev[11:] in self.branches:
            return self.refs[rev[11:]]
        if rev.startswith("refs/tags/") and rev[10:] in self.tags:
            return self.refs[rev[10:]]
        if HEX40.match(rev):
            return rev if rev in self.commits else None
        if HEXSHORT.match(rev):
            hits = [c for c in self.commits if c.startswith(rev)]
            if len(hits) == 1:
                return hits[0]
        return None


class State:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.log = []
        self.inflight = 0
        self.log_file = open(args.log, "a") if args.log else None
        self.rng = random.Random(args.seed)
        self.secret = hashlib.sha256(b"fake-hub-secret:%d" % args.seed).digest()
        self.faults = {}
        self.stats = {"requests": {"hub": 0, "cdn": 0}, "bytes_sent": {"hub": 0, "cdn": 0},
                      "auth_to_cdn": 0, "faults_injected": 0, "status": {}}
        self.config = {
            "page_size": args.page_size,
            "small_mode": args.small_mode,
            "lfs_redirect": args.lfs_redirect,
            "url_ttl": args.url_ttl,
            "xet_headers": args.xet_headers,
            "link_host": args.link_host,
            "redirect_range_416": args.redirect_range_416,
            "multirange": args.multirange,
            "cdn_gzip_ignores_range": args.cdn_gzip_ignores_range,
            "reject_cdn_auth": args.reject_cdn_auth,
            "hostile": args.hostile,
            "synthetic_files": 0,
        }
        self.tokens = set(args.token or [])
        self.unapproved = set(args.unapproved_token or [])
        self.aliases = dict(a.split("=", 1) for a in (args.alias or []))
        self.repos = {}
        self.by_xet = {}
        self.hub_port = None
        self.cdn_port = None
        self.load()

    def load(self):
        root = self.args.root
        for dirpath, dirnames, filenames in os.walk(root):
            if "manifest.json" in filenames:
                r = Repo(os.path.join(dirpath, "manifest.json"))
                self.repos[(r.type, r.id)] = r
                for c in r.commits.values():
                    for b in c["files"].values():
                        if b.lfs:
                            self.by_xet[(r.uid, b.xet)] = (r, b)
                dirnames[:] = []  # do not descend into commits/

    def find_repo(self, rtype, rid):
        """Returns (repo, canonical) where canonical is True when rid matched exactly."""
        r = self.repos.get((rtype, rid))
        if r:
            return r, True
        if rid in self.aliases:
            r = self.repos.get((rtype, self.aliases[rid]))
            if r:
                return r, False
        low = rid.lower()
        for (t, i), r in self.repos.items():
            if t == rtype and (i.lower() == low or ("/" not in rid and i.split("/")[-1].lower() == low
                                                     and "/" in i)):
                return r, False
        return None, False

    def sign(self, uid, h, expires):
        return hmac.new(self.secret, ("%s/%s:%d" % (uid, h, expires)).encode(), hashlib.sha256).hexdigest()

    def record(self, rec):
        with self.lock:
            self.log.append(rec)
            lst = rec["listener"]
            self.stats["requests"][lst] += 1
            self.stats["bytes_sent"][lst] += rec["bytes"]
            k = str(rec["status"])
            self.stats["status"][k] = self.stats["status"].get(k, 0) + 1
            if lst == "cdn" and rec["auth"]:
                self.stats["auth_to_cdn"] += 1
            if rec.get("fault"):
                self.stats["faults_injected"] += 1
            if self.log_file:
                self.log_file.write(json.dumps(rec) + "\n")
                self.log_file.flush()

    # ---- faults ----------------------------------------------------------------------------------
    def fault_applies(self, listener, repo_path):
        f = self.faults
        if not f:
            return False
        where = f.get("where", "cdn")
        if where != "both" and where != listener:
            return False
        only = f.get("only_paths")
        if only:
            return repo_path is not None and repo_path in only
        return True

    def pre_fault(self, listener, repo_path):
        """Decides a whole-response fault. Returns (kind, info) or None. Called once per request."""
        with self.lock:
            if not self.fault_applies(listener, repo_path):
                return None, None
            f = self.faults
            so = f.get("status_override")
            if so and so.get("count", 1) > 0:
                so["count"] = so.get("count", 1) - 1
                return "status", so
            if f.get("fail_next", 0) > 0:
                f["fail_next"] -= 1
                return "status", {"code": f.get("error_status", 503)}
            if f.get("error_rate") and self.rng.random() < f["error_rate"]:
                return "status", {"code": f.get("error_status", 503)}
            if f.get("rate_limit_rate") and self.rng.random() < f["rate_limit_rate"]:
                return "status", {"code": 429, "retry_after": f.get("retry_after", 1)}
            if f.get("bounce_host") and listener == "hub":
                return "bounce", f["bounce_host"]
            return None, None

    def body_plan(self, listener, repo_path, length):
        """Returns dict of body faults for one response, or None (=> fast sendfile path)."""
        with self.lock:
            if not self.fault_applies(listener, repo_path):
                return None
            f = self.faults
            plan = {}
            if f.get("rate_bytes_per_s"):
                plan["rate"] = float(f["rate_bytes_per_s"])
            if length > 0:
                if f.get("reset_rate") and self.rng.random() < f["reset_rate"]:
                    plan["reset_at"] = self.rng.randrange(0, length)
                elif f.get("truncate_rate") and self.rng.random() < f["truncate_rate"]:
                    plan["truncate_at"] = self.rng.randrange(0, length)
                if f.get("stall_s") and self.rng.random() < f.get("stall_rate", 1.0):
                    plan["stall_at"] = max(1, length // 2)
                    plan["stall_s"] = float(f["stall_s"])
                cp = f.get("corrupt_paths")
                if cp and repo_path in cp:
                    plan["corrupt_at"] = self.rng.randrange(0, length)
            return plan or None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-hub/1.0"
    sys_version = ""
    timeout = 120

    def setup(self):
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def log_message(self, fmt, *a):  # quiet
        pass

    def version_string(self):
        return self.server_version

    @property
    def st(self):
        return self.server.state

    @property
    def listener(self):
        return self.server.listener

    # ---- request lifecycle -----------------------------------------------------------------------
    def do_GET(self):
        self.dispatch()

    def do_HEAD(self):
        self.dispatch()

    def do_POST(self):
        self.dispatch()

    def dispatch(self):
        u = urllib.parse.urlsplit(self.path)
        self.raw_path = u.path
        self.query_str = u.query
        self.q = urllib.parse.parse_qs(u.query, keep_blank_values=True)
        self.body_sent = 0
        self.status = None
        self.repo_path = None
        self.fault = None
        self.extra_headers = []
        self.req_body = b""
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.req_body = self.rfile.read(n)
        admin = self.listener == "hub" and self.raw_path.startswith("/_admin/")
        if not admin:
            with self.st.lock:
                self.st.inflight += 1
        try:
            if admin:
                return self.handle_admin()
            if self.listener == "cdn":
                self.handle_cdn()
            else:
                self.handle_hub()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:  # keep the server alive, answer 500
            import traceback
            traceback.print_exc()
            if self.status is None:
                try:
                    self.send_json(500, {"error": "internal: %r" % e})
                except OSError:
                    pass
            self.close_connection = True
        finally:
            if not admin:
                self.st.record({
                    "t": time.time(), "listener": self.listener, "method": self.command,
                    "path": self.raw_path, "query": self.query_str,
                    "range": self.headers.get("Range"),
                    "auth": self.headers.get("Authorization") is not None,
                    "accept_encoding": self.headers.get("Accept-Encoding"),
                    "user_agent": self.headers.get("User-Agent"),
                    "status": self.status, "bytes": self.body_sent,
                    "repo_path": self.repo_path, "fault": self.fault,
                    # The client's port names its TCP connection: tests check keep-alive reuse.
                    "client_port": self.client_address[1] if self.client_address else None})
                with self.st.lock:
                    self.st.inflight -= 1

    # ---- low-level send helpers -------------------------------------------------------------------
    def start(self, code, headers):
        self.status = code
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        for k, v in self.extra_headers:
            self.send_header(k, v)
        if self.st.faults.get("warning") and self.st.fault_applies(self.listener, self.repo_path):
            self.send_header("X-HF-Warning", self.st.faults["warning"])
        if self.close_connection:
            self.send_header("Connection", "close")

    def send_bytes(self, code, body, ctype="application/json; charset=utf-8", headers=()):
        hs = list(headers)
        hs.append(("Content-Type", ctype))
        hs.append(("Content-Length", str(len(body))))
        self.start(code, hs)
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD" and body:
            # headers + body in one write
            self._headers_buffer.append(body)
            self.body_sent = len(body)
        self.flush_headers()

    def send_json(self, code, obj, headers=()):
        self.send_bytes(code, json.dumps(obj).encode(), headers=headers)

    def send_error_hf(self, code, message, error_code=None, headers=(), commit=None):
        hs = [("X-Error-Message", message), ("Access-Control-Expose-Headers", EXPOSE)]
        if error_code:
            hs.append(("X-Error-Code", error_code))
        if commit:
            hs.append(("X-Repo-Commit", commit))
        if code == 401 and not error_code:
            hs.append(("WWW-Authenticate", 'Bearer realm="Authentication required", charset="UTF-8"'))
        hs += list(headers)
        self.send_json(code, {"error": message}, headers=hs)

    def send_file(self, blob, start, length, code, headers, listener):
        """Sends headers then `length` bytes of blob content from `start`, applying body faults."""
        hs = list(headers)
        hs.append(("Content-Length", str(length)))
        self.start(code, hs)
        if self.command == "HEAD" or length == 0:
            self.end_headers()
            return
        plan = self.st.body_plan(listener, blob.path, length)
        if plan is None:
            # Cork so that the headers and the first body bytes share packets.
            cork = getattr(socket, "TCP_CORK", None)
            if cork is not None:
                self.connection.setsockopt(socket.IPPROTO_TCP, cork, 1)
            try:
                self.end_headers()
                with open(blob.content, "rb") as f:
                    self.sendfile_blocking(f, start, length)
            finally:
                if cork is not None:
                    try:
                        self.connection.setsockopt(socket.IPPROTO_TCP, cork, 0)
                    except OSError:
                        pass
            return
        self.end_headers()
        sock = self.connection
        with open(blob.content, "rb") as f:
            self.fault = ",".join(sorted(k for k in plan if k.endswith("_at") or k == "rate"))
            self.send_faulty(f, start, length, plan)

    def sendfile_blocking(self, f, start, length):
        """Zero-copy os.sendfile of [start, start+length). The socket is switched to blocking mode for
        the body (a Python socket timeout makes the fd non-blocking and costs a select() per chunk,
        which halves throughput to clients with small read buffers such as curl); SO_SNDTIMEO keeps a
        stuck client from holding the thread forever."""
        sock = self.connection
        old_timeout = sock.gettimeout()
        sock.settimeout(None)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", int(self.timeout), 0))
            out = sock.fileno()
            infd = f.fileno()
            sent = 0
            while sent < length:
                try:
                    n = os.sendfile(out, infd, start + sent, min(length - sent, 1 << 30))
                except BlockingIOError:
                    raise TimeoutError("send timed out")
                if n == 0:
                    raise BrokenPipeError("sendfile sent 0 (file shrank?)")
                sent += n
                self.body_sent = sent
        finally:
            sock.settimeout(old_timeout)

    def send_faulty(self, f, start, length, plan):
        sock = self.connection
        stop = length
        if "reset_at" in plan:
            stop = plan["reset_at"]
        elif "truncate_at" in plan:
            stop = plan["truncate_at"]
        rate = plan.get("rate")
        stall_at = plan.get("stall_at")
        chunk = 64 << 10 if rate else 1 << 20
        pos = 0
        t0 = time.monotonic()
        fd = f.fileno()
        while pos < stop:
            if stall_at is not None and pos >= stall_at:
                time.sleep(plan["stall_s"])
                stall_at = None
            n = min(chunk, stop - pos)
            if stall_at is not None and pos < stall_at < pos + n:
                n = stall_at - pos
            data = os.pread(fd, n, start + pos)
            if not data:
                break
            c = plan.get("corrupt_at")
            if c is not None and pos <= c < pos + len(data):
                b = bytearray(data)
                b[c - pos] ^= 0xFF
                data = bytes(b)
            sock.sendall(data)
            pos += len(data)
            self.body_sent = pos
            if rate:
                ahead = pos / rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
        if stop < length:
            self.close_connection = True
            if "reset_at" in plan:
                try:  # RST instead of FIN
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                    self.server.reset_fds.add(sock.fileno())
                except OSError:
                    pass
            else:
                try:
                    sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

    def apply_pre_fault(self):
        """Whole-response faults (latency, 503, 429, bounce). Returns True if it answered."""
        st = self.st
        if not st.faults:
            return False
        kind, info = st.pre_fault(self.listener, self.repo_path)
        if st.fault_applies(self.listener, self.repo_path) and st.faults.get("latency_ms"):
            time.sleep(st.faults["latency_ms"] / 1000.0)
            if kind is None:
                self.fault = "latency"
        if kind == "status":
            code = int(info.get("code", 503))
            self.fault = "status_%d" % code
            hs = []
            if code == 429:
                bucket = "resolvers" if "/resolve/" in self.raw_path else "api"
                t = int(info.get("reset", info.get("retry_after", 1) or 1))
                hs += [("RateLimit", '"%s";r=0;t=%d' % (bucket, t)),
                       ("RateLimit-Policy", '"fixed window";"%s";q=%d;w=300' %
                        (bucket, 3000 if bucket == "resolvers" else 500))]
            if info.get("retry_after") is not None:
                hs.append(("Retry-After", str(info["retry_after"])))
            msg = {429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
                   503: "Service Unavailable", 504: "Gateway Timeout"}.get(code, "Injected fault")
            self.send_bytes(code, json.dumps({"error": msg}).encode(), headers=hs)
            return True
        if kind == "bounce":
            self.fault = "bounce"
            loc = info.rstrip("/") + self.path
            self.send_bytes(308, b"Permanent Redirect. Redirecting to " + loc.encode(), "text/plain; charset=utf-8",
                            headers=[("Location", loc)])
            return True
        return False

    # ---- admin -----------------------------------------------------------------------------------
    def handle_admin(self):
        st = self.st
        # A request's log record is written after its last byte went out; give requests that are still
        # finishing a moment so that a test reading the log right after a response sees it.
        deadline = time.monotonic() + 1.0
        while st.inflight > 0 and time.monotonic() < deadline:
            time.sleep(0.002)
        p = self.raw_path.rstrip("/")
        if p == "/_admin/log" and self.command == "GET":
            with st.lock:
                data = json.dumps(st.log).encode()
            return self.send_bytes(200, data)
        if p == "/_admin/log/clear" and self.command == "POST":
            with st.lock:
                st.log.clear()
            return self.send_json(200, {"ok": True})
        if p == "/_admin/faults":
            if self.command == "POST":
                try:
                    cfg = json.loads(self.req_body or b"{}")
                    assert isinstance(cfg, dict)
                except (ValueError, AssertionError):
                    return self.send_json(400, {"error": "body must be a JSON object"})
                unknown = set(cfg) - FAULT_KEYS
                if unknown:
                    return self.send_json(400, {"error": "unknown fault keys: %s" % sorted(unknown)})
                if "status_override" in cfg and cfg["status_override"] is not None:
                    cfg["status_override"] = dict(cfg["status_override"])
                    cfg["status_override"].setdefault("count", 1)
                with st.lock:
                    st.faults = cfg
            with st.lock:
                return self.send_json(200, st.faults)
        if p == "/_admin/stats":
            with st.lock:
                return self.send_json(200, st.stats)
        if p == "/_admin/stats/clear" and self.command == "POST":
            with st.lock:
                st.stats = {"requests": {"hub": 0, "cdn": 0}, "bytes_sent": {"hub": 0, "cdn": 0},
                            "auth_to_cdn": 0, "faults_injected": 0, "status": {}}
            return self.send_json(200, {"ok": True})
        if p == "/_admin/config":
            if self.command == "POST":
                try:
                    cfg = json.loads(self.req_body or b"{}")
                except ValueError:
                    return self.send_json(400, {"error": "bad json"})
                unknown = set(cfg) - set(st.config)
                if unknown:
                    return self.send_json(400, {"error": "unknown config keys: %s" % sorted(unknown)})
                with st.lock:
                    st.config.update(cfg)
            return self.send_json(200, st.config)
        if p == "/_admin/ports":
            return self.send_json(200, {"hub_port": st.hub_port, "cdn_port": st.cdn_port, "pid": os.getpid()})
        self.send_json(404, {"error": "unknown admin route"})

    # ---- HUB ------------------------------------------------------------------------------------
    def auth_state(self):
        """Returns 'none', 'valid', 'unapproved' or 'invalid'."""
        h = self.headers.get("Authorization")
        if not h:
            return "none"
        m = re.match(r"\s*Bearer\s+(\S+)\s*$", h, re.I)
        if not m:
            return "invalid"
        tok = m.group(1)
        if tok in self.st.unapproved:
            return "unapproved"
        if not self.st.tokens or tok in self.st.tokens:
            return "valid"
        return "invalid"

    def check_access(self, repo, content):
        """The hub's auth checks (token valid, gated repo approved, private repo). Returns True if the
        request may proceed (else it has been answered)."""
        a = self.auth_state()
        if a == "invalid":
            self.send_error_hf(401, "Invalid credentials in Authorization header")
            return False
        if repo is None:
            if a == "none":
                self.send_error_hf(401, "Invalid username or password.")
            else:
                self.send_error_hf(404, "Repository not found", "RepoNotFound")
            return False
        if repo.private and a not in ("valid",):
            if a == "none":
                self.send_error_hf(401, "Invalid username or password.")
            else:
                self.send_error_hf(404, "Repository not found", "RepoNotFound")
            return False
        if repo.disabled:
            self.send_error_hf(403, "Access to this resource is disabled.")
            return False
        if repo.gated and content:
            if a == "none":
                self.send_error_hf(401, "Access to %s %s is restricted. You must have access to it and be "
                                   "authenticated to access it. Please log in." % (repo.type, repo.id),
                                   "GatedRepo")
                return False
            if a == "unapproved":
                self.send_error_hf(403, "Access to %s %s is restricted and you are not in the authorized "
                                   "list. Visit https://huggingface.co/%s to ask for access." %
                                   (repo.type, repo.id, repo.id), "GatedRepo")
                return False
        return True

    def has_gated_access(self, repo):
        return not repo.gated or self.auth_state() == "valid"

    def redirect_canonical(self, old_prefix, new_prefix):
        rest = self.raw_path[len(old_prefix):]
        loc = new_prefix + rest + ("?" + self.query_str if self.query_str else "")
        self.send_bytes(307, ("Temporary Redirect. Redirecting to %s" % loc).encode(), "text/plain; charset=utf-8",
                        headers=[("Location", loc)])

    # ---- hostile mode ----------------------------------------------------------------------------
    # One misbehaviour at a time (config "hostile" / --hostile CASE), for the client's robustness
    # tests. Listing cases answer every /tree/ call; json_* cases every /api/ JSON call; redirect_*
    # cases every /resolve/ HEAD or GET; the rest replace CDN answers (the LFS bytes).
    HOSTILE_TREES = {
        "tree_dotdot": [{"type": "file", "path": "../../../../tmp/modelfs-hostile-escape", "size": 5}],
        "tree_absolute": [{"type": "file", "path": "/tmp/modelfs-hostile-escape", "size": 5}],
        "tree_empty_name": [{"type": "file", "path": "", "size": 5}],
        "tree_empty_segment": [{"type": "file", "path": "a//b", "size": 5}],
        "tree_duplicate": [{"type": "file", "path": "a", "size": 5}, {"type": "file", "path": "a", "size": 6}],
        "tree_nul": [{"type": "file", "path": "a\u0000b", "size": 5}],
        "tree_slash": [{"type": "file", "path": "dir/", "size": 5}],
        "tree_file_and_dir": [{"type": "file", "path": "a", "size": 5}, {"type": "file", "path": "a/b", "size": 5}],
        "tree_negative_size": [{"type": "file", "path": "neg", "size": -1}],
        "tree_huge_size": [{"type": "file", "path": "huge", "size": 2 ** 64 + 5}],
        "tree_float_size": [{"type": "file", "path": "f", "size": 1e30}],
    }
    HOSTILE_API = ("json_huge", "json_deep")
    HOSTILE_RESOLVE = ("redirect_file", "redirect_scheme", "redirect_loop")
    HOSTILE_CDN = ("wrong_content_range", "full_200", "body_long", "body_short", "never_answer", "trickle",
                   "size_mismatch")

    def hostile(self):
        """Answers with the configured misbehaviour if it applies to this request; True if so."""
        case = self.st.config.get("hostile") or ""
        segs = self.raw_path.split("/")[1:]
        if self.st.config.get("synthetic_files") and self.listener == "hub" and segs[:1] == ["api"] and "tree" in segs:
            return self.synthetic_tree(int(self.st.config["synthetic_files"]))
        if not case:
            return False
        is_api = self.listener == "hub" and segs and segs[0] == "api"
        self.fault = "hostile_" + case
        if is_api and case in self.HOSTILE_TREES and "tree" in segs:
            entries = [dict(e, oid=e.get("oid", "0" * 40)) for e in self.HOSTILE_TREES[case]]
            self.send_bytes(200, json.dumps(entries).encode())
            return True
        if is_api and case == "json_deep":
            depth = 10000  # far past any sane parser's recursion budget
            self.send_bytes(200, b"[" * depth + b"]" * depth)
            return True
        if is_api and case == "json_huge":
            total = 100 << 20  # 100 MiB of valid JSON: a list padded with spaces
            self.start(200, [("Content-Type", "application/json"), ("Content-Length", str(total))])
            self.end_headers()
            chunk = b" " * (1 << 20)
            sent = 0
            self.wfile.write(b"[")
            sent += 1
            while sent + len(chunk) < total - 1:
                self.wfile.write(chunk)
                sent += len(chunk)
            self.wfile.write(b" " * (total - 1 - sent) + b"]")
            self.body_sent = total
            return True
        if self.listener == "hub" and not is_api and "resolve" in segs and case in self.HOSTILE_RESOLVE:
            loc = {"redirect_file": "file:///etc/passwd",
                   "redirect_scheme": "gopher://127.0.0.1:70/1x",
                   "redirect_loop": self.path}[case]
            self.send_bytes(302, b"", "text/plain", headers=[("Location", loc)])
            return True
        if self.listener == "cdn" and case in self.HOSTILE_CDN:
            return self.hostile_cdn(case)
        self.fault = None
        return False

    def synthetic_tree(self, total):
        """A paginated listing of `total` small files d<i/1000>/f<i>.txt (config synthetic_files),
        for clients' pagination at scale. Pages of page_size entries, Link rel="next" with an
        offset cursor."""
        page = max(1, int(self.q.get("limit", [self.st.config["page_size"]])[0]))
        start = int(self.q.get("cursor", ["0"])[0] or 0)
        end = min(total, start + page)
        entries = [{"type": "file", "path": "d%04d/f%06d.txt" % (i // 1000, i), "size": i % 1000,
                    "oid": hashlib.sha1(b"%d" % i).hexdigest()} for i in range(start, end)]
        hs = []
        if end < total:
            host = "http://" + (self.headers.get("Host") or "127.0.0.1")
            params = {k: v[0] for k, v in self.q.items()}
            params["cursor"] = str(end)
            hs.append(("Link", '<%s%s?%s>; rel="next"' % (host, self.raw_path, urllib.parse.urlencode(params))))
        self.send_bytes(200, json.dumps(entries).encode(), headers=hs)
        return True

    def hostile_cdn(self, case):
        st = self.st
        segs = self.raw_path.split("/")[1:]
        entry = st.by_xet.get((segs[1], segs[2])) if len(segs) == 3 else None
        if entry is None:
            self.fault = None
            return False
        blob = entry[1]
        self.repo_path = blob.path
        with open(blob.content, "rb") as f:
            data = f.read()
        n = len(data)
        rng = parse_range(self.headers.get("Range"), n) if self.headers.get("Range") else None
        a, b = rng if isinstance(rng, tuple) else (0, n - 1)
        part = data[a:b + 1]
        if case == "never_answer":
            time.sleep(3600)  # accepted, request read, never a byte back
            self.close_connection = True
            return True
        if case == "trickle":
            self.start(206, [("Content-Range", "bytes %d-%d/%d" % (a, b, n)), ("Content-Length", str(len(part)))])
            self.end_headers()
            for i in range(len(part)):
                self.wfile.write(part[i:i + 1])
                self.wfile.flush()
                self.body_sent += 1
                time.sleep(1.0)
            return True
        if case == "wrong_content_range":
            shift = 1 if b + 1 < n else -1
            self.start(206, [("Content-Range", "bytes %d-%d/%d" % (a + shift, b + shift, n)),
                             ("Content-Length", str(len(part)))])
            self.end_headers()
            self.wfile.write(data[a + shift:b + shift + 1])
            self.body_sent = len(part)
            return True
        if case == "size_mismatch":
            self.start(206, [("Content-Range", "bytes %d-%d/%d" % (a, b, n + 1)), ("Content-Length", str(len(part)))])
            self.end_headers()
            self.wfile.write(part)
            self.body_sent = len(part)
            return True
        if case == "full_200":
            self.start(200, [("Content-Length", str(n))])
            self.end_headers()
            self.wfile.write(data)
            self.body_sent = n
            return True
        if case == "body_long":
            # No Content-Length, close-delimited: more bytes than the range asked for.
            self.start(206, [("Content-Range", "bytes %d-%d/%d" % (a, b, n)), ("Connection", "close")])
            self.end_headers()
            self.wfile.write(part + b"X" * 4096)
            self.body_sent = len(part) + 4096
            self.close_connection = True
            return True
        if case == "body_short":
            self.start(206, [("Content-Range", "bytes %d-%d/%d" % (a, b, n)), ("Content-Length", str(len(part)))])
            self.end_headers()
            self.wfile.write(part[:len(part) // 2])
            self.body_sent = len(part) // 2
            self.close_connection = True
            return True
        self.fault = None
        return False

    def handle_hub(self):
        if self.hostile():
            return
        segs = self.raw_path.split("/")[1:]
        if self.raw_path == "/":  # the home page: what a client's first look at an endpoint gets
            return self.with_faults(self.hub_home, segs)
        # Figure out the repo file path for fault filtering before faults apply.
        if len(segs) >= 2 and segs[0] == "api" and segs[1] == "resolve-cache":
            return self.with_faults(self.hub_resolve_cache, segs[2:])
        if segs and segs[0] == "api":
            return self.with_faults(self.hub_api, segs[1:])
        return self.with_faults(self.hub_resolve, segs)

    def hub_home(self, segs, parse_only):
        if parse_only:
            return None
        return self.send_bytes(200, b"<!doctype html><title>Hugging Face (fake hub)</title>\n",
                               "text/html; charset=utf-8")

    def with_faults(self, fn, segs):
        self.pre_parsed = fn(segs, parse_only=True)
        if self.apply_pre_fault():
            return
        fn(segs, parse_only=False)

    @staticmethod
    def split_repo(segs, keywords):
        """segs after the type: returns (repo_id_raw_segments, rest). Accepts 1- or 2-segment ids."""
        if len(segs) >= 2 and segs[1] in keywords:
            return segs[:1], segs[1:]
        return segs[:2], segs[2:]

    def hub_resolve(self, segs, parse_only):
        rtype = "model"
        prefix = ""
        if segs and segs[0] in PREFIX_TYPES:
            rtype = PREFIX_TYPES[segs[0]]
            prefix = "/" + segs[0]
            segs = segs[1:]
        if "resolve" not in segs[:3] or segs.index("resolve") == 0:
            if parse_only:
                return None
            return self.send_json(404, {"error": "Not Found"})
        i = segs.index("resolve")
        id_segs = segs[:i]
        rest = segs[i + 1:]
        if len(rest) < 2:
            if parse_only:
                return None
            return self.send_error_hf(404, "Entry not found", "EntryNotFound")
        rev = urllib.parse.unquote(rest[0])
        path = urllib.parse.unquote("/".join(rest[1:]))
        self.repo_path = path
        if parse_only:
            return None
        rid = "/".join(urllib.parse.unquote(s) for s in id_segs)
        repo, canonical = self.st.find_repo(rtype, rid)
        if repo and not canonical:
            if not self.check_access(repo, content=False):
                return
            return self.redirect_canonical(prefix + "/" + "/".join(id_segs), repo.dl_prefix)
        if not self.check_access(repo, content=True):
            return
        commit = repo.resolve_rev(rev)
        if commit is None:
            return self.send_error_hf(404, "Invalid rev id: %s" % rev, "RevisionNotFound")
        blob = repo.commits[commit]["files"].get(path)
        if blob is None:
            return self.send_error_hf(404, "Entry not found", "EntryNotFound", commit=commit)
        cfg = self.st.config
        name = path.rsplit("/", 1)[-1]
        disp = "inline; filename*=UTF-8''%s; filename=\"%s\";" % (urllib.parse.quote(name), name)
        base = [("X-Repo-Commit", commit), ("Accept-Ranges", "bytes"), ("Content-Disposition", disp),
                ("Access-Control-Expose-Headers", EXPOSE), ("Vary", "Origin, Accept-Encoding")]
        if blob.lfs:
            if cfg["redirect_range_416"] and self.headers.get("Range"):
                body_len = 177
                return self.send_bytes(416, b"", "text/plain", headers=base + [
                    ("Content-Range", "bytes */%d" % body_len)])
            # Rounded up: a URL lives at least url_ttl seconds (truncating gave one issued at
            # x.9 s a tenth of a second, and a loaded CI machine lost the selftest's race).
            expires = -int(-(time.time() + float(cfg["url_ttl"])) // 1)
            sig = self.st.sign(repo.uid, blob.xet, expires)
            q = urllib.parse.urlencode([
                ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"), ("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD"),
                ("X-Amz-Credential", "FAKEKEY/20240101/us-east-1/s3/aws4_request"),
                ("X-Amz-Date", time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())),
                ("X-Amz-Expires", str(int(float(cfg["url_ttl"])))),
                ("X-Amz-SignedHeaders", "host"),
                ("response-content-disposition", disp), ("x-id", "GetObject"),
                ("Expires", str(expires)), ("Signature", sig), ("Key-Pair-Id", "K2FAKEHUBKEYPAIR")])
            # The CDN lives on the host the client reached the hub at (127.0.0.1 here, the
            # namespace address under bench/'s network simulation), on the CDN port.
            # With --cdn-url the bytes come from an external server instead (bench/: nginx serving
            # the --cdn-tree layout), at the same path; it ignores the query (no signature check).
            cdn_host = (self.headers.get("Host") or "127.0.0.1").rsplit(":", 1)[0] or "127.0.0.1"
            cdn_base = self.st.args.cdn_url or "http://%s:%d" % (cdn_host, self.st.cdn_port)
            loc = "%s/xet-bridge-us/%s/%s?%s" % (cdn_base, repo.uid, blob.xet, q)
            body = ("Found. Redirecting to %s" % loc).encode()
            hs = base + [("Location", loc), ("X-Linked-Size", str(blob.size)),
                         ("X-Linked-Etag", '"%s"' % blob.sha256), ("Cache-Control", "no-store")]
            if cfg["xet_headers"]:
                ep = "http://%s" % (self.headers.get("Host") or "127.0.0.1:%d" % self.st.hub_port)
                hs += [("X-Xet-Hash", blob.xet),
                       ("Link", '<%s%s/xet-read-token/%s>; rel="xet-auth", '
                                '<http://127.0.0.1:%d/v1/reconstructions/%s>; rel="xet-reconstruction-info"'
                        % (ep, repo.api_prefix, commit, self.st.cdn_port, blob.xet))]
            return self.send_bytes(int(cfg["lfs_redirect"]), body, "text/plain; charset=utf-8", headers=hs)
        if cfg["small_mode"] == "redirect":
            orig = self.raw_path
            loc = "/api/resolve-cache/%ss/%s/%s/%s?%s" % (
                repo.type, repo.id, commit, urllib.parse.quote(path),
                urllib.parse.urlencode([(orig, ""), ("etag", '"%s"' % blob.git_oid)]))
            body = ("Temporary Redirect. Redirecting to %s" % loc).encode()
            return self.send_bytes(307, body, "text/plain; charset=utf-8", headers=base + [
                ("Location", loc), ("X-Linked-Etag", '"%s"' % blob.git_oid)])
        self.serve_small(blob, commit, base)

    def serve_small(self, blob, commit, base):
        etag = '"%s"' % blob.git_oid
        hs = base + [("ETag", etag), ("Cache-Control", "public, max-age=0, must-revalidate")]
        inm = self.headers.get("If-None-Match")
        if inm and etag in [x.strip().replace("W/", "") for x in inm.split(",")]:
            self.status = 304
            self.start(304, hs)
            self.end_headers()
            return
        ctype = "application/json" if blob.path.endswith(".json") else "text/plain; charset=utf-8"
        if blob.path.endswith(".md"):
            ctype = "text/markdown; charset=utf-8"
        self.serve_ranged(blob, hs + [("Content-Type", ctype)], honor_range=True)

    def serve_ranged(self, blob, hs, honor_range):
        n = blob.size
        rng = self.headers.get("Range") if honor_range else None
        if rng and n > 0:
            r = parse_range(rng, n)
            if r == "unsatisfiable":
                return self.send_bytes(416, b"", "text/plain", headers=[
                    h for h in hs if h[0] != "Content-Type"] + [("Content-Range", "bytes */%d" % n)])
            if r == "multi" and self.st.config["multirange"] == "multipart" and self.listener == "cdn":
                return self.send_multipart(blob, rng, hs)
            if isinstance(r, tuple):
                a, b = r
                return self.send_file(blob, a, b - a + 1, 206,
                                      hs + [("Content-Range", "bytes %d-%d/%d" % (a, b, n))], self.listener)
        self.send_file(blob, 0, n, 200, hs, self.listener)

    def send_multipart(self, blob, rng, hs):
        n = blob.size
        ranges = []
        for part in rng.split("=", 1)[1].split(","):
            r = parse_range("bytes=" + part.strip(), n)
            if isinstance(r, tuple):
                ranges.append(r)
        if not ranges:
            return self.send_bytes(416, b"", "text/plain", headers=[("Content-Range", "bytes */%d" % n)])
        boundary = "fakehubboundary%016x" % self.st.rng.getrandbits(64)
        out = []
        with open(blob.content, "rb") as f:
            for a, b in ranges:
                f.seek(a)
                out.append(("--%s\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes %d-%d/%d\r\n\r\n"
                            % (boundary, a, b, n)).encode() + f.read(b - a + 1) + b"\r\n")
        body = b"".join(out) + ("--%s--\r\n" % boundary).encode()
        self.send_bytes(206, body, "multipart/byteranges; boundary=%s" % boundary,
                        headers=[h for h in hs if h[0] != "Content-Type"])

    def hub_resolve_cache(self, segs, parse_only):
        # /api/resolve-cache/{type}s/{repo}/{commit}/{path}
        if not segs or segs[0] not in API_TYPES:
            return None if parse_only else self.send_json(404, {"error": "Not Found"})
        rtype = API_TYPES[segs[0]]
        segs = segs[1:]
        if len(segs) >= 3 and HEX40.match(segs[1]) and not HEX40.match(segs[2]):
            id_segs, rest = segs[:1], segs[1:]
        else:
            id_segs, rest = segs[:2], segs[2:]
        if len(rest) < 2:
            return None if parse_only else self.send_error_hf(404, "Entry not found", "EntryNotFound")
        path = urllib.parse.unquote("/".join(rest[1:]))
        self.repo_path = path
        if parse_only:
            return None
        repo, _ = self.st.find_repo(rtype, "/".join(urllib.parse.unquote(s) for s in id_segs))
        if not self.check_access(repo, content=True):
            return
        commit = repo.resolve_rev(urllib.parse.unquote(rest[0]))
        if commit is None:
            return self.send_error_hf(404, "Invalid rev id: %s" % rest[0], "RevisionNotFound")
        blob = repo.commits[commit]["files"].get(path)
        if blob is None:
            return self.send_error_hf(404, "Entry not found", "EntryNotFound", commit=commit)
        name = path.rsplit("/", 1)[-1]
        disp = "inline; filename*=UTF-8''%s; filename=\"%s\";" % (urllib.parse.quote(name), name)
        base = [("X-Repo-Commit", commit), ("Accept-Ranges", "bytes"), ("Content-Disposition", disp),
                ("Access-Control-Expose-Headers", EXPOSE)]
        if blob.lfs:  # resolve-cache is for small files only; behave like HF would and redirect to CDN
            return self.send_error_hf(404, "Entry not found", "EntryNotFound", commit=commit)
        self.serve_small(blob, commit, base)

    # ---- API ------------------------------------------------------------------------------------
    def hub_api(self, segs, parse_only):
        if parse_only:
            return None
        if not segs or segs[0] not in API_TYPES:
            return self.send_json(404, {"error": "Not Found"})
        rtype = API_TYPES[segs[0]]
        id_segs, rest = self.split_repo(segs[1:], API_KEYWORDS)
        if not id_segs or not id_segs[0]:
            return self.send_json(404, {"error": "Not Found"})
        rid = "/".join(urllib.parse.unquote(s) for s in id_segs)
        repo, canonical = self.st.find_repo(rtype, rid)
        if repo and not canonical:
            if not self.check_access(repo, content=False):
                return
            return self.redirect_canonical("/api/%s/%s" % (segs[0], "/".join(id_segs)), repo.api_prefix)
        if not self.check_access(repo, content=False):
            return
        op = rest[0] if rest else None
        if op is None or op == "revision":
            rev = urllib.parse.unquote(rest[1]) if op == "revision" and len(rest) > 1 else repo.default_branch
            if op == "revision" and len(rest) > 2:  # unencoded slash in revision
                rev = urllib.parse.unquote("/".join(rest[1:]))
            return self.api_info(repo, rev)
        if op == "refs":
            return self.api_refs(repo)
        if op in ("tree", "treesize", "paths-info", "commits", "xet-read-token"):
            if len(rest) < 2:
                return self.send_json(404, {"error": "Not Found"})
            rev = urllib.parse.unquote(rest[1])
            commit = repo.resolve_rev(rev)
            if commit is None:
                return self.send_error_hf(404, "Invalid rev id: %s" % rev, "RevisionNotFound")
            sub = urllib.parse.unquote("/".join(rest[2:])).strip("/")
            if op == "tree":
                return self.api_tree(repo, commit, sub)
            if op == "treesize":
                return self.api_treesize(repo, commit, sub)
            if op == "paths-info":
                return self.api_paths_info(repo, commit)
            if op == "commits":
                return self.api_commits(repo, commit)
            return self.send_json(404, {"error": "Xet is not enabled on this fake hub"})
        self.send_json(404, {"error": "Not Found"})

    def entry_json(self, repo, commit, path, blob, expand):
        c = repo.commits[commit]
        if blob is None:
            e = {"type": "directory", "oid": c["dir_oid"][path], "size": 0, "path": path}
        else:
            e = {"type": "file", "oid": blob.git_oid, "size": blob.size, "path": path}
            if blob.lfs:
                e["lfs"] = {"oid": blob.sha256, "size": blob.size, "pointerSize": blob.pointer_size}
                if self.st.config["xet_headers"]:
                    e["xetHash"] = blob.xet if self.has_gated_access(repo) else "*" * 64
        if expand:
            e["lastCommit"] = {"id": commit, "title": c["title"], "date": c["date"]}
            if blob is not None:
                e["securityFileStatus"] = {"status": "safe", "avScan": {"virusFound": False, "virusNames": None},
                                           "pickleImportScan": None}
        return e

    def api_info(self, repo, rev):
        commit = repo.resolve_rev(rev)
        if commit is None:
            return self.send_error_hf(404, "Invalid rev id: %s" % rev, "RevisionNotFound")
        c = repo.commits[commit]
        blobs = qbool(self.q.get("blobs", [None])[0])
        sib = []
        used = 0
        hostile_tree = self.HOSTILE_TREES.get(self.st.config.get("hostile") or "")
        if self.st.config.get("synthetic_files"):
            blobs = False  # the synthetic listing is /tree's alone: answer as a hub without blobs=true
        if blobs and hostile_tree:
            # The listing's lies in the siblings too, as a hostile hub would tell them.
            sib = [{"rfilename": e["path"], "blobId": e.get("oid", "0" * 40), "size": e["size"]}
                   for e in hostile_tree]
        for p, b in sorted(c["files"].items()) if not (blobs and hostile_tree) else []:
            s = {"rfilename": p}
            if blobs:
                s["blobId"] = b.git_oid
                s["size"] = b.size
                if b.lfs:
                    s["lfs"] = {"sha256": b.sha256, "size": b.size, "pointerSize": b.pointer_size}
            used += b.size
            sib.append(s)
        info = {"_id": repo.uid, "id": repo.id, "author": repo.id.split("/")[0] if "/" in repo.id else None,
                "sha": commit, "lastModified": c["date"], "createdAt": repo.m.get("created_at", c["date"]),
                "private": repo.private, "gated": repo.gated, "disabled": repo.disabled,
                "downloads": 0, "likes": 0, "tags": ["modelfs-fixture"], "siblings": sib,
                "usedStorage": used}
        if repo.type == "model":
            info.update({"modelId": repo.id, "library_name": "transformers",
                         "pipeline_tag": "text-generation",
                         "config": {"architectures": ["LlamaForCausalLM"], "model_type": "llama"}})
        self.send_json(200, info)

    def api_refs(self, repo):
        def ref(name, full):
            return {"name": name, "ref": full, "targetCommit": repo.refs[name]}
        out = {"branches": [ref(b, "refs/heads/" + b) for b in repo.branches],
               "converts": [], "tags": [ref(t, "refs/tags/" + t) for t in repo.tags]}
        if qbool(self.q.get("include_prs", [None])[0]):
            out["pullRequests"] = [ref(p, p) for p in repo.prs if p in repo.refs]
        self.send_json(200, out)

    def api_tree(self, repo, commit, sub):
        c = repo.commits[commit]
        recursive = qbool(self.q.get("recursive", [None])[0])
        expand = qbool(self.q.get("expand", [None])[0])
        if sub:
            if sub in c["files"]:
                return self.send_error_hf(404, "%s is a file, not a directory" % sub, "EntryNotFound")
            if sub not in c["dirs"]:
                return self.send_error_hf(404, "Entry not found", "EntryNotFound")
        pre = sub + "/" if sub else ""
        items = []
        for p, b in c["entries"]:
            if not p.startswith(pre):
                continue
            if not recursive and "/" in p[len(pre):]:
                continue
            items.append((p, b))
        limit = self.q.get("limit", [None])[0]
        page = int(self.st.config["page_size"])
        if limit:
            try:
                page = max(1, int(limit))
            except ValueError:
                return self.send_json(400, {"error": "Invalid limit"})
        offset = 0
        cur = self.q.get("cursor", [None])[0]
        if cur:
            try:
                d = json.loads(base64.b64decode(cur + "=" * (-len(cur) % 4)))
                offset = int(d["file_offset"])
                assert d.get("commit") == commit
            except Exception:
                return self.send_json(400, {"error": "Invalid cursor"})
        chunk = items[offset:offset + page]
        hs = []
        if offset + page < len(items):
            nxt = base64.b64encode(json.dumps({"file_offset": offset + page, "commit": commit,
                                               "last": chunk[-1][0]}).encode()).decode()
            params = [(k, v) for k, v in urllib.parse.parse_qsl(self.query_str, keep_blank_values=True)
                      if k != "cursor"]
            params.append(("cursor", nxt))
            host = self.st.config["link_host"] or ("http://" + (self.headers.get("Host") or
                                                                 "127.0.0.1:%d" % self.st.hub_port))
            hs.append(("Link", '<%s%s?%s>; rel="next"' % (host, self.raw_path, urllib.parse.urlencode(params))))
        self.send_json(200, [self.entry_json(repo, commit, p, b, expand) for p, b in chunk], headers=hs)

    def api_treesize(self, repo, commit, sub):
        c = repo.commits[commit]
        if sub and sub not in c["dirs"]:
            return self.send_error_hf(404, "Entry not found", "EntryNotFound")
        pre = sub + "/" if sub else ""
        total = sum(b.size for p, b in c["files"].items() if p.startswith(pre))
        self.send_json(200, {"path": sub, "size": total})

    def api_paths_info(self, repo, commit):
        if self.command != "POST":
            return self.send_json(405, {"error": "Method not allowed"})
        ctype = self.headers.get("Content-Type", "")
        body = self.req_body.decode("utf-8", "replace")
        if "json" in ctype:
            d = json.loads(body or "{}")
            paths = d.get("paths", [])
            if isinstance(paths, str):
                paths = [paths]
            expand = bool(d.get("expand"))
        else:
            d = urllib.parse.parse_qs(body, keep_blank_values=True)
            paths = d.get("paths", [])
            expand = qbool(d.get("expand", ["false"])[0])
        c = repo.commits[commit]
        out = []
        for p in paths:
            p = p.strip("/")
            if p in c["files"]:
                out.append(self.entry_json(repo, commit, p, c["files"][p], expand))
            elif p in c["dirs"]:
                out.append(self.entry_json(repo, commit, p, None, expand))
        self.send_json(200, out)

    def api_commits(self, repo, commit):
        out = []
        cid = commit
        while cid:
            c = repo.commits[cid]
            out.append({"id": cid, "title": c["title"], "message": "", "date": c["date"],
                        "authors": [{"user": "modelfs"}]})
            cid = c["parent"]
        self.send_json(200, out)

    # ---- CDN ------------------------------------------------------------------------------------
    def xml_error(self, code, ecode, msg):
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code><Message>%s</Message>'
                '<RequestId>FAKE%08X</RequestId></Error>' % (ecode, msg, random.getrandbits(32))).encode()
        self.send_bytes(code, body, "application/xml")

    def handle_cdn(self):
        st = self.st
        if self.hostile():
            return
        segs = self.raw_path.split("/")[1:]
        entry = None
        if len(segs) == 3 and segs[0].startswith("xet-bridge"):
            entry = st.by_xet.get((segs[1], segs[2]))
        if entry:
            self.repo_path = entry[1].path
        if self.apply_pre_fault():
            return
        if self.headers.get("Authorization") is not None and st.config["reject_cdn_auth"]:
            return self.xml_error(400, "InvalidArgument",
                                  "Only one auth mechanism allowed; Authorization header must not be sent")
        if self.command not in ("GET", "HEAD"):
            return self.xml_error(405, "MethodNotAllowed", "The specified method is not allowed")
        if entry is None:
            return self.xml_error(404, "NoSuchKey", "The specified key does not exist.")
        repo, blob = entry
        q = {k: v[0] for k, v in self.q.items()}
        try:
            expires = int(q.get("Expires", ""))
        except ValueError:
            return self.xml_error(403, "AccessDenied", "Missing or malformed Expires")
        good = st.sign(repo.uid, blob.xet, expires)
        if not hmac.compare_digest(good, q.get("Signature", "")):
            return self.xml_error(403, "AccessDenied", "Invalid signature")
        if time.time() > expires:
            return self.xml_error(403, "AccessDenied", "Request has expired")
        hs = [("Accept-Ranges", "bytes"), ("ETag", '"%s"' % blob.xet), ("Content-Type", "application/octet-stream"),
              ("Cache-Control", "public, max-age=31536000"), ("Access-Control-Allow-Origin", "*"),
              ("Last-Modified", "Mon, 01 Jan 2024 00:00:00 GMT")]
        ae = (self.headers.get("Accept-Encoding") or "").lower()
        honor = not (st.config["cdn_gzip_ignores_range"] and "gzip" in ae)
        self.serve_ranged(blob, hs, honor_range=honor)


def parse_range(h, n):
    """Returns (a, b) inclusive clamped, 'unsatisfiable', 'multi', or None (ignore header)."""
    m = re.fullmatch(r"\s*bytes\s*=\s*(.+)", h)
    if not m:
        return None
    spec = m.group(1)
    if "," in spec:
        return "multi"
    m = re.fullmatch(r"\s*(\d*)\s*-\s*(\d*)\s*", spec)
    if not m or (m.group(1) == "" and m.group(2) == ""):
        return None
    if m.group(1) == "":
        k = int(m.group(2))
        if k == 0:
            return "unsatisfiable"
        return (max(0, n - k), n - 1)
    a = int(m.group(1))
    if a >= n:
        return "unsatisfiable"
    b = int(m.group(2)) if m.group(2) else n - 1
    if b < a:
        return None
    return (a, min(b, n - 1))


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, listener, state):
        self.listener = listener
        self.state = state
        self.reset_fds = set()
        super().__init__(addr, Handler)

    def shutdown_request(self, request):
        try:
            fd = request.fileno()
        except OSError:
            fd = -1
        if fd in self.reset_fds:  # reset fault: close with SO_LINGER 0 and no FIN => RST
            self.reset_fds.discard(fd)
            self.close_request(request)
            return
        super().shutdown_request(request)


def write_cdn_tree(state, root):
    """Lays out root/xet-bridge-us/<uid>/<xet> -> content file, for every LFS blob of every repo."""
    for (uid, xet), (repo, blob) in state.by_xet.items():
        d = os.path.join(root, "xet-bridge-us", uid)
        os.makedirs(d, exist_ok=True)
        link = os.path.join(d, xet)
        if os.path.lexists(link):
            os.remove(link)
        os.symlink(os.path.abspath(blob.content), link)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", required=True, help="directory with repos written by gen_repo.py")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="HUB port (0 = pick)")
    ap.add_argument("--cdn-port", type=int, default=0, help="CDN port (0 = pick)")
    ap.add_argument("--ready-file", help="written atomically with {hub_port,cdn_port,pid} once listening")
    ap.add_argument("--page-size", type=int, default=1000, help="tree page size")
    ap.add_argument("--small-mode", choices=["direct", "redirect"], default="direct",
                    help="small files: 200 directly, or relative 307 to /api/resolve-cache/...")
    ap.add_argument("--lfs-redirect", type=int, choices=[302, 307], default=302)
    ap.add_argument("--url-ttl", type=float, default=3600, help="signed CDN URL lifetime, seconds")
    ap.add_argument("--token", action="append", help="valid token (repeatable); if none, any Bearer is valid")
    ap.add_argument("--unapproved-token", action="append",
                    help="valid token without access to gated repos (403 GatedRepo)")
    ap.add_argument("--alias", action="append", help="OLD=NEW renamed repo id: OLD answers a relative 307")
    ap.add_argument("--log", help="append one JSON line per request to this file")
    ap.add_argument("--seed", type=int, default=0, help="seed of the fault RNG and URL signing key")
    ap.add_argument("--xet-headers", action="store_true",
                    help="add X-Xet-Hash/Link xet headers and xetHash in tree (off: clients stay on HTTP)")
    ap.add_argument("--link-host", default=None,
                    help="mirror quirk: host of the tree pagination Link (e.g. https://huggingface.co)")
    ap.add_argument("--redirect-range-416", action="store_true",
                    help="CloudFront quirk: a ranged request to a redirecting resolve gets 416 bytes */177")
    ap.add_argument("--multirange", choices=["ignore", "multipart"], default="ignore",
                    help="CDN multi-range: answer 200 full body, or multipart/byteranges")
    ap.add_argument("--cdn-gzip-ignores-range", action="store_true",
                    help="CDN ignores Range (answers 200) when Accept-Encoding offers gzip")
    ap.add_argument("--hostile", default="",
                    help="misbehave in one way (tree_dotdot, json_deep, redirect_loop, trickle, ...; see README)")
    ap.add_argument("--reject-cdn-auth", action="store_true",
                    help="CDN answers 400 to requests carrying Authorization (default: serve and flag)")
    ap.add_argument("--cdn-url", default=None,
                    help="LFS redirects point to this external CDN base (e.g. http://127.0.0.1:8081, an "
                         "nginx serving --cdn-tree) instead of the CDN listener; same paths, query ignored")
    ap.add_argument("--cdn-tree", default=None,
                    help="write DIR/xet-bridge-us/<repo-uid>/<hash> symlinks to every LFS file's content, "
                         "the layout a static server needs to serve --cdn-url")
    args = ap.parse_args(argv)
    if args.cdn_url:
        args.cdn_url = args.cdn_url.rstrip("/")

    state = State(args)
    if args.cdn_tree:
        write_cdn_tree(state, args.cdn_tree)
    hub = Server((args.host, args.port), "hub", state)
    cdn = Server((args.host, args.cdn_port), "cdn", state)
    state.hub_port = hub.server_address[1]
    state.cdn_port = cdn.server_address[1]
    for s in (hub, cdn):
        threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    ready = json.dumps({"hub_port": state.hub_port, "cdn_port": state.cdn_port, "pid": os.getpid()})
    if args.ready_file:
        tmp = args.ready_file + ".tmp.%d" % os.getpid()
        with open(tmp, "w") as f:
            f.write(ready + "\n")
        os.replace(tmp, args.ready_file)
    print(ready, flush=True)
    sys.stderr.write("fake_hub: %d repos, hub=http://%s:%d cdn=http://%s:%d\n" % (
        len(state.repos), args.host, state.hub_port, args.host, state.cdn_port))
    import signal
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    while not stop.wait(3600):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
