"""Extractive question answering as a ``transformers.pipeline``, shipped with every QA model.

transformers 5 removed its ``question-answering`` pipeline; a model directory that names
this class in ``custom_pipelines`` keeps ``pipeline("question-answering", model=DIR,
trust_remote_code=True)`` working. It does what the removed pipeline did and what prunetune
scores: a long context is split into windows that overlap by ``doc_stride`` tokens, and the
answer is the best span (at most ``max_answer_len`` tokens, inside the context) over all
windows, by start logit + end logit.

Shipped as remote code: it imports only torch and transformers.
"""

from __future__ import annotations

import torch
from transformers import Pipeline

#: Start and end positions considered per window.
N_BEST = 20


class ExtractiveQuestionAnsweringPipeline(Pipeline):
    """``pipe(question=..., context=...)`` or ``pipe({"question": ..., "context": ...})`` ->
    ``{"answer", "start", "end", "score"}`` (character offsets into the context)."""

    def _sanitize_parameters(self, doc_stride=None, max_seq_len=None, max_answer_len=None, **kwargs):
        preprocess = {key: value for key, value in (("doc_stride", doc_stride), ("max_seq_len", max_seq_len))
                      if value is not None}
        postprocess = {"max_answer_len": max_answer_len} if max_answer_len is not None else {}
        return preprocess, {}, postprocess

    def __call__(self, inputs=None, *, question=None, context=None, **kwargs):
        if inputs is None:
            inputs = {"question": question, "context": context}
        return super().__call__(inputs, **kwargs)

    def _longest_window(self) -> int:
        positions = int(getattr(self.model.config, "max_position_embeddings", 512))
        # RoBERTa-style embeddings reserve the positions up to the padding index.
        reserved = int(getattr(self.model.config, "pad_token_id", 0) or 0) + 1 if "roberta" in str(
            getattr(self.model.config, "model_type", "")) else 0
        return min(384, positions - reserved, int(getattr(self.tokenizer, "model_max_length", 10**6)))

    def preprocess(self, inputs, doc_stride: int = 32, max_seq_len: int | None = None):
        encoding = self.tokenizer(inputs["question"], inputs["context"], truncation="only_second",
                                  max_length=max_seq_len or self._longest_window(), stride=doc_stride,
                                  return_overflowing_tokens=True, return_offsets_mapping=True, padding="longest",
                                  return_tensors="pt")
        offsets = encoding.pop("offset_mapping")
        encoding.pop("overflow_to_sample_mapping", None)
        in_context = torch.tensor([[sequence == 1 for sequence in encoding.sequence_ids(window)]
                                   for window in range(len(offsets))])
        names = set(self.tokenizer.model_input_names)
        return {"model_inputs": {key: value for key, value in encoding.items() if key in names},
                "offsets": offsets, "in_context": in_context, "context": inputs["context"]}

    def _forward(self, prepared):
        outputs = self.model(**prepared["model_inputs"])
        return {"start": outputs.start_logits, "end": outputs.end_logits, "offsets": prepared["offsets"],
                "in_context": prepared["in_context"], "context": prepared["context"]}

    def postprocess(self, outputs, max_answer_len: int = 30):
        best = (float("-inf"), 0, 0)
        for window in range(len(outputs["offsets"])):
            best = max(best, _best_span(outputs["start"][window].float(), outputs["end"][window].float(),
                                        outputs["in_context"][window], outputs["offsets"][window], max_answer_len))
        score, start, end = best
        if score == float("-inf"):
            return {"answer": "", "start": 0, "end": 0, "score": 0.0}
        return {"answer": outputs["context"][start:end], "start": int(start), "end": int(end), "score": float(score)}


def _best_span(start_logits, end_logits, in_context, offsets, max_answer_len: int):
    """(score, character start, character end) of the best span inside the context of one window."""
    hidden = torch.finfo(start_logits.dtype).min
    starts = start_logits.masked_fill(~in_context, hidden)
    ends = end_logits.masked_fill(~in_context, hidden)
    best = (float("-inf"), 0, 0)
    top = min(N_BEST, int(in_context.sum()))
    for s in starts.topk(top).indices.tolist():
        for e in ends.topk(top).indices.tolist():
            if not (in_context[s] and in_context[e]) or e < s or e - s + 1 > max_answer_len:
                continue
            score = float(start_logits[s] + end_logits[e])
            if score > best[0]:
                best = (score, int(offsets[s][0]), int(offsets[e][1]))
    return best
