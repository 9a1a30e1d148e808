"""Fuzz the hub's HTTP API and ``jcm-sync import`` with seeded mutations (ADR 0014).

HTTP: a real hub (aiohttp on 127.0.0.1, port 0, SQLite) serving JP-MN and JP-ID receives
1,000 requests (a run of 100,000 with ``JCM_SYNC_SLOW=1``): unsigned garbage; requests signed
with a partner's real transport key (as ``HubClient`` signs them) whose bodies, paths or
query strings were mutated before signing, so they reach the handlers; and signed
requests tampered with after signing. Every answer must be below 500, every refusal
``application/problem+json``; no request may log a traceback or an ERROR (a fork
alarm raised by a validly signed, conflicting push is the one legitimate ERROR; it is
counted and cleared as an operator would); and after every refusal the hub's store
holds exactly what it held before (heads and checkpoints each time, every envelope
every 100 requests and at the end).

Import: mutated record files (JSON lines and arrays, of records and of envelopes) fed
to ``jcm-sync import`` through ``jcm_sync.cli.main`` on a real node (SQLite): 300 files
(20,000 with ``JCM_SYNC_SLOW=1``). A
refusal exits 1 with one line on stderr and no traceback, and leaves the log as it was.

``JCM_SYNC_FUZZ_SEED`` replays a run; the seed is printed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import msgspec
import pytest
from aiohttp import web
from yarl import URL

from jcm_sync.cli import main
from jcm_sync.core.envelope import PrivateKey, open_envelope, sign_payload
from jcm_sync.core.wire import PushRequest, encoder
from jcm_sync.errors import BadDataError
from jcm_sync.local.config import load_config
from jcm_sync.net.server import HubServer, ServerSettings
from jcm_sync.net.signing import RequestSigner
from jcm_sync.services.hub import Hub
from jcm_sync.services.node import Node, open_node
from jcm_sync.services.sample import Network, partnership_records, provision
from jcm_sync.store import open_store
from tests.faults.fuzzing import Captured, Mutator, check_refusal, run_seed, snapshot
from tests.faults.harness import summary

SLOW = os.environ.get("JCM_SYNC_SLOW") == "1"
FULL_EVERY = 100
PARTNERS = ["MN", "ID"]
SAFE = "".join(chr(c) for c in range(0x21, 0x7F))


@dataclass
class Fuzz:
    """A hub under fuzz and what the fuzzer saw."""

    net: Network
    hub: Node
    url: str
    agent: dict[str, Node]
    envelopes: dict[str, list[bytes]]
    notes: dict[str, bytes]
    by_status: Counter[int] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)
    past_auth: int = 0
    not_sent: Counter[str] = field(default_factory=Counter)
    http_parser: Counter[str] = field(default_factory=Counter)
    bad_refusals: list[str] = field(default_factory=list)
    store_changed: list[str] = field(default_factory=list)
    forks: int = 0


@pytest.fixture
async def fuzz(tmp_path: Path) -> AsyncIterator[Fuzz]:
    net = provision(tmp_path / "net", PARTNERS, hub_port=0)
    hub = await open_node(load_config(net.configs["JP"], env={}))
    runner = HubServer(Hub(hub), ServerSettings(run_jobs=False)).runner()
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    agents: dict[str, Node] = {}
    try:
        envelopes, notes = {}, {}
        for cc in PARTNERS:
            recs = partnership_records(cc, net.keys, projects=4)
            agents[cc] = await open_node(load_config(net.configs[cc], env={}))
            service = agents[cc].logs(f"JP-{cc}").service
            await service.append(recs.by_node[cc])
            notes[cc] = (await service.sign_checkpoint()).note
            envelopes[cc] = recs.by_node[cc]
            await hub.logs(f"JP-{cc}").service.append(recs.by_node["JP"])
        yield Fuzz(net, hub, f"http://127.0.0.1:{port}", agents, envelopes, notes)
    finally:
        for a in agents.values():
            await a.close()
        await runner.cleanup()


@dataclass
class Request:
    method: str
    path: str
    query: str = ""
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    signer: str | None = None  # partner whose transport key signs it
    tamper: bool = False  # headers altered after signing
    raw_target: bool = False  # sent with a space or non-ASCII in the request line


async def template(f: Fuzz, rng: random.Random, cc: str) -> tuple[Request, Any]:
    """A request an agent could send (and its body as JSON, for structural mutation)."""
    pid = f"JP-{cc}"
    logs = f"/v1/partnerships/{pid}/logs"
    size = (await f.hub.store.tree_head(f.hub.logs(pid).replica)).size
    total = len(f.envelopes[cc])
    kind = rng.randrange(7)
    if kind <= 2:  # a push: the next batch, or a replay of held entries
        # once the replica is complete, replays of held entries keep the batches full
        start = size if size < total and rng.random() < 0.7 else rng.randint(0, total - 1)
        end = total if rng.random() < 0.6 else rng.randint(start, total)
        req = PushRequest(
            start=start,
            entries=f.envelopes[cc][start:end],
            checkpoint=f.notes[cc] if end == total else None,
            source_size=total,
        )
        doc = msgspec.json.decode(encoder.encode(req))
        return Request("POST", f"{logs}/{cc}/entries", body=encoder.encode(req)), doc
    node = rng.choice([cc, "JP"])
    if kind == 3:
        return Request("GET", f"/v1/partnerships/{pid}/state", f"have={rng.randint(0, 40)}"), None
    if kind == 4:
        q = f"start={rng.randint(0, 40)}&limit={rng.randint(1, 1000)}"
        return Request("GET", f"{logs}/{node}/entries", q), None
    if kind == 5:
        return Request("GET", f"{logs}/{node}/checkpoint"), None
    if rng.random() < 0.5:
        q = f"old={rng.randint(0, 30)}&new={rng.randint(0, 30)}"
        return Request("GET", f"{logs}/{node}/proofs/consistency", q), None
    q = f"index={rng.randint(0, 30)}&size={rng.randint(0, 30)}"
    return Request("GET", f"{logs}/{node}/proofs/inclusion", q), None


def params(query: str) -> dict[str, str]:
    return dict(p.split("=", 1) for p in query.split("&") if "=" in p)


async def next_request(f: Fuzz, rng: random.Random, m: Mutator) -> Request:
    cc = rng.choice(PARTNERS)
    kind = rng.random()
    if kind < 0.15:  # unsigned garbage
        f.by_kind["unsigned"] += 1
        base, doc = await template(f, rng, cc)
        method = rng.choice(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])
        path = rng.choice([base.path, "/readyz", "/livez", "/metrics", "/status", "/",
                           "/v1/", "/v1/partnerships"])  # fmt: skip
        if rng.random() < 0.6:
            path = m.path(path)
        headers = {}
        if rng.random() < 0.5:
            headers = {"Signature-Input": m.raw(b'sig1=("@method");keyid="x"').decode("latin-1"),
                       "Signature": "sig1=:" + m.raw(b"AAAA").hex() + ":",
                       "Content-Digest": "sha-256=:" + m.raw(b"x").hex() + ":"}  # fmt: skip
        body = m.raw(base.body or b'{"start":0,"entries":[]}') if rng.random() < 0.6 else b""
        return Request(method, path, m.query(params(base.query)), body, headers)
    base, doc = await template(f, rng, cc)
    signer = cc if rng.random() < 0.9 else rng.choice(PARTNERS)
    req = Request(base.method, base.path, base.query, base.body, signer=signer)
    what = rng.random()
    if base.method == "POST" and what < 0.35 and doc["entries"]:
        f.by_kind["signed-entries"] += 1
        req.body = m.encode(mutate_entries(doc, m, rng, f.net.keys[cc]))
    elif base.method == "POST" and what < 0.7:
        f.by_kind["signed-body"] += 1
        req.body = m.json_body(doc)
    elif what < 0.45 or (base.method == "POST" and what < 0.85):
        f.by_kind["signed-path"] += 1
        req.path = m.path(base.path)
    elif what < 0.9:
        f.by_kind["signed-query"] += 1
        req.query = m.query(params(base.query))
    else:
        f.by_kind["signed-tampered"] += 1
        req.tamper = True
    return req


def mutate_entries(doc: Any, m: Mutator, rng: random.Random, key: PrivateKey) -> Any:
    """A push whose JSON stays well formed but one entry is a mutated envelope: its
    bytes, its JSON, or its record re-signed with the partner's own key (so it reaches
    the schema and authority checks). Without the checkpoint half the time, which a
    mutated batch no longer matches (a fork, rule 3 of ``registry``)."""
    doc = dict(doc)
    entries = list(doc["entries"])
    i = rng.randrange(len(entries))
    env = base64.b64decode(entries[i])
    op = rng.randrange(3)
    if op == 0:
        env = m.raw(env)
    elif op == 1:
        env = m.encode(m.value(json.loads(env)))
    else:
        opened = open_envelope(env)
        payload = m.encode(m.value(json.loads(opened.payload)))
        env = sign_payload(opened.payloadType, payload, [key])
    entries[i] = base64.b64encode(env).decode()
    doc["entries"] = entries
    if rng.random() < 0.5:
        doc["checkpoint"] = None
    return doc


def sign(
    f: Fuzz, key: PrivateKey, req: Request, url: str, m: Mutator, rng: random.Random
) -> dict[str, str]:
    headers: dict[str, str] = {}
    if req.body:
        headers["Content-Type"] = "application/json"
    RequestSigner(key).sign(req.method, url, headers, req.body)
    if req.tamper:
        name = rng.choice(["Signature", "Signature-Input", "Content-Digest", "Content-Type"])
        if rng.random() < 0.3:
            headers.pop(name, None)
        else:
            headers[name] = m.raw(headers.get(name, "").encode()).decode("latin-1")
    return headers


async def send(
    f: Fuzz, session: aiohttp.ClientSession, req: Request, m: Mutator, rng: random.Random
) -> tuple[int, str, bytes] | None:
    target = req.path + (f"?{req.query}" if req.query else "")
    if not all(c in SAFE for c in target) and rng.random() < 0.8:
        target = quote(target, safe=SAFE)  # as a client would: percent-encoded
    req.raw_target = not all(c in SAFE for c in target)  # not a valid HTTP/1.1 target
    try:
        url = URL(f.url + target, encoded=True)
    except ValueError as exc:
        f.not_sent[f"url: {type(exc).__name__}"] += 1
        return None
    headers = dict(req.headers)
    if req.signer is not None:
        try:
            headers.update(sign(f, f.net.keys[req.signer], req, str(url), m, rng))
        except BadDataError:  # the client cannot sign that URL, so it cannot send it
            f.not_sent["unsignable"] += 1
            return None
    try:
        async with session.request(
            req.method, url, data=req.body or None, headers=headers, allow_redirects=False
        ) as resp:
            body = await resp.read()
            return resp.status, resp.content_type, body
    except (ValueError, aiohttp.InvalidURL, aiohttp.ClientConnectorError) as exc:
        f.not_sent[type(exc).__name__] += 1
        return None
    except (aiohttp.ClientResponseError, aiohttp.ServerDisconnectedError) as exc:
        # the client could not read the answer (the hub answers every request it cannot
        # parse 400 problem+json, net/guard.py, ADR 0016, and closes the connection)
        f.http_parser[type(exc).__name__] += 1
        return None


async def test_fuzz_the_hub_over_http(fuzz: Fuzz) -> None:
    await fuzz_http(fuzz, 1_000)


@pytest.mark.slow
@pytest.mark.skipif(not SLOW, reason="long fuzz run: set JCM_SYNC_SLOW=1")
async def test_fuzz_the_hub_with_100000_requests(fuzz: Fuzz) -> None:
    await fuzz_http(fuzz, 100_000)


async def fuzz_http(f: Fuzz, requests: int) -> None:
    seed = run_seed()
    rng = random.Random(seed)
    m = Mutator(rng)
    log = Captured().install()
    started = time.monotonic()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            before = await snapshot(f.hub.store, entries=True)
            sent = 0
            while sent < requests:
                req = await next_request(f, rng, m)
                try:
                    answer = await send(f, session, req, m, rng)
                except TimeoutError:
                    raise AssertionError(
                        f"seed {seed}: no answer in 60 s to request #{sent + 1}: {req.method} "
                        f"{req.path}?{req.query} ({f.by_kind}) body {req.body[:300]!r}"
                    ) from None
                if answer is None:
                    continue
                sent += 1
                status, ctype, body = answer
                f.by_status[status] += 1
                if req.signer is not None and status != 401:
                    f.past_auth += 1
                if status == 400 and req.raw_target:
                    # not HTTP/1.1: refused before any route, problem+json too (ADR 0016)
                    f.http_parser["400 parser"] += 1
                if status >= 400:
                    problem = check_refusal(status, ctype, body, req.method)
                    if problem is not None:
                        f.bad_refusals.append(f"{req.method} {req.path}?{req.query}: {problem}")
                    if status == 409 and b"fork" in body:
                        for a in await f.hub.alarms.active():  # cleared as an operator would
                            await f.hub.alarms.clear(a.origin)
                            f.forks += 1
                full = sent % FULL_EVERY == 0 or sent == requests
                after = await snapshot(f.hub.store, entries=full)
                if status >= 400:
                    if not full:
                        before = {k: (*v[:3], before[k][3]) for k, v in before.items()}
                        after = {k: (*v[:3], before[k][3]) for k, v in after.items()}
                    if after != before:
                        f.store_changed.append(f"seed {seed} #{sent} {req.method} {req.path}")
                elif not full:
                    after = await snapshot(f.hub.store, entries=True)
                before = after
    finally:
        log.remove()
    elapsed = time.monotonic() - started
    fives = {s: n for s, n in f.by_status.items() if s >= 500}
    summary(
        f"HTTP fuzz (seed {seed}): {sent} requests in {elapsed:.1f} s by kind {dict(f.by_kind)};"
        f" by status {dict(sorted(f.by_status.items()))}; 5xx {sum(fives.values())};"
        f" past authentication {f.past_auth}; fork alarms {f.forks};"
        f" tracebacks {len(log.tracebacks())}; not sent {dict(f.not_sent)};"
        f" refused by aiohttp's HTTP parser {dict(f.http_parser)}"
    )
    assert not fives, f"seed {seed}: 5xx answers {fives}; {log.tracebacks()[:2]}"
    assert not log.tracebacks(), f"seed {seed}: " + "\n".join(log.tracebacks()[:3])
    fork_log = "fork"  # services/node.py's event for a fork alarm, expected here
    errors = log.errors(lambda r: r.getMessage() == fork_log)
    assert not errors, f"seed {seed}: {errors[:3]}"
    assert not f.bad_refusals, f"seed {seed}: {f.bad_refusals[:5]}"
    assert not f.store_changed, f.store_changed[:5]
    # the fuzzer reached the handlers, not only the signature check
    assert f.past_auth >= requests // 4, f.past_auth
    assert sum(n for s, n in f.by_status.items() if s < 300) > 0
    assert sum(n for s, n in f.by_status.items() if 400 <= s < 500 and s != 401) > 0


# --- import ----------------------------------------------------------------------------


def import_base(f_net: Network, rng: random.Random, seed: int) -> list[bytes]:
    """Lines a registry might export: the records of ``seed``'s partnership, each as JSON
    or as its signed envelope. One seed per run: a file left unmutated holds records the
    node already holds (an idempotent re-import), where another seed's records would be
    changed versions of them (refused without ``supersedes``)."""
    recs = partnership_records("MN", f_net.keys, projects=3, seed=seed)
    out = []
    for raw in recs.by_node["MN"][:12]:
        out.append(raw if rng.random() < 0.4 else open_envelope(raw).payload)
    return out


def test_fuzz_jcm_sync_import(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fuzz_import(tmp_path, capsys, 300)


@pytest.mark.slow
@pytest.mark.skipif(not SLOW, reason="long fuzz run: set JCM_SYNC_SLOW=1")
def test_fuzz_jcm_sync_import_20000_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fuzz_import(tmp_path, capsys, 20_000)


def fuzz_import(tmp_path: Path, capsys: pytest.CaptureFixture[str], imports: int) -> None:
    seed = run_seed()
    rng = random.Random(seed)
    m = Mutator(rng)
    net = provision(tmp_path / "net", ["MN"], hub_port=0)
    cfg = load_config(net.configs["MN"], env={})
    store_url = cfg.store_url

    async def held() -> Any:
        store = await open_store(store_url)
        try:
            return await snapshot(store, entries=True)
        finally:
            await store.close()

    exits: Counter[int] = Counter()
    problems: list[str] = []
    started = time.monotonic()
    path = tmp_path / "records.jsonl"
    base_seed = rng.randrange(10**6)
    assert main(["import", "--config", str(net.configs["MN"]), "--partnership", "JP-MN",
                 _write(path, import_base(net, rng, base_seed), as_array=False)]) == 0  # fmt: skip
    capsys.readouterr()
    before = asyncio.run(held())
    for i in range(imports):
        lines = import_base(net, rng, base_seed)
        as_array = rng.random() < 0.3
        draw = rng.random()
        if draw < 0.1:  # unmutated: every record already held, accepted, nothing added
            data = _join(lines, as_array)
        elif draw < 0.55:  # one record mutated structurally, the file kept whole
            k = rng.randrange(len(lines))
            lines[k] = m.encode(m.value(msgspec.json.decode(lines[k])))
            data = _join(lines, as_array)
        else:
            data = m.raw(_join(lines, as_array))
        path.write_bytes(data)
        code = main(["import", "--config", str(net.configs["MN"]), "--partnership", "JP-MN",
                     str(path)])  # fmt: skip
        out = capsys.readouterr()
        exits[code] += 1
        after = asyncio.run(held())
        if code == 0:
            if draw < 0.1 and after != before:
                problems.append(f"#{i}: a re-import of held records changed the log")
            before = after
            continue
        # a line per problem of a row (file:row ...; ADR 0023), then one refusal line and
        # at most the operator's next step
        err = [line for line in out.err.strip().splitlines() if "next step:" not in line]
        listed = all(line.startswith(f"{path}:") for line in err[:-1])
        if code != 1 or not err or not listed or "Traceback" in out.err:
            problems.append(f"#{i} exit {code}: {out.err[-500:]!r}")
        if after != before:
            problems.append(f"#{i}: the log changed after a refused import")
    elapsed = time.monotonic() - started
    with capsys.disabled():
        summary(f"import fuzz (seed {seed}): {imports} files in {elapsed:.1f} s, "
                f"exits {dict(exits)}, problems {len(problems)}")  # fmt: skip
    assert not problems, f"seed {seed}: {problems[:5]}"
    assert exits[1] > imports // 2  # mostly refused: the mutations bite
    assert exits[0] >= imports // 20  # the unmutated re-imports are accepted


def _join(lines: list[bytes], as_array: bool) -> bytes:
    return b"[" + b",".join(lines) + b"]" if as_array else b"\n".join(lines) + b"\n"


def _write(path: Path, lines: list[bytes], *, as_array: bool) -> str:
    path.write_bytes(_join(lines, as_array))
    return str(path)


# --- regressions: inputs the fuzzer found answered 500 or logged a traceback ----------


async def _signed(f: Fuzz, method: str, target: str, body: bytes = b"") -> tuple[int, str, bytes]:
    req = Request(method, target.split("?")[0], target.partition("?")[2], body, signer="MN")
    rng = random.Random(0)
    async with aiohttp.ClientSession() as session:
        answer = await send(f, session, req, Mutator(rng), rng)
    assert answer is not None
    return answer


LOGS = "/v1/partnerships/JP-MN/logs"
PUSH = f"{LOGS}/MN/entries"


@pytest.mark.parametrize(
    ("method", "target", "body"),
    [
        pytest.param("POST", PUSH, b'{"start":0,"entries":' + b"[" * 100_000 + b"]" * 100_000
                     + b"}", id="push-nested-100000-deep"),
        pytest.param("POST", PUSH, b'{"start":0,"entries":["\xed\xa0\x80"]}',
                     id="push-invalid-utf8-in-string"),
        pytest.param("GET", f"{LOGS}/MN/entries?start=%C2%B2", b"", id="superscript-digit"),
        pytest.param("GET", f"{LOGS}/MN/entries?start=9999999999999999999", b"",
                     id="start-past-int64"),
        pytest.param("GET", f"{LOGS}/JP/proofs/consistency?old=9999999999999999999&new=1", b"",
                     id="old-past-int64"),
        pytest.param("GET", f"{LOGS}/JP/proofs/inclusion?index=1&size=9999999999999999999", b"",
                     id="size-past-int64"),
        pytest.param("GET", "/v1/partnerships/JP-MN/state?have=9999999999999999999", b"",
                     id="have-past-int64"),
    ],
)  # fmt: skip
async def test_refused_not_crashed(fuzz: Fuzz, method: str, target: str, body: bytes) -> None:
    log = Captured().install()
    try:
        before = await snapshot(fuzz.hub.store, entries=True)
        status, ctype, answer = await _signed(fuzz, method, target, body)
    finally:
        log.remove()
    assert 400 <= status < 500, (status, answer[:300])
    assert check_refusal(status, ctype, answer, method) is None
    assert not log.tracebacks()
    assert not log.errors()
    assert await snapshot(fuzz.hub.store, entries=True) == before


async def test_a_request_that_is_not_http_is_one_info_line(fuzz: Fuzz) -> None:
    """aiohttp's parser refuses it before any route: 400 problem+json, one INFO line."""
    log = Captured().install()
    try:
        url = URL(fuzz.url)
        reader, writer = await asyncio.open_connection(url.host, url.port)
        writer.write(b"GET /v1/ ?x HTTP/1.1\r\nHost: h\r\n\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        await writer.wait_closed()
    finally:
        log.remove()
    assert head.startswith(b"HTTP/1."), head
    assert head[8:13] == b" 400 ", head
    assert b"\r\nContent-Type: application/problem+json" in head, head
    assert b'"type":"urn:jcm-sync:problem:bad-request"' in head, head
    assert not log.tracebacks()
    assert not log.errors()
    assert not [r for r in log.records if r.levelno >= logging.WARNING]
    refused = [r for r in log.records if r.getMessage() == "refused"]
    assert [(r.levelno, getattr(r, "reason", None)) for r in refused] == [
        (logging.INFO, "bad-request")
    ]
