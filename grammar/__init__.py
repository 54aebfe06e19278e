"""catad's grammar: `catad.lark`, loaded with `importlib.resources`."""

from importlib.resources import files


def grammar_text() -> str:
    """The text of the Lark grammar that defines the catad language."""
    return files(__name__).joinpath("catad.lark").read_text(encoding="utf-8")
