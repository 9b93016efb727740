"""Why a line of a jsonl input (a corpus, the prompts) has no text where it should: in words that
point at the fix (the field is missing, or holds a number, or the line is not an object)."""

from __future__ import annotations


def field_problem(row: object, name: str) -> str:
    """Why a jsonl line has no text in field `name`: the line is not an object, the field is
    missing (naming the fields it has), or it holds something other than a string."""
    if not isinstance(row, dict):
        return f"is a JSON {type(row).__name__}, not an object with a '{name}' field"
    if name in row:
        kind = {int: "a number", float: "a number", bool: "true/false", list: "a list",
                dict: "an object", type(None): "null"}.get(type(row[name]), "not text")
        return f"has '{name}' holding {kind}, not a string"
    keys = ", ".join(sorted(map(str, row))[:8])
    return f"has no field '{name}' (has {keys or 'none'})"
