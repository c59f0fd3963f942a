"""What is secret: one rule type, the built-in safe defaults, and TOML policy files.

A rule says where it looks (`place`), what it matches there (`match`) and what
to do (`action`: drop, mask or pseudonymize). Places:
- `header`, `cookie`, `query`, `form`: `match` is a regular expression over the
  whole lower-cased name (policy files write case-insensitive globs, `x-*-token`);
- `json`: `match` is a JSON path in the one dialect of `corpora.jsonpath`
  (`$.users[*].email`, `$..password`, `$.*token*`); names match case-insensitively;
- `pattern`: `match` names a built-in value pattern (`VALUE_PATTERNS`), and
  `regex`: `match` is the user's own regular expression; both look inside every
  string value anywhere (headers, query, cookies, JSON, forms, multipart parts,
  free text) that no named rule already handled.

Named rules: the first one that matches a place and name wins, so a policy
file's rules come before the defaults. Value patterns all run, in order.
Where the walker looks (and so which names exist) is `recorder.walk`'s job.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass
from functools import cache, cached_property
from itertools import filterfalse
from pathlib import Path
from typing import Any, Literal, get_args

from replaydiff.corpora.jsonpath import parse_json_path
from replaydiff.corpora.tomlfile import read_toml

Place = Literal["header", "cookie", "query", "form", "json", "pattern", "regex"]
NamedPlace = Literal["header", "cookie", "query", "form", "json"]
Action = Literal["drop", "mask", "pseudonymize"]


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    """Key of this rule in the `fired` counts of the corpus end record."""
    place: Place
    match: str
    action: Action = "mask"

    def matches(self, place: NamedPlace, name: str) -> bool:
        """`name` is lower-cased by the caller; for `json` it is a path rendered by `json_step`."""
        return place == self.place and _compiled(self.place, self.match).fullmatch(name) is not None


@dataclass(frozen=True, slots=True)
class ValuePattern:
    regex: str
    """Group `secret`, when present, is the part replaced (`Bearer <secret>` keeps the scheme word)."""
    luhn: bool = False
    """Only digit runs passing the Luhn check (and starting like a card number) count."""
    needs: tuple[str, ...] = ()
    """Lower-case literals of which every match contains one (in any case); empty when there is none."""
    digit_run: int = 0
    """Digits every match holds in a row once spaces and dashes are removed (a card number: 13)."""
    random_bits: float = 0.0
    """When set, a match counts only if it `looks_random` with at least this many bits per character."""
    min_length: int = 0
    """No text shorter than this can hold a match: skipped without running the regex."""
    credential_names_only: bool = False
    """Looks only at whole values under credential-like names (`CREDENTIAL_NAME`), never inside free text."""


VALUE_PATTERNS: dict[str, ValuePattern] = {
    "bearer": ValuePattern(r'\b(?i:bearer)\s+(?P<secret>[A-Za-z0-9._~+/-]{6,}=*)(?![\w"])', needs=("bearer",)),
    "jwt": ValuePattern(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*", needs=("eyj",)),
    "api-key": ValuePattern(
        r"\b(?:(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{10,}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,}"
        r"|xox[abpr]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35})",
        needs=("k_live_", "k_test_", "akia", "gh", "xox", "aiza"),
    ),
    # starts like a card (2-6), or with a non-ASCII digit (fullwidth, Arabic-Indic…), whose value only Luhn checks;
    # groups apart by spaces or dashes, also URL-encoded (`4111%201111…`, `4111+1111…`, twice-encoded `%2520`)
    "card": ValuePattern(
        r"(?<![\d-])(?:[2-6]|(?![0-9])\d)(?:(?:[ +-]|%(?:25)?2[0dD])?\d){12,18}(?![\d])", luhn=True, digit_run=13
    ),
    "email": ValuePattern(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b", needs=("@",)),
    # prefixless keys, found by their shape and randomness (see `looks_random` for the false-positive guard):
    # an AWS secret access key is exactly 40 characters of base64 anywhere; a generic secret is 32-64
    # characters of a token alphabet, only as the whole value of a credential-like header, parameter or member
    "aws-secret": ValuePattern(
        r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])", random_bits=4.2, min_length=40
    ),
    "high-entropy": ValuePattern(r"[A-Za-z0-9+/=_.~-]{32,64}", random_bits=3.0, credential_names_only=True),
    "ipv4": ValuePattern(
        r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![\d.])", needs=(".",)
    ),
}

_SECRET_WORDS = r".*(token|secret|passw|api[-_]?key|session|signature|credential).*"
_SECRET_PARAMS = _SECRET_WORDS + r"|key|sig|pwd|auth"
_JSON_SECRET_WORDS = ("*token*", "*secret*", "*passw*", "*api_key*", "*apikey*", "*api-key*", "*credential*")

DEFAULT_RULES: tuple[Rule, ...] = (
    Rule("authorization", "header", r"(proxy-)?authorization", action="pseudonymize"),
    Rule("secret-header", "header", _SECRET_WORDS + r"|x-auth.*", action="pseudonymize"),
    Rule("cookie", "cookie", r".*", action="pseudonymize"),
    Rule("secret-query", "query", _SECRET_PARAMS),
    Rule("secret-form", "form", _SECRET_PARAMS + r"|pass|pin|cvv|cvc"),
    *(Rule("secret-json", "json", f"$..{word}") for word in _JSON_SECRET_WORDS),
    Rule("bearer", "pattern", "bearer"),
    Rule("jwt", "pattern", "jwt"),
    Rule("api-key", "pattern", "api-key"),
    Rule("card", "pattern", "card"),
    Rule("aws-secret", "pattern", "aws-secret"),
    Rule("high-entropy", "pattern", "high-entropy"),
    Rule("email", "pattern", "email", action="pseudonymize"),
)
"""Safe defaults. Credentials where they name a principal (Authorization, API-key and session headers,
cookies) and email addresses are pseudonymized, not masked: one user's requests stay recognisably one
user's (a replay maps each principal to a test account, `replayer.credentials`), and values still parse
and correlate. The keyed pseudonym cannot be reversed without the key, which is never written down.
IPv4 is opt-in: it would rewrite Host and forwarding headers a replay needs."""


@dataclass(frozen=True)
class Policy:
    name: str
    rules: tuple[Rule, ...]

    @cached_property
    def digest(self) -> str:
        """sha256 of a canonical description: equal digests mean equal sanitization."""
        canonical = json.dumps([asdict(rule) for rule in self.rules], sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def rule_for(self, place: NamedPlace, name: str) -> Rule | None:
        """Memoized: the same header names and JSON paths come back in every exchange."""
        memo = self._memo
        key = (place, name)
        if key not in memo:
            if len(memo) >= _MEMO_LIMIT:
                memo.clear()
            memo[key] = next((rule for rule in self.named if rule.matches(place, name)), None)
        return memo[key]

    @cached_property
    def _memo(self) -> dict[tuple[str, str], Rule | None]:
        return {}

    @cached_property
    def named(self) -> tuple[Rule, ...]:
        return tuple(rule for rule in self.rules if rule.place not in ("pattern", "regex"))

    def json_step(self, path: str, key: str | int) -> str:
        """The rendered path one level down; JSON-path rules are compiled to regexes over this rendering.

        Array indices are left out unless a rule names one (`$.items[0]`), so the paths of an array's
        items are equal and the memo in `rule_for` serves them all."""
        if isinstance(key, int):
            return f"{path}\x00i{key}" if self._indexed else f"{path}\x00i"
        return f"{path}\x00k{key.lower()}"

    @cached_property
    def _indexed(self) -> bool:
        return any(rule.place == "json" and any(step.kind == "index" for step in parse_json_path(rule.match).steps)
                   for rule in self.rules)

    @cached_property
    def scans_numbers(self) -> int:
        """The shortest number worth scanning: 13 digits (a card) unless the user's own regexes may match less."""
        return 1 if any(rule.place == "regex" for rule in self.rules) else 13

    @cached_property
    def json_key_literals(self) -> tuple[str, ...] | None:
        """A lower-case literal from the last step of every JSON rule (`password` of `$..password`, `token`
        of `$..*token*`): a document holding none of them anywhere has no key these rules match. None when a
        rule ends in a wildcard or an index, so every document must be walked."""
        literals = []
        for rule in self.rules:
            if rule.place != "json":
                continue
            steps = parse_json_path(rule.match).steps
            if not steps or steps[-1].kind != "member":
                return None
            name = steps[-1].name.lower()
            literal = max(name.split("*"), key=len) if steps[-1].glob else name
            if not literal:
                return None
            literals.append(literal)
        return tuple(literals)

    @cached_property
    def literals(self) -> frozenset[str]:
        """Every literal the prefilters look for, for `TextView`."""
        needs = (literal for rule in self.value_rules for literal in rule.pattern.needs)
        return frozenset((*(self.json_key_literals or ()), *needs))

    @cached_property
    def value_rules(self) -> tuple[PatternRule, ...]:
        """Every value pattern that looks inside text, in policy order, compiled."""
        return tuple(rule for rule in self._all_value_rules if not rule.pattern.credential_names_only)

    @cached_property
    def credential_value_rules(self) -> tuple[PatternRule, ...]:
        """The patterns that judge only whole values under credential-like names."""
        return tuple(rule for rule in self._all_value_rules if rule.pattern.credential_names_only)

    @cached_property
    def _all_value_rules(self) -> tuple[PatternRule, ...]:
        return tuple(
            PatternRule(rule, _compiled(rule.place, rule.match), VALUE_PATTERNS.get(rule.match, _USER_PATTERN))
            for rule in self.rules
            if rule.place in ("pattern", "regex")
        )


@dataclass(frozen=True, slots=True)
class PatternRule:
    rule: Rule
    regex: re.Pattern[str]
    pattern: ValuePattern

    def accepts(self, found: str) -> bool:
        """The guards a regex cannot express: the Luhn check of a card, the randomness of a prefixless key."""
        pattern = self.pattern
        if pattern.luhn and not luhn_ok(_NOT_DIGIT.sub("", URL_SEPARATOR.sub("", found))):
            return False
        return not pattern.random_bits or looks_random(found, min_bits=pattern.random_bits)

    def accepted_prefix(self, found: str) -> str | None:
        """The longest prefix of a rejected card match that is a card (13 digits or more, Luhn), if any."""
        if not self.pattern.luhn:
            return None
        for end in range(len(found) - 1, 0, -1):
            prefix = found[:end]
            if not prefix[-1].isdigit() or found[end].isdigit():
                continue
            digits = _NOT_DIGIT.sub("", URL_SEPARATOR.sub("", prefix))
            if len(digits) < 13:
                return None
            if luhn_ok(digits) and self.regex.fullmatch(prefix):
                return prefix
        return None

    def fits_whole(self, value: str) -> bool:
        """For credential-name patterns: the whole value (spaces around it aside) is a match the guards accept."""
        value = value.strip()
        return self.regex.fullmatch(value) is not None and self.accepts(value)

    def may_match(self, text: TextView) -> bool:
        """Substring tests before the regex: most text lacks what a pattern needs, and `in` is far cheaper."""
        pattern = self.pattern
        if len(text.text) < pattern.min_length:
            return False
        if pattern.needs and not text.holds_any(pattern.needs):
            return False
        # `digits` knows only ASCII digits while a pattern's `\d` also matches others (fullwidth, Arabic-Indic):
        # text with any non-ASCII character goes to the regex unfiltered.
        return not pattern.digit_run or not text.text.isascii() or b"0" * pattern.digit_run in text.digits


class TextView:
    """A text and the cheap transforms the prefilters read, each computed once and only if asked for."""

    __slots__ = ("text", "_literals", "_lowered", "_digits", "_found")

    def __init__(self, text: str, literals: frozenset[str] = frozenset()) -> None:
        """`literals`: the lower-case literals `holds_any` will be asked about (`Policy.literals`), all looked
        for at once, the first time one is asked about."""
        self.text = text
        self._literals = literals
        self._lowered: str | None = None
        self._digits: bytes | None = None
        self._found: frozenset[str] | None = None

    def holds_any(self, literals: tuple[str, ...]) -> bool:
        """Whether the lowered text contains one of these lower-case literals. One outside those given to the
        view is looked for on each call, so a view given too few costs speed, never safety."""
        if self._found is None:
            self._found = self._find()
        if not self._found.isdisjoint(literals):
            return True
        return not self._literals.issuperset(literals) and any(literal in self.lowered for literal in literals)

    def _find(self) -> frozenset[str]:
        """In a long text, a literal needing a character the text lacks is ruled out without a substring search:
        the absent characters are found first, each by a one-character `in` (a memchr, far cheaper than searching
        a word), and most literals need some character a given text lacks."""
        lowered = self.lowered
        if len(lowered) < _ALPHABET_FROM:
            return frozenset(filter(lowered.__contains__, self._literals))
        absent = frozenset(filterfalse(lowered.__contains__, _alphabet(self._literals)))
        return frozenset(literal for literal in self._literals if absent.isdisjoint(literal) and literal in lowered)

    @property
    def lowered(self) -> str:
        if self._lowered is None:
            self._lowered = self.text.lower()
        return self._lowered

    @property
    def digits(self) -> bytes:
        """Every digit as `0`, spaces and dashes removed: a run of digits shows as a run of zeros.
        In UTF-8 bytes, because `bytes.translate` is several times faster than `str.translate`; any other
        character still breaks a run, as its bytes are none of these."""
        if self._digits is None:
            data = self.text.encode("utf-8", "surrogatepass")
            if b"%" in data:  # URL-encoded separators, as the card pattern allows them
                data = _URL_SEPARATOR.sub(b"", data)
            self._digits = data.translate(_DIGITS_AS_ZERO, b" -+")
        return self._digits


_USER_PATTERN = ValuePattern("")
_DIGITS_AS_ZERO = bytes.maketrans(b"0123456789", b"0" * 10)
_URL_SEPARATOR = re.compile(rb"%(?:25)?2[0dD]")
_ALPHABET_FROM = 200
"""Below this length, searching a text for each literal costs less than first finding its absent characters."""
_MEMO_LIMIT = 100_000
"""Bounds the memo: array indices make JSON paths unbounded over a long recording."""


@cache
def _alphabet(literals: frozenset[str]) -> str:
    """Every character the literals are made of."""
    return "".join(set("".join(literals)))


DEFAULT_POLICY = Policy("defaults", DEFAULT_RULES)
NO_POLICY = Policy("none", ())




JSON_ROOT = "$"


URL_SEPARATOR = re.compile(r"%(?:25)?2[0dD]")
"""A space or dash, URL-encoded once or twice: not a digit of a card number it separates."""
_NOT_DIGIT = re.compile(r"\D")

CREDENTIAL_NAME = re.compile(r"key|auth|cred|secret|token|pass|pwd|private|sign|sig|access", re.IGNORECASE)
"""Names under which a random-looking value is taken for a secret (`high-entropy`)."""

_WORD = re.compile(r"[A-Z][a-z]{2,}|[a-z]{3,}")


def looks_random(text: str, *, min_bits: float) -> bool:
    """The false-positive guard of the prefixless-key patterns: a value counts as a secret only if
    - it mixes letters and digits (an AWS key also both cases): words, numbers and paths do not;
    - its characters carry at least `min_bits` bits each (Shannon entropy of the value's own character
      counts): random base64 has about 4.7 (4.35 or more in 999 of 1000 keys), random hex about 3.5, while
      repetitive values (`aaaa…1`, `0000…`) have far less;
    - words make less than 85% of its letters (a word: three or more lower-case letters, or a capital and
      two or more): identifiers and paths (`AbstractSingletonProxyFactoryBean123`, `images/products/large/item4`)
      are that wordy, a random key almost never (1 in 10,000 random 40-character keys reaches 0.84)."""
    letters = sum(char.isalpha() for char in text)
    if not letters or not any(char.isdigit() for char in text):
        return False
    if min_bits > 4 and (text.islower() or text.isupper()):
        return False  # base64 keys mix cases; a hex digest or an upper-case code does not
    counts: dict[str, int] = {}
    for char in text:
        counts[char] = counts.get(char, 0) + 1
    size = len(text)
    bits = -sum(count / size * math.log2(count / size) for count in counts.values())
    if bits < min_bits:
        return False
    return sum(len(word) for word in _WORD.findall(text)) < 0.85 * letters


def credential_like(place: str, name: str) -> bool:
    """Whether a header, parameter, form field or JSON member (its own key, or its array's) has a credential-like
    name; JSON names come rendered by `Policy.json_step`."""
    if place == "json":
        steps = [step for step in name.split("\x00") if step.startswith("k")]
        name = steps[-1][1:] if steps else ""
    return CREDENTIAL_NAME.search(name) is not None


def luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


# --- compiling matches --------------------------------------------------------------------------

@cache
def _compiled(place: Place, match: str) -> re.Pattern[str]:
    if place == "json":
        return re.compile(_json_path_regex(match))
    if place == "pattern":
        return re.compile(VALUE_PATTERNS[match].regex)
    return re.compile(match)


def _json_path_regex(path: str) -> str:
    """A regex over `Policy.json_step`'s rendering of paths, from the one JSON path parser (`corpora.jsonpath`)."""
    parts = [re.escape(JSON_ROOT)]
    for step in parse_json_path(path).steps:
        if step.descend:
            parts.append("(?:\x00[^\x00]*)*")
        if step.kind == "any":
            parts.append("\x00[^\x00]*")
        elif step.kind == "index":
            parts.append(re.escape(f"\x00i{step.index}"))
        else:
            name = re.escape(step.name.lower())
            parts.append("\x00k" + (name.replace(r"\*", "[^\x00]*") if step.glob else name))
    return "".join(parts)


def _glob(name: str) -> str:
    return fnmatch.translate(name.lower())


# --- policy files -------------------------------------------------------------------------------

_PLACE_KEYS: dict[str, Place] = {
    "headers": "header",
    "cookies": "cookie",
    "query": "query",
    "form": "form",
    "json": "json",
    "patterns": "pattern",
    "regex": "regex",
}
_RULE_KEYS = {"name", "action", *_PLACE_KEYS}


def load_policy(path: Path | None, *, defaults: bool = True) -> Policy:
    """The policy a recorder or importer runs: the file's rules, then (unless turned off) the defaults."""
    base = DEFAULT_RULES if defaults else ()
    if path is None:
        return DEFAULT_POLICY if defaults else NO_POLICY
    data = _read_toml(path)
    try:
        rules, name = _parse_policy(data)
    except PolicyError as exc:
        raise PolicyError(f"{path}: {exc}") from None
    use_defaults = defaults and data.get("defaults", True)
    return Policy(name or path.stem, rules + (base if use_defaults else ()))


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise PolicyError(f"{path}: no such policy file")
    return read_toml(path, PolicyError, "policy file")


def _parse_policy(data: dict[str, Any]) -> tuple[tuple[Rule, ...], str | None]:
    unknown = set(data) - {"name", "defaults", "rules"}
    if unknown:
        raise PolicyError(f"unknown key {sorted(unknown)[0]!r}; expected name, defaults, [[rules]]")
    if not isinstance(data.get("defaults", True), bool):
        raise PolicyError("defaults: must be true or false")
    name = data.get("name")
    if name is not None and not isinstance(name, str):
        raise PolicyError("name: must be a string")
    tables = data.get("rules", [])
    if not isinstance(tables, list):
        raise PolicyError("rules: write each rule as a [[rules]] table")
    rules: list[Rule] = []
    for index, table in enumerate(tables):
        rules += _parse_rule(table, f"rules[{index}]")
    return tuple(rules), name


def _parse_rule(table: Any, where: str) -> list[Rule]:
    if not isinstance(table, dict):
        raise PolicyError(f"{where}: must be a table")
    unknown = set(table) - _RULE_KEYS
    if unknown:
        raise PolicyError(f"{where}.{sorted(unknown)[0]}: unknown key; expected one of {', '.join(sorted(_RULE_KEYS))}")
    action = table.get("action", "mask")
    if action not in get_args(Action):
        raise PolicyError(f"{where}.action: {action!r} is not one of drop, mask, pseudonymize")
    name = table.get("name", f"rule-{where.split('[')[1].rstrip(']')}")
    if not isinstance(name, str) or not name:
        raise PolicyError(f"{where}.name: must be a non-empty string")
    rules = [
        Rule(name, place, _parse_match(place, item, f"{where}.{key}"), action)
        for key, place in _PLACE_KEYS.items()
        for item in _string_list(table.get(key, []), f"{where}.{key}")
    ]
    if not rules:
        raise PolicyError(
            f"{where}: names nothing to match; give headers, cookies, query, form, json, patterns or regex"
        )
    return rules


def _string_list(value: Any, where: str) -> list[str]:
    """A list, even of one: a lone string is refused rather than guessed at, since `headers = "x-a, x-b"`
    would otherwise pass as one strange name and leave both headers unmasked."""
    if isinstance(value, str):
        raise PolicyError(f"{where}: must be a list, e.g. {where.rpartition('.')[2]} = [{value!r}]".replace("'", '"'))
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise PolicyError(f"{where}: must be a list of non-empty strings")
    return value


def _parse_match(place: Place, item: str, where: str) -> str:
    if place == "pattern":
        if item not in VALUE_PATTERNS:
            raise PolicyError(f"{where}: unknown pattern {item!r}; built-in patterns are {', '.join(VALUE_PATTERNS)}")
        return item
    match = item if place in ("json", "regex") else _glob(item)
    try:
        _compiled(place, match)
    except (ValueError, re.error) as exc:
        raise PolicyError(f"{where}: {exc}") from None
    return match
