"""The loopback OpenAI-compatible server (:mod:`fleet.llm.loopback`) as a pytest fixture."""

from __future__ import annotations

from typing import Iterator

import pytest

from fleet.llm.loopback import LlamaServer, ServerStartError, default_model


def server_fixture(scope: str = "module", **kwargs):
    """A pytest fixture yielding a started :class:`LlamaServer` with the default model."""

    @pytest.fixture(scope=scope)
    def llm_server(tmp_path_factory) -> Iterator[LlamaServer]:
        model = default_model()
        log = tmp_path_factory.mktemp("llm-server") / "server.log"
        server = LlamaServer(model.path, model_alias=model.model_id, log_path=log, **kwargs)
        try:
            server.start()
        except ServerStartError as exc:
            pytest.fail(str(exc))
        try:
            yield server
        finally:
            server.stop()

    return llm_server
