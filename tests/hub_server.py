"""A small real HTTP server on 127.0.0.1 speaking the Hugging Face Hub endpoints huggingface_hub uses.

- ``GET /api/models/<owner>/<repo>/revision/<rev>?blobs=true``: ``HfApi.model_info(files_metadata=True)``:
  the commit sha and per file ``rfilename``, ``size``, ``blobId`` (git object id) and, for LFS files,
  ``lfs: {sha256, size, pointerSize}``.
- ``HEAD|GET /<owner>/<repo>/resolve/<rev>/<path>``: ``hf_hub_download``: headers ``X-Repo-Commit``,
  ``ETag`` (the LFS sha256, or the blob id of a git file) and ``Content-Length``; 404s carry the
  hub's ``X-Error-Code`` (RevisionNotFound / EntryNotFound).

Repositories are built by the test: ``add_commit(repo, files, lfs=..., refs=...)``. ``serve_instead``
makes the server send other bytes for a file than the ones its listing describes (a corrupt mirror).
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()


@dataclass
class FakeHub:
    commits: dict[str, dict[str, dict[str, bytes]]] = field(default_factory=dict)  # repo -> commit -> files
    lfs: dict[str, set[str]] = field(default_factory=dict)                          # repo -> LFS paths
    refs: dict[str, dict[str, str]] = field(default_factory=dict)                   # repo -> ref -> commit
    tampered: dict[tuple[str, str, str], bytes] = field(default_factory=dict)       # (repo, commit, path)
    requests: list[tuple[str, str]] = field(default_factory=list)

    def add_commit(self, repo: str, files: dict[str, bytes], lfs: set[str], refs: tuple[str, ...] = ()) -> str:
        commit = hashlib.sha1(f"{repo}:{len(self.commits.get(repo, {}))}".encode()).hexdigest()
        self.commits.setdefault(repo, {})[commit] = dict(files)
        self.lfs.setdefault(repo, set()).update(lfs)
        for ref in refs:
            self.refs.setdefault(repo, {})[ref] = commit
        return commit

    def serve_instead(self, repo: str, commit: str, path: str, data: bytes) -> None:
        self.tampered[(repo, commit, path)] = data

    def resolve(self, repo: str, rev: str) -> str | None:
        if rev in self.commits.get(repo, {}):
            return rev
        return self.refs.get(repo, {}).get(rev)

    def listing(self, repo: str, commit: str) -> dict:
        siblings = []
        for path, data in self.commits[repo][commit].items():
            entry = {"rfilename": path, "size": len(data), "blobId": git_blob_id(data)}
            if path in self.lfs[repo]:
                entry["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
            siblings.append(entry)
        return {"id": repo, "modelId": repo, "sha": commit, "private": False, "siblings": siblings}


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def _error(self, code: int, error_code: str, commit: str | None = None) -> None:
            body = json.dumps({"error": error_code}).encode()
            self.send_response(code)
            self.send_header("X-Error-Code", error_code)
            if commit:
                self.send_header("X-Repo-Commit", commit)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _send(self, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(200)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _route(self) -> None:
            path = urlsplit(self.path).path
            hub.requests.append((self.command, self.path))
            parts = [unquote(p) for p in path.strip("/").split("/")]
            if parts[:2] == ["api", "models"] and len(parts) == 6 and parts[4] == "revision":
                repo, rev = f"{parts[2]}/{parts[3]}", parts[5]
                commit = hub.resolve(repo, rev)
                if commit is None:
                    return self._error(404, "RevisionNotFound")
                return self._send(json.dumps(hub.listing(repo, commit)).encode(),
                                  {"Content-Type": "application/json"})
            if len(parts) >= 5 and parts[2] == "resolve":
                repo, rev, fpath = f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:])
                commit = hub.resolve(repo, rev)
                if commit is None:
                    return self._error(404, "RevisionNotFound")
                files = hub.commits[repo][commit]
                if fpath not in files:
                    return self._error(404, "EntryNotFound", commit)
                data = files[fpath]
                etag = hashlib.sha256(data).hexdigest() if fpath in hub.lfs[repo] else git_blob_id(data)
                served = hub.tampered.get((repo, commit, fpath), data)
                return self._send(served, {"X-Repo-Commit": commit, "ETag": f'"{etag}"',
                                           "Content-Type": "application/octet-stream"})
            return self._error(404, "RepoNotFound")

        do_GET = do_HEAD = _route

    return Handler


class HubServer:
    """``with HubServer(hub) as url:`` serves ``hub`` on 127.0.0.1 (a free port) in a thread."""

    def __init__(self, hub: FakeHub) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> str:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self.url

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
