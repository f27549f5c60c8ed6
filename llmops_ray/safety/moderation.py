"""Moderation check for model output (and optionally input), English and Chinese.

A small, explainable lexicon of harm categories rather than a model: each category is a
set of regular expressions over :func:`~llmops_ray.safety.normalize.normalize`-d text that
require *harmful intent or instruction*, not a topic word, so that "the bomb squad
defused it", "kill -9 the process" or "suicide prevention hotline" pass while "step by
step, how to build a pipe bomb" does not. The score of a text is the highest weight of a
matching category (0 when none match). Fast enough to run on every stream window
(about 10-30 us per 200 characters).
"""

from __future__ import annotations

import re

from llmops_ray.safety.normalize import normalize

_CATEGORIES_SRC: dict[str, tuple[float, list[str]]] = {
    "weapons": (0.95, [
        r"\b(?:how to|steps? to|instructions? (?:for|to)|guide to|recipe for|here'?s how to|you can|first,? you)\b[^.\n]{0,40}?"
        r"\b(?:make|build|assemble|construct|synthesi[sz]e|cook|prepare|detonate)\b[^.\n]{0,20}?"
        r"\b(?:bomb|pipe bomb|explosives?|napalm|molotov|nerve agent|sarin|ricin|detonator|ied|chemical weapon)s?\b",
        r"\b(?:mix|combine)\b[^.\n]{0,40}?\b(?:ammonium nitrate|potassium chlorate|acetone peroxide|tatp)\b[^.\n]{0,60}?\b(?:detonat|explo|blast)",
        r"(?:如何|怎么|怎样|步骤|教程|方法)[^。！？\n]{0,10}?(?:制作|制造|自制|合成|组装)[^。！？\n]{0,6}?(?:炸弹|炸药|爆炸物|燃烧瓶|神经毒剂|毒气|雷管)",
        r"(?:制作|制造|自制|合成|组装)(?:炸弹|炸药|爆炸物|燃烧瓶|神经毒剂|毒气|雷管)的(?:方法|步骤|教程|配方)",
    ]),
    "malware": (0.9, [
        r"\b(?:write|create|build|code|here is|here'?s)\b[^.\n]{0,30}?\b(?:ransomware|keylogger|credential stealer|botnet|"
        r"rootkit|self-replicating (?:virus|worm))\b",
        r"\b(?:encrypt|lock)s? (?:all )?(?:the )?(?:victim'?s?|user'?s?) files\b[^.\n]{0,40}?\b(?:ransom|bitcoin|pay)",
        r"(?:编写|写一个|制作|开发)[^。！？\n]{0,10}?(?:勒索软件|勒索病毒|键盘记录器|木马程序|盗号木马|僵尸网络)",
    ]),
    "self_harm": (0.95, [
        r"\byou should (?:just )?(?:kill yourself|end your life|hurt yourself|commit suicide)\b",
        r"\b(?:best|easiest|painless|quickest|surest) (?:way|method)s? to (?:kill (?:myself|yourself)|commit suicide|end (?:my|your) life)\b",
        r"\b(?:here'?s how|how) to (?:kill (?:myself|yourself)|commit suicide)\b[^.\n]{0,40}?\b(?:pills?|rope|overdose|dose|jump)",
        r"(?:你应该|你就该|你还是|不如)(?:去)?(?:自杀|去死|结束(?:你的)?生命)",
        r"(?:无痛|最快|最简单|最有效)的?(?:自杀|结束生命)(?:方法|方式|办法)",
    ]),
    "violent_threat": (0.85, [
        r"\bi (?:will|am going to|'m going to|gonna) (?:kill|murder|hurt|shoot|stab) you\b",
        r"\b(?:kill|murder|shoot|exterminate) (?:all|every) (?:of )?(?:the |those )?(?:\w+ )?(?:people|immigrants|women|men|jews|muslims|christians|gays|refugees)\b",
        r"我(?:要|会|一定会)(?:杀了|弄死|干掉)你",
        r"(?:杀光|消灭|灭绝)(?:所有|全部|一切)?[^。！？\n]{0,8}?(?:人|民族|移民|女人|男人)",
    ]),
    "hate": (0.85, [
        r"\b(?:all|those|these) (?:\w+ )?(?:people|immigrants|women|men|jews|muslims|christians|gays|refugees|foreigners) "
        r"(?:are|is) (?:vermin|animals|subhuman|parasites|a disease|inferior)\b",
        r"(?:所有|这些|那些)[^。！？\n]{0,6}?(?:人|移民|女人|男人|外国人)都(?:是)?(?:畜生|害虫|低等|劣等|寄生虫)",
    ]),
}

CATEGORIES: dict[str, tuple[float, list[re.Pattern[str]]]] = {
    name: (weight, [re.compile(p) for p in patterns]) for name, (weight, patterns) in _CATEGORIES_SRC.items()
}


def moderation_score(text: str, normalized: bool = False) -> tuple[float, str | None]:
    """``(score, category)`` of the worst harm category matched in ``text``, or ``(0, None)``."""
    norm = text if normalized else normalize(text)
    best, best_cat = 0.0, None
    for name, (weight, patterns) in CATEGORIES.items():
        if weight <= best:
            continue
        if any(p.search(norm) for p in patterns):
            best, best_cat = weight, name
    return best, best_cat
