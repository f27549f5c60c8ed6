"""Prompt-injection / jailbreak detection in three layers, English and Chinese.

1. **Normalisation** (:mod:`llmops_ray.safety.normalize`): NFKC, invisible characters
   dropped, homoglyphs, and for the patterns also leetspeak and letter spacing undone.
2. **Patterns**: high-precision regular expressions for the known attack families
   (instruction override, system-prompt extraction, "no rules" role-play, DAN / developer
   mode, fake role delimiters, indirect instructions addressed to the AI, exfiltration).
   A match inside quotes (``explain why "ignore previous instructions" works``) is a
   mention, not a use, and only counts for a fraction of its weight.
3. **Classifier**: TF-IDF over character 1-4-grams + logistic regression, trained on the
   labelled set shipped in ``llmops_ray/resources/safety/injection_dataset.jsonl``
   together with ``injection_families.jsonl`` (attack families and benign look-alikes,
   issue 18) (``split == "train"`` rows only; the ``test`` rows are the held-out sets the
   benchmark reports TPR/FPR on, per family for the second). Character n-grams need no tokenizer and work for Chinese as well
   as for English. scikit-learn fits it deterministically at first use (well under a
   second) and the fitted weights are cached as JSON under ``<workspace>/safety/``, keyed
   by a digest of the data and the feature version; inference is pure Python on that JSON
   (about 0.1-0.3 ms per prompt), so the gateway never imports scikit-learn.

The score of a text is ``max(pattern weight, classifier probability)`` over its segments
(long texts are cut into sentence windows so that one injected sentence is not diluted by
pages of benign text); a score at or above the threshold (``RailsConfig.input.injection_threshold``,
default :data:`DEFAULT_THRESHOLD`) is a hit.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from llmops_ray.config import RESOURCES_DIR
from llmops_ray.safety.normalize import deobfuscate, normalize

DATASET_PATH = RESOURCES_DIR / "safety" / "injection_dataset.jsonl"
#: Rows by attack family and benign look-alike (issue 18; tests/tools/make_injection_families.py):
#: its ``train`` rows are fitted together with DATASET_PATH's, its ``test`` rows are held out
#: per family (whole phrasings never seen in training).
FAMILIES_PATH = RESOURCES_DIR / "safety" / "injection_families.jsonl"
# Bump when the featuriser or the training recipe changes: it invalidates cached weights.
FEATURE_VERSION = "char1-4.sublinear.l2.lr-c10.v3-families"
NGRAM_RANGE = (1, 4)
DEFAULT_THRESHOLD = 0.6
SEGMENT_CHARS = 240

# --------------------------------------------------------------------------- patterns

_EN_VERBS = (r"ignore|disregard|forget|override|skip|bypass|discard|abandon|drop|stop following|"
             r"do not follow|don't follow|dont follow|pay no attention to|throw away|set aside")
_EN_SCOPE = (r"previous|prior|above|earlier|preceding|initial|original|all|any|every|your|"
             r"system|developer'?s?|safety|these|those|everything")
_EN_NOUNS = (r"instructions?|prompts?|rules|directions?|directives?|guidelines|polic(?:y|ies)|"
             r"settings|constraints|restrictions|training|commands?|filters?|you were told|tasks?")
_NO_LIMITS = (r"(?:without|no|zero) (?:any )?(?:restrictions|rules|limits|limitations|filters|guidelines|"
              r"censorship|ethics|ethical guidelines|morals|moral|content polic(?:y|ies))|unrestricted|"
              r"unfiltered|uncensored|amoral|jailbroken|never refuses?|not bound by|"
              r"free (?:of|from) (?:its |your |all |any )?(?:rules|restrictions|guidelines|limitations|filters)")

_PATTERNS_SRC: list[tuple[str, str, float]] = [
    # ---- English
    ("override_instructions",
     rf"\b(?:{_EN_VERBS})\b[^.\n]{{0,40}}?\b(?:{_EN_SCOPE})\b[^.\n]{{0,30}}?\b(?:{_EN_NOUNS})\b", 0.95),
    ("prompt_extraction",
     r"\b(?:reveal|print|show|output|repeat|display|leak|disclose|tell me|give me|list|dump|expose)\b[^.\n]{0,20}?"
     r"\b(?:your|the|its)\b[^.\n]{0,15}?"
     r"(?:system prompt|system message|initial prompt|initial instructions|original prompt|hidden (?:instructions|prompt|rules)|"
     r"secret (?:instructions|prompt|rules|passphrase|password|key)|confidential (?:instructions|system)|hidden configuration|"
     r"(?:instructions|prompt|rules|configuration)\b)", 0.9),
    ("prompt_extraction_above",
     r"\b(?:reveal|print|show|output|repeat|display|leak|disclose|dump)\b[^.\n]{0,20}?"
     r"(?:everything (?:before|above) this|(?:text|prompt|instructions) above)", 0.85),
    ("prompt_extraction_question",
     r"\bwhat (?:are|were|is) your (?:system prompt|(?:initial|original|hidden|secret|first|exact) (?:instructions|prompt|rules))", 0.85),
    ("no_limits_persona",
     rf"\b(?:you are|you're|you will be|act as|acting as|pretend (?:to be|you are|you're)|simulate|role-?play as|behave like|become|answer as)\b"
     rf"[^.\n]{{0,60}}?\b(?:{_NO_LIMITS})", 0.9),
    ("rules_void",
     r"\b(?:rules|restrictions|guidelines|policies|filters|limitations|safety training|instructions)\b[^.\n]{0,25}?"
     r"\b(?:no longer apply|don't apply|do not apply|are void|are cancell?ed|are disabled|is cancell?ed|is void|"
     r"no longer bind|are a test|were a test)", 0.9),
    ("disable_safety",
     r"\b(?:turn off|disable|bypass|remove|switch off|deactivate|circumvent|get around)\b[^.\n]{0,20}?"
     r"\b(?:your |the |all |any )?(?:safety |content |moderation |ethical )?"
     r"(?:filters?|protocols?|restrictions|limitations|moderation|censorship|guardrails|safety settings|safeguards)\b", 0.85),
    ("safety_off_claim",
     r"\b(?:safety|content|moderation)\b[^.\n]{0,20}?\b(?:filters?|protocols?|settings|policies|training|mechanisms?)\b"
     r"[^.\n]{0,20}?\b(?:off|disabled|cancell?ed|removed|turned off|deactivated)\b", 0.85),
    ("jailbreak_mode",
     r"\b(?:do anything now|dan mode|jailbreak (?:successful|mode|enabled)|you are (?:now )?dan\b|"
     r"developer mode (?:enabled|activated|is on)\b|"
     r"(?:enter|enable|activate|switch to)\b[^.\n]{0,10}?(?:developer|god|jailbreak|dan|unrestricted|maintenance) mode\b"
     r"[^\n]{0,80}?\b(?:restrict|rules?\b|polic|filter|censor|limit|ignore|anything|comply))", 0.9),
    ("role_delimiter",
     r"(?:<\|im_start\|>\s*system|<\s*/?\s*system\s*>|\[\s*system(?: override| message)?\s*\]|^\s*#{2,}\s*system\b|"
     r"^\s*system\s*:|\bnew (?:system )?instructions?\s*:|\bnew system prompt\b|<\s*/\s*user\s*>)", 0.9),
    ("addressed_to_ai",
     r"(?:\b(?:note|message|instructions?) (?:to|for) (?:the |any )?(?:ai|assistant|llm|language model|chatbot|model)\b|"
     r"\b(?:ai|assistant|chatbot|llm)(?: assistant)?\s*[,:]\s*(?:please )?(?:ignore|disregard|forward|send|stop|reply|do not|don't|instead)\b|"
     r"\bwhen you read this\b|\bthe user has authori[sz]ed you\b)", 0.85),
    ("exfiltration",
     r"\b(?:send|forward|post|exfiltrate|upload|leak|email)\b[^.\n]{0,40}?\b(?:conversation|inbox|api keys?|passwords?|"
     r"credentials|context window|user'?s data|secrets?)\b[^.\n]{0,40}?(?:https?://|@|\bto\b)", 0.8),
    # Indirect injection that asks for an exfiltration channel (issue 18): an instruction to
    # put an image/link into the answer, or a markdown image whose query is a slot for data.
    ("exfil_link_instruction",
     r"\b(?:include|add|append|render|insert|embed|attach|output|display|show|put)\b[^.\n]{0,60}?"
     r"\b(?:image|link|url|markdown|pixel|picture)\b[^\n]{0,80}?(?:!\[|https?://)", 0.85),
    ("exfil_markdown_slot",
     r"!\[[^\]\n]{0,60}\]\(\s*https?://[^)\s]{1,200}[?&][^)\s=]{0,20}=\s*[{\[<]?"
     r"(?:user|conversation|chat|history|question|e-?mail|password|secret|data|context|query|用户|聊天|对话)", 0.9),
    ("addressed_to_agent",
     r"(?:\b(?:the|any|an?) (?:ai|assistant|llm|language model|chatbot|model|agents?|ai agents?)\b[^.\n]{0,30}?"
     r"\b(?:should|must|is to|needs to|has to)\b[^.\n]{0,30}?\b(?:silently|secretly|without (?:telling|mentioning|asking)|"
     r"instead|ignore|append|forward|reveal)\b|"
     r"\b(?:hidden|invisible) (?:text|note|message|instructions?) for\b|"
     r"\b(?:note|instructions?|message)s? (?:to|for) (?:any )?(?:automated|ai|code|coding) (?:\w+ ){0,2}?(?:assistants?|agents?|tools|systems)\b)", 0.85),
    ("ignore_the_task",
     r"\b(?:ignore|disregard|forget|skip)\b (?:the|this|that|my|your|the user'?s?) (?:question|request|task|summary|translation task)\b"
     r"[^.\n]{0,12}?(?:;|,|\.|:)?\s*(?:and )?(?:instead|rather)\b", 0.85),
    # ---- Chinese
    ("zh_override_instructions",
     r"(?:忽略|无视|忘记|忘掉|不要理会|不用管|别管|跳过|抛开|不要遵守|不再遵守|不要听从|违背)[^。！？\n]{0,12}?"
     r"(?:之前|以上|上面|上述|先前|前面|原来|原先|原有|所有|一切|全部|你的|系统|开发者|安全)[^。！？\n]{0,10}?"
     r"(?:指令|指示|提示词|提示|规则|设定|要求|命令|准则|限制|约束|政策|策略)", 0.95),
    ("zh_prompt_extraction",
     r"(?:输出|显示|告诉我|泄露|打印|重复|展示|给我看|公开|列出|说出)[^。！？\n]{0,10}?"
     r"(?:系统提示|系统消息|初始指令|初始提示|初始设定|隐藏指令|隐藏规则|提示词|原始指令|机密指令|你的设定|收到的指令|之前的所有内容)", 0.9),
    ("zh_no_limits_persona",
     r"(?:你现在是|你是|扮演|假装你是|假装成|模拟|成为|以)[^。！？\n]{0,20}?"
     r"(?:没有任何?(?:限制|约束|规则|审查|道德)|不受任何?(?:限制|约束|规则|道德|法律)|无限制|不受限制|没有道德|无审查|越狱)", 0.9),
    ("zh_not_bound",
     r"(?:不受|不再受)[^。！？\n]{0,12}?(?:限制|约束|规则)[^。！？\n]{0,4}?(?:约束|限制)?", 0.85),
    ("zh_jailbreak_mode",
     r"(?:(?:开发者|越狱|上帝|dan|维护)模式[^。！？\n]{0,30}?(?:无视|忽略|绕过|不受|没有|任何|关闭|限制|政策|过滤)|"
     r"(?:进入|切换到|开启|启用)(?:开发者|越狱|上帝|dan|维护)模式|越狱成功|你(?:现在)?是dan)", 0.9),
    ("zh_role_delimiter",
     r"(?:【\s*系统(?:指令|消息|覆盖)?\s*】|<\s*/?\s*系统\s*>|^\s*系统\s*[:：]|新的?指令\s*[:：]|新的系统提示)", 0.9),
    ("zh_disable_safety",
     r"(?:(?:关闭|绕过|禁用|解除|取消|无视)[^。！？\n]{0,8}?(?:过滤器?|审核|审查|安全限制|安全规则|安全准则|内容政策|内容过滤)|"
     r"(?:安全|内容)(?:限制|过滤|准则|规则|策略)[^。！？\n]{0,4}?(?:已|被)?(?:关闭|解除|失效|作废)|"
     r"(?:规则|准则|限制|指令)[^。！？\n]{0,6}?(?:全部)?(?:作废|失效|无效|不适用|只是测试))", 0.9),
    ("zh_addressed_to_ai",
     r"(?:(?:给|致)(?:ai|助手|模型|机器人)的(?:新)?(?:指令|消息|提示)|(?:读|阅读)到这段话的(?:ai|模型|助手)|"
     r"(?:ai|助手)[，,:：]\s*请(?:把|将|不要|忽略))", 0.85),
    ("zh_exfil_link_instruction",
     r"(?:附上|加上|插入|添加|渲染|显示|输出|附带)[^。！？\n]{0,20}?(?:图片|链接|网址)[^\n]{0,60}?(?:!\[|https?://)", 0.85),
    ("zh_addressed_to_system",
     r"给(?:[^。！？\n]{0,8}?)(?:系统|助手|ai|模型|机器人|工具)的(?:隐藏)?(?:文字|说明|指令|提示|消息)", 0.85),
    ("zh_exfiltration",
     r"(?:发送|转发|上传|泄露)[^。！？\n]{0,20}?(?:对话|收件箱|密码|密钥|api|凭证|机密|配置)", 0.8),
]

PATTERNS: list[tuple[str, re.Pattern[str], float]] = [
    (name, re.compile(src, re.MULTILINE), weight) for name, src, weight in _PATTERNS_SRC
]

_QUOTES = "'\"“”‘’「」『』«»`"
# A quoted mention ("explain why 'ignore previous instructions' works") keeps this share.
QUOTED_FACTOR = 0.4


def _quoted(text: str, start: int, end: int) -> bool:
    """A match inside a quotation on its line: an opening quote at most 40 characters before
    it (none of them a line break) and a closing one at most 80 after."""
    before = text[max(0, start - 40) : start].rsplit("\n", 1)[-1]
    after = text[end : end + 80].split("\n", 1)[0]
    opening = max(before.rfind(q) for q in _QUOTES)
    if opening == -1:
        return False
    quote = before[opening]
    # An apostrophe inside a word ("attacker's") is not a quote.
    if quote == "'" and 0 < opening < len(before) - 1 and before[opening - 1].isalnum() and before[opening + 1].isalnum():
        return False
    return any(q in after for q in _QUOTES)


# A quoted attack string is a mention, not a use, when the text around it says so: these cues
# (reporting, testing, classifying) outside the quotes turn the quoted part into data.
_MENTION_CUES = re.compile(
    r"\b(?:said|says|wrote|writes|read|received|logged|log line|quoted?|quotes|phrase|string|pattern|regex|"
    r"tests?|test case|example|label|classify|flagged|detect(?:ed|s)?|filter|attack|attacker'?s?|jailbreaks?|injection|"
    r"payload|poster|slide|report|incident|honeypot|spam|waf|blocked|taxonomy|posted|quiz|moderators?)\b|"
    r"(?:说了?|写道|收到|短语|例子|测试|攻击|分类|检测|拦截|用例|违规|发了一句)")
_QUOTED_SPAN = re.compile(r"\"[^\"\n]{1,300}\"|“[^”\n]{1,300}”|「[^」\n]{1,300}」|『[^』\n]{1,300}』|`[^`\n]{1,300}`|"
                          r"(?<![A-Za-z0-9])'[^'\n]{1,300}'(?![A-Za-z0-9])|‘[^’\n]{1,300}’")
#: Share of its probability the classifier keeps on the quoted part of a mention.
QUOTED_CLASSIFIER_FACTOR = 0.8


def split_mention(normalized: str) -> str | None:
    """The text with its quoted spans blanked, when it quotes something and says it is a mention; else None."""
    if not any(q in normalized for q in _QUOTES):
        return None
    outside = _QUOTED_SPAN.sub(" ", normalized)
    if outside == normalized or not _MENTION_CUES.search(outside):
        return None
    return outside


def pattern_score(normalized: str) -> tuple[float, str | None]:
    """Highest pattern weight in an already-normalised text, and that pattern's name."""
    best, best_name = 0.0, None
    variants = [normalized]
    deob = deobfuscate(normalized)
    if deob != normalized:
        variants.append(deob)
    for variant in variants:
        for name, regex, weight in PATTERNS:
            if weight <= best:
                continue
            for match in regex.finditer(variant):
                w = weight * (QUOTED_FACTOR if _quoted(variant, match.start(), match.end()) else 1.0)
                if w > best:
                    best, best_name = w, name
                if best >= weight:
                    break
    return best, best_name


# --------------------------------------------------------------------------- classifier


def char_ngrams(normalized: str) -> list[str]:
    """Character n-grams (``NGRAM_RANGE``) of a normalised text padded with one space each side."""
    padded = f" {normalized} "
    lo, hi = NGRAM_RANGE
    n_chars = len(padded)
    return [padded[i : i + n] for n in range(lo, hi + 1) for i in range(n_chars - n + 1)]


@dataclass
class InjectionClassifier:
    """Logistic regression over sublinear, L2-normalised TF-IDF char n-grams, in plain Python.

    ``weights[g] = (idf, coef)``: a document's score is
    ``sigmoid(intercept + sum_g coef_g * v_g / ||v||)`` with ``v_g = (1 + ln tf_g) * idf_g``,
    exactly what scikit-learn's ``TfidfVectorizer(sublinear_tf=True)`` + ``LogisticRegression``
    compute (tests check the two agree).
    """

    weights: dict[str, tuple[float, float]]
    intercept: float
    digest: str = ""

    def predict_proba(self, normalized: str) -> float:
        counts = Counter(char_ngrams(normalized))
        dot = 0.0
        norm2 = 0.0
        get = self.weights.get
        for gram, tf in counts.items():
            entry = get(gram)
            if entry is None:
                continue
            v = (1.0 + math.log(tf)) * entry[0]
            norm2 += v * v
            dot += v * entry[1]
        z = self.intercept + (dot / math.sqrt(norm2) if norm2 > 0 else 0.0)
        return 1.0 / (1.0 + math.exp(-z))

    def to_json(self) -> dict:
        return {"feature_version": FEATURE_VERSION, "digest": self.digest, "intercept": self.intercept,
                "weights": {g: [round(i, 6), round(c, 6)] for g, (i, c) in self.weights.items()}}

    @classmethod
    def from_json(cls, data: dict) -> "InjectionClassifier":
        return cls({g: (float(i), float(c)) for g, (i, c) in data["weights"].items()},
                   float(data["intercept"]), data.get("digest", ""))


def load_dataset(path: Path = DATASET_PATH, split: str | None = None) -> list[dict]:
    """Rows ``{id, text, label (1 = injection), lang, kind, split}`` of the labelled set."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if split is None or r["split"] == split]


def fit_sklearn(texts: list[str], labels: list[int]):
    """The scikit-learn pipeline behind :class:`InjectionClassifier` (deterministic)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(analyzer=char_ngrams, sublinear_tf=True, min_df=2, norm="l2")
    x = vectorizer.fit_transform([normalize(t) for t in texts])
    # lbfgs on a convex problem: the same weights on every run and machine (to rounding).
    model = LogisticRegression(C=10.0, class_weight="balanced", max_iter=2000, solver="lbfgs")
    model.fit(x, labels)
    return vectorizer, model


def train_classifier(rows: Iterable[dict], digest: str = "") -> InjectionClassifier:
    """Fit on labelled rows and export the weights to the pure-Python form."""
    rows = list(rows)
    vectorizer, model = fit_sklearn([r["text"] for r in rows], [int(r["label"]) for r in rows])
    coef = model.coef_[0]
    weights = {gram: (float(vectorizer.idf_[j]), float(coef[j])) for gram, j in vectorizer.vocabulary_.items()}
    return InjectionClassifier(weights, float(model.intercept_[0]), digest)


def _dataset_digest(path: Path) -> str:
    h = hashlib.sha256(FEATURE_VERSION.encode())
    h.update(path.read_bytes())
    if path == DATASET_PATH and FAMILIES_PATH.is_file():
        h.update(FAMILIES_PATH.read_bytes())
    return h.hexdigest()[:16]


def training_rows(path: Path = DATASET_PATH) -> list[dict]:
    """The rows the shipped classifier is fitted on: ``train`` rows of the set (and of the
    family set, for the shipped one)."""
    rows = load_dataset(path, split="train")
    if path == DATASET_PATH and FAMILIES_PATH.is_file():
        rows += load_dataset(FAMILIES_PATH, split="train")
    return rows


_LOCK = threading.Lock()
_CACHE: dict[str, InjectionClassifier] = {}


def load_classifier(path: Path = DATASET_PATH) -> InjectionClassifier:
    """The classifier for the shipped labelled set: memory, then workspace cache, then a fit.

    The cache file is written atomically (temporary file + rename), so concurrent first
    uses in several processes at worst fit twice and never read a half-written file.
    """
    from llmops_ray.config import workspace_path

    digest = _dataset_digest(path)
    with _LOCK:
        if digest in _CACHE:
            return _CACHE[digest]
        cache_file = workspace_path("safety") / f"injection-classifier-{digest}.json"
        clf = None
        if cache_file.is_file():
            try:
                clf = InjectionClassifier.from_json(json.loads(cache_file.read_text(encoding="utf-8")))
            except (ValueError, KeyError, TypeError):
                clf = None  # corrupt cache: refit below
        if clf is None:
            clf = train_classifier(training_rows(path), digest)
            tmp = cache_file.with_name(f"{cache_file.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_text(json.dumps(clf.to_json(), ensure_ascii=False), encoding="utf-8")
            os.replace(tmp, cache_file)
        _CACHE[digest] = clf
        return clf


# --------------------------------------------------------------------------- detector

_SENTENCE_END = re.compile(r"(?<=[.!?。！？;；\n])\s*")


def segments(normalized: str, size: int = SEGMENT_CHARS) -> list[str]:
    """Sentence windows of at most ``size`` characters (a sentence longer than that is cut)."""
    if len(normalized) <= size:
        return [normalized]
    out: list[str] = []
    current = ""
    for sentence in _SENTENCE_END.split(normalized):
        if not sentence:
            continue
        if len(sentence) > size:
            if current:
                out.append(current)
                current = ""
            # Overlapping cuts half a window apart: a phrase on the edge is seen whole once.
            # Offsets, not re-slicing the rest each time: that copied the remainder per cut,
            # quadratic in the sentence's length (0.35 s for a 1 MB word).
            pos = 0
            while len(sentence) - pos > size:
                out.append(sentence[pos : pos + size])
                pos += size // 2
            sentence = sentence[pos:]
        if len(current) + len(sentence) + 1 > size and current:
            out.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}" if current else sentence
    if current:
        if out and len(current) < size // 3 and len(out[-1]) + len(current) < size + size // 3:
            out[-1] = f"{out[-1]} {current}"  # a short tail alone is too little text to classify
        else:
            out.append(current)
    return out


@dataclass(frozen=True)
class InjectionScore:
    """Score of one text: the maximum over layers and segments, and what produced it."""

    score: float
    source: str  # "pattern:<name>", "classifier" or "none"
    pattern: float
    classifier: float


class InjectionDetector:
    """Layered detector; ``score(text)`` is thread-safe and allocation-light."""

    def __init__(self, use_classifier: bool = True, classifier: InjectionClassifier | None = None):
        self.classifier = classifier if classifier is not None else (load_classifier() if use_classifier else None)

    def score(self, text: str) -> InjectionScore:
        norm = normalize(text)
        if not norm:
            return InjectionScore(0.0, "none", 0.0, 0.0)
        outside = split_mention(norm) if len(norm) <= 4 * SEGMENT_CHARS else None
        p_score, p_name = pattern_score(norm)
        if outside is not None:
            # A reported/quoted attack string: what is outside the quotes counts fully, the
            # quoted part only as a mention.
            o_score, o_name = pattern_score(outside)
            p_score, p_name = (o_score, o_name) if o_score >= p_score * QUOTED_FACTOR else (p_score * QUOTED_FACTOR, p_name)
        c_score = 0.0
        if self.classifier is not None:
            # Identical windows (repeated text) score the same: each distinct one is scored once.
            c_score = max(self.classifier.predict_proba(seg) for seg in set(segments(norm)))
            if outside is not None:
                c_score = max(self.classifier.predict_proba(outside), QUOTED_CLASSIFIER_FACTOR * c_score)
        # Name the pattern whenever one matched: it explains a block better than a probability.
        source = f"pattern:{p_name}" if p_name is not None else ("classifier" if c_score > 0 else "none")
        return InjectionScore(max(p_score, c_score), source, p_score, c_score)

    def score_classifier(self, text: str) -> InjectionScore:
        """The classifier layer alone (source ``classifier``): for the joined last user turns,
        whose turns the patterns (which stop at line breaks) have already seen one by one."""
        norm = normalize(text)
        if not norm or self.classifier is None:
            return InjectionScore(0.0, "none", 0.0, 0.0)
        c_score = max(self.classifier.predict_proba(seg) for seg in set(segments(norm)))
        return InjectionScore(c_score, "classifier", 0.0, c_score)
