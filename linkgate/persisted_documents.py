"""Persisted documents: a request may name its document by hash instead of sending it.

- **Automatic persisted queries** (Apollo's APQ protocol, any client):
  ``extensions.persistedQuery = {"version": 1, "sha256Hash": "<hex>"}``. Without ``query``,
  the document registered under the hash runs, or the answer is ``PersistedQueryNotFound``
  (HTTP 200, as Apollo Server answers it: apollo-client and urql then send the document with
  its hash). With ``query``, the hash must be the document's, and the document is registered
  once it has passed every limit and validation (``RegisterPersistedQueries``), so nothing
  refused is ever kept. The registry is this process's memory, a least-recently-used list of
  ``LINKGATE_PERSISTED_QUERY_CACHE_SIZE`` documents: another replica, or a restart, answers
  a miss and the client sends the document again, which is the protocol working as designed.
- **Trusted documents** (``LINKGATE_TRUSTED_DOCUMENTS``): graphql-codegen's
  ``persisted-documents.json``, checked whole at startup (``TrustedDocuments.load``), named
  by ``documentId`` (GraphQL over HTTP: ``sha256:<hex>`` or ``<hex>``) or by the APQ hash.
  They are parsed and validated once, at startup, and never again. With
  ``LINKGATE_TRUSTED_DOCUMENTS_ONLY`` nothing is registered, a hash outside the manifest is
  refused, and ``schema.trusted_documents`` refuses any other text to customers.

A hash becomes its document text here, before GraphQL sees the request, so the limits, the
batch rules and the caches meet the same text whichever way it came.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson
from graphql import DocumentNode, GraphQLError, GraphQLSchema, parse
from graphql.validation import ASTValidationRule
from strawberry.extensions import SchemaExtension, ValidationCache
from strawberry.schema.schema import validate_document

from auth.errors import BadInput
from linkgate.request_body import Operation, json_kind
from linkgate.settings import ConfigurationError
from schema.document_limits import DocumentLimits
from schema.parsing import CachedParsing
from schema.trusted_documents import TRUSTED_ONLY

SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# Apollo's APQ protocol has one version: SHA-256 of the document's UTF-8 text, in hex.
APQ_VERSION = 1
NOT_FOUND_MESSAGE = "PersistedQueryNotFound"  # apollo-client matches the message, not the code
NOT_FOUND_CODE = "PERSISTED_QUERY_NOT_FOUND"
# Apollo Server's header on a miss: a CDN must not keep the answer to a GET.
NOT_FOUND_CACHE_CONTROL = "private, no-cache, must-revalidate"
MANIFEST = "LINKGATE_TRUSTED_DOCUMENTS"


def document_hash(text: str) -> str:
    """The SHA-256 of ``text`` as APQ and graphql-codegen compute it: UTF-8, lowercase hex."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def not_found_error() -> GraphQLError:
    """The error apollo-client, urql and Relay's APQ links answer by resending the document."""
    return GraphQLError(NOT_FOUND_MESSAGE, extensions={"code": NOT_FOUND_CODE})


# --------------------------------------------------------------------------- the two stores


class AutomaticPersistedQueries:
    """Registered documents by hash: at most ``size`` of them, the least recently used
    leaving first, so no client can grow the process's memory with new ones."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._texts: OrderedDict[str, str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._texts)

    def get(self, digest: str) -> str | None:
        text = self._texts.get(digest)
        if text is not None:
            self._texts.move_to_end(digest)
        return text

    def register(self, digest: str, text: str) -> None:
        """Keeps ``text`` under ``digest``, if that is its hash (a client cannot store one
        document under another's hash, whichever way it reached the schema)."""
        if self._texts.get(digest) == text:
            self._texts.move_to_end(digest)
            return
        if document_hash(text) != digest:
            return
        self._texts[digest] = text
        self._texts.move_to_end(digest)
        while len(self._texts) > self.size:
            self._texts.popitem(last=False)


@dataclass(frozen=True, slots=True)
class TrustedDocument:
    digest: str
    text: str
    document: DocumentNode  # parsed and validated at startup


class TrustedDocuments:
    """The manifest: each document by hash and by text, with its parsed document. ``text in
    manifest`` is what ``schema.trusted_documents`` asks."""

    def __init__(self, documents: Iterable[TrustedDocument]) -> None:
        self._by_hash = {document.digest: document for document in documents}
        self._by_text = {document.text: document for document in self._by_hash.values()}
        # The parsed documents, by identity: the only ones ``TrustedValidation`` lets through.
        self._validated = {id(document.document) for document in self._by_hash.values()}

    def __len__(self) -> int:
        return len(self._by_hash)

    def __contains__(self, text: object) -> bool:
        return isinstance(text, str) and text in self._by_text

    def get(self, digest: str) -> TrustedDocument | None:
        return self._by_hash.get(digest)

    def parsed(self, text: object) -> DocumentNode | None:
        found = self._by_text.get(text) if isinstance(text, str) else None
        return found.document if found is not None else None

    def validated(self, document: DocumentNode | None) -> bool:
        return document is not None and id(document) in self._validated

    @classmethod
    def load(
        cls,
        path: Path,
        *,
        schema: GraphQLSchema,
        rules: Sequence[type[ASTValidationRule]],
        limits: DocumentLimits,
    ) -> TrustedDocuments:
        """Reads the manifest and checks every entry: its hash, and its document against the
        token and shape limits and the validation rules every request meets. Anything wrong
        is a ``ConfigurationError`` in one line naming the setting, the file and the entry."""
        try:
            data = orjson.loads(path.read_bytes())
        except OSError as error:
            raise ConfigurationError(f"{MANIFEST}: cannot read {path}: {error.strerror or error}") from None
        except orjson.JSONDecodeError as error:
            raise ConfigurationError(f"{MANIFEST}: {path} is not JSON ({_one_line(str(error))})") from None
        if not isinstance(data, dict) or not data:
            raise ConfigurationError(
                f"{MANIFEST}: {path} must be a JSON object of SHA-256 hashes to documents, as "
                f"graphql-codegen's client preset writes persisted-documents.json; got "
                f"{'an empty object' if data == {} else json_kind(data)}"
            )
        documents = []
        for digest, text in data.items():
            documents.append(_checked(path, digest, text, schema, rules, limits))
        return cls(documents)


def _checked(
    path: Path, digest: str, text: Any, schema: GraphQLSchema,
    rules: Sequence[type[ASTValidationRule]], limits: DocumentLimits,
) -> TrustedDocument:
    def problem(what: str) -> ConfigurationError:
        return ConfigurationError(f"{MANIFEST}: {path}: {_one_line(what)}")

    if not SHA256_HEX.fullmatch(digest):
        raise problem(
            f"the key {digest[:80]!r} is not a SHA-256 in lowercase hex (64 digits); make the "
            "manifest with the client preset's persistedDocuments: { hashAlgorithm: 'sha256' }"
        )
    if not isinstance(text, str):
        raise problem(f"the document under {digest} is {json_kind(text)}, not a string")
    try:
        actual = document_hash(text)
    except UnicodeEncodeError:
        raise problem(f"the document under {digest} holds a lone surrogate, which is not text") from None
    if actual != digest:
        raise problem(
            f"the document under {digest} has the hash {actual}: the file was edited after "
            "it was generated, or made with another hash algorithm than SHA-256"
        )
    try:
        document = parse(text, max_tokens=limits.max_tokens)
    except GraphQLError as error:
        raise problem(f"the document under {digest} does not parse: {error.message}") from None
    try:
        limits.check_document(document, None)
    except BadInput as error:
        raise problem(f"the document under {digest} is over a limit: {error.message}") from None
    # Strawberry's validation, as at runtime (it adds its own rules to ``rules``).
    errors = validate_document(schema, document, tuple(rules))
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise problem(f"the document under {digest} does not validate: {errors[0].message}{more}")
    return TrustedDocument(digest, text, document)


def _one_line(text: str) -> str:
    return " ".join(text.split())


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True, slots=True)
class PersistedQueryNotFound:
    """An APQ hash this process does not hold (yet): the client sends the document again."""

    operation: Operation


class PersistedDocuments:
    """What the hashes and ``documentId``s of one application's requests name."""

    def __init__(
        self, trusted: TrustedDocuments | None, *, trusted_only: bool, cache_size: int
    ) -> None:
        if trusted_only and trusted is None:
            raise ConfigurationError(f"{MANIFEST}_ONLY: needs {MANIFEST}, the manifest of the "
                                     "documents customers may run")
        self.trusted = trusted
        self.trusted_only = trusted_only
        # With trusted documents only, nothing is registered: a hash names a manifest entry.
        self.registered = None if trusted_only else AutomaticPersistedQueries(cache_size)

    def resolve(self, operation: Operation, where: str = "") -> Operation | PersistedQueryNotFound:
        """``operation`` with the text its hash or id names. ``where`` is its place in a batch
        (``"[2]."``), for the ``field`` of a refusal. A hash that does not match its ``query``,
        an unsupported version, a malformed hash or id: ``BadInput`` (HTTP 400)."""
        digest = _apq_hash(operation.extensions, where)
        if operation.document_id is not None:
            field = f"{where}documentId"
            if digest is not None or operation.query is not None:
                raise BadInput(
                    f"Send `{field}` alone: not with `query` or `extensions.persistedQuery`.",
                    field=field,
                )
            return replace(operation, query=self._trusted_text(_document_id(operation.document_id, field), field))
        if digest is None:
            return operation
        field = f"{where}extensions.persistedQuery.sha256Hash"
        if operation.query is not None:
            if document_hash(operation.query) != digest:
                raise BadInput(
                    f"`{field}` does not match the document: it must be the SHA-256 of "
                    "`query` (its UTF-8 text, in lowercase hex).", field=field,
                )
            return operation  # registered once it is about to run (``RegisterPersistedQueries``)
        trusted = self.trusted.get(digest) if self.trusted is not None else None
        if trusted is not None:
            return replace(operation, query=trusted.text)
        if self.registered is None:
            raise BadInput(f"{TRUSTED_ONLY} None of them has this hash.", field=field,
                           trustedDocumentsOnly=True)
        text = self.registered.get(digest)
        if text is None:
            return PersistedQueryNotFound(operation)
        return replace(operation, query=text)

    def _trusted_text(self, digest: str, field: str) -> str:
        trusted = self.trusted.get(digest) if self.trusted is not None else None
        if trusted is not None:
            return trusted.text
        if self.trusted is None:
            raise BadInput(
                f"This server has no trusted documents ({MANIFEST}): send the document "
                f"itself in `query` instead of `{field}`.", field=field,
            )
        if self.trusted_only:
            raise BadInput(f"{TRUSTED_ONLY} None of them has this id.", field=field,
                           trustedDocumentsOnly=True)
        raise BadInput(
            "No trusted document has this id: the client was built with other documents than "
            f"the server's manifest ({MANIFEST}).", field=field,
        )


def _apq_hash(extensions: dict[str, Any] | None, where: str) -> str | None:
    """The hash of ``extensions.persistedQuery``, checked; None without one."""
    persisted = (extensions or {}).get("persistedQuery")
    if persisted is None:
        return None
    field = f"{where}extensions.persistedQuery"
    if not isinstance(persisted, dict):
        raise BadInput(
            f'`{field}` must be an object like {{"version": 1, "sha256Hash": "<hex>"}}; got '
            f"{json_kind(persisted)}.", field=field,
        )
    version = persisted.get("version")
    if type(version) is not int or version != APQ_VERSION:
        raise BadInput(
            f"Unsupported persisted query version: `{field}.version` must be {APQ_VERSION} "
            "(SHA-256).", field=f"{field}.version",
        )
    digest = persisted.get("sha256Hash")
    if not isinstance(digest, str) or not SHA256_HEX.fullmatch(digest):
        raise BadInput(
            f"`{field}.sha256Hash` must be the document's SHA-256 as 64 lowercase hex digits.",
            field=f"{field}.sha256Hash",
        )
    return digest


def _claimed_hash(extensions: Any) -> str | None:
    """``_apq_hash`` that never raises: for the schema extension, which also serves
    operations that did not come through ``resolve``."""
    try:
        return _apq_hash(extensions if isinstance(extensions, dict) else None, "")
    except BadInput:
        return None


def _document_id(value: str, field: str) -> str:
    digest = value[len("sha256:"):] if value.startswith("sha256:") else value
    if not SHA256_HEX.fullmatch(digest):
        raise BadInput(
            f"`{field}` must name a trusted document by its SHA-256: `sha256:` and 64 lowercase "
            "hex digits, or the digits alone.", field=field,
        )
    return digest


# --------------------------------------------------------------------------- schema extensions


class RegisterPersistedQueries(SchemaExtension):
    """Registers a document sent with its APQ hash as it is about to run: it has passed
    every limit and validation by then, so nothing refused is ever kept."""

    def __init__(self, documents: PersistedDocuments) -> None:
        self.documents = documents

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        registered = self.documents.registered
        digest = _claimed_hash(context.operation_extensions)
        if registered is not None and digest is not None and isinstance(context.query, str):
            trusted = self.documents.trusted
            if trusted is None or trusted.get(digest) is None:
                registered.register(digest, context.query)
        yield


class TrustedParsing(CachedParsing):
    """``CachedParsing``, except that a trusted document is never parsed again: the manifest
    holds its document from startup. (The parser cache is shared with every other text, and
    enough of them would push the trusted ones out.)"""

    def __init__(self, trusted: TrustedDocuments, maxsize: int) -> None:
        super().__init__(maxsize=maxsize)
        self.trusted = trusted

    def on_parse(self) -> Iterator[None]:
        document = self.trusted.parsed(self.execution_context.query)
        if document is None:
            yield from super().on_parse()
            return
        self.execution_context.graphql_document = document
        yield


class TrustedValidation(ValidationCache):
    """``ValidationCache``, except that a trusted document is not validated again: it was, at
    startup, with the same rules (``linkgate.app.validation_rules``)."""

    def __init__(self, trusted: TrustedDocuments, maxsize: int) -> None:
        super().__init__(maxsize=maxsize)
        self.trusted = trusted

    def on_validate(self) -> Iterator[None]:
        if not self.trusted.validated(self.execution_context.graphql_document):
            yield from super().on_validate()
            return
        self.execution_context.pre_execution_errors = []
        yield
