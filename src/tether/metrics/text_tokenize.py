"""Caption tokenisation as the COCO caption evaluation does it, without Java.

pycocoevalcap (and the coco-caption code it comes from) tokenises every
candidate and reference caption with Stanford CoreNLP 3.4.1's ``PTBTokenizer``
(``-preserveLines -lowerCase``), then drops the tokens in its ``PUNCTUATIONS``
list. :func:`ptb_tokenize` reproduces that pipeline in pure Python: a
longest-match scanner over a port of the relevant ``PTBLexer`` rules (the
JFlex rules are matched the same way JFlex does: the longest match wins, the
earlier rule wins a tie, trailing context counts towards the length), the
same token normalisations (brackets to ``-lrb-``..., quotes to LaTeX quotes,
``...``, ``--``, ``n't``/``'s`` splits, ``gonna`` to ``gon na``...), lower
casing *after* tokenisation, and the same punctuation filter.

Notable consequences of the original pipeline that are kept on purpose (they
change CIDEr n-grams, so a faithful reimplementation must keep them):

* ``-LRB-`` etc. are lower-cased *before* the filter, whose list is upper
  case, so brackets survive as the tokens ``-lrb-``, ``-rrb-``, ``-lsb-``,
  ``-rsb-``, ``-lcb-``, ``-rcb-``;
* runs like ``!!``, ``?!`` and dash runs of 5 or more are single tokens that
  are not in the list, so they survive too;
* a fraction or phone number with a space inside (``5 1/2``) is one token
  whose space is a no-break space; CIDEr's ``str.split()`` later splits it.

Known differences from the Java tokenizer are listed in ``docs/cider.md``;
they concern rare inputs (URLs, e-mail addresses, SGML, some Unicode
symbols and abbreviation/sentence-end heuristics that look across captions).
"""
from __future__ import annotations

import re
from typing import Iterable

# The regex parser is used only to find the characters a rule can start with. It is
# re._parser / re._constants from Python 3.11 on (sre_parse / sre_constants, deprecated there);
# Python 3.10 has only the sre_* names and no possessive repeats or atomic groups.
try:
    from re import _constants as _sre
    from re import _parser as _sre_parser
except ImportError:                                   # Python 3.10
    import sre_constants as _sre  # type: ignore[no-redef]
    import sre_parse as _sre_parser  # type: ignore[no-redef]
_REPEATS = tuple(getattr(_sre, name) for name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT") if hasattr(_sre, name))
_ATOMIC_GROUP = getattr(_sre, "ATOMIC_GROUP", object())  # a sentinel no parsed op is on 3.10

__all__ = ["PUNCTUATIONS", "ptb_tokenize", "ptb_tokenize_many"]

#: pycocoevalcap's list (tokenizer/ptbtokenizer.py), applied after lower-casing.
PUNCTUATIONS = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)

# ----------------------------------------------------------------------------------------
# Macros (PTBLexer.flex, CoreNLP 3.4.x). JFlex's %caseless makes literal strings caseless but
# not character classes, so literals are wrapped in (?i:...) and classes are kept as written.
# [:letter:] (Java Character.isLetter): \w without digits, underscore and the other numerics
L = r"[^\W\d_\u00B2\u00B3\u00B9\u00BC-\u00BE\u2070-\u209F\u2150-\u218F\u2460-\u24FF\u2776-\u2793\u3007\u3021-\u3029]"
D = r"\d"  # [:digit:]
APOS = r"(?:['\u0092\u2019]|&apos;)"
APOSETC = r"(?:['\u0092\u2019\u0091\u2018\u201B]|&apos;)"
SPLET = r"&[aeiouAEIOU](?i:acute|grave|uml);"
SPACE = r"[ \t\u00A0\u2000-\u200A\u3000]"
NEWLINE = r"(?:\r\n?|\n|\u2028|\u2029|\u000B|\u000C|\u0085)"
SPACENL = rf"(?:{SPACE}|{NEWLINE})"
SGML = (
    r"<(?:[!?][A-Za-z\-][^>\r\n]*|[A-Za-z][A-Za-z0-9_:.\-]*(?:[ ]+(?:[A-Za-z][A-Za-z0-9_:.\-]*"
    r"|[A-Za-z][A-Za-z0-9_:.\-]*[ ]*=[ ]*(?:'[^']*'|\"[^\"]*\"|[A-Za-z][A-Za-z0-9_:.\-]*)))*[ ]*\/?"
    r"|\/[A-Za-z][A-Za-z0-9_:.\-]*)[ ]*>"
)
SENTEND = rf"{SPACENL}(?:{SPACENL}|[A-Z]|{SGML})"
LETTERX = rf"(?:{L}|{SPLET}|[\u00AD\u0300-\u036F])"
WORD = rf"{LETTERX}(?:{LETTERX}|{D})*(?:[.!?]{LETTERX}(?:{LETTERX}|{D})*)*"
NUM = rf"(?:{D}*(?:[.:,\u00AD\u066B\u066C]{D}+)+|{D}+)"
NUMBER = rf"[\-+]?{NUM}"
FRAC = rf"(?:{D}{{1,4}}[- \u00A0])?{D}{{1,4}}(?:\\?\/|\u2044){D}{{1,4}}"
HYPHEN = r"[-_\u058A\u2010\u2011]"
ALNUM = rf"(?:{L}|{D})"
THING = (
    rf"(?:[dDoOlL]{APOSETC}{ALNUM})?{ALNUM}+"
    rf"(?:{HYPHEN}(?:[dDoOlL]{APOSETC}{ALNUM})?{ALNUM}+)*"
)
THINGA = r"[A-Z]+(?:(?:[+&]|(?i:&amp;))[A-Z]+)+"
THING3 = r"[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}(?:\\?\/[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}){1,2}"
ACRO_ALTS = [
    r"[A-Za-z](?:\.[A-Za-z])+", r"(?i:canada|sino|korean|eu|japan|non)-(?i:u\.s)", r"(?i:u\.s\.-(?:u\.k|u\.s\.s\.r))"
]
ACRO = "(?:" + "|".join(ACRO_ALTS) + ")"
HTHING = rf"[A-Za-z0-9][A-Za-z0-9.,\u00AD]*(?:-(?:{ACRO}\.|[A-Za-z0-9\u00AD]+))+"
REDAUX = rf"{APOS}(?:[msdMSD]|(?i:re|ve|ll))"
SWORD = r"[A-Za-z\u00AD]*[A-MO-Za-mo-z]\u00AD*"
SREDAUX = rf"(?i:n){APOSETC}(?i:t)"
APOWORD = [
    rf"{APOS}(?i:n){APOS}?", rf"[lLdDjJ]{APOS}", rf"(?i:dunkin){APOS}", rf"(?i:somethin){APOS}",
    rf"(?i:ol){APOS}", rf"{APOS}(?i:em)", rf"[A-HJ-XZn]{APOSETC}{L}{{2}}{L}*", rf"{APOS}[2-9]0(?i:s)",
    rf"{APOS}(?i:till?)", rf"{L}{L}*[aeiouyAEIOUY]{APOSETC}[aeiouA-Z]{L}*", rf"{APOS}(?i:cause)",
    r"(?i:cont'd)\.?", r"(?i:'twas)", r"(?i:nor'easter|c'mon|e'er|s'mores|ev'ry|li'l|nat'l)",
]
FULLURL = r"(?i:https?)://[^ \t\n\f\r\"<>|()]+[^ \t\n\f\r\"<>|.!?(){},-]"
LIKELYURL = (
    r"(?:(?:(?i:www)\.(?:[^ \t\n\f\r\"<>|.!?(){},]+\.)+[a-zA-Z]{2,4})"
    r"|(?:(?:[^ \t\n\f\r\"`'<>|.!?(){},-_$]+\.)+(?i:com|net|org|edu)))"
    r"(?:\/[^ \t\n\f\r\"<>|()]+[^ \t\n\f\r\"<>|.!?(){},-])?"
)
EMAIL = (
    r"(?:&lt;|<)?[a-zA-Z0-9][^ \t\n\f\r\"<>|()\u00A0{}]*@(?:[^ \t\n\f\r\"<>|(){}.\u00A0]+\.)*"
    r"[^ \t\n\f\r\"<>|(){}.\u00A0]+(?:&gt;|>)?"
)
TWITTER = rf"(?:@[a-zA-Z_][a-zA-Z_0-9]*|#{LETTERX}+)"
ASIANSMILEY = [
    r"[\-\^x=~<>']_[\-\^x=~<>']", r"\([\-\^x=~<>'][_.]?[\-\^x=~<>']\)", r"\([\^x=~<>']-[\^x=~<>'`]\)",
]
SMILEY = r"[<>]?[:;=][\-o\*']?[()DPdpO\\{@|\[\]]"
DATE = rf"{D}{{1,2}}[\-\/]{D}{{1,2}}[\-\/]{D}{{2,4}}"
ABMONTH = r"(?i:jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec)"
ABDAYS = r"(?i:mon|tue|tues|wed|thu|thurs|fri)"
ABSTATE = (
    r"(?:(?i:ala|ariz)|A(?i:rk)|(?i:calif|colo|conn|dak|del|fla|ga)|I(?i:ll)|(?i:ind|kans?|ky|la)"
    r"|M(?i:ass)|(?i:md|mich|minn)|M(?i:iss)|(?i:mo|mont|neb|nev|okla)|O(?i:re)|(?i:pa|penn|tenn|tex|va|vt)"
    r"|W(?i:ash)|(?i:wisc?|wyo))"
)
ABTITLE = (
    r"(?:(?i:mr|mrs|ms)|M(?i:iss)|(?i:drs?|profs?|sens?|reps?|attys?|lt|col|gen|messrs|govs?|adm|rev|maj"
    r"|sgt|cpl|pvt|mt|ft|capt|ste?|ave|pres|lieut|hon|brig|co?mdr|pfc|spc|supts?|det))"
)
ABPTIT = r"(?i:jr|sr|bros|(?:ed|ph)\.d|blvd|rd|esq)"
ABCOMP = r"(?i:inc|cos?|corp|pp?tys?|ltd|plc|bancorp|dept|bhd|assn|univ|intl|sys)"
ABCOMP2 = r"(?i:invt|elec|natl|m[ft]g)"
ABNUM = r"(?i:tel|est|ext|sq)"
# only before a number: "no. 5", "approx. 3"
ABBREV3 = r"(?:(?i:ca|figs?|prop|nos?|sect?s?|arts?|paras?|bldg|pp|op|approx|rs)|Pt)\."
ABBREV1 = rf"(?:{ABMONTH}|{ABDAYS}|{ABSTATE}|{ABCOMP}|{ABNUM}|{ABPTIT}|(?i:etc|al|seq))\."
ABBREV4 = ["[A-Za-z]", ABTITLE, r"(?i:vs|alex|wm|jos|cie|a\.k\.a|cf|treas)", *ACRO_ALTS, ABCOMP2]
ABBREV2 = [a + r"\." for a in ABBREV4]
# the sentence-end acronym rule also takes single letters ("I.", "a.")
ACRONYM = [r"[A-Za-z](?:\.[A-Za-z])*\.", *(a + r"\." for a in ACRO_ALTS[1:])]
_ACRO_FOLLOW = (
    "About|According|Additionally|After|An|A|As|At|But|Earlier|He|Her|Here|However|If|In|It|Last|Many"
    "|More|Mr\\.|Ms\\.|Now|Once|One|Other|Our|She|Since|So|Some|Such|That|The|Their|Then|There|These|They"
    "|This|We|When|While|What|Yet|You"
)
ACRO_FOLLOW = "(?:" + "|".join(w[0] + "(?i:" + w[1:] + ")" for w in _ACRO_FOLLOW.split("|")) + ")"
PHONE = (
    r"(?:(?:\([0-9]{2,3}\)[ \u00A0]?|(?:\+\+?)?(?:[0-9]{2,4}[\- \u00A0])?[0-9]{2,4}[\- \u00A0])"
    r"[0-9]{3,4}[\- \u00A0]?[0-9]{3,5}|(?:(?:\+\+?)?[0-9]{2,4}\.)?[0-9]{2,4}\.[0-9]{3,4}\.[0-9]{3,5})"
)
INSENTP = r"[,;:\u3001]"
QUOTES = [
    APOS, "''",
    "[`\u2018\u2019\u201A\u201B\u201C\u201D\u0091\u0092\u0093\u0094\u201E\u201F\u2039\u203A\u00AB\u00BB]{1,2}",
]
DBLQUOT = r"(?:\"|(?i:&quot;))"
TBSPEC = (
    rf"(?:-(?i:rrb|lrb|rcb|lcb|rsb|lsb)-|(?i:c\.d\.s|pro-|anti-|s(?:&|&amp;)p-500|s(?:&|&amp;)ls)"
    rf"|(?i:cap){APOS}(?i:n)|(?i:c){APOS}(?i:est))"
)
TBSPEC2 = rf"{APOS}[0-9][0-9]"
MISCSYMBOL = (
    "[+%&~^|\\\\\u00A6\u00A7\u00A8\u00A9\u00AC\u00AE\u00AF\u00B0-\u00B3\u00B4-\u00BA\u00D7\u00F7\u0387"
    "\u05BE\u05C0\u05C3\u05C6\u05F3\u05F4\u0600-\u0603\u0606-\u060A\u060C\u0614\u061B\u061E\u066A\u066D"
    "\u0703-\u070D\u07F6\u07F7\u07F8\u0964\u0965\u0E4F\u1FBD\u2016\u2017\u2020-\u2023\u2030-\u2038"
    "\u203B\u203E-\u2042\u2044\u207A-\u207F\u208A-\u208E\u2100-\u214F\u2190-\u21FF\u2200-\u2BFF\u3012"
    "\u30FB\uFF01-\uFF0F\uFF1A-\uFF20\uFF3B-\uFF40\uFF5B-\uFF65]"
)
LDOTS = r"(?:\.{3,5}|(?:\.[ \u00A0]){2,4}\.|[\u0085\u2026])"

_FRACTIONS = {"\u00BC": "1/4", "\u00BD": "1/2", "\u00BE": "3/4", "\u2153": "1/3"}
_CURRENCY = {"\u00A2": "cents", "\u00A3": "#", "\u0080": "$", "\u00A4": "$", "\u20A0": "$", "\u20AC": "$"}
_BRACKETS = {"(": "-LRB-", ")": "-RRB-", "{": "-LCB-", "}": "-RCB-", "[": "-LSB-", "]": "-RSB-"}


def _latex_quotes(tok: str, left: bool) -> str:
    if left:
        tok = re.sub(r"&apos;|'", "`", tok)
        tok = re.sub(r"\"|&quot;", "``", tok)
    else:
        tok = re.sub(r"&apos;|'", "'", tok)
        tok = re.sub(r"\"|&quot;", "''", tok)
    tok = re.sub("[\u0091\u2018\u201B\u2039]", "`", tok)
    tok = re.sub("[\u0092\u2019\u203A]", "'", tok)
    tok = re.sub("[\u0093\u201C\u00AB]", "``", tok)
    tok = re.sub("[\u0094\u201D\u00BB]", "''", tok)
    return tok


def _keep(t: str) -> str:
    return t


def _soft(t: str) -> str:
    t = t.replace("\u00AD", "")
    return t if t else "-"


def _nbsp(t: str) -> str:
    return t.replace(" ", "\u00A0")


def _phone(t: str) -> str:
    return _nbsp(t).replace("(", "-LRB-").replace(")", "-RRB-")


def _hyphens(t: str) -> str:
    return "--" if 3 <= len(t) <= 4 else t


# (pattern, trailing context or None, pushback, action). Order = JFlex rule order (ties).
# ``pushback`` n: the token is the match minus its last n characters, which are scanned again.
_RULES_SPEC = [
    (r"(?i:cannot|'twas|\u2019twas)", None, 3, _keep),
    (r"(?i:'tis|\u2019tis|gonna|gotta|lemme|gimme|wanna)", None, 2, _keep),
    (SGML, None, 0, _nbsp),
    (r"&(?i:md|mdash|ndash);|[\u0096\u0097\u2013\u2014\u2015]", None, 0, lambda t: "--"),
    (r"(?i:&amp;)", None, 0, lambda t: "&"),
    (r"&(?:HT|TL|UR|LR|QC|QL|QR|odq|cdq|#[0-9]+);", None, 0, _keep),
    (WORD, REDAUX, 0, _soft),
    (SWORD, SREDAUX, 0, _soft),
    (WORD, None, 0, _soft),
    (APOWORD, None, 0, _keep),
    (r"(?i:y)" + APOS, L, 0, _keep),
    (FULLURL, None, 0, _keep),
    (LIKELYURL, None, 0, _keep),
    (EMAIL, None, 0, _keep),
    (TWITTER, None, 0, _keep),
    (REDAUX, r"[^A-Za-z]", 0, lambda t: _latex_quotes(t, False)),
    (SREDAUX, None, 0, lambda t: _latex_quotes(t, False)),
    (DATE, None, 0, _keep),
    (NUMBER, None, 0, _soft),
    (r"[\u207A\u207B\u208A\u208B]?(?:[\u2070\u00B9\u00B2\u00B3\u2074-\u2079]+|[\u2080-\u2089]+)", None, 0, _keep),
    (FRAC, None, 0, _nbsp),
    ("[\u00BC\u00BD\u00BE\u2153-\u215E]", None, 0, lambda t: _FRACTIONS.get(t, t)),
    (TBSPEC, None, 0, lambda t: t.replace("&amp;", "&")),
    (THING3, None, 0, _keep),
    (r"(?:[A-Z]*\$|#)", None, 0, _keep),
    ("[\u00A2\u00A3\u00A4\u00A5\u0080\u20A0\u20AC\u060B\u0E3F\u20A4\uFFE0\uFFE1\uFFE5\uFFE6]", None, 0,
     lambda t: _CURRENCY.get(t, t)),
    (ACRONYM, rf"{SPACENL}+{ACRO_FOLLOW}{SPACENL}", "acronym", _keep),
    (ABBREV3, rf"{SPACENL}?{D}", 0, _keep),
    (ABBREV1, SENTEND, -1, _keep),
    (ABBREV1, r"[\s\S][\s\S]", 0, _keep),
    (ABBREV1, None, 0, _keep),
    (ABBREV2, None, 0, _keep),
    (ABBREV4, SPACE, 0, _keep),
    (ACRO_ALTS, SPACENL, 0, _keep),
    (TBSPEC2, SPACENL, 0, _keep),
    (WORD + r"\.", INSENTP, 0, _soft),
    (PHONE, None, 0, _phone),
    (DBLQUOT, r"[A-Za-z0-9$]", 0, lambda t: _latex_quotes(t, True)),
    (DBLQUOT, None, 0, lambda t: _latex_quotes(t, False)),
    (r"(?i:&lt;)|<", None, 0, lambda t: "<"),
    (r"(?i:&gt;)|>", None, 0, lambda t: ">"),
    (SMILEY, r"[\W_]", 0, lambda t: t.replace("(", "-LRB-").replace(")", "-RRB-")),
    (ASIANSMILEY, None, 0, lambda t: t.replace("(", "-LRB-").replace(")", "-RRB-")),
    (r"[{}\[\]()]", None, 0, lambda t: _BRACKETS[t]),
    (r"-+", None, 0, _hyphens),
    (LDOTS, None, 0, lambda t: "..."),
    (r"@+|#+|_+", None, 0, _keep),
    (r"\*+|(?:\\\*){1,3}", None, 0, _keep),
    (INSENTP, None, 0, _keep),
    (r"[?!]+", None, 0, _keep),
    ("[.\u00A1\u00BF\u037E\u0589\u061F\u06D4\u0700-\u0702\u07FA\u3002]", None, 0, _keep),
    (r"=", None, 0, _keep),
    (r"/", None, 0, _keep),
    (HTHING + r"\.", INSENTP, 0, _soft),
    (HTHING, None, 0, _soft),
    (THING + r"\.", INSENTP, 0, _keep),
    (THING, None, 0, _keep),
    (THINGA + r"\.", INSENTP, 0, lambda t: t.replace("&amp;", "&")),
    (THINGA, None, 0, lambda t: t.replace("&amp;", "&")),
    (r"'", r"[A-Za-z][^ \t\n\r\u00A0]", 0, lambda t: _latex_quotes(t, True)),
    (REDAUX, None, 0, lambda t: _latex_quotes(t, False)),
    (QUOTES, None, 0, lambda t: _latex_quotes(t, False)),
    (r"<<|>>", None, 0, _keep),
    (MISCSYMBOL, None, 0, _keep),
]


def _compile(spec):
    # Python's alternation takes the first alternative that matches, JFlex's DFA the longest:
    # a rule given as a list of alternatives becomes one entry per alternative (same action),
    # so that the longest-match loop below picks the longest of them.
    rules = []
    for pats, trail, pushback, action in spec:
        for pat in [pats] if isinstance(pats, str) else pats:
            rx = re.compile(f"(?:{pat})" + (f"(?={trail})" if trail else ""))
            # trailing context counts towards the longest match (JFlex semantics)
            trail_rx = re.compile(trail) if trail else None
            rules.append((rx, trail_rx, pushback, action))
    return rules


# ---- first-character prefilter: which rules can start with a given character --------------
# (computed from the parsed patterns, so only rules that can match are tried at each position)

def _class_of(items, icase):
    neg = False
    parts = []
    for op, av in items:
        if op is _sre.NEGATE:
            neg = True
        elif op is _sre.LITERAL:
            ch = chr(av)
            for x in {ch, ch.lower(), ch.upper()} if icase else {ch}:
                parts.append("\\U%08x" % ord(x))
        elif op is _sre.RANGE:
            lo, hi = av
            parts.append("\\U%08x-\\U%08x" % (lo, hi))
            if icase:
                a, b = chr(lo), chr(hi)
                if a.isalpha() and b.isalpha() and a.isascii() and b.isascii():
                    parts.append("\\U%08x-\\U%08x" % (ord(a.swapcase()), ord(b.swapcase())))
        elif op is _sre.CATEGORY:
            parts.append({_sre.CATEGORY_DIGIT: r"\d", _sre.CATEGORY_NOT_DIGIT: r"\D", _sre.CATEGORY_WORD: r"\w",
                          _sre.CATEGORY_NOT_WORD: r"\W", _sre.CATEGORY_SPACE: r"\s", _sre.CATEGORY_NOT_SPACE: r"\S"}[av])
        else:
            return None
    return ("[^" if neg else "[") + "".join(parts) + "]"

def _nested_pattern(op, av, icase):
    """(sub-pattern, its case folding, whether it must match at least once) for a group, a
    repeat or an atomic group; None for other ops."""
    if op is _sre.SUBPATTERN:
        _, add, dele, p = av
        return p, (icase or bool(add & re.IGNORECASE)) and not (dele & re.IGNORECASE), True
    if op in _REPEATS:
        lo, _, p = av
        return p, icase, lo > 0
    if op is _ATOMIC_GROUP:
        return av, icase, True
    return None

def _first_set(seq, icase=False):
    """(list of class strings or None meaning any char, nullable)"""
    out = []
    for op, av in seq:
        if op is _sre.LITERAL:
            return out + [_class_of([(op, av)], icase)], False
        if op is _sre.NOT_LITERAL or op is _sre.ANY:
            return None, False
        if op is _sre.IN:
            c = _class_of(av, icase)
            return (None if c is None else out + [c]), False
        if op is _sre.AT or op in (_sre.ASSERT, _sre.ASSERT_NOT):
            continue
        if op is _sre.BRANCH:
            nullable = False
            for alt in av[1]:
                f, n = _first_set(alt, icase)
                if f is None:
                    return None, False
                out += f
                nullable |= n
            if not nullable:
                return out, False
            continue
        nested = _nested_pattern(op, av, icase)
        if nested is not None:
            p, ic, consumes = nested
            f, n = _first_set(p, ic)
            if f is None:
                return None, False
            out += f
            if consumes and not n:
                return out, False
            continue
        return None, False
    return out, True

def _first_char_regex(pattern):
    """A regex matching every character that can start a match of ``pattern`` (a superset)."""
    f, nullable = _first_set(_sre_parser.parse(pattern))
    if f is None or nullable:
        return None
    return re.compile("|".join(f))


_RULES = _compile(_RULES_SPEC)
_FIRST = [_first_char_regex(rx.pattern) for rx, *_ in _RULES]
_CANDIDATES: dict[str, list] = {}


def _candidates(ch: str) -> list:
    c = _CANDIDATES.get(ch)
    if c is None:
        c = _CANDIDATES[ch] = [r for r, f in zip(_RULES, _FIRST) if f is None or f.match(ch)]
    return c
_SKIP = re.compile(rf"(?:{SPACE}|{NEWLINE}|[\u0000\u200B\u200E\u200F\uFEFF]|&nbsp;)+")
# Fast path: a run of ASCII letters ending at whitespace or the end of the string is one token
# for every rule that can match it, except the assimilations (cannot, gonna, ...).
_FAST = re.compile(r"[A-Za-z]+(?=[ \t\n]|$)")
_ASSIM = frozenset(["cannot", "gonna", "gotta", "lemme", "gimme", "wanna"])


def _raw_tokens(text: str, end: int | None = None) -> list[str]:
    """PTBLexer tokens of ``text[:end]`` (before lower-casing and filtering); what follows
    ``end`` is only seen by trailing contexts (the next line of the stream)."""
    out: list[str] = []
    n = len(text)
    end = n if end is None else end
    pos = 0
    while pos < end:
        m = _SKIP.match(text, pos)
        if m:
            pos = m.end()
            if pos >= end:
                break
        m = _FAST.match(text, pos)
        if m and m.group().lower() not in _ASSIM:
            out.append(m.group())
            pos = m.end()
            continue
        best_len, best = 0, None
        for rx, trail_rx, pushback, action in _candidates(text[pos]):
            m = rx.match(text, pos)
            if m is None:
                continue
            length = m.end() - pos
            if trail_rx is not None:
                length += trail_rx.match(text, m.end()).end() - m.end()
            if length > best_len:
                best_len, best = length, (m.end() - pos, pushback, action)
        if best is None:  # untokenizable character: PTBLexer deletes it (option firstDelete)
            pos += 1
            continue
        mlen, pushback, action = best
        if pushback == "acronym":  # "I." -> "I" then "."; "U.S." -> "U.S." then "." again
            keep = 1 if mlen == 2 else mlen
            out.append(action(text[pos:pos + keep]))
            pos += mlen - 1
        elif pushback > 0:  # token without its last characters, which are scanned again
            out.append(action(text[pos:pos + mlen - pushback]))
            pos += mlen - pushback
        elif pushback < 0:  # keep the whole token and scan its last character again
            out.append(action(text[pos:pos + mlen]))
            pos += mlen + pushback
        else:
            out.append(action(text[pos:pos + mlen]))
            pos += mlen
    return out


def _finish(tokens: list[str]) -> str:
    return " ".join(t for t in (tok.lower() for tok in tokens) if t not in PUNCTUATIONS)


_CONTEXT = 40  # characters of the next caption that trailing contexts may need


def ptb_tokenize(caption: str) -> str:
    """Tokenise one caption like pycocoevalcap's ``PTBTokenizer`` and return its output line.

    The result is lower case, tokens separated by single spaces, with the punctuation tokens of
    :data:`PUNCTUATIONS` removed: ``"A man's T-shirt (red)."`` gives
    ``"a man 's t-shirt -lrb- red -rrb-"``. Newlines in the caption count as spaces (as in
    pycocoevalcap). The caption is tokenised as if it were the only (or last) caption sent
    to the Java tokenizer; :func:`ptb_tokenize_many` tokenises a sequence as one stream.
    """
    return _finish(_raw_tokens(caption.replace("\n", " ")))


def ptb_tokenize_many(captions: Iterable[str]) -> list[str]:
    """Tokenise captions like one call of pycocoevalcap's ``PTBTokenizer.tokenize``.

    pycocoevalcap writes the captions one per line into a single file for the Java tokenizer,
    whose rules for abbreviations look a few characters past the end of a line (``"... next to
    a."`` keeps its ``a.`` unless the next caption starts with ``"A "``, ``"The "``...). Each
    caption is therefore tokenised with the start of the next one as context, in the order
    given (pycocoevalcap's order: the dict's ids, then each id's captions). Identical
    (caption, context) pairs are tokenised once.
    """
    caps = [c.replace("\n", " ") for c in captions]
    cache: dict[tuple[str, str | None], str] = {}
    out = []
    for i, c in enumerate(caps):
        ctx = caps[i + 1][:_CONTEXT] if i + 1 < len(caps) else None
        key = (c, ctx)
        r = cache.get(key)
        if r is None:
            toks = _raw_tokens(c) if ctx is None else _raw_tokens(c + "\n" + ctx, len(c))
            r = cache[key] = _finish(toks)
        out.append(r)
    return out
