"""edgelm serve driven by the official openai client and by raw HTTP; edgelm chat driven through a pty.

Usage: python Tests/serve/test_server.py EDGELM_BINARY MODEL.edgelm LONG_MODEL.edgelm REAL_MODEL.gguf
(MODEL: a small trained model; LONG_MODEL: one that writes long answers, for Ctrl-C in the middle of one;
REAL_MODEL: SmolLM2-135M-Instruct's GGUF as published, served as given, with its own ChatML template.)
Starts its own servers on free loopback ports and stops them; EDGELM_SERVE_ONLY=TEXT runs only the tests whose
name contains TEXT. Prints one line per test and closes with
'N passed, N failed'; exits non-zero on any failure.
"""
import http.client, json, os, pty, re, select, signal, socket, subprocess, sys, threading, time, traceback

import jsonschema
import openai

EDGELM, MODEL, LONG_MODEL, REAL_MODEL = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
results = []


class Server:
    """An `edgelm serve` process on a free port."""

    def __init__(self, *extra, model=None):
        template = [] if model else ["--chat-template", "chatml"]
        self.proc = subprocess.Popen([EDGELM, "serve", "-m", model or MODEL, "--port", "0", *template, *extra],
                                     stderr=subprocess.PIPE, text=True)
        self.log = []
        deadline = time.time() + 60
        while True:
            line = self.proc.stderr.readline()
            if not line:
                raise RuntimeError("server exited: " + "".join(self.log))
            self.log.append(line)
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                break
            if time.time() > deadline:
                raise RuntimeError("server did not start")
        threading.Thread(target=self._drain, daemon=True).start()
        self.client = openai.OpenAI(base_url=f"http://127.0.0.1:{self.port}/v1", api_key=extra[extra.index("--api-key") + 1] if "--api-key" in extra else "none",
                                    max_retries=0, timeout=60)

    def _drain(self):
        for line in self.proc.stderr:
            self.log.append(line)

    def raw(self, method, path, body=None, headers=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        c.request(method, path, body=body, headers=headers or {"Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, data

    def metrics(self):
        _, data = self.raw("GET", "/metrics")
        return {line.split()[0]: float(line.split()[1]) for line in data.decode().splitlines() if line and not line.startswith("#")}

    def wait_idle(self, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = self.metrics()
            if m["edgelm_slots_busy"] == 0 and m["edgelm_queue_length"] == 0:
                return m
            time.sleep(0.05)
        raise AssertionError(f"server not idle: {self.metrics()}")

    def stop(self):
        alive = self.proc.poll() is None
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        return alive


def test(fn):
    only = os.environ.get("EDGELM_SERVE_ONLY")
    if only and only not in fn.__name__:
        return
    try:
        fn()
        results.append((fn.__name__, None))
        print(f"PASS {fn.__name__}", flush=True)
    except Exception:
        results.append((fn.__name__, traceback.format_exc()))
        print(f"FAIL {fn.__name__}\n{traceback.format_exc()}", flush=True)


def error_of(status_data):
    status, data = status_data
    return status, json.loads(data)["error"]


server = Server("--slots", "4", "--max-body", "65536")
c = server.client
STORY = "Once upon a time, there was a little"


@test
def models_lists_the_model():
    ids = [m.id for m in c.models.list().data]
    assert ids == [os.path.splitext(os.path.basename(MODEL))[0]], ids


@test
def completion_stream_equals_non_stream():
    full = c.completions.create(model="m", prompt=STORY, max_tokens=24, temperature=0)
    text = full.choices[0].text
    assert text and full.choices[0].finish_reason == "length", full
    assert full.usage.completion_tokens == 24 and full.usage.prompt_tokens > 5, full.usage
    streamed = "".join(ch.choices[0].text for ch in c.completions.create(model="m", prompt=STORY, max_tokens=24, temperature=0, stream=True))
    assert streamed == text, (streamed, text)


@test
def chat_stream_equals_non_stream():
    messages = [{"role": "system", "content": "You tell stories."}, {"role": "user", "content": "Tell me about a dog."}]
    full = c.chat.completions.create(model="m", messages=messages, max_tokens=20, temperature=0)
    msg = full.choices[0].message
    assert msg.role == "assistant" and msg.content, full
    assert full.choices[0].finish_reason in ("stop", "length") and full.usage.total_tokens == full.usage.prompt_tokens + full.usage.completion_tokens
    chunks = list(c.chat.completions.create(model="m", messages=messages, max_tokens=20, temperature=0, stream=True,
                                            stream_options={"include_usage": True}, user="tester"))
    assert chunks[0].choices[0].delta.role == "assistant"
    streamed = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert streamed == msg.content, (streamed, msg.content)
    # include_usage: a last chunk of its own with no choices; finish_reason on the one before.
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == full.usage.completion_tokens, chunks[-1]
    assert chunks[-2].choices[0].finish_reason == full.choices[0].finish_reason
    assert chunks[0].id.startswith("chatcmpl-") and len(chunks[0].id) == 33 and full.id != chunks[0].id
    assert abs(full.created - time.time()) < 60, full.created


@test
def http_as_clients_expect():
    # 405 with Allow for a wrong method, HEAD on GET routes, CORS preflight and headers with --cors.
    status, _ = server.raw("GET", "/v1/chat/completions")
    h = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    h.request("DELETE", "/health")
    r = h.getresponse(); r.read()
    assert r.status == 405 and r.getheader("Allow") == "GET, HEAD", (r.status, r.getheaders())
    h.request("HEAD", "/v1/models")
    r = h.getresponse(); r.read()
    assert r.status == 200 and status == 405, (r.status, status)
    h.close()
    web = Server("--slots", "1", "--cors", "http://app.example", "--api-key", "k")
    try:
        h = http.client.HTTPConnection("127.0.0.1", web.port, timeout=10)
        h.request("OPTIONS", "/v1/chat/completions", headers={"Origin": "http://app.example", "Access-Control-Request-Method": "POST",
                                                                "Access-Control-Request-Headers": "authorization, content-type"})
        r = h.getresponse(); r.read()
        assert r.status == 204 and r.getheader("Access-Control-Allow-Origin") == "http://app.example", r.getheaders()
        assert "POST" in r.getheader("Access-Control-Allow-Methods") and "Authorization" in r.getheader("Access-Control-Allow-Headers")
        h.request("POST", "/v1/completions", body=json.dumps({"prompt": "Once", "max_tokens": 2}),
                  headers={"Origin": "http://app.example", "Authorization": "Bearer k", "Content-Type": "application/json"})
        r = h.getresponse(); r.read()
        assert r.status == 200 and r.getheader("Access-Control-Allow-Origin") == "http://app.example", r.getheaders()
        h.request("GET", "/health", headers={"Origin": "http://evil.example"})
        r = h.getresponse(); r.read()
        assert r.getheader("Access-Control-Allow-Origin") is None
        h.close()
    finally:
        assert web.stop(), "the server died"


@test
def stop_strings_end_the_text_across_tokens():
    free = c.completions.create(model="m", prompt=STORY, max_tokens=30, temperature=0).choices[0].text
    word = "named" if "named" in free else free.split()[2]
    cut = c.completions.create(model="m", prompt=STORY, max_tokens=30, temperature=0, stop=[word, "zzzz"])
    assert cut.choices[0].finish_reason == "stop", cut
    assert cut.choices[0].text == free[:free.index(word)], (cut.choices[0].text, free)
    streamed = "".join(ch.choices[0].text for ch in c.completions.create(model="m", prompt=STORY, max_tokens=30, temperature=0,
                                                                          stop=word, stream=True))
    assert streamed == cut.choices[0].text


@test
def seed_makes_sampling_reproducible():
    a = c.completions.create(model="m", prompt=STORY, max_tokens=20, temperature=0.9, seed=42).choices[0].text
    b = c.completions.create(model="m", prompt=STORY, max_tokens=20, temperature=0.9, seed=42, top_p=0.9).choices[0].text
    a2 = c.completions.create(model="m", prompt=STORY, max_tokens=20, temperature=0.9, seed=42).choices[0].text
    assert a == a2, (a, a2)
    assert isinstance(b, str)


@test
def unsupported_fields_are_refused_by_name():
    for kwargs, param in [({"n": 5}, "n"), ({"top_logprobs": 3}, "top_logprobs"), ({"presence_penalty": 2.5}, "presence_penalty"),
                          ({"logit_bias": {"999999": 5}}, "logit_bias"), ({"logit_bias": {"1": 500}}, "logit_bias"),
                          ({"functions": [{"name": "f", "parameters": {}}]}, "functions")]:
        try:
            c.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=4, **kwargs)
            raise AssertionError(f"{kwargs} was accepted")
        except openai.BadRequestError as e:
            assert e.status_code == 400 and e.body["param"] == param, e.body


@test
def logprobs_choices_penalties_and_bias():
    # logprobs: greedy picks the top alternative, log-probabilities are <= 0 and sorted, the tokens spell the text
    # (chat and completions, streamed and not); n = 3 returns three choices; logit_bias -100 on the greedy first
    # token changes it; presence/frequency penalties are accepted.
    msgs = [{"role": "user", "content": STORY}]
    r = c.chat.completions.create(model="m", messages=msgs, max_tokens=12, temperature=0, logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert "".join(e.token for e in content) == r.choices[0].message.content, (content, r.choices[0].message.content)
    for e in content:
        assert e.logprob <= 0 and len(e.top_logprobs) == 3 and e.top_logprobs[0].token == e.token, e
        assert abs(e.top_logprobs[0].logprob - e.logprob) < 1e-6 and e.top_logprobs[0].logprob >= e.top_logprobs[1].logprob >= e.top_logprobs[2].logprob
    streamed = [e for ch in c.chat.completions.create(model="m", messages=msgs, max_tokens=12, temperature=0, logprobs=True, top_logprobs=3,
                                                       stream=True) if ch.choices and ch.choices[0].logprobs for e in ch.choices[0].logprobs.content]
    assert [(e.token, round(e.logprob, 5)) for e in streamed] == [(e.token, round(e.logprob, 5)) for e in content]
    legacy = c.completions.create(model="m", prompt=STORY, max_tokens=8, temperature=0, logprobs=2)
    lp = legacy.choices[0].logprobs
    assert "".join(lp.tokens) == legacy.choices[0].text and len(lp.token_logprobs) == len(lp.tokens) == len(lp.top_logprobs)
    assert lp.text_offset[0] == 0 and all(max(t.values()) <= 0 for t in lp.top_logprobs)
    three = c.completions.create(model="m", prompt=STORY, max_tokens=16, temperature=1.0, seed=11, n=3)
    assert sorted(ch.index for ch in three.choices) == [0, 1, 2] and len({ch.text for ch in three.choices}) > 1, three
    streamed3 = {}
    for ch in c.completions.create(model="m", prompt=STORY, max_tokens=16, temperature=1.0, seed=11, n=3, stream=True):
        for choice in ch.choices:
            streamed3[choice.index] = streamed3.get(choice.index, "") + choice.text
    assert streamed3 == {ch.index: ch.text for ch in three.choices}, (streamed3, three.choices)
    assert three.usage.completion_tokens > 0
    # +100 on one token makes it win every step: the same piece each time, with probability ~1.
    forced = c.chat.completions.create(model="m", messages=msgs, max_tokens=6, temperature=0, logprobs=True, logit_bias={"300": 100})
    entries = forced.choices[0].logprobs.content
    assert len({e.token for e in entries}) == 1 and all(e.logprob > -1e-3 for e in entries), entries
    assert entries[0].token != content[0].token
    penalized = c.chat.completions.create(model="m", messages=msgs, max_tokens=12, temperature=0, presence_penalty=1.5, frequency_penalty=1.0)
    assert penalized.choices[0].finish_reason in ("stop", "length"), penalized


@test
def embeddings_are_unit_vectors_of_the_model_width():
    # /v1/embeddings through the openai client (base64 by default) and as floats: unit vectors of the model's width
    # (64 for stories260K), the same for an input alone or in a batch, different for different texts; bad input 400.
    one = c.embeddings.create(model="m", input=STORY)
    vec = one.data[0].embedding
    assert len(vec) == 64 and abs(sum(x * x for x in vec) - 1) < 1e-4, len(vec)
    batch = c.embeddings.create(model="m", input=[STORY, "The dog ran to the park.", STORY], encoding_format="float")
    assert [d.index for d in batch.data] == [0, 1, 2] and batch.usage.prompt_tokens > 0
    assert max(abs(a - b) for a, b in zip(batch.data[0].embedding, vec)) < 1e-5
    assert batch.data[0].embedding == batch.data[2].embedding and batch.data[1].embedding != batch.data[0].embedding
    for body, param in [({"input": ""}, "input"), ({"input": [[999999]]}, "input"), ({"input": STORY, "encoding_format": "int8"}, "encoding_format"),
                        ({"input": STORY, "dimensions": 32}, "dimensions"), ({}, "input")]:
        status, err = error_of(server.raw("POST", "/v1/embeddings", json.dumps(body)))
        assert status == 400 and err["param"] == param, (body, status, err)


@test
def malformed_requests_get_openai_errors():
    cases = [
        (("POST", "/v1/completions", b"{not json"), 400, None),
        (("POST", "/v1/completions", b"[1, 2]"), 400, None),
        (("POST", "/v1/completions", json.dumps({"prompt": "x", "max_tokens": "ten"})), 400, "max_tokens"),
        (("POST", "/v1/completions", json.dumps({"prompt": "x", "temperature": -1})), 400, "temperature"),
        (("POST", "/v1/completions", json.dumps({"prompt": "x", "stream": "yes"})), 400, "stream"),
        (("POST", "/v1/completions", json.dumps({"prompt": "x", "stop": [1]})), 400, "stop"),
        (("POST", "/v1/completions", json.dumps({"max_tokens": 3})), 400, "prompt"),
        (("POST", "/v1/chat/completions", json.dumps({"messages": []})), 400, "messages"),
        (("POST", "/v1/chat/completions", json.dumps({"messages": [{"role": "robot", "content": "x"}]})), 400, "messages[0].role"),
        (("POST", "/v1/chat/completions", json.dumps({"messages": [{"role": "user", "content": 7}]})), 400, "messages[0].content"),
        (("POST", "/v1/completions", json.dumps({"prompt": "word " * 2000})), 400, "prompt"),
        (("POST", "/v1/completions", json.dumps({"prompt": "x", "max_tokens": 100000})), 400, "max_tokens"),
        (("POST", "/v1/completions", json.dumps({"prompt": "x" * 70000})), 413, None),
        (("GET", "/v1/nothing", None), 404, None),
    ]
    for (method, path, body), status, param in cases:
        got, err = error_of(server.raw(method, path, body))
        assert got == status and err["message"], (path, body and body[:60], got, err)
        assert err.get("param") == param, (body and body[:60], err)


@test
def garbage_http_does_not_hurt_the_server():
    for junk in [b"NOT HTTP AT ALL\r\n\r\n", b"POST /v1/completions HTTP/1.1\r\nContent-Length: 99999\r\n\r\n{\"prompt\"", b"\x00\xff" * 100]:
        s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        s.sendall(junk)
        s.close()
    status, _ = server.raw("GET", "/health")
    assert status == 200


@test
def second_chat_turn_evaluates_only_the_new_tokens():
    history = [{"role": "user", "content": "Tell me a story about a cat named Tom."}]
    before = server.metrics()
    first = c.chat.completions.create(model="m", messages=history, max_tokens=24, temperature=0)
    mid = server.metrics()
    history += [{"role": "assistant", "content": first.choices[0].message.content}, {"role": "user", "content": "What did Tom eat?"}]
    second = c.chat.completions.create(model="m", messages=history, max_tokens=8, temperature=0)
    after = server.metrics()
    evaluated1 = mid["edgelm_prompt_tokens_evaluated_total"] - before["edgelm_prompt_tokens_evaluated_total"]
    evaluated2 = after["edgelm_prompt_tokens_evaluated_total"] - mid["edgelm_prompt_tokens_evaluated_total"]
    p1, p2, r1 = first.usage.prompt_tokens, second.usage.prompt_tokens, first.usage.completion_tokens
    assert evaluated1 <= p1, (evaluated1, p1)
    # Reused: the first prompt and the reply; evaluated: the new turn, its markers, and at most a few reply tokens
    # that tokenize differently once the reply is part of the text.
    assert evaluated2 <= p2 - p1 - r1 + 12, (evaluated2, p1, r1, p2)
    print(f"  turn 2: {p2} prompt tokens, {int(evaluated2)} evaluated (turn 1: {p1} prompt + {r1} reply)")


@test
def context_shift_drops_the_oldest_messages_when_asked():
    # A conversation longer than the 512-token context: refused (naming the way out) unless the request, or the
    # server's --context-shift, asks to drop the oldest messages; the system message stays and the reply says how
    # many went, streamed or not.
    long = [{"role": "system", "content": "You tell stories."}]
    for i in range(12):
        long += [{"role": "user", "content": f"Tell me part {i} of the story about Tom the cat and his friend."},
                 {"role": "assistant", "content": "Tom went to the park with his friend and they played with a big red ball all day. " * 2}]
    long.append({"role": "user", "content": "How does it end?"})
    status, err = error_of(server.raw("POST", "/v1/chat/completions", json.dumps({"messages": long, "max_tokens": 16})))
    assert status == 400 and "context_shift" in err["message"], (status, err)
    status, data = server.raw("POST", "/v1/chat/completions", json.dumps({"messages": long, "max_tokens": 16, "temperature": 0, "context_shift": True}))
    body = json.loads(data)
    assert status == 200 and body["dropped_messages"] > 0 and body["usage"]["prompt_tokens"] + 16 <= 512, (status, body)
    shifted = Server("--context-shift")
    try:
        chunks = list(shifted.client.chat.completions.create(model="m", messages=long, max_tokens=16, temperature=0, stream=True))
        assert all(ch.model_extra["dropped_messages"] == body["dropped_messages"] for ch in chunks), chunks[0]
        # Not the same text as `server`'s reply: that server's prompt cache may hold part of this prompt, evaluated in
        # other batches, whose last bits can flip a greedy near-tie.
        assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices).strip(), chunks
        status, err = error_of(shifted.raw("POST", "/v1/chat/completions", json.dumps({"messages": long, "max_tokens": 16, "context_shift": False})))
        assert status == 400, (status, err)
    finally:
        assert shifted.stop(), "the server died"
    print(f"  dropped {body['dropped_messages']} of {len(long)} messages; prompt {body['usage']['prompt_tokens']} tokens")


@test
def concurrent_streams_all_complete_and_the_server_returns_to_idle():
    texts, errors = {}, []

    def run(i):
        try:
            texts[i] = "".join(ch.choices[0].text for ch in c.completions.create(model="m", prompt=STORY, max_tokens=40, temperature=0, stream=True))
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors, errors
    assert len(set(texts.values())) == 1, "greedy streams of the same prompt differ across slots"
    server.wait_idle()


@test
def a_client_that_disconnects_frees_its_slot():
    # A context long enough that the request would run for a while if nobody noticed the client leaving.
    long = Server("--slots", "2", "--ctx", "16384")
    try:
        before = long.metrics()["edgelm_generated_tokens_total"]
        s = socket.create_connection(("127.0.0.1", long.port), timeout=10)
        body = json.dumps({"prompt": STORY, "max_tokens": 16000, "stream": True}).encode()
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                  % (len(body), body))
        s.recv(512)
        s.close()
        generated = long.wait_idle()["edgelm_generated_tokens_total"] - before
        assert 0 < generated < 16000, generated
        print(f"  disconnected after {int(generated)} of 16000 tokens")
    finally:
        assert long.stop(), "the server died"


@test
def api_key_and_full_queue():
    guarded = Server("--slots", "1", "--queue", "1", "--api-key", "sekrit")
    try:
        bad = openai.OpenAI(base_url=f"http://127.0.0.1:{guarded.port}/v1", api_key="wrong", max_retries=0)
        try:
            bad.models.list()
            raise AssertionError("a wrong key was accepted")
        except openai.AuthenticationError as e:
            assert e.status_code == 401
        assert guarded.client.models.list().data
        statuses = []

        def run():
            try:
                guarded.client.completions.create(model="m", prompt=STORY, max_tokens=400, temperature=0)
                statuses.append(200)
            except openai.APIStatusError as e:
                statuses.append(e.status_code)
                assert e.body["message"], e.body

        threads = [threading.Thread(target=run) for _ in range(6)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert 503 in statuses and 200 in statuses, statuses
        guarded.wait_idle()
    finally:
        assert guarded.stop(), "the server died"


def read_until(fd, pattern, timeout=30):
    data, deadline = b"", time.time() + timeout
    while time.time() < deadline:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
            m = re.search(pattern, data.decode(errors="replace"))
            if m:
                return m, data.decode(errors="replace")
    raise AssertionError(f"no {pattern!r} in {data.decode(errors='replace')[-500:]!r}")


def chat_session(model, *args, script):
    """Runs `edgelm chat` on a pseudo-terminal, calls script(fd), then expects a clean exit."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(EDGELM, [EDGELM, "chat", "-m", model, "--chat-template", "chatml", *args])
    try:
        read_until(fd, r"> ")
        script(fd)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@test
def chat_cli_reuses_the_history_edits_lines_and_stops_on_ctrl_c():
    def turns(fd):
        os.write(fd, b"Tell me a story about a frog.\n")
        m1, _ = read_until(fd, r"prompt: (\d+) of (\d+) tokens evaluated")
        os.write(fd, b"What did the frog do next?\n")
        m2, _ = read_until(fd, r"prompt: (\d+) of (\d+) tokens evaluated")
        e2, p2, p1 = int(m2.group(1)), int(m2.group(2)), int(m1.group(2))
        assert e2 < p2 - p1, (m1.groups(), m2.groups())
        os.write(fd, b"/reset\n")
        read_until(fd, r"conversation cleared")
        os.write(fd, b"Hello\n")
        # Line editing: "/rest", Left, "e" is "/reset"; Up recalls it; Ctrl-D on a line deletes (here the "/" after
        # Home, typed again), not quits.
        # The editor draws its prompt once the terminal is in raw mode; keys sent before that would meet the
        # line discipline (which takes Ctrl-D itself), so each edit waits for the prompt.
        # (read_until drops what follows its match in the same read, so the prompt is part of each pattern.)
        editing = r"[\s\S]*?\r> \x1b\[K"
        m3, _ = read_until(fd, r"prompt: (\d+) of (\d+) tokens evaluated" + editing)
        assert int(m3.group(2)) < p2
        os.write(fd, b"/rest\x1b[De\r")
        read_until(fd, r"conversation cleared" + editing)
        os.write(fd, b"\x1b[A\x1b[H\x04/\r")
        read_until(fd, r"conversation cleared")
        os.write(fd, b"\x03")  # Ctrl-C at the prompt quits

    chat_session(MODEL, "-n", "24", "--temperature", "0", "--ctx", "512", script=turns)

    # Ctrl-C during a long answer stops that answer and the chat goes on. The random-weight model of
    # LONG_MODEL (edgelm synth s15m) practically never emits EOS, so its answers run for seconds.
    def interrupt(fd):
        os.write(fd, b"Tell me a very long story.\n")
        time.sleep(0.3)
        os.write(fd, b"\x03")
        m, _ = read_until(fd, r"\[(\d+) tokens, [0-9.]+ t/s; prompt: \d+ of \d+ tokens evaluated; stopped\]")
        assert int(m.group(1)) < 16000, m.group(0)
        os.write(fd, b"/reset\n")
        read_until(fd, r"conversation cleared")
        os.write(fd, b"/quit\n")

    chat_session(LONG_MODEL, "-n", "16000", "--ctx", "16384", "--temperature", "0.8", script=interrupt)


alive = server.stop()
if not alive:
    results.append(("server_survived", "the server process had died"))


@test
def real_model_chat_ends_at_its_end_of_turn():
    # SmolLM2's GGUF as given: converted once into a cache, its ChatML template recognised (with the default
    # system message it writes), no BOS added; a reply ends at <|im_end|> (its EOS) and never shows it,
    # streamed or not, over two turns.
    real = Server("--slots", "2", model=REAL_MODEL)
    try:
        messages = [{"role": "user", "content": "What is 2 + 2?"}]
        full = real.client.chat.completions.create(model="m", messages=messages, max_tokens=96, temperature=0)
        text = full.choices[0].message.content
        assert full.choices[0].finish_reason == "stop", full
        assert "4" in text and "<|im_end|>" not in text and "<|im_start|>" not in text, text
        streamed = "".join(ch.choices[0].delta.content or "" for ch in
                           real.client.chat.completions.create(model="m", messages=messages, max_tokens=96, temperature=0, stream=True)
                           if ch.choices)
        assert streamed == text, (streamed, text)
        messages += [{"role": "assistant", "content": text}, {"role": "user", "content": "And 3 + 3?"}]
        second = real.client.chat.completions.create(model="m", messages=messages, max_tokens=96, temperature=0)
        assert second.choices[0].finish_reason == "stop" and "<|im_end|>" not in second.choices[0].message.content, second
        assert any("converting" in line or "using" in line for line in real.log), real.log
    finally:
        real.stop()

@test
def structured_output_follows_the_schema():
    # SmolLM2 as published, response_format json_schema (strict) on schemas with nested objects, arrays, enums,
    # $ref recursion, patterns and formats: every reply parses and `jsonschema` validates it, streamed or not;
    # json_object gives an object; llama.cpp's grammar field; unsupported keywords and bad grammars are 400s.
    schemas = {
        "person": {"type": "object", "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 30},
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
            "role": {"enum": ["admin", "user", "guest"]},
            "address": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30},
                                                         "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
                        "required": ["city", "zip"], "additionalProperties": False},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "minItems": 1, "maxItems": 3}},
            "required": ["name", "age", "role", "address", "tags"], "additionalProperties": False},
        # $ref, including a recursive one (node -> node) that the 135M model would follow forever if it had the
        # choice: here the root's children are leaves (exact recursion is checked token by token in the Swift tests).
        "tree": {"$defs": {"leaf": {"type": "object", "properties": {"label": {"type": "string", "maxLength": 10}},
                                    "required": ["label"], "additionalProperties": False},
                           "list": {"anyOf": [{"type": "null"}, {"type": "object", "properties": {"head": {"$ref": "#/$defs/leaf"},
                                    "tail": {"$ref": "#/$defs/list"}}, "required": ["head", "tail"], "additionalProperties": False}]}},
                 "type": "object", "properties": {"label": {"type": "string", "maxLength": 10},
                                                  "children": {"type": "array", "items": {"$ref": "#/$defs/leaf"}, "maxItems": 3},
                                                  "more": {"$ref": "#/$defs/list"}},
                 "required": ["label", "children"], "additionalProperties": False},
        "event": {"type": "object", "properties": {
            "id": {"type": "string", "format": "uuid"}, "day": {"type": "string", "format": "date"},
            "at": {"type": "string", "format": "date-time"}, "host": {"type": "string", "format": "ipv4"},
            "priority": {"anyOf": [{"type": "integer", "minimum": 1, "maximum": 5}, {"type": "null"}]}},
            "required": ["id", "day", "at", "host", "priority"], "additionalProperties": False},
    }
    real = Server("--slots", "2", "--max-body", "8000000", model=REAL_MODEL)
    try:
        for name, schema in schemas.items():
            ask = {"tree": 'Here is a tree as JSON: {"label": "x", "children": [{"label": "y"}]}. Now write the tree whose root "a" has two leaves, "b" and "c".',
                   "event": "Write as JSON the event 123e4567-e89b-12d3-a456-426614174000 on 2026-12-02 at 10:00 UTC, on host 10.0.0.1, priority 2."}
            messages = [{"role": "user", "content": ask.get(name, f"Write an example {name} as JSON.")}]
            fmt = {"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": schema}}
            reply = real.client.chat.completions.create(model="m", messages=messages, max_tokens=300, temperature=0, response_format=fmt)
            text = reply.choices[0].message.content
            assert reply.choices[0].finish_reason == "stop", (name, reply)
            jsonschema.validate(json.loads(text), schema)
            streamed = "".join(ch.choices[0].delta.content or "" for ch in real.client.chat.completions.create(
                model="m", messages=messages, max_tokens=300, temperature=0.8, seed=7, response_format=fmt, stream=True) if ch.choices)
            jsonschema.validate(json.loads(streamed), schema)
            print(f"  {name}: {text!r}")
        obj = real.client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Describe a cat."}], max_tokens=200,
                                                  temperature=0, response_format={"type": "json_object"})
        assert isinstance(json.loads(obj.choices[0].message.content), dict), obj
        yes_no = real.client.completions.create(model="m", prompt="Is the sky blue? Answer:", max_tokens=8, temperature=0,
                                                extra_body={"grammar": 'root ::= " " ("yes" | "no")'})
        assert yes_no.choices[0].text in (" yes", " no"), yes_no
        # Tokens the grammar forces are fed without a sample, in two slots at once; the text is what sampling gives.
        literal, results = 'root ::= " " [0-9] [0-9] ", rocket number 12345678 named Apollo-XVII-ZZZZ"', [None, None]
        def launch(i):
            results[i] = real.client.completions.create(model="m", prompt="The launch was on day", max_tokens=60, temperature=0,
                                                        extra_body={"grammar": literal}).choices[0]
        forced_before = real.metrics().get("edgelm_forced_tokens_total", 0)
        threads = [threading.Thread(target=launch, args=(i,)) for i in range(2)]
        for t in threads: t.start()
        for t in threads: t.join()
        for r in results:
            assert r.finish_reason == "stop" and re.fullmatch(r" [0-9]{2}, rocket number 12345678 named Apollo-XVII-ZZZZ", r.text), r
        assert results[0].text == results[1].text, results
        forced = real.metrics()["edgelm_forced_tokens_total"] - forced_before
        assert forced >= 10, forced
        print(f"  forced tokens: {forced:.0f} in two replies of {results[0].text!r}")
        for body, param, words in [
                ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "string", "not": {}}}}},
                 "response_format", "keyword 'not' is not supported"),
                ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "integer", "minimum": 3, "maximum": 1}}}},
                 "response_format", "cannot be satisfied"),
                ({"grammar": 'root ::= root "a" | "b"'}, "grammar", "left-recursive"),
                ({"json_schema": {"enum": [f"value {i}" for i in range(200000)]}}, "json_schema", "too large"),
                ({"json_schema": {"type": "string"}, "grammar": 'root ::= "a"'}, "grammar", "at most one")]:
            started = time.time()
            status, err = error_of(real.raw("POST", "/v1/completions", json.dumps({"prompt": "x", "max_tokens": 4, **body})))
            assert status == 400 and err["param"] == param and words in err["message"], (body.keys(), status, err)
            assert time.time() - started < 10, "refusing took too long"
    finally:
        assert real.stop(), "the server died"

WEATHER = [{"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30},
                                                            "unit": {"enum": ["celsius", "fahrenheit"]}},
                           "required": ["city"], "additionalProperties": False}}}]


TINY_TOOL = [{"type": "function", "function": {"name": "f", "parameters": {
    "type": "object", "properties": {"x": {"type": "integer", "minimum": 0, "maximum": 9}}, "required": ["x"], "additionalProperties": False}}}]


def tool_round_trip(client, label, tools=WEATHER, budget=120):
    # tool_choice required: the reply is a call whose arguments the parameter schema validates (not streamed and
    # streamed as tool_calls deltas); the call and its result go back in the history; the next reply is text.
    msgs = [{"role": "user", "content": "What is the weather in Paris?"}]
    r = client.chat.completions.create(model="m", messages=msgs, tools=tools, tool_choice="required", temperature=0, max_tokens=budget,
                                       parallel_tool_calls=False)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and len(choice.message.tool_calls) == 1, (label, choice)
    call = choice.message.tool_calls[0]
    name = tools[0]["function"]["name"]
    assert call.function.name == name and call.id.startswith("call_"), call
    jsonschema.validate(json.loads(call.function.arguments), tools[0]["function"]["parameters"])
    deltas, finish = [], None
    for ch in client.chat.completions.create(model="m", messages=msgs, tools=tools, tool_choice={"type": "function", "function": {"name": name}},
                                             temperature=0, max_tokens=budget, stream=True, parallel_tool_calls=False):
        if ch.choices:
            deltas += ch.choices[0].delta.tool_calls or []
            finish = ch.choices[0].finish_reason or finish
    assert finish == "tool_calls" and len(deltas) == 1 and deltas[0].function.arguments == call.function.arguments, (label, deltas, call)
    msgs += [{"role": "assistant", "content": None, "tool_calls": [{"id": call.id, "type": "function",
                                                                      "function": {"name": name, "arguments": call.function.arguments}}]},
             {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temperature": 18})}]
    final = client.chat.completions.create(model="m", messages=msgs, tools=tools, tool_choice="none", temperature=0, max_tokens=budget // 4)
    assert final.choices[0].finish_reason in ("stop", "length") and not final.choices[0].message.tool_calls, final
    assert isinstance(final.choices[0].message.content, str) and final.choices[0].message.content, final
    print(f"  {label}: {call.function.arguments} -> {final.choices[0].message.content[:60]!r}")


@test
def tool_calls_round_trip_in_hermes_and_llama3_formats():
    real = Server("--slots", "2", model=REAL_MODEL)
    try:
        tool_round_trip(real.client, "SmolLM2 (ChatML/Hermes)")
        # Refusals: an unknown forced function, tools on completions, tools with a schema response_format.
        for body, param in [({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
                            ({"tool_choice": "required", "response_format": {"type": "json_object"}}, "tool_choice")]:
            status, err = error_of(real.raw("POST", "/v1/chat/completions", json.dumps(
                {"messages": [{"role": "user", "content": "x"}], "tools": WEATHER, **body})))
            assert status == 400 and err["param"] == param, (body, status, err)
        status, err = error_of(real.raw("POST", "/v1/completions", json.dumps({"prompt": "x", "tools": WEATHER})))
        assert status == 400 and err["param"] == "tools", err
    finally:
        assert real.stop(), "the server died"
    llama = Server("--slots", "2", "--chat-template", "llama3", model=MODEL)
    try:
        tool_round_trip(llama.client, "stories260K as Llama 3 JSON", tools=TINY_TOOL, budget=60)
    finally:
        assert llama.stop(), "the server died"


@test
def speculation_keeps_greedy_output_across_slots():
    # --lookup: every slot's drafts are verified in one batch, token by token as decode computes them, so greedy text
    # equals the plain server's; the drafts show in /metrics.
    prompt = STORY + " " + STORY
    reference = Server("--slots", "2")
    try:
        plain = reference.client.completions.create(model="m", prompt=prompt, max_tokens=48, temperature=0).choices[0].text
    finally:
        reference.stop()
    fast = Server("--slots", "2", "--lookup")
    try:
        texts, errors = [None, None], []

        def run(i):
            try:
                texts[i] = fast.client.completions.create(model="m", prompt=prompt, max_tokens=48, temperature=0).choices[0].text
            except Exception as e:
                errors.append(e)
        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for t in threads: t.start()
        for t in threads: t.join()
        assert not errors, errors
        assert texts == [plain, plain], (texts, plain)
        metrics = fast.wait_idle()
        assert metrics["edgelm_draft_tokens_total"] > 0, metrics
        assert 0 < metrics["edgelm_draft_tokens_accepted_total"] <= metrics["edgelm_draft_tokens_total"], metrics
        print(f"  {int(metrics['edgelm_draft_tokens_accepted_total'])} of {int(metrics['edgelm_draft_tokens_total'])} drafts kept")
    finally:
        assert fast.stop(), "the server died"


failed = [r for r in results if r[1]]
print(f"serve: {len(results) - len(failed)} passed, {len(failed)} failed")
sys.exit(1 if failed else 0)
