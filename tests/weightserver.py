"""A weights server on 127.0.0.1 for the tests of pretrained weights by name: plain files for torch.hub (torchvision),
and the Hugging Face Hub's file URLs for timm (HF_ENDPOINT), so that nothing leaves the machine.

The Hub part answers what huggingface_hub's hf_hub_download asks (file_download.py): HEAD and GET of
/<repo_id>/resolve/<revision>/<filename>, with X-Repo-Commit (the snapshot's commit hash), ETag and Content-Length;
a file it does not hold is a 404 with X-Error-Code: EntryNotFound (timm then tries its next file name).
"""
from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class WeightServer:
    """`with WeightServer({"/resnet18-abcd1234.pth": path}) as server:` serves those files at server.url + path;
    server.requests lists the (method, path) asked for."""

    def __init__(self, files: dict[str, Path]):
        self.files = {route: Path(path) for route, path in files.items()}
        self.requests: list[tuple[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:  # noqa: N802 - http.server's
                self.answer(body=False)

            def do_GET(self) -> None:  # noqa: N802
                self.answer(body=True)

            def answer(self, body: bool) -> None:
                server.requests.append((self.command, self.path))
                path = server.files.get(self.path.split("?")[0])
                if path is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("X-Repo-Commit", COMMIT)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("X-Repo-Commit", COMMIT)
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def log_message(self, *args) -> None:  # noqa: ANN002 - quiet
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "WeightServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        self.httpd.shutdown()
        self.httpd.server_close()

    def downloads(self) -> list[str]:
        """The paths fetched with GET (a HEAD only asks whether a file changed)."""
        return [path for method, path in self.requests if method == "GET"]


def closed_port_url() -> str:
    """An address on 127.0.0.1 where nothing listens (a port just freed): the network as it is on a plane."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def hashed_name(stem: str, path: Path) -> str:
    """torch.hub's file name for `path`: STEM-<first 8 hex digits of its SHA-256>.pth (hub.HASH_REGEX's prefix)."""
    return f"{stem}-{hashlib.sha256(path.read_bytes()).hexdigest()[:8]}.pth"
