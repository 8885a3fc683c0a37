"""A loopback fake of the Hugging Face Hub: the endpoints huggingface_hub 2.4 calls to download and upload a model.

Downloads (``snapshot_download``): ``GET /api/models/{repo}[/revision/{rev}]`` (repo info with ``sha``),
``GET /api/models/{repo}/tree/{rev}`` (file listing), ``HEAD``/``GET /{repo}/resolve/{rev}/{file}`` (with
``X-Repo-Commit``, a quoted ``ETag``, ``Content-Length``, ``X-Linked-Etag``/``X-Linked-Size`` for the LFS-like
``*.safetensors``, and ``Range`` support). Uploads (``create_repo`` + ``create_branch`` + ``upload_folder``):
``POST /api/repos/create``, ``POST /api/models/{repo}/branch/{branch}``, ``POST /api/validate-yaml``,
``POST /api/models/{repo}/preupload/{rev}`` (every file is "regular", so neither LFS nor Xet is needed) and
``POST /api/models/{repo}/commit/{rev}`` (ndjson with base64 file contents).

Errors follow the Hub: an unknown repo is a 404 with ``X-Error-Code: RepoNotFound``; a private repo without a token
is a 401 ``RepoNotFound``, a gated one a 401 ``GatedRepo``; a wrong token is a 401 "Invalid credentials in
Authorization header"; an unknown revision is a 404 ``RevisionNotFound``; a missing file a 404 ``EntryNotFound``.
``interrupt`` cuts the next download of a file short and ``fail`` answers it with an HTTP error.

``use_fake_hub`` points huggingface_hub at a running fake; ``checkpoint_folder`` and ``checkpoint_files`` make
tiny checkpoints to serve.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from huggingface_hub import constants

from samba_cli.model import save_checkpoint
from tests.model_helpers import tiny_model

_REPO = r"(?P<repo>[^/]+/[^/]+)"
_REV = r"(?P<rev>[^/]+)"
_GET_ROUTES = {
    "info": re.compile(rf"^/api/models/{_REPO}(?:/revision/{_REV})?$"),
    "tree": re.compile(rf"^/api/models/{_REPO}/tree/{_REV}(?:/.*)?$"),
    "resolve": re.compile(rf"^/{_REPO}/resolve/{_REV}/(?P<file>.+)$"),
}
_POST_ROUTES = {
    "create": re.compile(r"^/api/repos/create$"),
    "validate": re.compile(r"^/api/validate-yaml$"),
    "branch": re.compile(rf"^/api/models/{_REPO}/branch/{_REV}$"),
    "preupload": re.compile(rf"^/api/models/{_REPO}/preupload/{_REV}$"),
    "commit": re.compile(rf"^/api/models/{_REPO}/commit/{_REV}$"),
}
_BAD_TOKEN = "Invalid credentials in Authorization header"


def git_blob_sha(data: bytes) -> str:
    """The git object id of a file (what the Hub uses as ETag of a regular file)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _is_lfs(filename: str) -> bool:
    return filename.endswith(".safetensors")


def _etag(filename: str, data: bytes) -> str:
    return hashlib.sha256(data).hexdigest() if _is_lfs(filename) else git_blob_sha(data)


@dataclass
class FakeRepo:
    private: bool = False  # requests need the hub's token; without it the Hub answers 401 RepoNotFound
    gated: bool = False  # requests need the hub's token; without it the Hub answers 401 GatedRepo
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # commit sha -> {path: content}
    branches: dict[str, str] = field(default_factory=dict)  # branch or tag -> commit sha


@dataclass(frozen=True)
class SeenRequest:
    method: str  # HTTP method
    path: str  # URL path, without the query
    range: str | None  # the Range header, if any
    authorization: str | None  # the Authorization header, if any


class FakeHub:
    """A threaded HTTP server on 127.0.0.1 (random port). Use as a context manager or call start()/stop()."""

    def __init__(self, token: str = "hf_fake_token") -> None:
        self.token = token
        self.repos: dict[str, FakeRepo] = {}
        self.requests: list[SeenRequest] = []
        self._interrupts: dict[str, list[int]] = {}  # filename -> bytes to send before cutting, one per GET
        self._failures: dict[str, list[int]] = {}  # filename -> HTTP status to answer, one per GET
        self._lock = threading.Lock()
        self._commit_count = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()

    # -- lifecycle ---------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake hub is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeHub:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.hub = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-hub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and drop open keep-alive connections, so clients see a refused connection."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            for conn in self._connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            self._connections.clear()
        self._server = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- content -----------------------------------------------------------------------------------------------

    def add_repo(self, repo_id: str, *, private: bool = False, gated: bool = False) -> FakeRepo:
        with self._lock:
            repo = self.repos.setdefault(repo_id, FakeRepo())
            repo.private, repo.gated = private, gated
            return repo

    def commit(
        self, repo_id: str, files: dict[str, bytes], branch: str = "main", replace: bool = False
    ) -> str:
        """Add a commit on ``branch`` (created from main if new) that adds ``files`` (or holds only them)."""
        with self._lock:
            repo = self.repos.setdefault(repo_id, FakeRepo())
            return self._commit_locked(repo, files, branch, replace)

    def _commit_locked(self, repo: FakeRepo, files: dict[str, bytes], branch: str, replace: bool) -> str:
        parent = repo.branches.get(branch) or repo.branches.get("main")
        content = {} if replace or parent is None else dict(repo.commits[parent])
        content.update(files)
        self._commit_count += 1
        digest = hashlib.sha1(f"{parent}:{self._commit_count}".encode())
        for path in sorted(content):
            digest.update(path.encode() + git_blob_sha(content[path]).encode())
        sha = digest.hexdigest()
        repo.commits[sha] = content
        repo.branches[branch] = sha
        return sha

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        repo = self.repos[repo_id]
        return dict(repo.commits[repo.branches.get(revision, revision)])

    def interrupt(self, filename: str, after_bytes: int, times: int = 1) -> None:
        """Cut the next ``times`` downloads of ``filename`` after ``after_bytes`` bytes (full Content-Length sent)."""
        with self._lock:
            self._interrupts.setdefault(filename, []).extend([after_bytes] * times)

    def fail(self, filename: str, status: int = 500, times: int = 1) -> None:
        """Answer the next ``times`` downloads (GET) of ``filename`` with ``status``."""
        with self._lock:
            self._failures.setdefault(filename, []).extend([status] * times)

    def count(self, method: str, suffix: str) -> int:
        """How many requests with ``method`` had a path ending in ``suffix``."""
        return sum(1 for r in self.requests if r.method == method and r.path.endswith(suffix))

    def _pop(self, table: dict[str, list[int]], filename: str) -> int | None:
        with self._lock:
            pending = table.get(filename)
            return pending.pop(0) if pending else None


def use_fake_hub(monkeypatch: pytest.MonkeyPatch, endpoint: str, home: Path) -> Path:
    """Point huggingface_hub at ``endpoint``, with its cache and token file under ``home``; returns the cache.

    huggingface_hub copies HF_ENDPOINT, HF_HUB_CACHE, HF_HUB_OFFLINE and the token path into
    ``huggingface_hub.constants`` when it is imported, so setting the environment inside the test process is too late.
    Patch the constants it reads at call time instead; HF_TOKEN is read from the environment on each call, so it is
    cleared here and tests may set it.
    """
    cache = home / "hub"
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    )
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    return cache


def checkpoint_folder(folder: Path, metadata: dict | None = None, **overrides) -> Path:
    """A complete checkpoint folder (tokenizer.model is a placeholder: nothing here loads it)."""
    save_checkpoint(tiny_model(**overrides), folder, metadata=metadata)
    (folder / "tokenizer.model").write_bytes(b"placeholder sentencepiece model")
    (folder / "README.md").write_text("# tiny test model\n", encoding="utf-8")
    return folder


def checkpoint_files(tmp_path: Path, **overrides) -> dict[str, bytes]:
    """The files of a new tiny checkpoint (a fresh folder under ``tmp_path`` each call), ready for ``commit``."""
    folder = checkpoint_folder(tmp_path / f"src-{len(list(tmp_path.glob('src-*')))}", **overrides)
    return {path.name: path.read_bytes() for path in folder.iterdir()}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ThreadingHTTPServer

    def log_message(self, format: str, *args: object) -> None:
        """Silence the default per-request stderr log."""

    @property
    def hub(self) -> FakeHub:
        return self.server.hub  # type: ignore[attr-defined]

    def setup(self) -> None:
        super().setup()
        with self.hub._lock:
            self.hub._connections.add(self.connection)

    def finish(self) -> None:
        with self.hub._lock:
            self.hub._connections.discard(self.connection)
        super().finish()

    # -- plumbing ----------------------------------------------------------------------------------------------

    def _route(self, routes: dict[str, re.Pattern[str]]) -> tuple[str, dict[str, str]] | None:
        path = urlsplit(self.path).path
        with self.hub._lock:
            self.hub.requests.append(
                SeenRequest(self.command, path, self.headers.get("Range"), self.headers.get("Authorization"))
            )
        for name, pattern in routes.items():
            match = pattern.match(path)
            if match:
                return name, {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
        return None

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: object, headers: dict[str, str] | None = None) -> None:
        self._send(
            status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})}
        )

    def _error(
        self, status: int, message: str, code: str | None = None, extra: dict[str, str] | None = None
    ) -> None:
        headers = {"X-Error-Message": message, **(extra or {})}
        if code is not None:
            headers["X-Error-Code"] = code
        self._json(status, {"error": message}, headers)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def _token_ok(self) -> bool:
        return self.headers.get("Authorization") == f"Bearer {self.hub.token}"

    def _readable(self, repo_id: str) -> FakeRepo | None:
        """The repo if this request may read it; otherwise answer the Hub's error and return None."""
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._error(404, "Repository not found", "RepoNotFound")
            return None
        if (repo.private or repo.gated) and not self._token_ok():
            if self.headers.get("Authorization") is not None:
                self._error(401, _BAD_TOKEN)
            elif repo.gated:
                self._error(401, "Access to this model is restricted", "GatedRepo")
            else:
                self._error(401, "Repository not found", "RepoNotFound")
            return None
        return repo

    def _commit_sha(self, repo: FakeRepo, revision: str | None) -> str | None:
        """The commit of a branch, tag or full commit sha; answers 404 RevisionNotFound and returns None if unknown."""
        revision = revision or "main"
        sha = repo.branches.get(revision) or (revision if revision in repo.commits else None)
        if sha is None:
            self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return sha

    # -- downloads ---------------------------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        routed = self._route(_GET_ROUTES)
        if routed is None or (self.command == "HEAD" and routed[0] != "resolve"):
            self._error(404, "Not found")
            return
        name, params = routed
        repo = self._readable(params["repo"])
        if repo is None:
            return
        sha = self._commit_sha(repo, params.get("rev"))
        if sha is None:
            return
        files = repo.commits[sha]
        if name == "info":
            self._json(
                200,
                {
                    "id": params["repo"],
                    "modelId": params["repo"],
                    "sha": sha,
                    "private": repo.private,
                    "gated": "auto" if repo.gated else False,
                    "library_name": "samba-asr",
                    "siblings": [{"rfilename": path} for path in sorted(files)],
                },
            )
        elif name == "tree":
            self._json(200, [self._tree_entry(path, data) for path, data in sorted(files.items())])
        else:
            self._resolve(params["repo"], sha, params["file"], files)

    @staticmethod
    def _tree_entry(path: str, data: bytes) -> dict:
        entry = {"type": "file", "path": path, "size": len(data), "oid": git_blob_sha(data)}
        if _is_lfs(path):
            entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        return entry

    def _resolve(self, repo_id: str, sha: str, filename: str, files: dict[str, bytes]) -> None:
        if filename not in files:
            self._error(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": sha})
            return
        data = files[filename]
        etag = f'"{_etag(filename, data)}"'
        headers = {
            "X-Repo-Commit": sha,
            "ETag": etag,
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        if _is_lfs(filename):
            headers |= {"X-Linked-Etag": etag, "X-Linked-Size": str(len(data))}
        if self.command == "HEAD":
            self._send(200, b"", {**headers, "Content-Length": str(len(data))})
            return
        status = self.hub._pop(self.hub._failures, filename)
        if status is not None:
            self._error(status, f"injected failure for {filename}")
            return
        start, status = 0, 200
        byte_range = self.headers.get("Range")
        if byte_range is not None:
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", byte_range)
            if match is None or int(match[1]) >= len(data):
                self._error(416, f"Range not satisfiable: {byte_range}")
                return
            start, status = int(match[1]), 206
            end = int(match[2]) + 1 if match[2] else len(data)
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
            data = data[:end]
        body = data[start:]
        cut = self.hub._pop(self.hub._interrupts, filename)
        if cut is None:
            self._send(status, body, headers)
            return
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body[:cut])
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    # -- uploads -----------------------------------------------------------------------------------------------

    def do_POST(self) -> None:
        routed = self._route(_POST_ROUTES)
        body = self._body()
        if routed is None:
            self._error(404, "Not found")
            return
        name, params = routed
        if name == "validate":
            self._json(200, {"errors": [], "warnings": []})
            return
        if not self._token_ok():
            self._error(401, _BAD_TOKEN)
            return
        payload = json.loads(body or b"{}") if name != "commit" else None
        if name == "create":
            self._create_repo(payload)
            return
        repo = self.hub.repos.get(params["repo"])
        if repo is None:
            self._error(404, "Repository not found", "RepoNotFound")
            return
        if name == "branch":
            self._create_branch(repo, params["rev"], payload.get("startingPoint"))
            return
        sha = self._commit_sha(repo, params["rev"])
        if sha is None:
            return
        if name == "preupload":
            existing = repo.commits[sha]
            files = [
                {
                    "path": f["path"],
                    "uploadMode": "regular",
                    "shouldIgnore": False,
                    "oid": git_blob_sha(existing[f["path"]]) if f["path"] in existing else None,
                }
                for f in payload["files"]
            ]
            self._json(200, {"files": files})
        else:
            self._commit(params["repo"], repo, params["rev"], body)

    def _create_repo(self, payload: dict) -> None:
        repo_id = f"{payload['organization']}/{payload['name']}"
        url = f"{self.hub.url}/{repo_id}"
        with self.hub._lock:
            exists = repo_id in self.hub.repos
            if not exists:
                repo = self.hub.repos[repo_id] = FakeRepo(private=payload.get("visibility") == "private")
                gitattributes = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
                self.hub._commit_locked(repo, {".gitattributes": gitattributes}, "main", True)
        if exists:  # the Hub answers 409 with the repo url, which create_repo(exist_ok=True) reads
            message = "You already created this model repo"
            self._json(409, {"error": message, "url": url}, {"X-Error-Message": message})
            return
        self._json(200, {"url": url, "name": repo_id, "id": repo_id})

    def _create_branch(self, repo: FakeRepo, branch: str, starting_point: str | None) -> None:
        with self.hub._lock:
            if branch in repo.branches:
                self._error(409, f"Reference already exists: refs/heads/{branch}")
                return
            start = repo.branches.get(starting_point or "main") or starting_point
            if start not in repo.commits:
                self._error(404, f"Invalid rev id: {starting_point}", "RevisionNotFound")
                return
            repo.branches[branch] = start
        self._json(200, {})

    def _commit(self, repo_id: str, repo: FakeRepo, branch: str, body: bytes) -> None:
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        added: dict[str, bytes] = {}
        for line in lines[1:]:
            if line["key"] != "file" or line["value"].get("encoding") != "base64":
                self._error(400, f"unsupported commit operation {line['key']!r} (only regular files)")
                return
            added[line["value"]["path"]] = base64.b64decode(line["value"]["content"])
        with self.hub._lock:
            sha = self.hub._commit_locked(repo, added, branch, False)
        self._json(
            200,
            {
                "success": True,
                "commitOid": sha,
                "commitUrl": f"{self.hub.url}/{repo_id}/commit/{sha}",
                "pullRequestUrl": None,
            },
        )
