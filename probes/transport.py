"""HTTP(S) to the collector from the probe: the standard library's client on a worker
thread. A probe sends a request every few seconds; aiohttp's client would cost it 13 MiB
of memory for nothing (commit cab1a65)."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

MAX_ANSWER_BYTES = 1 << 20


class TransportError(Exception):
    """No HTTP answer at all (refused, unreachable, timeout, TLS). str() says which."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> dict:
        value = json.loads(self.body)
        if not isinstance(value, dict):
            raise ValueError("expected a JSON object")
        return value

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class Transport:
    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        # No proxy from the environment: where a request goes is the config's business.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="http")

    async def request(self, method: str, url: str, body: bytes | None = None,
                      headers: dict[str, str] | None = None) -> Answer:
        return await asyncio.get_running_loop().run_in_executor(
            self._worker, self._request, method, url, body, headers or {})

    def _request(self, method: str, url: str, body: bytes | None,
                 headers: dict[str, str]) -> Answer:
        request = urllib.request.Request(url, data=body, headers=headers, method=method)
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                return Answer(response.status, response.read(MAX_ANSWER_BYTES),
                              dict(response.headers))
        except urllib.error.HTTPError as answer:  # 3xx (304), 4xx, 5xx: still an answer
            with answer:
                return Answer(answer.code, answer.read(MAX_ANSWER_BYTES), dict(answer.headers))
        except urllib.error.URLError as exc:
            raise TransportError(f"{url}: {exc.reason}") from exc
        except (OSError, ValueError) as exc:  # timeouts, resets, malformed answers
            raise TransportError(f"{url}: {type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        self._worker.shutdown(wait=False)
