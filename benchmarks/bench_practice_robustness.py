"""The practice server under bad input and bad clients, in both dialects, one `labkit practice --fast`
process each.

1. Fuzz: >= 5,000 requests per dialect (valid ones, damaged/mutated/truncated PNG, JPEG and WebP, lone
   surrogates in text, system prompt, role and model, bad numbers and shapes): requests/s, 5xx count.
2. Expensive inputs: the server's peak memory (VmHWM, reset before each case) for a 7999×7999 PNG,
   an 18 MB text, a 12 MP JPEG, eight of them at once; /health latency while a 19 MB text is read.
3. Slow connections: 1,000 open (idle and half-sent headers), then a normal streamed request; and 1,100
   against a server started under `ulimit -n 1024`.
4. Lock-out (issue 17): 2,100 connections from 127.0.0.1 trickle their bodies a byte every 10 s (each
   reopened a second after it is cut or refused; in a process of their own) while /health and chat
   requests are probed from 127.0.0.1 and 127.0.0.2, each on a fresh connection; then one address
   holds 2,100 stalled streams and another address asks.

Every figure is printed beside its goal (issue 10) and the figure measured before the fixes.
Run: .venv/bin/python benchmarks/bench_practice_robustness.py [requests_per_dialect] [--lockout: only 4]
(BENCH_LOCKOUT_SECONDS sets how long the drip of section 4 lasts; 40 s by default.)
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import multiprocessing
import os
import random
import resource
import socket
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import practice_server  # noqa: E402

MODEL = "llava-v1.6-34b"
MB = 1024 * 1024
SERVER_LOG: list[str] = []  # what the practice servers wrote to stderr, for the refusals they logged


@contextmanager
def practice(*args: str, nofile: int | None = None) -> Iterator[tuple[str, int]]:
    """`labkit practice --fast ARGS` in its own process; yields (base URL, pid)."""
    with practice_server("--fast", *args, nofile=nofile, log=SERVER_LOG) as running:
        yield running


def rss_mb(pid: int, field: str) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak(pid: int) -> None:
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS


# --- 1. fuzz ---------------------------------------------------------------------------------------

def _image(fmt: str, size: tuple[int, int], exif: bool) -> bytes:
    img = Image.effect_mandelbrot(size, (-2, -1.5, 1, 1.5), 60).convert("RGB")
    buf = io.BytesIO()
    kwargs: dict = {}
    if exif:
        e = Image.Exif()
        e[0x0112] = 6
        e[0x010F] = "labkit"
        kwargs["exif"] = e
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


SEEDS = [(_image(f, (96, 64), f != "PNG"), "image/" + f.lower()) for f in ("PNG", "JPEG", "WEBP")]
SURROGATES = ["\ud800", "\udfff", "a\ud83d", "\udc00b"]
JUNK = [None, True, -1, 0, 1e308, float("nan"), "x", [], {}, 2**70]


def fuzzed(rng: random.Random) -> bytes:
    """One request body: mostly plausible, each with one or more things wrong."""
    text = rng.choice(["Describe the image", "What colour is it?", "图片里是什么？", "x" * rng.randint(0, 300)])
    content: object = text
    kind = rng.random()
    if kind < 0.45:  # a damaged image
        data, mime = rng.choice(SEEDS)
        bad = bytearray(data)
        for _ in range(rng.randint(0, 10)):
            bad[rng.randrange(len(bad))] = rng.randrange(256)
        if rng.random() < 0.4:
            bad = bad[: rng.randint(1, len(bad))]
        content = [{"type": "text", "text": text},
                   {"type": "image_url", "image_url": {"url": f"data:{mime};base64," + base64.b64encode(bad).decode()}}]
    messages: list[dict] = [{"role": "user", "content": content}]
    if rng.random() < 0.3:
        messages.insert(0, {"role": "system", "content": "Answer briefly."})
    payload: dict = {"model": MODEL, "messages": messages, "stream": True}
    if rng.random() < 0.3:  # a lone surrogate somewhere
        where = rng.choice(["text", "system", "role", "model"])
        s = rng.choice(SURROGATES)
        if where == "text":
            messages[-1]["content"] = text + s
        elif where == "system":
            messages.insert(0, {"role": "system", "content": "Be brief" + s})
        elif where == "role":
            messages[-1]["role"] = "user" + s
        else:
            payload["model"] = MODEL + s
    if rng.random() < 0.3:
        payload[rng.choice(["max_tokens", "temperature", "top_p", "seed", "n", "stream", "stream_options"])] = \
            rng.choice(JUNK)
    if rng.random() < 0.05:
        payload["messages"] = rng.choice(JUNK)
    raw = json.dumps(payload, ensure_ascii=rng.random() < 0.5, allow_nan=True).encode("utf-8", "surrogatepass")
    if rng.random() < 0.03:
        raw = raw[: rng.randint(0, len(raw))]
    return raw


async def fuzz(base: str, n: int, seed: int) -> tuple[float, Counter[int]]:
    rng = random.Random(seed)
    bodies = [fuzzed(rng) for _ in range(n)]
    statuses: Counter[int] = Counter()
    queue = iter(bodies)

    async def worker(http: httpx.AsyncClient) -> None:
        for raw in queue:
            r = await http.post(f"{base}/chat/completions", content=raw, headers={"content-type": "application/json"})
            statuses[r.status_code] += 1

    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=60) as http:
        await asyncio.gather(*(worker(http) for _ in range(8)))
    return n / (time.perf_counter() - started), statuses


# --- 2. expensive inputs ---------------------------------------------------------------------------

def body_text(text: str) -> bytes:
    return json.dumps({"model": MODEL, "stream": True, "messages": [{"role": "user", "content": text}]}).encode()


def body_image(data: bytes, mime: str) -> bytes:
    url = f"data:{mime};base64," + base64.b64encode(data).decode()
    return json.dumps({"model": MODEL, "stream": True, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "Describe it"}, {"type": "image_url", "image_url": {"url": url}}]}]}).encode()


def expensive_cases() -> dict[str, bytes]:
    bomb = io.BytesIO()
    Image.new("RGB", (7999, 7999), (200, 30, 30)).save(bomb, format="PNG", compress_level=9)
    photo = io.BytesIO()
    Image.effect_mandelbrot((4032, 3024), (-2, -1.5, 1, 1.5), 80).convert("RGB").save(photo, "JPEG", quality=90)
    big_png = io.BytesIO()
    side = 5792  # 33.5 M pixels, just under the practice server's decode limit; RGBA, the costliest mode
    gradient = Image.linear_gradient("L").resize((side, side))
    Image.merge("RGBA", (gradient, gradient.transpose(Image.Transpose.ROTATE_90), gradient, gradient)).save(
        big_png, "PNG", compress_level=6)
    return {
        f"7999×7999 PNG ({len(bomb.getvalue()) / 1024:.1f} KB)": body_image(bomb.getvalue(), "image/png"),
        f"{side}×{side} RGBA PNG ({len(big_png.getvalue()) / MB:.1f} MB, at the pixel limit)":
            body_image(big_png.getvalue(), "image/png"),
        f"12 MP JPEG ({len(photo.getvalue()) / MB:.1f} MB)": body_image(photo.getvalue(), "image/jpeg"),
        "18 MB text": body_text("word " * (18 * MB // 5)),
        "18 MB Chinese text": body_text("图" * (18 * MB // 3 // 2)),
    }


def distinct(raw: bytes, i: int) -> bytes:
    """The same request made different for the server's image cache: a byte after the image file's end."""
    if raw.count(b"base64,") != 1:
        return raw
    head, _, tail = raw.rpartition(b'"}}')
    payload_start = head.index(b"base64,") + 7
    data = base64.b64decode(head[payload_start:]) + bytes([i])
    return head[:payload_start] + base64.b64encode(data) + b'"}}' + tail


async def peak_for(base: str, pid: int, raw: bytes, copies: int = 1) -> tuple[float, list[int]]:
    reset_peak(pid)
    before = rss_mb(pid, "VmRSS")
    async with httpx.AsyncClient(timeout=120) as http:
        rs = await asyncio.gather(*(http.post(f"{base}/chat/completions", content=distinct(raw, i),
                                              headers={"content-type": "application/json"}) for i in range(copies)))
    return rss_mb(pid, "VmHWM") - before, [r.status_code for r in rs]


async def health_during(base: str, raw: bytes) -> float:
    """The slowest /health answer while ``raw`` is being read and validated."""
    root = base.rsplit("/", 1)[0]
    worst = 0.0
    async with httpx.AsyncClient(timeout=60) as http:
        task = asyncio.create_task(http.post(f"{base}/chat/completions", content=raw,
                                             headers={"content-type": "application/json"}))
        while not task.done():
            t = time.perf_counter()
            await http.get(f"{root}/health")
            worst = max(worst, time.perf_counter() - t)
            await asyncio.sleep(0.01)
        await task
    return worst


# --- 3. slow connections ---------------------------------------------------------------------------

def slow_then_normal(base: str, n: int) -> tuple[bool, float, int]:
    """Open ``n`` slow connections, then one normal streamed request: (served, seconds, slow ones still open)."""
    host, port = base.split("//")[1].split("/")[0].split(":")
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect((host, int(port)))
        except BlockingIOError:
            pass
        socks.append(s)
    time.sleep(0.5)
    for i, s in enumerate(socks):
        if i % 2:
            try:
                s.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
            except OSError:
                pass
    time.sleep(0.5)
    started = time.perf_counter()
    served = False
    try:
        with httpx.Client(timeout=15) as http:
            r = http.post(f"{base}/chat/completions", content=body_text("Hello"),
                          headers={"content-type": "application/json"})
            served = r.status_code == 200 and r.text.endswith("data: [DONE]\n\n")
    except httpx.HTTPError:
        served = False
    took = time.perf_counter() - started
    still_open = 0
    for s in socks:
        try:
            still_open += s.recv(1) == b"" and 0 or 1
        except BlockingIOError:
            still_open += 1
        except OSError:
            pass
        s.close()
    return served, took, still_open


# --- 4. lock-out: trickling bodies and one client's share (issue 17) ------------------------------

TRICKLE_HEAD = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
                b"content-length: 100000\r\n\r\n{")


class Probes:
    """What clients other than the attacker saw: latencies and failures per kind of probe."""

    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = {}
        self.failed: Counter[str] = Counter()
        self.statuses: dict[str, Counter[str]] = {}

    def record(self, kind: str, seconds: float, outcome: str, ok: bool) -> None:
        self.latency.setdefault(kind, []).append(seconds)
        self.statuses.setdefault(kind, Counter())[outcome] += 1
        if not ok:
            self.failed[kind] += 1


async def _probe(probes: Probes, kind: str, base: str, source: str, chat: bool, every: float,
                 until: float) -> None:
    """One fresh connection per probe from ``source`` (a monitor, a new notebook), as long as the drip lasts."""
    root = base.rsplit("/", 1)[0]
    transport = httpx.AsyncHTTPTransport(local_address=source, retries=0,
                                         limits=httpx.Limits(max_keepalive_connections=0))
    async with httpx.AsyncClient(transport=transport, timeout=10) as http:
        while time.monotonic() < until:
            started = time.perf_counter()
            try:
                if chat:
                    r = await http.post(f"{base}/chat/completions", content=body_text("Hello"),
                                        headers={"content-type": "application/json"})
                    ok = r.status_code == 200 and r.text.endswith("data: [DONE]\n\n")
                else:
                    r = await http.get(f"{root}/health")
                    ok = r.status_code == 200
                outcome = str(r.status_code)
            except httpx.HTTPError as exc:
                ok, outcome = False, type(exc).__name__
            took = time.perf_counter() - started
            probes.record(kind, took, outcome, ok and (chat or took <= 1.0))
            await asyncio.sleep(every)


async def _trickler(host: str, port: int, source: str, drip: float, until: float, lives: list[float],
                    refused: list[int]) -> None:
    """One attacker connection: headers, then a body byte every ``drip`` seconds; reconnects a second
    after it is cut or refused."""
    await asyncio.sleep(random.random() * drip)
    while time.monotonic() < until:
        try:
            reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
        except OSError:
            await asyncio.sleep(0.5)
            continue
        opened = time.monotonic()
        try:
            writer.write(TRICKLE_HEAD)
            while time.monotonic() < until:
                try:
                    data = await asyncio.wait_for(reader.read(100), drip)
                except asyncio.TimeoutError:
                    writer.write(b" ")
                    await writer.drain()
                    continue
                if data.startswith(b"HTTP/1.1 503"):
                    refused[0] += 1
                elif not data:
                    lives.append(time.monotonic() - opened)
                break
        except OSError:
            lives.append(time.monotonic() - opened)
        finally:
            writer.close()
        await asyncio.sleep(1.0)  # and opens it again a second later, to keep n dripping


async def _attack(base: str, n: int, seconds: float, drip: float) -> tuple[list[float], int]:
    host, port = base.split("//")[1].split("/")[0].split(":")
    until = time.monotonic() + seconds
    lives: list[float] = []
    refused = [0]
    await asyncio.gather(*(_trickler(host, int(port), "127.0.0.1", drip, until, lives, refused) for _ in range(n)))
    return lives, refused[0]


def _attacker(base: str, n: int, seconds: float, drip: float, results: "multiprocessing.Queue[object]") -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 8192),
                                                resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    results.put(asyncio.run(_attack(base, n, seconds, drip)))


def lockout(base: str, n: int, seconds: float, drip: float = 10.0) -> tuple[Probes, list[float], int]:
    """``n`` connections from 127.0.0.1 trickle their bodies for ``seconds`` (in a process of their own)
    while other clients probe from this one."""
    results: multiprocessing.Queue[object] = multiprocessing.Queue()
    attacker = multiprocessing.Process(target=_attacker, args=(base, n, seconds, drip, results))
    attacker.start()
    time.sleep(min(drip, 3.0))  # let them open
    until = time.monotonic() + seconds - 3.0
    probes = Probes()

    async def probe_all() -> None:
        await asyncio.gather(
            _probe(probes, "/health, the attacker's address", base, "127.0.0.1", False, 0.25, until),
            _probe(probes, "/health, another address", base, "127.0.0.2", False, 0.25, until),
            _probe(probes, "requests, another address", base, "127.0.0.2", True, 0.5, until),
            _probe(probes, "requests, the attacker's address", base, "127.0.0.1", True, 0.5, until))

    asyncio.run(probe_all())
    lives, refused = results.get(timeout=seconds + 60)  # type: ignore[misc]
    attacker.join(30)
    return probes, lives, refused


async def hog(base: str, n: int) -> tuple[int, int, Probes]:
    """One address opens ``n`` streams that stall (busy, never idle); then another address asks."""
    stall = {"content-type": "application/json", "x-practice-fault": "stall-after=0,stall-seconds=300"}
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.1", retries=0,
                                         limits=httpx.Limits(max_connections=n + 10))
    held, refused = 0, 0
    probes = Probes()
    async with httpx.AsyncClient(transport=transport, timeout=30) as http:
        streams = []
        for i in range(0, n, 100):
            async def one() -> tuple[int, object]:
                req = http.build_request("POST", f"{base}/chat/completions", content=body_text("Hi"), headers=stall)
                try:
                    r = await http.send(req, stream=True)
                    return r.status_code, r
                except httpx.HTTPError as exc:
                    return 0, exc
            streams += await asyncio.gather(*(one() for _ in range(min(100, n - i))))
        held = sum(1 for s, _ in streams if s == 200)
        refused = sum(1 for s, _ in streams if s != 200)
        until = time.monotonic() + 3
        await asyncio.gather(_probe(probes, "requests, another address", base, "127.0.0.2", True, 0.2, until),
                             _probe(probes, "/health, the hog's address", base, "127.0.0.1", False, 0.2, until))
        for _, r in streams:
            if isinstance(r, httpx.Response):
                await r.aclose()
    return held, refused, probes


def print_probes(probes: Probes) -> None:
    for kind, times in probes.latency.items():
        seen = ", ".join(f"{k}: {v}" for k, v in sorted(probes.statuses[kind].items()))
        goal = "0, all within 1 s" if kind.startswith("/health") else "0 lock-outs"
        median = sorted(times)[len(times) // 2]
        print(f"    {kind:<38} failed {probes.failed[kind]:>4} of {len(times):<4} median {median:5.2f} s, "
              f"slowest {max(times):5.2f} s   {goal}   ({seen})")


def lockout_section(seconds: float) -> None:
    print(f"\n{'4. lock-out (issue 17)':<46}{'measured':>22}   goal (load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs)")
    with practice() as (base, pid):
        probes, lives, refused = lockout(base, 2100, seconds)
        print(f"  2,100 connections from 127.0.0.1 trickling a body byte every 10 s, for {seconds:.0f} s:")
        print_probes(probes)
        cut = sorted(lives)
        median = f"{cut[len(cut) // 2]:.1f} s" if cut else "never"
        print(f"    {'trickling connections cut':<38}{len(cut):>10} (median life {median}, {refused} refused)   "
              "cut by the 30 s whole-body deadline")
    with practice() as (base, pid):
        held, refused, probes = asyncio.run(hog(base, 2100))
        print("  one address holds 2,100 stalled streams (busy, never idle), then another address asks:")
        print(f"    {'streams the hog got / was refused':<38}{held:>10} / {refused}   "
              "at most its share (1,024 of 2,048)")
        print_probes(probes)


def main() -> None:
    if "--lockout" in sys.argv:  # only section 4
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 8192),
                                                    resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        lockout_section(float(os.environ.get("BENCH_LOCKOUT_SECONDS", "40")))
        return
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    print(f"practice server robustness ({os.cpu_count()} CPUs, shared)\n")
    print(f"{'1. fuzz':<46}{'measured':>22}   goal (before the fixes)")
    cases = expensive_cases()
    for dialect in ("fastchat", "vllm"):
        with practice("--dialect", dialect) as (base, pid):
            rate, statuses = asyncio.run(fuzz(base, n, seed=1 if dialect == "fastchat" else 2))
            fivexx = sum(c for s, c in statuses.items() if s >= 500)
            shown = ", ".join(f"{s}: {c}" for s, c in sorted(statuses.items()))
            print(f"  {dialect}: {n} requests ({shown})")
            print(f"    {'responses >= 500':<42}{fivexx:>22}   0 (368 of 3,000 mutated images)")
            print(f"    {'requests per second (8 clients)':<42}{rate:>22.0f}   (none set)")
            print(f"    {'peak memory of the server process':<42}{rss_mb(pid, 'VmHWM'):>19.0f} MB   (no leak)")
    print(f"\n{'2. expensive inputs: peak memory of a fresh server':<50}{'peak (idle)':>18}   goal (before the fixes)")
    before = {"7999": " (378 MB)", "four 18 MB": " (3.3 GB)"}
    big_png = next(v for k, v in cases.items() if "at the pixel limit" in k)
    runs = [(name, raw, 1) for name, raw in cases.items()]
    runs += [("four 18 MB texts at once", cases["18 MB text"], 4), ("eight of the RGBA PNGs at once", big_png, 8)]
    for name, raw, copies in runs:
        with practice() as (base, pid):
            idle = rss_mb(pid, "VmRSS")
            _, statuses = asyncio.run(peak_for(base, pid, raw, copies))
            peak = rss_mb(pid, "VmHWM")
            goal = "< 300 MB" if copies == 1 else "bounded"
            note = next((v for k, v in before.items() if name.startswith(k)), "")
            if copies == 8:
                note = " (eight 7999² PNGs: 2.5 GB)"
            print(f"    {name:<46}{peak:>9.0f} MB ({idle:.0f}) {sorted(set(statuses))}   {goal}{note}")
    with practice() as (base, pid):
        worst = asyncio.run(health_during(base, body_text("word " * (19 * MB // 5))))
        print(f"    {'slowest /health during a 19 MB text':<46}{worst * 1000:>9.0f} ms   responsive (3 s)")
    print(f"\n{'3. slow connections':<46}{'measured':>22}   goal (before the fixes)")
    with practice() as (base, pid):
        served, took, still = slow_then_normal(base, 1000)
        print(f"    {'1,000 slow connections: normal request served':<50}{str(served):>10} in {took:.2f} s   "
              "True (True)")
    with practice(nofile=1024) as (base, pid):
        served, took, still = slow_then_normal(base, 1100)
        print(f"    {'1,100 slow under ulimit -n 1024: served':<50}{str(served):>10} in {took:.2f} s   "
              "True (reset, unlogged)")
    logged = [line for line in SERVER_LOG[-1].splitlines() if "connections open" in line]
    print(f"    {'  refusals/evictions logged':<50}{len(logged):>10}   >= 1 (0)")
    if logged:
        print(f"      e.g. {logged[0].strip()[:150]}")
    with practice("--dialect", "fastchat") as (base, pid):
        host, port = base.split("//")[1].split("/")[0].split(":")
        s = socket.create_connection((host, int(port)))
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\n")
        started = time.perf_counter()
        s.settimeout(30)
        try:
            s.recv(1)
        except OSError:
            pass
        print(f"    {'half-sent headers closed after':<50}{time.perf_counter() - started:>10.1f} s   "
              "about 10 s (never)")
        s.close()
        s = socket.create_connection((host, int(port)))
        r = httpx.post(f"{base}/chat/completions", content=body_text("Hi"),
                       headers={"content-type": "application/json"})
        assert r.status_code == 200
        s.close()
    lockout_section(float(os.environ.get("BENCH_LOCKOUT_SECONDS", "40")))


if __name__ == "__main__":
    main()
