"""lm-evaluation-harness adapter: `WmBenchLM`, registered with lm-eval as model "wm_bench".

It scores with our own `LanguageModel` and `tokenizers` tokenizer; `transformers` is not needed.

Use it from Python::

    from wm_bench.eval.harness import WmBenchLM
    lm = WmBenchLM(pretrained="outputs/models/arch/cpu/cheems_mlp-…")   # or model=…, tokenizer=…
    lm_eval.simple_evaluate(model=lm, tasks=[...])

or from lm-eval's own command line through `wm-bench lm-eval`, which registers the adapter and the
suite's offline task YAMLs first, then hands every argument to lm-eval::

    wm-bench lm-eval --model wm_bench --model_args pretrained=DIR --tasks wm_arc_easy --limit 50

Requests (lm-eval's three kinds):
- loglikelihood(context, continuation): the context is truncated on the left so that context +
  continuation fits `max_length` + 1 tokens (a continuation longer than `max_length` alone is
  scored on its last `max_length` tokens and counted in `truncated_continuations`); requests
  are sorted by length and run in right-padded batches. Right padding is exact for every mixer
  of the suite because all are causal: position t never sees positions > t. Returns (sum of the
  continuation's log-probabilities, whether every continuation token is the arg-max).
- loglikelihood_rolling(text): the whole text's log-likelihood in disjoint windows of
  `max_length` tokens (lm-eval's rolling windows, the first conditioned on the EOS token).
- generate_until(context, {until, max_gen_toks}): greedy decoding, one request at a time, stopping
  at the first stop string, EOS, or `max_gen_toks` tokens. Sampling is refused with an error (the
  suite's tasks are greedy).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
from tqdm.auto import tqdm

DEFAULT_BATCH = 16
DEFAULT_MAX_LENGTH = 2048
DEFAULT_GEN_TOKS = 32


def _int_arg(name: str, value: Any, default: int) -> int:
    """lm-eval passes model arguments as strings ("16", "auto"); None/auto take the default."""
    if value is None or value == "auto" or (isinstance(value, str) and value.startswith("auto")):
        return default
    try:
        out = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"WmBenchLM: {name}={value!r} is not an integer (or 'auto')") from None
    if out < 1:
        raise ValueError(f"WmBenchLM: {name}={out} must be ≥ 1")
    return out


@register_model("wm_bench")
class WmBenchLM(TemplateLM):
    """A wm_bench LanguageModel as an lm-eval model (see the module docstring).

    Args:
        pretrained: a model directory (config.json + model.safetensors + tokenizer.json, or the
            old model.pt form), loaded with `wm_bench.from_pretrained` (docs/export.md).
        model, tokenizer: or an in-memory LanguageModel and `wm_bench` Tokenizer (Python use).
        batch_size: loglikelihood requests per forward ("auto" → 16).
        max_length: longest input the model is given (default: the training context saved with
            the model, else 2048).
        device: "cpu", "cuda", "cuda:1", … (default: CUDA when available).
        max_gen_toks: default generation budget when a task does not set one.
    """

    def __init__(
        self,
        pretrained: str | None = None,
        *,
        model: Any = None,
        tokenizer: Any = None,
        batch_size: int | str | None = None,
        max_batch_size: int | str | None = None,
        max_length: int | str | None = None,
        device: str | None = None,
        max_gen_toks: int | str | None = None,
        impl: str = "auto",
        **unused: Any,
    ) -> None:
        super().__init__()
        if device in (None, "", "auto"):
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self._device = torch.device(device)
        saved_len = None
        if pretrained is not None:
            if model is not None:
                raise ValueError("WmBenchLM: pass either pretrained=DIR or model=…, not both")
            from wm_bench import from_pretrained, load_tokenizer
            from wm_bench.eval.checkpoint import read_config

            saved_len = read_config(pretrained).get("max_length")
            tokenizer = load_tokenizer(pretrained)  # checked before the (slower) weights
            model = from_pretrained(pretrained, device=self._device, impl=impl)
        if model is None or tokenizer is None:
            raise ValueError("WmBenchLM needs pretrained=DIR, or both model= and tokenizer=")
        self.model = model.to(self._device).eval()
        self.tokenizer = tokenizer
        self.batch_size = _int_arg("batch_size", batch_size, DEFAULT_BATCH)
        if max_batch_size is not None:
            cap = _int_arg("max_batch_size", max_batch_size, 10**9)
            self.batch_size = min(self.batch_size, cap)
        self._max_length = _int_arg("max_length", max_length, saved_len or DEFAULT_MAX_LENGTH)
        self.max_gen_toks = _int_arg("max_gen_toks", max_gen_toks, DEFAULT_GEN_TOKS)
        self.truncated_continuations = 0  # continuations longer than max_length (scored in part)
        # (context, continuation) → continuation tokens scored: per-token log-likelihoods
        self.continuation_tokens: dict[tuple[str, str], int] = {}

    # ---------------------------------------------------------------- what lm-eval asks about
    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_id

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def tokenizer_name(self) -> str:
        return self.tokenizer.name.replace("/", "__")

    def tok_encode(
        self, string: str, add_special_tokens: bool | None = None, **kw: Any
    ) -> list[int]:
        return self.tokenizer.encode(string)

    def tok_decode(self, tokens: Sequence[int], **kw: Any) -> str:
        return self.tokenizer.decode(tokens)

    # ---------------------------------------------------------------------------- scoring
    @staticmethod
    def _no_bar(disable_tqdm: bool) -> bool:
        """Bars off when asked, or when TQDM_DISABLE is set (`evaluate(progress=False)`)."""
        return bool(disable_tqdm or os.environ.get("TQDM_DISABLE"))

    def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[Any]:
        return super().loglikelihood(requests, disable_tqdm=self._no_bar(disable_tqdm))

    @torch.no_grad()
    def _logprobs(self, inputs: list[list[int]]) -> torch.Tensor:
        """[B, T_max, V] fp32 log-probabilities of right-padded `inputs` (pad = EOS)."""
        longest = max(len(x) for x in inputs)
        batch = torch.full((len(inputs), longest), self.eot_token_id, dtype=torch.long)
        for i, x in enumerate(inputs):
            batch[i, : len(x)] = torch.as_tensor(x, dtype=torch.long)
        batch = batch.to(self._device)
        with torch.autocast(
            device_type=self._device.type, dtype=torch.bfloat16, enabled=self._device.type == "cuda"
        ):
            out = self.model(batch)
        return F.log_softmax(getattr(out, "logits", out).float(), dim=-1)

    def _score(
        self, pairs: list[tuple[list[int], list[int]]], *, disable_tqdm: bool = True
    ) -> list[tuple[float, bool]]:
        """(log P(continuation | context), greedy?) of each (context ids, continuation ids)."""
        rows = []
        for ctx, cont in pairs:
            if not cont:
                raise ValueError("WmBenchLM: empty continuation (nothing to score)")
            if len(cont) > self.max_length:  # score what fits: its last max_length tokens
                self.truncated_continuations += 1
                cont = cont[-self.max_length :]
            full = (ctx + cont)[-(self.max_length + 1) :]
            rows.append((full[:-1], cont))
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i][0]))
        out: list[tuple[float, bool]] = [(0.0, False)] * len(rows)
        bar = tqdm(total=len(rows), desc="wm_bench loglikelihood", disable=disable_tqdm)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            logp = self._logprobs([rows[i][0] for i in idx])
            for b, i in enumerate(idx):
                inp, cont = rows[i]
                n = len(cont)
                span = logp[b, len(inp) - n : len(inp)]  # [n, V]: positions predicting cont
                target = torch.as_tensor(cont, device=span.device)
                ll = float(span.gather(-1, target[:, None]).sum())
                greedy = bool((span.argmax(-1) == target).all())
                out[i] = (ll, greedy)
            bar.update(len(idx))
        bar.close()
        return out

    def _loglikelihood_tokens(
        self,
        requests: list[tuple[tuple[str, str], list[int], list[int]]],
        disable_tqdm: bool = False,
        **kw: Any,
    ) -> list[tuple[float, bool]]:
        pairs = [(ctx, cont) for _, ctx, cont in requests]
        for key, _, cont in requests:
            if key is not None:
                self.continuation_tokens[tuple(key)] = min(len(cont), self.max_length)
        res = self._score(pairs, disable_tqdm=self._no_bar(disable_tqdm))
        for (key, _, _), r in zip(requests, res):
            if key is not None:
                self.cache_hook.add_partial("loglikelihood", key, r)
        return res

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        out = []
        for req in tqdm(requests, desc="wm_bench rolling", disable=self._no_bar(disable_tqdm)):
            (text,) = req.args
            windows = [
                make_disjoint_window(w)
                for w in get_rolling_token_windows(
                    self.tok_encode(text),
                    prefix_token=self.prefix_token_id,
                    max_seq_len=self.max_length,
                    context_len=1,
                )
            ]
            total = sum(ll for ll, _ in self._score(windows)) if windows else 0.0
            self.cache_hook.add_partial("loglikelihood_rolling", (text,), total)
            out.append(total)
        return out

    @torch.no_grad()
    def greedy(self, context: list[int], until: Sequence[str], max_new: int) -> str:
        """Greedy continuation of token ids `context`, cut before the first stop string."""
        ids = list(context)[-max(1, self.max_length - max_new) :]
        new: list[int] = []
        text = ""
        for _ in range(max_new):
            logp = self._logprobs([ids + new])[0, -1]
            nxt = int(logp.argmax())
            if nxt == self.eot_token_id:
                break
            new.append(nxt)
            text = self.tok_decode(new)
            if any(s and s in text for s in until):
                break
        cut = min((text.index(s) for s in until if s and s in text), default=len(text))
        return text[:cut]

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        out = []
        for req in tqdm(requests, desc="wm_bench generate", disable=self._no_bar(disable_tqdm)):
            context, gen_kwargs = req.args
            kw = dict(gen_kwargs or {})
            if kw.get("do_sample") and float(kw.get("temperature", 1.0) or 0.0) > 0:
                raise ValueError(
                    f"WmBenchLM generates greedily; got do_sample=True, temperature="
                    f"{kw.get('temperature')!r} (set do_sample: false in the task)"
                )
            until = kw.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            max_new = _int_arg("max_gen_toks", kw.get("max_gen_toks"), self.max_gen_toks)
            text = self.greedy(self.tok_encode(context), until, max_new)
            self.cache_hook.add_partial("generate_until", (context, gen_kwargs), text)
            out.append(text)
        return out


def direct_loglikelihood(model: Any, tokenizer: Any, context: str, continuation: str) -> float:
    """Reference: log P(continuation | context) from one unpadded forward (tests compare to it).

    Splits tokens as lm-eval's TemplateLM does: encode(context + continuation), then the tokens
    after encode(context) are the continuation.
    """
    whole = tokenizer.encode(context + continuation)
    n_ctx = len(tokenizer.encode(context))
    x = torch.as_tensor(whole[:-1])[None]
    with torch.no_grad():
        logits = getattr(model(x), "logits", None)
    logp = F.log_softmax(logits.double(), -1)[0]
    return float(sum(logp[t - 1, whole[t]] for t in range(n_ctx, len(whole))))
