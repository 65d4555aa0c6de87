"""Limits on a document's shape, checked before graphql-core validates it.

Validation is where a hostile document costs CPU: 1,100 copies of ``user { id }`` under one
``viewer`` kept a worker busy ~1.2 s in ``OverlappingFieldsCanBeMergedRule``, which compares
every pair of fields that share a response name (until graphql-core's own budget of 500,000
steps aborts it); a chain of fragments each spreading the next one twice makes Strawberry's
depth and alias limiters (and ``CostLimit``) walk 2^n selections (25 levels: minutes); and
fragments spreading each other in cycles make the depth limiter walk every path (8 fragments
that all spread each other: 0.2 s, 9: seconds). So before validation, in one linear pass that
never expands a fragment more than once, a document is measured and refused when:

- ``tokens``: it has more tokens than ``max_query_tokens`` (the parser's own limit, checked
  on the raw text so that the refusal costs no parse);
- ``selectionsPerSet``: one selection set, as written, holds more than
  ``max_selections_per_set`` selections (fields, fragment spreads, inline fragments);
- ``selections``: the document holds more than ``max_selections`` selections once every
  fragment spread is counted as the fragment's selections (each fragment definition counts
  too, as graphql-core validates it on its own);
- ``mergeComparisons``: checking that same-named fields can be merged could take more than
  ``max_merge_comparisons`` steps (``merge_comparisons`` below);
- its fragments spread each other in a cycle (which validation refuses anyway, but only
  after the depth limiter has walked every path through the cycle).

Both the raw text (``on_parse``, before the parser runs: parsing 5,000 tokens costs ~40 ms
on the benchmark machine, reading them here ~3-5 ms) and the parsed document (``on_validate``,
before ``ValidationCache``) are measured; the parsed document is authoritative, the text
reader only makes refusals cheap (a text it cannot follow is left to the parser). A text that
passed is remembered (a bounded cache), so a dashboard sending the same document again pays a
dictionary lookup. bench/hostile_documents.py measures all of it.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice

from graphql import (
    DocumentNode, FieldNode, FragmentDefinitionNode, InlineFragmentNode, OperationDefinitionNode,
    SelectionSetNode,
)
from strawberry.extensions import SchemaExtension

from auth.errors import BadInput

# A selection, in the form both readers (text and parsed document) produce:
#   (FIELD, response name, number of arguments, sub-selections or None, scope)
#   (SPREAD, fragment name)
#   (INLINE, sub-selections)
# A field's scope names its parent type without the schema: the nearest type condition, then
# the names of the fields from there ("", "Viewer", ".viewer.user", "Account.invoices"). Two
# fields of the same scope and name have the same definition, so the merge check compares their
# types at no cost; fields of different scopes may cost it ``TYPE_STEPS`` more.
FIELD, SPREAD, INLINE = 0, 1, 2
# graphql-core's ``do_types_conflict`` spends one unit per level of list and non-null wrapping
# while two types are different objects: 4 for this schema's deepest output types (``[T!]!``;
# tests/test_document_limits.py checks that none is deeper).
TYPE_STEPS = 4
Selections = list[tuple]


@dataclass
class Shape:
    """What the limits look at: each definition's selections, and the widest selection set."""

    # (fragment name, or None for an operation; its selections), in document order.
    definitions: list[tuple[str | None, Selections]]
    widest: int = 0
    # Where it is: "" (an operation's top level), a field's response name, "fragment F".
    widest_at: str = ""
    # The first of the widest in document order (both readers name the same one).
    widest_rank: int = 0
    opened: int = 0  # selection sets seen so far, in document order

    def note(self, length: int, where: str, rank: int) -> None:
        if length > self.widest or (length == self.widest and rank < self.widest_rank):
            self.widest, self.widest_at, self.widest_rank = length, where, rank

    def where(self) -> str:
        if not self.widest_at:
            return "at the top of an operation"
        if self.widest_at.startswith("fragment "):
            return f"in {self.widest_at}"
        return f"under `{self.widest_at}`"


# --------------------------------------------------------------------------- measures


def _direct(selections: Selections) -> tuple[int, list[str]]:
    """The selections of one definition, nested ones included, and the fragments it spreads
    (once per spread)."""
    count = 0
    spreads: list[str] = []
    stack = [selections]
    while stack:
        for item in stack.pop():
            count += 1
            kind = item[0]
            if kind == FIELD:
                if item[3] is not None:
                    stack.append(item[3])
            elif kind == INLINE:
                stack.append(item[1])
            else:
                spreads.append(item[1])
    return count, spreads


def count_selections(shape: Shape, cap: int) -> tuple[int, list[str] | None]:
    """(The selections once every spread is replaced by its fragment's selections, summed
    over the definitions, at most ``cap`` + 1; a cycle of fragment spreads, or None).

    Each fragment is counted once, after the fragments it spreads (a depth-first walk without
    recursion: chains can be long), so a chain of fragments each spreading the next twice
    costs one step per spread, not 2^n. A cycle stops the count (its names are returned, the
    first one repeated at the end)."""
    fragments = {name: selections for name, selections in shape.definitions if name is not None}
    direct = {name: _direct(selections) for name, selections in fragments.items()}
    expanded: dict[str, int] = {}

    def size(own: int, spreads: list[str]) -> int:
        total = own
        for spread in spreads:
            total += expanded.get(spread, 0)  # an unknown fragment: validation's to report
            if total > cap:
                return cap + 1
        return total

    on_path: set[str] = set()
    for start in fragments:
        if start in expanded:
            continue
        path = [start]
        targets = [iter(direct[start][1])]
        on_path.add(start)
        while path:
            for target in targets[-1]:
                if target in on_path:
                    return cap + 1, [*path[path.index(target):], target]
                if target in fragments and target not in expanded:
                    path.append(target)
                    targets.append(iter(direct[target][1]))
                    on_path.add(target)
                    break
            else:
                name = path.pop()
                targets.pop()
                on_path.discard(name)
                expanded[name] = size(*direct[name])
    total = 0
    for name, selections in shape.definitions:
        own = direct[name] if name is not None and fragments[name] is selections else _direct(selections)
        total += size(*own)
        if total > cap:
            return cap + 1, None
    return total, None


def unknown_fragment(shape: Shape) -> str | None:
    """The first fragment spread whose fragment the document does not define, if any."""
    defined = {name for name, _ in shape.definitions if name is not None}
    for _name, selections in shape.definitions:
        for spread in _direct(selections)[1]:
            if spread not in defined:
                return spread
    return None


_NOTHING: Selections = []


def merge_comparisons(shape: Shape, cap: int) -> int:
    """An upper bound of the work of ``OverlappingFieldsCanBeMergedRule``, in the units of its
    own budget (graphql-core spends 2 per pair of fields compared, 1 per response name looked
    up when two selection sets are compared, 1 per argument compared, 1 per fragment spread
    resolved, up to ``TYPE_STEPS`` to compare two types); at most ``cap`` + 1.

    The rule compares fields that share a response name at the same place of the response,
    fragments spread in, through every level. So each definition is expanded (fragments are
    spread where they are used: call this only when ``count_selections`` is within its limit)
    and merged by response path. Where ``c`` fields merge, with ``a`` arguments between them,
    their pairs cost ``c(c-1) + (c-1)a`` (and ``TYPE_STEPS`` for each pair of different
    scopes); where ``k`` selection sets merge (the fields' sub-selections and the fragments
    spread there), with ``n`` response names between them, comparing them costs
    ``k(k-1) + (k-1)n``. Nested repeats multiply: ``viewer { user { id } }`` k times, each with
    m copies of ``user``, merges k·m ``user`` fields in one place.
    """
    fragments = {name: selections for name, selections in shape.definitions if name is not None}
    work = 0
    for _name, root in shape.definitions:
        places: list[list[Selections]] = [[root]]
        while places:
            queue = places.pop()
            groups: dict[str, list] = {}
            names = 0
            index = 0
            while index < len(queue):  # the queue grows with the fragments spread here
                items = list(queue[index])
                index += 1
                seen: set[str] = set()
                position = 0
                while position < len(items):  # inline fragments join their selection set
                    item = items[position]
                    position += 1
                    kind = item[0]
                    if kind == FIELD:
                        name = item[1]
                        seen.add(name)
                        group = groups.get(name)
                        if group is None:
                            group = groups[name] = [0, 0, [], {}]
                        group[0] += 1
                        group[1] += item[2]
                        if item[3] is not None:
                            group[2].append(item[3])
                        scopes = group[3]
                        scopes[item[4]] = scopes.get(item[4], 0) + 1
                    elif kind == INLINE:
                        items.extend(item[1])
                    else:
                        work += 1  # resolving the spread
                        # An unknown fragment is compared too (as nothing): validation reports it.
                        queue.append(fragments.get(item[1], _NOTHING))
                names += len(seen)
            merged = len(queue)
            work += merged * (merged - 1) + (merged - 1) * names
            for count, arguments, subs, scopes in groups.values():
                work += count * (count - 1) + (count - 1) * arguments
                if len(scopes) > 1:  # pairs across scopes: their types may be compared
                    across = count * (count - 1) - sum(n * (n - 1) for n in scopes.values())
                    work += across // 2 * TYPE_STEPS
                if subs:
                    places.append(subs)
            if work > cap:
                return cap + 1
    return work


# --------------------------------------------------------------------------- readers

# GraphQL's lexical grammar: ignored characters, then a comment or a token. Every branch
# either matches at once or consumes what it can without backtracking (possessive ``*+``), so
# a hostile text is read in linear time: a string that does not end before its line does (or
# a block string before the text does) is one token, recognised as unterminated afterwards;
# anything else (a stray character) is the last branch. The parser will refuse those.
_LEXEME = re.compile(
    r'[ \t\n\r,\ufeff]*+('
    r'#[^\n\r]*+'
    r'|"""(?:[^"\\]|\\"""|\\|"(?!""))*+(?:"""|\Z)'
    r'|"(?:[^"\\\n\r]|\\[^\n\r])*+(?:"|[\n\r]|\Z)'
    r'|\.\.\.'
    r'|-?[0-9]++(?:\.[0-9]++)?(?:[eE][+-]?[0-9]++)?'
    r'|[_A-Za-z][_0-9A-Za-z]*+'
    r'|.)',
    re.S,
)
_STRING = re.compile(r'"""(?:[^"\\]|\\"""|\\|"(?!""))*+"""|"(?:[^"\\\n\r]|\\[^\n\r])*+"', re.S)
_IGNORED = " \t\n\r,\ufeff"
_SINGLE = frozenset("!$&():=@[]{|}_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_NAME_START = frozenset("_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_OPERATIONS = frozenset(("query", "mutation", "subscription"))
_END = "\x00"  # after the last token (never a token: NUL is not GraphQL)
TOO_MANY_TOKENS = -1


def lex(text: str, max_tokens: int) -> list[str] | int | None:
    """The significant tokens of ``text``; ``TOO_MANY_TOKENS`` when there are more than
    ``max_tokens`` (counted as graphql-core counts them: comments too); None when ``text``
    holds something that is not a GraphQL token. One ``findall``: the loop is in C; a long
    text is first counted up to the limit only (``findall`` on 100 kB takes ~14 ms)."""
    text = text.rstrip(_IGNORED)  # so that every match ends in a token (no retries)
    if len(text) > 20_000 and len(list(islice(_LEXEME.finditer(text), max_tokens + 1))) > max_tokens:
        return TOO_MANY_TOKENS
    tokens = _LEXEME.findall(text)
    if len(tokens) > max_tokens:
        return TOO_MANY_TOKENS
    if "#" in text:
        tokens = [token for token in tokens if token[0] != "#"]
    for token in set(tokens):
        if len(token) == 1 and token not in _SINGLE:
            return None  # a stray character (or a lone quote)
        if token[0] == '"' and (token[-1] in "\n\r" or (token is tokens[-1] and not _STRING.fullmatch(token))):
            return None  # a string that does not end
    return tokens


class _Unreadable(Exception):
    """The tokens do not follow the grammar the reader knows: the parser decides."""


def shape_of_tokens(tokens: list[str]) -> Shape:
    """The shape of a document from its tokens, without building a syntax tree. Raises
    ``_Unreadable`` for what is not an executable document (the parser and validation then
    say what is wrong with it). One loop over the tokens, no recursion."""
    tokens = [*tokens, _END, _END, _END]  # lookahead never runs past the end
    shape = Shape([])
    names = _NAME_START

    def skip_parentheses(i: int) -> tuple[int, int]:
        """From a "(" to after its ")": (that index, the arguments held: top-level colons)."""
        depth = 0
        nested = 0
        colons = 0
        while True:
            token = tokens[i]
            i += 1
            if token == "(":
                depth += 1
            elif token == ")":
                depth -= 1
                if depth == 0:
                    return i, colons
            elif token == "[" or token == "{":
                nested += 1
            elif token == "]" or token == "}":
                nested -= 1
            elif token == ":":
                if depth == 1 and nested == 0:
                    colons += 1
            elif token is _END:
                raise _Unreadable

    def skip_directives(i: int) -> int:
        while tokens[i] == "@":
            if tokens[i + 1][0] not in names:
                raise _Unreadable
            i += 2
            if tokens[i] == "(":
                i = skip_parentheses(i)[0]
        return i

    def selection_set(i: int, owner: str, scope: str) -> tuple[Selections, int]:
        """From a "{" to after its "}"."""
        if tokens[i] != "{":
            raise _Unreadable
        root: Selections = []
        stack: list[tuple[Selections, str, int, str]] = [(root, owner, shape.opened, scope)]
        shape.opened += 1
        current = root
        append = current.append
        i += 1
        while True:
            token = tokens[i]
            first = token[0]
            if first in names:
                following = tokens[i + 1]
                field_name = token
                i += 1
                if following == ":":
                    field_name = tokens[i + 1]
                    if field_name[0] not in names:
                        raise _Unreadable
                    i += 2
                    following = tokens[i]
                arguments = 0
                if following == "(":
                    i, arguments = skip_parentheses(i)
                    following = tokens[i]
                if following == "@":
                    i = skip_directives(i)
                    following = tokens[i]
                if following == "{":
                    sub: Selections = []
                    append((FIELD, token, arguments, sub, scope))
                    stack.append((sub, token, shape.opened, f"{scope}.{field_name}"))
                    shape.opened += 1
                    current = sub
                    append = sub.append
                    scope = stack[-1][3]
                    i += 1
                else:
                    append((FIELD, token, arguments, None, scope))
            elif token == "}":
                done, where, rank, _scope = stack.pop()
                if len(done) >= shape.widest:
                    shape.note(len(done), where, rank)
                i += 1
                if not stack:
                    return root, i
                current = stack[-1][0]
                append = current.append
                scope = stack[-1][3]
            elif token == "...":
                following = tokens[i + 1]
                if following == "on" or following == "{" or following == "@":
                    if following == "on":
                        scope = tokens[i + 2]
                        if scope[0] not in names:
                            raise _Unreadable
                        i += 3
                    else:
                        i += 1
                    i = skip_directives(i)
                    if tokens[i] != "{":
                        raise _Unreadable
                    sub = []
                    append((INLINE, sub))
                    stack.append((sub, stack[-1][1], shape.opened, scope))
                    shape.opened += 1
                    current = sub
                    append = sub.append
                    i += 1
                elif following[0] in names:
                    append((SPREAD, following))
                    i += 2
                    if tokens[i] == "(":
                        i = skip_parentheses(i)[0]
                    i = skip_directives(i)
                else:
                    raise _Unreadable
            else:
                raise _Unreadable

    i = 0
    while True:
        token = tokens[i]
        if token is _END:
            return shape
        if token[0] == '"':
            i += 1  # a description
        elif token == "{":
            selections, i = selection_set(i, "", "")
            shape.definitions.append((None, selections))
        elif token in _OPERATIONS:
            i += 1
            if tokens[i][0] in names:
                i += 1
            if tokens[i] == "(":
                i = skip_parentheses(i)[0]
            i = skip_directives(i)
            selections, i = selection_set(i, "", "")
            shape.definitions.append((None, selections))
        elif token == "fragment":
            name = tokens[i + 1]
            if name[0] not in names:
                raise _Unreadable
            i += 2
            if tokens[i] == "(":
                i = skip_parentheses(i)[0]
            type_condition = tokens[i + 1]
            if tokens[i] != "on" or type_condition[0] not in names:
                raise _Unreadable
            i = skip_directives(i + 2)
            selections, i = selection_set(i, f"fragment {name}", type_condition)
            shape.definitions.append((name, selections))
        else:
            raise _Unreadable


def shape_of_document(document: DocumentNode) -> Shape:
    """The shape of a parsed document (definitions other than operations and fragments are
    validation's to refuse)."""
    shape = Shape([])
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            shape.definitions.append((None, _convert(definition.selection_set, "", "", shape)))
        elif isinstance(definition, FragmentDefinitionNode):
            name = definition.name.value
            shape.definitions.append((name, _convert(
                definition.selection_set, f"fragment {name}", definition.type_condition.name.value, shape,
            )))
    return shape


def _convert(selection_set: SelectionSetNode | None, owner: str, scope: str, shape: Shape) -> Selections:
    """Selection sets in document order (a stack, children pushed last first): no recursion."""
    root: Selections = []
    stack: list[tuple[SelectionSetNode | None, Selections, str, str]] = [(selection_set, root, owner, scope)]
    while stack:
        node, target, where, scope = stack.pop()
        selections = node.selections if node is not None else ()
        shape.note(len(selections), where, shape.opened)
        shape.opened += 1
        children = []
        for selection in selections:
            if isinstance(selection, FieldNode):
                name = (selection.alias or selection.name).value
                if selection.selection_set is None:
                    target.append((FIELD, name, len(selection.arguments or ()), None, scope))
                else:
                    sub: Selections = []
                    target.append((FIELD, name, len(selection.arguments or ()), sub, scope))
                    children.append((selection.selection_set, sub, name, f"{scope}.{selection.name.value}"))
            elif isinstance(selection, InlineFragmentNode):
                sub = []
                target.append((INLINE, sub))
                condition = selection.type_condition
                children.append((selection.selection_set, sub, where, condition.name.value if condition else scope))
            else:
                target.append((SPREAD, selection.name.value))
        stack.extend(reversed(children))
    return root


# --------------------------------------------------------------------------- the limits


class DocumentLimits:
    """The limits and a bounded memory of the texts that passed them; one per application,
    shared by the per-request extensions."""

    def __init__(
        self,
        *,
        max_tokens: int,
        max_selections_per_set: int,
        max_selections: int,
        max_merge_comparisons: int,
        remember: int = 256,
    ) -> None:
        self.max_tokens = max_tokens
        self.max_selections_per_set = max_selections_per_set
        self.max_selections = max_selections
        self.max_merge_comparisons = max_merge_comparisons
        self.remember = remember
        self._passed: OrderedDict[str, None] = OrderedDict()

    def extension(self) -> DocumentLimitsExtension:
        return DocumentLimitsExtension(self)

    def passed(self, text: str | None) -> bool:
        if text is None or text not in self._passed:
            return False
        self._passed.move_to_end(text)
        return True

    def check_text(self, text: str) -> None:
        """Refuses ``text`` when its tokens are over a limit; a text the reader cannot follow
        is left to the parser (and then to ``check_document``)."""
        tokens = lex(text, self.max_tokens)
        if tokens == TOO_MANY_TOKENS:
            raise BadInput(
                f"Syntax Error: Document contains more than {self.max_tokens} tokens. Parsing aborted.",
                limit="tokens", maxTokens=self.max_tokens,
            )
        if tokens is None:
            return
        try:
            shape = shape_of_tokens(tokens)  # type: ignore[arg-type]
        except _Unreadable:
            return
        self.check(shape)

    def check_document(self, document: DocumentNode, text: str | None) -> None:
        self.check(shape_of_document(document))
        if text is not None:
            self._passed[text] = None
            if len(self._passed) > self.remember:
                self._passed.popitem(last=False)

    def check(self, shape: Shape) -> None:
        if shape.widest > self.max_selections_per_set:
            raise BadInput(
                f"A selection set ({shape.where()}) holds {shape.widest} selections; the "
                f"limit is {self.max_selections_per_set}. Select each field once.",
                limit="selectionsPerSet", selections=shape.widest,
                maxSelectionsPerSet=self.max_selections_per_set,
            )
        unknown = unknown_fragment(shape)
        if unknown is not None:
            # Validation would say so too, but the depth limiter's rule walks the spreads first
            # and fails on a name it cannot find.
            raise BadInput(f'Unknown fragment "{unknown}".')
        selections, cycle = count_selections(shape, self.max_selections)
        if cycle is not None:
            raise BadInput(
                f"Cannot spread fragment '{cycle[0]}' within itself "
                f"({' -> '.join(cycle)}).",
                limit="fragmentCycles",
            )
        if selections > self.max_selections:
            raise BadInput(
                f"The document holds more than {self.max_selections} selections once its "
                f"fragments are spread; the limit is {self.max_selections}. Ask for fewer "
                f"fields, or spread fragments fewer times.",
                limit="selections", maxSelections=self.max_selections,
            )
        comparisons = merge_comparisons(shape, self.max_merge_comparisons)
        if comparisons > self.max_merge_comparisons:
            raise BadInput(
                f"Fields that share a response name would take more than "
                f"{self.max_merge_comparisons} comparisons to merge; the limit is "
                f"{self.max_merge_comparisons}. Select each field once per place.",
                limit="mergeComparisons", maxMergeComparisons=self.max_merge_comparisons,
            )


class DocumentLimitsExtension(SchemaExtension):
    """Measures the text before it is parsed and the document before it is validated. Put it
    before the parser cache (its ``on_parse`` must run before the parse) and before
    ``ValidationCache`` (whose ``on_validate`` validates)."""

    def __init__(self, limits: DocumentLimits) -> None:
        self.limits = limits

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        text = context.query
        if context.graphql_document is None and isinstance(text, str) and not self.limits.passed(text):
            self.limits.check_text(text)
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        text = context.query if isinstance(context.query, str) else None
        if context.graphql_document is not None and not self.limits.passed(text):
            self.limits.check_document(context.graphql_document, text)
        yield
