"""Self-Instruct's filter (step 4): which generated instructions join the pool and why the others do not.

An instruction is rejected when it is empty, too short or too long, starts with punctuation, asks for
what a text model cannot give (images, graphs, files), has ROUGE-L >= 0.7 against any instruction of the
pool (seeds and kept ones), or nearly duplicates one by MinHash (data/prep/minhash.py). `check` never
changes the pool, so an instruction whose answer fails later leaves no trace; `commit` checks once more
(against what was kept meanwhile) and adds it.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass, field

from tunelab.data.prep.minhash import NearDuplicateIndex

# the Self-Instruct paper's blacklist (things a text model cannot do), with Chinese equivalents
UNSUPPORTED = ("image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps",
               "draw", "plot", "go to", "video", "audio", "music", "flowchart", "diagram",
               "图片", "图像", "照片", "画一", "画出", "绘制", "视频", "音频", "音乐", "流程图", "示意图")
_CJK = re.compile(r"[\u3400-\u9fff]")


def segment(text: str) -> str:
    """Words joined by spaces for rouge_chinese: jieba for Chinese, lowercased, punctuation-only tokens dropped."""
    import jieba

    jieba.setLogLevel(logging.WARNING)
    words = (w.strip().lower() for w in jieba.cut(text))
    return " ".join(w for w in words if w and any(c.isalnum() for c in w))


def rouge_l(a: str, b: str) -> float:
    """ROUGE-L F of two segmented texts (rouge_chinese); 0 when either has no words."""
    from rouge_chinese import Rouge

    if not a.split() or not b.split():
        return 0.0
    try:
        return float(Rouge(metrics=["rouge-l"]).get_scores(a, b)[0]["rouge-l"]["f"])
    except ValueError:  # rouge_chinese refuses a side with no words after its own splitting
        return 0.0


def word_count(text: str) -> int:
    """Words of a Latin text, characters of a Chinese one (a Chinese character carries about a word)."""
    return len(_CJK.findall(text)) + len(re.findall(r"[A-Za-z0-9]+", _CJK.sub(" ", text)))


@dataclass
class FilterSettings:
    rouge_threshold: float = 0.7  # the paper's: an instruction this close to one in the pool adds nothing
    near_threshold: float = 0.9  # MinHash Jaccard of 5-character shingles, as `tunelab data clean --near`
    min_words: int = 3
    max_words: int = 150


@dataclass
class InstructionFilter:
    settings: FilterSettings = field(default_factory=FilterSettings)
    pool: list[str] = field(default_factory=list)  # the instructions, as given

    def __post_init__(self):
        self._segmented: list[str] = []
        self._near = NearDuplicateIndex(threshold=self.settings.near_threshold) if self.settings.near_threshold else None
        for text in list(self.pool):
            self.pool.remove(text)
            self.add(text)

    def heuristic_reason(self, text: str) -> str | None:
        """The length/format reason `text` is unusable, or None."""
        s = self.settings
        if not text.strip():
            return "empty"
        n = word_count(text)
        if n < s.min_words:
            return "too_short"
        if n > s.max_words:
            return "too_long"
        first = text.strip()[0]
        if unicodedata.category(first)[0] in "PSZC" or not first.isprintable():
            return "bad_start"
        low = text.lower()
        words = set(re.findall(r"[a-z]+", low))
        # a Latin word must match whole ("file" is not "profile"); phrases and Chinese as substrings
        if any(k in words if k.isalpha() and k.isascii() else k in low for k in UNSUPPORTED):
            return "unsupported"
        return None

    def check(self, text: str) -> tuple[str | None, float]:
        """(the reason `text` is rejected or None, its highest ROUGE-L against the pool); the pool is unchanged."""
        reason = self.heuristic_reason(text)
        if reason:
            return reason, 0.0
        seg = segment(text)
        best = max((rouge_l(seg, other) for other in self._segmented), default=0.0)
        if best >= self.settings.rouge_threshold:
            return "rouge", best
        if self._near is not None and self._near.find(text) is not None:
            return "near_duplicate", best
        return None, best

    def add(self, text: str) -> None:
        """Put `text` in the pool unchecked (seeds, rows kept by an earlier run)."""
        self._segmented.append(segment(text))
        if self._near is not None:
            self._near.add(len(self.pool), text)
        self.pool.append(text)

    def commit(self, text: str) -> str | None:
        """Check `text` against the pool as it is now and add it when it passes; the reason otherwise."""
        reason, _ = self.check(text)
        if reason is None:
            self.add(text)
        return reason


FIELD_LABELS = ("Task:", "Input:", "Output:", "Class label:", "任务：", "输入：", "输出：", "类别：")


def answer_reason(inp: str, out: str) -> str | None:
    """Why a generated (input, output) pair is unusable, or None: no output, the output repeating the
    input, a field that swallowed the next field's label (the model ran on), or a line said 3+ times."""
    if not out.strip():
        return "empty_output"
    if out.strip() == inp.strip():
        return "output_is_input"
    if any(label in text for label in FIELD_LABELS for text in (inp, out)):
        return "bad_format"
    lines = [line.strip() for line in f"{inp}\n{out}".splitlines() if line.strip()]
    if lines and max(lines.count(line) for line in lines) >= 3:
        return "repetitive"
    return None
