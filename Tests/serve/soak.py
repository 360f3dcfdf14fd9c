"""Soak test of edgelm serve: REQUESTS requests from 8 client threads, with random disconnects, malformed and
unsupported requests mixed in. Checks that the server never dies, answers every well-formed request, frees every
slot (the /metrics gauges return to idle) and keeps a flat resident set.

Usage: python Tests/serve/soak.py EDGELM_BINARY MODEL.edgelm [REQUESTS]
"""
import http.client, json, random, re, socket, subprocess, sys, threading, time

EDGELM, MODEL = sys.argv[1], sys.argv[2]
TOTAL = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
proc = subprocess.Popen([EDGELM, "serve", "-m", MODEL, "--port", "0", "--slots", "4", "--queue", "64", "--chat-template", "chatml"],
                        stderr=subprocess.PIPE, text=True)
port = None
for line in proc.stderr:
    m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
    if m:
        port = int(m.group(1))
        break
threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()


def rss_kib():
    for line in open(f"/proc/{proc.pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])


def request(method, path, body):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request(method, path, body=body, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


counts = {"ok": 0, "rejected": 0, "disconnected": 0, "unexpected": 0}
lock = threading.Lock()
done = [0]
rss = {}


def client(seed):
    rng = random.Random(seed)
    while True:
        with lock:
            if done[0] >= TOTAL:
                return
            done[0] += 1
            n = done[0]
        if n in (TOTAL // 10, TOTAL):
            rss[n] = rss_kib()
        kind = rng.random()
        stream = rng.random() < 0.5
        body = {"max_tokens": rng.randint(1, 24), "temperature": rng.choice([0, 0.8]), "stream": stream, "seed": n}
        if rng.random() < 0.5:
            path, body["prompt"] = "/v1/completions", rng.choice(["Once upon a time", "The dog", "Lily and Tom went", ""])
        else:
            path, body["messages"] = "/v1/chat/completions", [{"role": "user", "content": rng.choice(["Hi", "Tell me a story", "Why?"])}]
        try:
            if kind < 0.1:  # disconnect mid-stream
                body.update(stream=True, max_tokens=200)
                s = socket.create_connection(("127.0.0.1", port), timeout=30)
                data = json.dumps(body).encode()
                s.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (path.encode(), len(data), data))
                s.recv(rng.randint(1, 600))
                s.close()
                with lock:
                    counts["disconnected"] += 1
            elif kind < 0.2:  # malformed or unsupported
                bad = rng.choice([b"{", json.dumps({**body, "n": 99}).encode(), json.dumps({**body, "max_tokens": "x"}).encode(), b"\xff\xfe"])
                status, _ = request("POST", path, bad)
                with lock:
                    counts["rejected" if status == 400 else "unexpected"] += 1
            else:
                status, data = request("POST", path, json.dumps(body))
                ok = status == 200 and (b"[DONE]" in data if stream else b"usage" in data) or status == 503
                with lock:
                    counts["ok" if ok else "unexpected"] += 1
        except (OSError, http.client.HTTPException):
            with lock:
                counts["unexpected"] += 1


start = time.time()
threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
seconds = time.time() - start
idle = False
for _ in range(100):
    status, data = request("GET", "/metrics", None)
    m = {l.split()[0]: float(l.split()[1]) for l in data.decode().splitlines() if l and not l.startswith("#")}
    if m["edgelm_slots_busy"] == 0 and m["edgelm_queue_length"] == 0:
        idle = True
        break
    time.sleep(0.1)
alive = proc.poll() is None
growth = (rss[TOTAL] - rss[TOTAL // 10]) / 1024
print(f"soak: {TOTAL} requests in {seconds:.1f} s: {counts}; RSS {rss[TOTAL // 10] / 1024:.1f} -> {rss[TOTAL] / 1024:.1f} MiB; "
      f"idle after: {idle}; alive: {alive}")
proc.terminate()
checks = [alive, idle, counts["unexpected"] == 0, growth < 16]
print(f"soak: {sum(checks)} passed, {len(checks) - sum(checks)} failed")
sys.exit(0 if all(checks) else 1)
