"""A generic demo policy: a plausible RLM run over any context, with no language ability.

Root turns follow a fixed plan (peek, map chunks through ``llm_query_batched``, reduce with
``FINAL``); sub-calls answer by keyword overlap between the question and the chunk's lines. That
is enough to find a needle line in a haystack, which is what the demo, the notebooks and the
benchmarks need, and it keeps every run deterministic.
"""

from __future__ import annotations

import re

from ._request import ScriptedRequest, find_question

NOT_FOUND = "NOT FOUND"

_TOKEN = re.compile(r"[A-Za-z0-9]+(?:[-_.][A-Za-z0-9]+)*")
_BODY_MARKER = re.compile(
    r"^[ \t]*(?:chunk|context|text|document|passage|data|excerpt)\b[^\n:]{0,40}:[ \t]*\n?",
    re.IGNORECASE | re.MULTILINE,
)
_MAX_ANSWER_CHARS = 500

STOPWORDS = frozenset("""
about above according across after again against also among answer anything around because
been before being below between both came can't cannot chunk come context could did does doing
done down during each either else every find following from give given have having here hers
into just know like line lines list made make many mention mentioned might more most much must
never none once only onto other ours over please question quite rather really said same says
should show since some such tell text than that their theirs them then there these they thing
things this those though through under until upon very want what whatever when where whether
which while whom whose will with within without would your yours document documents data
""".split())


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens; identifiers such as ``XK-4821`` or ``v1.2`` stay whole."""
    return [t.lower() for t in _TOKEN.findall(text)]


def keywords(question: str) -> list[str]:
    """Words of 4+ letters that are not stopwords, plus any token holding a digit, in order."""
    seen: list[str] = []
    for tok in tokens(question):
        if tok in seen or tok in STOPWORDS:
            continue
        if len(tok) >= 4 or any(ch.isdigit() for ch in tok):
            seen.append(tok)
    return seen


def best_line(question: str, text: str, min_hits: int = 1) -> str | None:
    """The line of ``text`` sharing the most keywords with ``question`` (first on ties)."""
    wanted = set(keywords(question))
    if not wanted:
        return None
    best, best_hits = None, 0
    for line in text.splitlines():
        hits = len(wanted.intersection(tokens(line)))
        if hits > best_hits:
            best, best_hits = line, hits
    if best is None or best_hits < min_hits:
        return None
    return best.strip()[:_MAX_ANSWER_CHARS]


def split_prompt(prompt: str) -> tuple[str, str]:
    """(question, text to search) from a sub-call prompt.

    The question is a "Question:" line if there is one, else the first line; the text is what
    follows a "Chunk:"/"Context:"/"Text:" marker if present, else the rest of the prompt.
    """
    question = find_question(prompt)
    marker = _BODY_MARKER.search(prompt)
    if question is not None:
        if marker:
            body = prompt[marker.end():]
        else:
            body = "\n".join(line for line in prompt.splitlines()
                             if question not in line)
        return question, body
    head, _, rest = prompt.partition("\n")
    if marker and marker.start() >= len(head):
        rest = prompt[marker.end():]
    return head, rest


def answer_from_prompt(prompt: str, req: ScriptedRequest | None = None) -> str:
    """The default sub-call rule: quote the prompt's line that best matches its question.

    Returns ``"NOT FOUND"`` when no line shares a keyword with the question (or there is no
    text besides the question), the convention the demo's reduce step relies on.
    """
    question, body = split_prompt(prompt)
    if not body.strip():
        return NOT_FOUND
    return best_line(question, body) or NOT_FOUND


def demo_sub(prompt: str, req: ScriptedRequest | None = None) -> str:
    return answer_from_prompt(prompt, req)


_PEEK = '''\
I'll start by looking at what `context` is and how big it is.

```repl
if isinstance(context, str):
    kind = "str"
    peek = context[:300]
elif isinstance(context, dict):
    kind = "dict"
    peek = str(list(context.keys())[:10])[:300]
elif isinstance(context, (list, tuple)):
    kind = "list"
    peek = str(context[:5])[:300]
elif hasattr(context, "columns"):
    kind = "DataFrame"
    peek = str(context)[:300]
else:
    kind = "object"
    peek = str(context)[:300]
try:
    size = len(context)
except Exception:
    size = len(str(context))
print("context type:", kind)
print("context length:", size)
print("peek:", peek)
```'''

_MAP = '''\
The context is too large to read at once. I'll split it into chunks by lines and ask a \
sub-model about each chunk in parallel.

```repl
question = {question!r}
if isinstance(context, str):
    text = context
elif isinstance(context, (list, tuple)):
    text = "\\n".join(str(item) for item in context)
elif isinstance(context, dict):
    text = "\\n".join(f"{{key}}: {{value}}" for key, value in context.items())
else:
    try:
        text = context.to_csv(index=False)
    except Exception:
        text = str(context)
lines = text.splitlines()
n_chunks = max(8, min(16, len(text) // 50000 + 1), -(-len(text) // 1000000))
if len(lines) >= n_chunks:
    size = -(-len(lines) // n_chunks)
    chunks = ["\\n".join(lines[i:i + size]) for i in range(0, len(lines), size)]
else:
    size = max(1, -(-len(text) // n_chunks))
    chunks = [text[i:i + size] for i in range(0, len(text), size)]
prompts = [
    "Answer the question using only this chunk of a larger document. Reply with the most "
    "relevant line, or NOT FOUND if the chunk does not help.\\n"
    f"Question: {{question}}\\n\\nChunk:\\n{{chunk}}"
    for chunk in chunks
]
answers = llm_query_batched(prompts)
print(f"{{len(chunks)}} chunks")
for i, ans in enumerate(answers):
    print(f"chunk {{i}}: {{ans[:200]}}")
```'''

_REDUCE = '''\
I'll keep the chunks that found something and give them as the answer.

```repl
found = []
for ans in answers:
    ans = ans.strip()
    if ans and "NOT FOUND" not in ans and not ans.lower().startswith("error") and ans not in found:
        found.append(ans)
if found:
    FINAL("\\n".join(found))
else:
    FINAL("I could not find it")
```'''

_GIVE_UP = "The map step did not work out, so I'll stop here.\n\nFINAL(I could not find it)"


def demo_root(req: ScriptedRequest) -> str:
    """Root turns of the demo: 1 peek, 2 map over chunks, 3 reduce and FINAL, later give up."""
    if req.turn <= 1:
        return _PEEK
    if req.turn == 2:
        return _MAP.format(question=req.question)
    if req.turn == 3:
        return _REDUCE
    return _GIVE_UP
