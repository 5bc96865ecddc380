"""CPU per request of single API routes, measured inside one process without an HTTP server: the app
is called as ASGI (no uvicorn, no sockets, no load generator competing for the cores), K requests in
flight, against a temporary PostgreSQL database (dropped at the end) or SQLite. Prints the best of
three rounds per route (``--rounds``); asserts nothing.

It answers "what does this route cost in the app itself", which the load benchmark (benchmarks/load.py)
cannot separate from uvicorn, the access log and other work on the machine. To compare two versions
of the code, run it from a checkout of each, alternating (it imports the app of the checkout it is in).

Routes: status (GET /v1/jobs/{id} of one queued job), list (GET /v1/jobs?limit=20 over 20 jobs),
submit (POST /v1/jobs, the load benchmark's tiny spec), healthz (the framework's floor).

Usage:
  python benchmarks/route_cpu.py                          # PostgreSQL, every route, 1000 requests, K=4
  python benchmarks/route_cpu.py --routes status,list --requests 3000 --concurrency 1
  python benchmarks/route_cpu.py --mode embedded          # SQLite
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import load  # noqa: E402  (benchmarks/load.py: the same temporary stack and spec)


def asgi_caller(app: Any, token: str) -> Any:
    async def call(method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        route, _, query = path.partition("?")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": route,
            "raw_path": route.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [
                (b"host", b"bench"),
                (b"authorization", f"Bearer {token}".encode()),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
            "state": {},
        }
        delivered = False
        answer: dict[str, Any] = {"body": b""}

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # no disconnect while the app works
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
            elif message["type"] == "http.response.body":
                answer["body"] += message.get("body", b"")

        await app(scope, receive, send)
        return answer["status"], answer["body"]

    return call


async def measure(
    app: Any, token: str, routes: list[str], requests: int, concurrency: int, rounds: int = 3
) -> None:
    call = asgi_caller(app, token)
    spec = json.dumps(load.TINY_SPEC).encode()
    job_id = ""
    for _ in range(20):  # list reads a full page
        status, body = await call("POST", "/v1/jobs", spec)
        assert status == 201, body
        job_id = json.loads(body)["id"]
    requests_of = {
        "status": ("GET", f"/v1/jobs/{job_id}", b""),
        "list": ("GET", "/v1/jobs?limit=20", b""),
        "submit": ("POST", "/v1/jobs", spec),
        "healthz": ("GET", "/healthz", b""),
    }
    print(f"{'route':<8} {'ms CPU/request':>14}   rounds (ms)")
    for route in routes:
        method, path, body = requests_of[route]

        async def user(count: int, method: str = method, path: str = path, body: bytes = body) -> None:
            for _ in range(count):
                status, answer = await call(method, path, body)
                assert status in (200, 201), answer

        await asyncio.gather(*(user(max(1, requests // concurrency // 5)) for _ in range(concurrency)))
        per_round = []
        for _ in range(rounds):
            started = time.process_time()  # every thread of this process: the loop and the pool
            await asyncio.gather(*(user(requests // concurrency) for _ in range(concurrency)))
            per_round.append(1000 * (time.process_time() - started) / (requests // concurrency * concurrency))
        print(f"{route:<8} {min(per_round):>14.3f}   {', '.join(f'{r:.3f}' for r in per_round)}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=("embedded", "distributed"), default="distributed")
    parser.add_argument("--routes", default="healthz,status,list,submit")
    parser.add_argument("--requests", type=int, default=1000, help="per round and route (default 1000)")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight (default 4)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds per route, the best is printed (default 3)"
    )
    parser.add_argument("--pg-admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13", help="an empty Redis DB")
    args = parser.parse_args()
    stack = load.Stack(args.mode, args.pg_admin_url, args.redis_url, max_jobs=10_000_000)
    try:
        stack.prepare()
        token = stack.run_lbc("keys", "create", "--name", "route-cpu").strip()
        os.environ.update({k: v for k, v in stack.env.items() if k.startswith("LBC_")})
        from api.app import create_app
        from jobs.settings import Settings

        app = create_app(Settings())
        asyncio.run(measure(app, token, args.routes.split(","), args.requests, args.concurrency, args.rounds))
    finally:
        stack.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
