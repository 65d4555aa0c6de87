"""Reading a received message (RFC 5322 and MIME, as bytes) into ``InboundMail``.

The listener (``linkgate/mail_listener.py``) hands every message it takes here; what comes
back is what ``resolvers.inbound_mail`` decides on. The text is the ``text/plain`` part, else
the HTML part as text, without the message it replies to (below an "On … wrote:" line, an
"-----Original Message-----" line or a signature's "-- ", and a trailing block of "> " lines);
the attached files come along as they are. A message the parser has to guess at (a broken
multipart, a header block that does not end, undecodable base64 or text, no From address) is
``Malformed``: refused, never half-read.
"""

from __future__ import annotations

import hashlib
import re
from email import errors, policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from html.parser import HTMLParser
from pathlib import PurePosixPath, PureWindowsPath

from resolvers.inbound_mail import InboundMail, Mailboxes
from resolvers.ticket_mutations import AttachedFile

# Defects after which the message cannot be read as its sender meant it.
_BROKEN = (
    errors.NoBoundaryInMultipartDefect, errors.StartBoundaryNotFoundDefect,
    errors.CloseBoundaryNotFoundDefect, errors.MultipartInvariantViolationDefect,
    errors.MissingHeaderBodySeparatorDefect, errors.InvalidMultipartContentTransferEncodingDefect,
    errors.InvalidBase64CharactersDefect, errors.InvalidBase64LengthDefect,
)
# A Message-ID as RFC 5322 writes it: printable ASCII between angle brackets, nothing else.
_MESSAGE_ID = re.compile(r"<[\x21-\x3b\x3d\x3f-\x7e]{1,250}>")
# Headers mail servers put on top of a message on its way: left out of a made-up Message-ID.
_TRACE = re.compile(rb"^(received|return-path|delivered-to|x-original-to|x-envelope-from):",
                    re.IGNORECASE)
_QUOTE_HEAD = (
    re.compile(r"^\s*On\s.{0,300}\bwrote:\s*$", re.IGNORECASE),
    re.compile(r"^\s*-{2,}\s*Original Message\s*-{2,}\s*$", re.IGNORECASE),
    re.compile(r"^\s*_{10,}\s*$"),  # Outlook: a line of underscores, then "From: …"
    re.compile(r"^-- $"),  # a signature
)


class Malformed(ValueError):
    """A message that cannot be read as its sender meant it; the text says what is wrong
    ("The message …")."""


def read_mail(
    raw: bytes, *, recipients: list[str], envelope_sender: str | None, mailboxes: Mailboxes
) -> InboundMail:
    """``raw`` as the listener received it; ``recipients`` the envelope's (our addresses)."""
    try:
        message = BytesParser(policy=policy.default).parsebytes(raw)
        assert isinstance(message, EmailMessage)
        sender_name, sender = _sender(message)
        attachments = _attachments(message)
        body = _text(message)
        broken = next((d for part in message.walk() for d in part.defects if isinstance(d, _BROKEN)), None)
        if broken is not None:
            raise Malformed(f"is not well-formed MIME ({_defect_name(broken)})")
        recipient = next((r.lower() for r in recipients if mailboxes.department_for(r)), "")
        return InboundMail(
            message_id=_message_id(message, raw), sender=sender, sender_name=sender_name,
            recipient=recipient, subject=_clean(str(message.get("Subject", "")), keep_lines=False),
            replies_to=_replies_to(message), cc=_cc(message), body=body,
            attachments=tuple(attachments), automatic=_automatic(message, envelope_sender),
        )
    except Malformed:
        raise
    except RecursionError:  # multiparts inside multiparts, thousands deep
        raise Malformed("is not well-formed MIME (nested too deeply)") from None
    except IndexError:  # a LookupError too, but the parser's own surprise (e.g. a broken Cc)
        raise Malformed("is not well-formed MIME (unreadable: IndexError)") from None
    except LookupError:  # a charset Python does not know
        raise Malformed("is not well-formed MIME (an unknown character set)") from None
    except (ValueError, TypeError, AttributeError, IndexError, AssertionError, UnicodeError,
            errors.MessageError) as error:  # the parser's own surprises
        raise Malformed(f"is not well-formed MIME (unreadable: {type(error).__name__})") from None


def _defect_name(defect: errors.MessageDefect) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", " ", type(defect).__name__.removesuffix("Defect")).lower()


def _sender(message: EmailMessage) -> tuple[str, str]:
    if len(message.get_all("From") or ()) != 1:  # two From headers: which one did DMARC check?
        raise Malformed("has no single From address")
    header = message.get("From")
    addresses = getattr(header, "addresses", ()) if header is not None else ()
    if len(addresses) != 1 or not addresses[0].username or not addresses[0].domain:
        raise Malformed("has no single From address")
    address = addresses[0]
    return _clean(address.display_name, keep_lines=False)[:100], address.addr_spec.lower()


def _message_id(message: EmailMessage, raw: bytes) -> str:
    """The message's own Message-ID; without one (or a too long one), one made from the
    message minus the trace headers servers add on the way, so a redelivery still matches."""
    found = _MESSAGE_ID.search(str(message.get("Message-ID", "")))
    if found:
        return found.group(0)
    lines = raw.splitlines(keepends=True)
    start = 0
    while start < len(lines) and (_TRACE.match(lines[start]) or (
            start and lines[start][:1] in (b" ", b"\t") and _TRACE.match(lines[start - 1]))):
        start += 1
    digest = hashlib.sha256(b"".join(lines[start:])).hexdigest()[:40]
    return f"<{digest}@no-message-id.invalid>"


def _replies_to(message: EmailMessage) -> tuple[str, ...]:
    replied = _MESSAGE_ID.findall(str(message.get("In-Reply-To", "")))
    references = _MESSAGE_ID.findall(str(message.get("References", "")))
    return tuple(dict.fromkeys([*replied, *reversed(references)]))


def _cc(message: EmailMessage) -> tuple[str, ...]:
    header = message.get("Cc")
    addresses = getattr(header, "addresses", ()) if header is not None else ()
    return tuple(dict.fromkeys(a.addr_spec.lower() for a in addresses if a.username and a.domain))


def _automatic(message: EmailMessage, envelope_sender: str | None) -> bool:
    """An auto-reply, a bounce or bulk mail: answering it, or filing it, would only loop."""
    auto = str(message.get("Auto-Submitted", "no")).strip().lower()
    precedence = str(message.get("Precedence", "")).strip().lower()
    return (
        (envelope_sender or "").strip() in ("", "<>")  # "MAIL FROM:<>": a bounce
        or auto not in ("", "no")
        or precedence in ("bulk", "junk", "list", "auto_reply")
        or message.get("X-Autoreply") is not None or message.get("X-Autorespond") is not None
        or message.get_content_type() == "multipart/report"
    )


def _text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    content = str(part.get_content()).replace("\r\n", "\n").replace("\r", "\n")
    if part.get_content_subtype() == "html":
        content = html_to_text(content)
    return _clean(strip_quoted(content), keep_lines=True)


def _attachments(message: EmailMessage) -> list[AttachedFile]:
    if not message.is_multipart():
        if message.get_content_maintype() in ("text", "multipart"):
            return []
        parts: list[Message] = [message]  # the whole message is one file
    else:
        parts = list(message.iter_attachments())
    files = []
    for part in parts:
        if part.is_multipart():
            continue  # a nested multipart besides the text: nothing a person attached
        if part.get_content_type() == "message/rfc822":
            inner = part.get_payload(0)
            data = inner.as_bytes() if isinstance(inner, Message) else b""
        else:
            payload = part.get_payload(decode=True)
            data = payload if isinstance(payload, bytes) else b""
        files.append(AttachedFile(
            filename=_filename(part), content_type=part.get_content_type()[:100], data=data,
        ))
    return files


def _filename(part: Message) -> str:
    name = part.get_filename() or ""
    name = PureWindowsPath(PurePosixPath(name).name).name  # never a path
    name = _clean(name, keep_lines=False)
    if part.get_content_type() == "message/rfc822" and not name:
        name = "message.eml"
    return name[:255] or "attachment"


# Control characters (C0 but tab and new line, DEL, C1) and lone surrogates (bytes that
# did not decode): nothing a person typed, and PostgreSQL refuses a NUL.
_UNTYPABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def _clean(text: str, *, keep_lines: bool) -> str:
    """Storable text: CRLF as LF, no control characters or lone surrogates; without
    ``keep_lines``, one line with its white space folded."""
    text = _UNTYPABLE.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    if not keep_lines:
        return " ".join(text.split())
    return "\n".join(line.rstrip() for line in text.split("\n")).strip("\n")


def strip_quoted(text: str) -> str:
    """The new text of a reply: cut at the first line that starts the quoted message (or a
    signature), then trailing "> " lines; if nothing is left, all of it."""
    lines = text.split("\n")
    for index, line in enumerate(lines):
        two = f"{line} {lines[index + 1]}" if index + 1 < len(lines) else line
        if any(p.match(line) or (p is _QUOTE_HEAD[0] and p.match(two)) for p in _QUOTE_HEAD):
            lines = lines[:index]
            break
    while lines and (not lines[-1].strip() or lines[-1].lstrip().startswith(">")):
        lines.pop()
    new = "\n".join(lines).strip()
    return new or text.strip()


class _TextOfHtml(HTMLParser):
    """Blocks on lines of their own (runs of blank lines folded later), list items as "- "."""

    _BLOCKS = frozenset({"p", "div", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote",
                         "pre", "table", "ul", "ol", "hr", "section", "article", "header", "footer"})
    _HIDDEN = frozenset({"script", "style", "head", "title", "template"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.pieces: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._HIDDEN:
            self.hidden += 1
        elif tag in self._BLOCKS or tag == "br":
            self.pieces.append("\n")
        elif tag == "li":
            self.pieces.append("\n- ")
        elif tag in ("td", "th"):
            self.pieces.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in self._BLOCKS:
            self.pieces.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.pieces.append(re.sub(r"[ \t\r\n]+", " ", data))


def html_to_text(markup: str) -> str:
    """The words of an HTML part, a line per block; no markup, no scripts or styles."""
    parser = _TextOfHtml()
    parser.feed(markup)
    parser.close()
    lines = (line.strip() for line in "".join(parser.pieces).split("\n"))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
