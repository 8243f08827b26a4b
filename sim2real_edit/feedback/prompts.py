"""The detector prompts hidden in an editing instruction: the object to edit and the material to give it."""

from __future__ import annotations

import re

_ARTICLES = {"the", "a", "an", "this", "that", "its"}
# Words that end the object's noun phrase and introduce the material ("out of wood", "into marble", ...).
_LINKS = {
    "out",
    "of",
    "into",
    "to",
    "in",
    "with",
    "from",
    "as",
    "look",
    "looks",
    "like",
    "made",
    "using",
    "so",
}
_FORMAT_HELP = (
    "write it as '<verb> the <object> <out of|into|to look like|in|with> <material>', e.g. 'make the "
    "cupboard out of wood', or set FeedbackConfig.object_prompt / style_prompt"
)


def _words(instruction: str) -> list[str]:
    return re.findall(r"[a-z][a-z'-]*", instruction.lower())


def _split(instruction: str) -> tuple[list[str], list[str]]:
    """(object words, material words) of an instruction."""
    words = _words(instruction)
    if len(words) < 2:
        raise ValueError(f"cannot find the object in the instruction {instruction!r}; {_FORMAT_HELP}")
    article = next((i for i, w in enumerate(words) if w in _ARTICLES), None)
    start = article + 1 if article is not None else 1  # without an article the first word is the verb
    end = next((i for i in range(start, len(words)) if words[i] in _LINKS), len(words))
    rest = [w for w in words[end:] if w not in _LINKS and w not in _ARTICLES]
    return words[start:end], rest


def object_word(instruction: str) -> str:
    """The edited object: 'make the cupboard out of wood' -> 'cupboard'.

    The noun phrase after the first article (or after the leading verb when there is none) up to the word
    that introduces the material; multi-word objects are kept ('the kitchen cabinet' -> 'kitchen cabinet').
    """
    object_words, _ = _split(instruction)
    if not object_words:
        raise ValueError(f"cannot find the object in the instruction {instruction!r}; {_FORMAT_HELP}")
    return " ".join(object_words)


def material_word(instruction: str) -> str:
    """The target material: 'make the cupboard out of wood' -> 'wood' (the style image's detector prompt)."""
    _, material_words = _split(instruction)
    if not material_words:
        raise ValueError(f"cannot find the material in the instruction {instruction!r}; {_FORMAT_HELP}")
    return " ".join(material_words)
