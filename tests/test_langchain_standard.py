"""langchain-tests' standard suites against TorchIVFVectorStore (CPU, deterministic fake embeddings)."""

from __future__ import annotations

from collections.abc import Generator

import pytest

pytest.importorskip("langchain_tests")

from langchain_core.documents import Document  # noqa: E402
from langchain_core.embeddings import DeterministicFakeEmbedding  # noqa: E402
from langchain_core.vectorstores import VectorStore  # noqa: E402
from langchain_tests.integration_tests import (  # noqa: E402
    RetrieversIntegrationTests,
    VectorStoreIntegrationTests,
)

from langchain_torch_ivf import TorchIVFRetriever, TorchIVFVectorStore  # noqa: E402


class TestTorchIVFVectorStoreStandard(VectorStoreIntegrationTests):
    @pytest.fixture()
    def vectorstore(self) -> Generator[VectorStore, None, None]:  # type: ignore[override]
        store = TorchIVFVectorStore(embedding=self.get_embeddings(), device="cpu")
        try:
            yield store
        finally:
            store.delete()


def _filled_store() -> TorchIVFVectorStore:
    texts = [f"passage {i} about {topic}" for i, topic in
             enumerate(["cats", "dogs", "birds", "fish", "trees", "rivers", "stars", "rocks"])]
    return TorchIVFVectorStore.from_texts(texts, DeterministicFakeEmbedding(size=16), device="cpu",
                                          ids=[str(i) for i in range(len(texts))])


class TestTorchIVFRetrieverStandard(RetrieversIntegrationTests):
    @property
    def retriever_constructor(self) -> type[TorchIVFRetriever]:
        return TorchIVFRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"vectorstore": _filled_store(), "k": 2}

    @property
    def retriever_query_example(self) -> str:
        return "passage about dogs"


def test_as_retriever_is_torch_ivf_retriever() -> None:
    retriever = _filled_store().as_retriever(search_kwargs={"k": 3})
    assert isinstance(retriever, TorchIVFRetriever)
    docs = retriever.invoke("passage 1 about dogs")
    assert len(docs) == 3 and all(isinstance(d, Document) for d in docs)
