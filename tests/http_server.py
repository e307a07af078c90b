#!/usr/bin/python3
"""A small stand-in for the Hugging Face Hub, for the download tests.

    http_server.py ROOT LOG

Serves the repositories under ROOT (ROOT/ORG/NAME/..., with the commit in
ROOT/ORG/NAME.commit) on 127.0.0.1 at a free port, which it prints as the
first line of its output.  It answers as the Hub does:

    GET  /api/models/ORG/NAME/revision/REV      {"sha": ..., "siblings": [...]}
    HEAD|GET /ORG/NAME/resolve/REV/PATH
        a file over 1 KiB is "LFS": 302 to /cdn/... with X-Linked-Etag (its
        sha256) and X-Linked-Size; a smaller one: 200 with ETag (its git blob
        id).  Both carry X-Repo-Commit.
    GET  /cdn/ORG/NAME/PATH                     the bytes, with Range support

A URL may start with /f/SPEC/ to inject faults; SPEC is a comma-separated
list (N limits a fault to the first N requests for one file and SPEC):
    cut=FRACTION:N   stop sending content at FRACTION of the file, close
    norange          ignore Range (answer 200 with the whole file)
    status=CODE[:N]  answer CODE to resolve and API requests
    wrong            flip one byte of the content
    slow=BYTES       send at most BYTES a second
    auth=TOKEN       answer 401 unless "Authorization: Bearer TOKEN"
    id=ANYTHING      only makes SPEC distinct, so counters start afresh
Every request is logged as one JSON line in LOG.  The server exits when its
standard input closes, so it never outlives the test that started it.
"""
import hashlib
import json
import os
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT, LOG = sys.argv[1], sys.argv[2]
LFS_MIN = 1024
lock = threading.Lock()
counts = {}


def parse_spec(spec):
    faults = {}
    for part in filter(None, spec.split(",")):
        key, _, value = part.partition("=")
        faults[key] = value
    return faults


def take(spec, kind, key, limit):
    """Whether fault `kind` applies to this request (limit None: always)."""
    if limit is None:
        return True
    with lock:
        n = counts.get((spec, kind, key), 0)
        counts[(spec, kind, key)] = n + 1
    return n < limit


def split_limit(value):
    head, _, n = value.partition(":")
    return head, (int(n) if n else None)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def log(self, status):
        entry = {"method": self.command, "path": self.path, "status": status,
                 "range": self.headers.get("Range"),
                 "auth": self.headers.get("Authorization")}
        with lock, open(LOG, "a") as f:
            f.write(json.dumps(entry) + "\n")

    def reply(self, status, headers=(), body=b""):
        self.log(status)
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.handle_any()

    def do_GET(self):
        self.handle_any()

    def handle_any(self):
        try:
            self.route()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def route(self):
        path = urllib.parse.urlsplit(self.path).path
        spec, faults, prefix = "", {}, ""
        if path.startswith("/f/"):
            spec, _, rest = path[3:].partition("/")
            faults, prefix, path = parse_spec(spec), "/f/" + spec, "/" + rest
        parts = [urllib.parse.unquote(p) for p in path.split("/")[1:]]

        if "auth" in faults:
            if self.headers.get("Authorization") != "Bearer " + faults["auth"]:
                return self.reply(401, body=b"Invalid credentials")
        if parts[0] != "cdn" and "status" in faults:
            code, limit = split_limit(faults["status"])
            if take(spec, "status", path, limit):
                return self.reply(int(code), body=b"fault")

        if parts[:2] == ["api", "models"] and len(parts) == 6 and parts[4] == "revision":
            return self.api(parts[2] + "/" + parts[3], parts[5])
        if len(parts) >= 5 and parts[2] == "resolve":
            return self.resolve(prefix, parts[0] + "/" + parts[1], parts[3], "/".join(parts[4:]))
        if len(parts) >= 4 and parts[0] == "cdn":
            return self.content(spec, faults, parts[1] + "/" + parts[2], "/".join(parts[3:]))
        return self.reply(404, body=b"no such route")

    def repo(self, repo):
        base = os.path.join(ROOT, *repo.split("/"))
        try:
            with open(base + ".commit") as f:
                return base, f.read().strip()
        except FileNotFoundError:
            return None, None

    def api(self, repo, rev):
        base, commit = self.repo(repo)
        if not base or rev not in ("main", commit):
            return self.reply(404, body=b"Repository or revision not found")
        files = []
        for d, _, names in os.walk(base):
            files += [os.path.relpath(os.path.join(d, n), base) for n in names]
        body = json.dumps({"id": repo, "sha": commit,
                           "siblings": [{"rfilename": f} for f in sorted(files)]})
        self.reply(200, [("Content-Type", "application/json")], body.encode())

    def resolve(self, prefix, repo, rev, rel):
        base, commit = self.repo(repo)
        path = os.path.join(base, *rel.split("/")) if base else None
        if not base or rev not in ("main", commit) or not os.path.isfile(path):
            return self.reply(404, [("X-Error-Code", "EntryNotFound")], b"Entry not found")
        with open(path, "rb") as f:
            data = f.read()
        common = [("X-Repo-Commit", commit)]
        if len(data) >= LFS_MIN:
            sha = hashlib.sha256(data).hexdigest()
            location = prefix + "/cdn/" + repo + "/" + urllib.parse.quote(rel)
            return self.reply(302, common + [("X-Linked-Etag", '"%s"' % sha),
                                             ("X-Linked-Size", str(len(data))),
                                             ("ETag", '"%s"' % sha),
                                             ("Location", location)])
        git = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        self.reply(200, common + [("ETag", '"%s"' % git)], data)

    def content(self, spec, faults, repo, rel):
        base, _ = self.repo(repo)
        path = os.path.join(base, *rel.split("/")) if base else None
        if not path or not os.path.isfile(path):
            return self.reply(404, body=b"no such object")
        with open(path, "rb") as f:
            data = bytearray(f.read())
        if "wrong" in faults:
            data[len(data) // 2] ^= 0xFF
        start = 0
        rng = self.headers.get("Range")
        if rng and "norange" not in faults and rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[6:-1])
            if start >= len(data):
                return self.reply(416, [("Content-Range", "bytes */%d" % len(data))])
        end = len(data)
        cut = None
        if "cut" in faults and self.command == "GET":
            frac, limit = split_limit(faults["cut"])
            if take(spec, "cut", rel, limit):
                cut = max(start, int(len(data) * float(frac)))
        status = 206 if start else 200
        self.log(status)
        self.send_response(status)
        if start:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end - 1, end))
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if self.command == "HEAD":
            return
        stop = cut if cut is not None else end
        rate = int(faults["slow"]) if "slow" in faults else 0
        pos = start
        while pos < stop:
            n = min(stop - pos, max(rate // 20, 1) if rate else 65536)
            self.wfile.write(data[pos:pos + n])
            self.wfile.flush()
            pos += n
            if rate:
                time.sleep(0.05)
        if cut is not None:
            # Drop the connection mid-body, as a reset network would.
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that hangs up (a cancelled download) is no error here.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def main():
    server = Server(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdin.read()  # returns when the test closes the pipe or dies
    server.shutdown()


if __name__ == "__main__":
    main()
