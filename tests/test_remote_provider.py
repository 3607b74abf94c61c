"""The remote provider against a real OpenAI-compatible server (llama-cpp-python's, default GGUF).

One server for the module; generations are tiny (max_tokens ≤ 12, greedy) to keep the run short.
The Bearer-header check uses an httpx.MockTransport (no server).
"""

from __future__ import annotations

import json
import time

import httpx
import pytest

from fleet import config
from fleet.costs import PriceTable
from fleet.llm.base import Message, Sampling, Usage
from fleet.llm.remote import RemoteBackend, RemoteError, RemoteSettings
from llm_server import server_fixture

pytestmark = pytest.mark.integration

llm_server = server_fixture(scope="module")

KEY = "sk-test-SECRET-4711"
PRICES = PriceTable(local_cpu_second=0.01, remote_input_per_1k=0.5, remote_output_per_1k=2.0)
MESSAGES = [Message("system", "You write Python."), Message("user", "Write a function is_even(n).")]
PREFILL = "```python\n"
GREEDY = Sampling(max_tokens=12, temperature=0.0, top_p=1.0, seed=7)


def make_backend(base_url: str, model: str = "", environ: dict[str, str] | None = None,
                 transport: httpx.BaseTransport | None = None, connect_timeout: float = 2.0) -> RemoteBackend:
    cfg = RemoteSettings(base_url=base_url, model=model, timeout=60.0, connect_timeout=connect_timeout)
    return RemoteBackend(cfg, prices=PRICES, environ=environ or {}, transport=transport)


@pytest.fixture(scope="module")
def backend(llm_server):
    """A backend on the module's server, with an API key set (the server has none, so ignores it)."""
    remote = make_backend(llm_server.base_url, llm_server.model_alias, environ={"FLEET_REMOTE_API_KEY": KEY})
    yield remote
    remote.shutdown()


@pytest.fixture(scope="module")
def reply(backend):
    """One real completion shared by the usage and cost checks."""
    return backend.complete(MESSAGES, prefill=PREFILL, stop=[], sampling=GREEDY)


def test_complete_returns_whole_reply_with_server_usage(reply):
    assert reply.text.strip()
    assert reply.full_reply is True and reply.provider == "remote"
    assert reply.prompt_tokens > 0
    assert 0 < reply.completion_tokens <= GREEDY.max_tokens
    assert reply.finish_reason in {"stop", "length"}
    assert 0 < reply.prompt_seconds <= reply.seconds


def test_stop_strings_are_honoured(backend):
    # Asked to start with a code fence, the reply's first line is "```python"; "\n" stops it there.
    stopped = backend.complete(MESSAGES, prefill=PREFILL, stop=["\n"], sampling=GREEDY)
    assert "\n" not in stopped.text
    assert stopped.finish_reason == "stop"
    assert stopped.completion_tokens < GREEDY.max_tokens


def test_stream_yields_pieces(backend):
    pieces = list(backend.stream(MESSAGES, prefill=PREFILL, stop=[], sampling=Sampling(max_tokens=6, temperature=0.0)))
    assert len(pieces) > 1
    assert "".join(pieces).strip()


def test_cost_prices_the_real_token_counts(backend, reply):
    usage = Usage("remote", backend.model_id, reply.prompt_tokens, reply.completion_tokens)
    expected = reply.prompt_tokens / 1000 * 0.5 + reply.completion_tokens / 1000 * 2.0
    assert backend.cost(usage) == pytest.approx(expected)
    assert backend.cost(usage) > 0


def test_count_tokens_is_the_server_tokenizer(backend, llm_server):
    from llama_cpp import Llama

    short, long = "def add(a, b):", "def add(a, b):\n    return a + b  # <|im_end|> counted as one token"
    assert 0 < backend.count_tokens(short) < backend.count_tokens(long)
    vocab = Llama(model_path=str(llm_server.model_path), vocab_only=True, verbose=False)
    for text in (short, long):
        assert backend.count_tokens(text) == len(vocab.tokenize(text.encode(), special=True))


def test_embed_returns_model_sized_vector(backend):
    vector = backend.embed("def add(a, b): return a + b")
    assert len(vector) == 1536  # Qwen2.5-Coder-1.5B's n_embd
    assert all(isinstance(x, float) for x in vector) and any(x != 0.0 for x in vector)


def test_http_error_names_status(llm_server):
    remote = make_backend(llm_server.base_url + "/nope", environ={"FLEET_REMOTE_API_KEY": KEY})
    with pytest.raises(RemoteError, match="HTTP 404") as caught:
        remote.complete(MESSAGES, prefill="", stop=[], sampling=GREEDY)
    assert caught.value.status == 404 and KEY not in str(caught.value)
    remote.shutdown()


def test_metadata_and_repr_hide_the_key(backend, llm_server):
    assert backend.metadata() == {"provider": "remote", "model_id": llm_server.model_alias, "n_ctx": 8192,
                                  "sha256": "", "base_url": llm_server.base_url}
    assert KEY not in repr(backend) and "api_key=set" in repr(backend)


def test_down_server_fails_fast_then_recovers(backend, llm_server):
    assert backend.health() is True
    llm_server.stop()
    try:
        assert backend.health() is False
        started = time.monotonic()
        with pytest.raises(RemoteError, match="connection") as caught:
            backend.complete(MESSAGES, prefill="", stop=[], sampling=GREEDY)
        assert time.monotonic() - started < 5.0
        assert KEY not in str(caught.value)
    finally:
        llm_server.start()
    assert backend.health() is True
    again = backend.complete([Message("user", "Say hi.")], prefill="", stop=[], sampling=Sampling(max_tokens=2))
    assert again.completion_tokens > 0


# -- no server: the Authorization header and redaction ------------------------------------------


def test_api_key_is_a_bearer_header_and_never_leaks():
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        # A hostile or careless server echoing the header back in its error body.
        return httpx.Response(401, json={"error": f"bad key {request.headers.get('authorization')}"})

    remote = make_backend("http://remote.invalid/v1", "m", environ={"FLEET_REMOTE_API_KEY": KEY},
                          transport=httpx.MockTransport(handler))
    with pytest.raises(RemoteError, match="HTTP 401") as caught:
        remote.complete(MESSAGES, prefill="", stop=[], sampling=GREEDY)
    assert seen == [f"Bearer {KEY}"]
    assert KEY not in str(caught.value) and KEY not in repr(remote)
    assert make_backend("http://x/v1", transport=httpx.MockTransport(handler)).health() is False
    assert seen[-1] is None  # no key in the environment: no header


def test_pooled_embedding_and_prefill_line_over_the_wire():
    bodies: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        if request.url.path.endswith("/embeddings"):
            return httpx.Response(200, json={"data": [{"embedding": [0.5, -1.0]}]})
        return httpx.Response(200, json={"choices": [{"message": {"content": "```python\nx = 1\n```"},
                                                      "finish_reason": "stop"}],
                                         "usage": {"prompt_tokens": 9, "completion_tokens": 5}})

    remote = make_backend("http://remote.invalid/v1", "m", transport=httpx.MockTransport(handler))
    assert remote.embed("x") == [0.5, -1.0]
    done = remote.complete(MESSAGES, prefill=PREFILL, stop=["```\n"], sampling=GREEDY)
    assert (done.text, done.prompt_tokens, done.completion_tokens) == ("```python\nx = 1\n```", 9, 5)
    sent = bodies[-1]
    assert sent["messages"][-1]["content"].endswith("Start your reply with:\n" + PREFILL)
    assert sent["messages"][0] == {"role": "system", "content": "You write Python."}
    assert (sent["model"], sent["max_tokens"], sent["stop"], sent["seed"]) == ("m", 12, ["```\n"], 7)


def test_settings_from_config_and_unconfigured_remote():
    cfg = RemoteSettings.from_settings(config.load({"FLEET_REMOTE_BASE_URL": "http://h:1/v1", "FLEET_REMOTE_TIMEOUT": "7"}))
    assert (cfg.base_url, cfg.timeout, cfg.connect_timeout, cfg.max_retries, cfg.api_key_env) == (
        "http://h:1/v1", 7.0, 5.0, 1, "FLEET_REMOTE_API_KEY")
    with pytest.raises(RemoteError, match="no remote provider configured"):
        RemoteBackend(RemoteSettings.from_settings(config.load({})), prices=PRICES, environ={})


def test_stream_cut_short_is_an_error():
    def handler(request: httpx.Request) -> httpx.Response:
        chunk = {"choices": [{"delta": {"content": "def"}, "finish_reason": None}]}
        return httpx.Response(200, text=f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n")

    remote = make_backend("http://remote.invalid/v1", "m", transport=httpx.MockTransport(handler))
    pieces: list[str] = []
    with pytest.raises(RemoteError, match="stream ended before a finish_reason"):
        pieces.extend(remote.stream(MESSAGES, prefill="", stop=[], sampling=GREEDY))
    assert pieces == ["def"]
