"""A STAC API that returns 500 and times out, then recovers: the real STAC server (stac-fastapi-geoparquet
on 127.0.0.1) behind a small proxy on 127.0.0.1 that injects the faults. The search is retried and
returns exactly what the server holds; a server that never recovers ends in one error naming the URL,
the collection and the HTTP status. (Found here: pystac-client's Client.open reset the configured
timeout to None, so a hanging server was waited on forever; the catalog now passes it again.)"""

from __future__ import annotations

import datetime as dt
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from catalogs.embedded import EmbeddedCatalog
from catalogs.stac_api import CatalogError, StacApiCatalog
from tests.stac_server import serve_items

BBOX = (-73.985, 40.765, -73.945, 40.795)
SPRING = (dt.datetime(2023, 4, 1), dt.datetime(2023, 6, 1))


class FlakyProxy:
    """Forwards to ``upstream``; the n-th POST /search gets ``faults[n]`` ('500', 'slow' or 'ok')."""

    def __init__(self, upstream: str, faults: list[str], slow_s: float) -> None:
        self.upstream, self.faults, self.slow_s = upstream.rstrip("/"), list(faults), slow_s
        self.searches: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or None
                if self.command == "POST" and self.path.startswith("/search"):
                    fault = proxy.faults[len(proxy.searches)] if len(proxy.searches) < len(proxy.faults) else "ok"
                    proxy.searches.append(fault)
                    if fault == "500":
                        self.send_response(500)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    if fault == "slow":
                        time.sleep(proxy.slow_s)  # the client has timed out by now
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("content-length", "connection", "accept-encoding")}
                req = urllib.request.Request(proxy.upstream + self.path, data=body, method=self.command, headers=headers)
                try:
                    with urllib.request.urlopen(req, timeout=30) as resp:
                        status, payload, rh = resp.status, resp.read(), resp.headers
                except urllib.error.HTTPError as err:
                    status, payload, rh = err.code, err.read(), err.headers
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", rh.get("Content-Type", "application/json"))
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = _forward

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> "FlakyProxy":
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def stac(tmp_path_factory):
    cat = EmbeddedCatalog(tmp_path_factory.mktemp("emb"), seed=11, bbox_lonlat=BBOX)
    items = cat.search("sentinel-2-l2a", BBOX, *SPRING)
    with serve_items(items, tmp_path_factory.mktemp("stac")) as url:
        yield url, sorted(it.id for it in items)


def test_500_and_timeout_then_recovery_returns_every_item(stac):
    url, expected = stac
    assert len(expected) >= 5
    with FlakyProxy(url, ["500", "slow", "ok"], slow_s=2.0) as proxy:
        cat = StacApiCatalog(proxy.url, signing="none", max_retries=3, backoff_s=0.01, timeout_s=1.0)
        got = sorted(it.id for it in cat.search("sentinel-2-l2a", BBOX, *SPRING))
    assert proxy.searches[:3] == ["500", "slow", "ok"]  # both faults really happened, then it recovered
    assert got == expected
    assert cat._io.timeout == 1.0  # the configured timeout is the one in force


def test_a_server_that_never_recovers_is_named_after_the_retries(stac):
    url, _ = stac
    with FlakyProxy(url, ["500"] * 10, slow_s=0.0) as proxy:
        cat = StacApiCatalog(proxy.url, signing="none", max_retries=2, backoff_s=0.01, timeout_s=5.0)
        with pytest.raises(CatalogError) as err:
            cat.search("sentinel-2-l2a", BBOX, *SPRING)
    msg = str(err.value)
    assert proxy.url in msg and "'sentinel-2-l2a'" in msg and "500" in msg and "already retried" in msg
    assert proxy.searches == ["500"] * 3  # the first try and two retries
