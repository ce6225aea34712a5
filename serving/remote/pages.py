"""Fetch a news article's page and pull out its title, description and main text.

When a CMS sends a comment on an article Raqib has not stored, a site may let Raqib fetch the
article page itself (opt-in, per site). The URL comes from outside, so this is a server-side request
forgery surface and the fetcher refuses more than it allows:

- only http and https, only hosts on the site's allow-list (exact names or `*.example.com`);
- every address the host resolves to must be global (no loopback, private, link-local incl. cloud
  metadata, CGNAT, multicast, reserved...) unless the policy allows private addresses, and the
  connection goes to the very address that was checked, so DNS cannot change the answer in between;
- redirects are followed by hand, each hop checked again from scratch, and only a few of them;
- one deadline covers the whole fetch, and the body is cut off at a byte limit.

Every refusal is a `PageRefused` with a short code; nothing else escapes `fetch_article_page`.
"""

from __future__ import annotations

import codecs
import functools
import ipaddress
import logging
import re
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

logger = logging.getLogger("raqib.remote.pages")

Resolver = Callable[[str, int], list[str]]

RefusalCode = Literal[
    "invalid_url",
    "scheme_not_allowed",
    "host_not_allowed",
    "address_not_allowed",
    "unresolvable",
    "too_many_redirects",
    "too_large",
    "timeout",
    "not_html",
    "http_error",
    "connection_failed",
    "no_content",
]

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
DEFAULT_PORTS = {"http": 80, "https": 443}

# ipaddress's is_global misses a few ranges on some Python versions, and an IPv6 address can carry
# an IPv4 one that the network will route to: those are checked by hand.
_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")

_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOSTNAME = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}")
_CHARSET_PARAM = re.compile(r"""charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.IGNORECASE)
_META_CHARSET = re.compile(rb"""<meta[^>]+?charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.IGNORECASE)
_HEAD_END = re.compile(r"</head\s*>", re.IGNORECASE)
_HEAD_SCAN_CHARS = 300_000  # a page without </head>: its metadata is near the top or nowhere


class PageRefused(Exception):
    """The page was not fetched, or held nothing worth keeping; `code` says which rule said no."""

    def __init__(self, code: RefusalCode, message: str) -> None:
        super().__init__(code, message)  # args stay (code, message) so the exception pickles
        self.code: str = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def _canonical_host(raw: str) -> str:
    """Lower-case ASCII form of a host name or IP literal; ValueError for anything else."""
    host = raw.strip().lower().removesuffix(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not host.isascii():
        # The same IDNA encoding httpx applies to URLs, so an allow-listed Arabic domain name matches.
        try:
            host = httpx.URL(f"http://{host}/").raw_host.decode("ascii")
        except (httpx.InvalidURL, UnicodeDecodeError):
            raise ValueError(f"{raw!r} is not a host name") from None
    # A numeric last label is an IPv4 address in a shorthand (127.1, 2130706433) resolvers accept.
    if len(host) > 253 or not _HOSTNAME.fullmatch(host) or host.rsplit(".", 1)[-1].isdigit():
        raise ValueError(f"{raw!r} is not a host name")
    return host


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class PagePolicy(BaseModel):
    """What one site lets Raqib fetch. The default allows nothing: fetching is opt-in."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    allowed_hosts: tuple[str, ...] = ()
    allow_private: bool = False
    max_bytes: int = Field(default=2_000_000, gt=0)
    timeout_s: float = Field(default=5.0, gt=0)
    max_redirects: int = Field(default=3, ge=0)
    user_agent: str = Field(default="Raqib article fetcher (+https://github.com/raqib)", min_length=1)

    @field_validator("allowed_hosts")
    @classmethod
    def _normalise_hosts(cls, hosts: tuple[str, ...]) -> tuple[str, ...]:
        normalised = []
        for entry in hosts:
            if entry.strip().startswith("*."):
                suffix = _canonical_host(entry.strip()[2:])
                if _is_ip_literal(suffix):
                    raise ValueError(f"{entry!r}: a wildcard needs a domain name after '*.'")
                normalised.append(f"*.{suffix}")
            else:
                normalised.append(_canonical_host(entry))
        return tuple(normalised)

    def allows_host(self, host: str) -> bool:
        """Whether a canonical host name matches the allow-list (`*.x` is x's subdomains, not x)."""
        for entry in self.allowed_hosts:
            if entry.startswith("*."):
                if host.endswith(entry[1:]):
                    return True
            elif host == entry:
                return True
        return False


@dataclass(frozen=True)
class FetchedPage:
    url: str  # after redirects
    title: str | None
    description: str | None
    text: str | None
    language: str | None


def is_public_address(address: str) -> bool:
    """Whether an IP address (text) is one the public internet routes to, and nothing else."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return _is_public(ip)


def _is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return _is_public(ip.ipv4_mapped)
        if ip in _IPV4_COMPATIBLE:
            return False  # ::a.b.c.d is deprecated; nothing legitimate answers there
        if ip.sixtofour is not None and not _is_public(ip.sixtofour):
            return False
        if ip in _NAT64:
            return _is_public(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip.is_site_local:
            return False
    elif ip in _CGNAT:
        return False
    return ip.is_global and not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def system_resolve(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for host, in its order, without repeats."""
    found: list[str] = []
    for *_, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        address = str(sockaddr[0])
        if address not in found:
            found.append(address)
    return found


@dataclass(frozen=True)
class _Target:
    """One hop, checked: where it is addressed and the exact address we will connect to."""

    url: httpx.URL
    host: str
    host_header: str
    address: str


def _display(url: httpx.URL) -> str:
    # Queries can carry tokens and userinfo is a password: neither goes into messages or logs.
    text = f"{url.scheme}://{url.netloc.decode('ascii', 'replace')}{url.path}"
    return text if len(text) <= 200 else text[:199] + "…"


def _display_raw(url: str) -> str:
    text = url.strip().split("?", 1)[0].split("#", 1)[0]
    return repr(text if len(text) <= 100 else text[:99] + "…")


def _parse(url: str) -> httpx.URL:
    try:
        return httpx.URL(url.strip())
    except (httpx.InvalidURL, TypeError, ValueError):
        raise PageRefused("invalid_url", f"{_display_raw(url)} is not a URL") from None


def _remaining(deadline: float, timeout_s: float, what: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise PageRefused("timeout", f"{what}: no answer within the {timeout_s:g} s deadline")
    return left


def _resolve_by(resolve: Resolver, host: str, port: int, deadline: float, timeout_s: float) -> list[str]:
    """resolve(host, port), given up at the deadline: getaddrinfo itself can hang for many seconds."""
    left = _remaining(deadline, timeout_s, f"resolving {host}")
    outcome: list[list[str] | BaseException] = []

    def run() -> None:
        try:
            outcome.append(list(resolve(host, port)))
        except BaseException as exc:  # handed to the caller's thread, which decides
            outcome.append(exc)

    # A daemon thread: a lookup stuck past the deadline finishes (or not) on its own, unwaited.
    worker = threading.Thread(target=run, name="raqib-page-resolve", daemon=True)
    worker.start()
    worker.join(left)
    if not outcome:
        raise PageRefused("timeout", f"resolving {host}: no answer within the {timeout_s:g} s deadline")
    result = outcome[0]
    if isinstance(result, BaseException):
        raise PageRefused("unresolvable", f"{host} does not resolve: {result}")
    return result


def _check(url: httpx.URL, policy: PagePolicy, resolve: Resolver, deadline: float) -> _Target:
    """Every rule a hop must pass before a single byte is sent to it."""
    scheme = url.scheme.lower()
    if not scheme:
        raise PageRefused("invalid_url", f"{_display_raw(str(url))} is not an absolute URL")
    if scheme not in DEFAULT_PORTS:
        raise PageRefused("scheme_not_allowed", f"{_display(url)}: only http and https are fetched")
    if url.userinfo:
        raise PageRefused("invalid_url", f"{_display(url)}: URLs with credentials are not fetched")
    raw_host = url.raw_host.decode("ascii", "replace")
    if not raw_host:
        raise PageRefused("invalid_url", f"{_display_raw(str(url))} names no host")
    try:
        host = _canonical_host(raw_host)
    except ValueError:
        raise PageRefused("invalid_url", f"{_display(url)}: {raw_host!r} is not a host name") from None
    port = url.port or DEFAULT_PORTS[scheme]
    if not 0 < port < 65536:
        raise PageRefused("invalid_url", f"{_display(url)}: port {port} is out of range")
    if not policy.allows_host(host):
        raise PageRefused("host_not_allowed", f"{host} is not on this site's list of article hosts")

    if _is_ip_literal(host):
        addresses = [host]
    else:
        addresses = _resolve_by(resolve, host, port, deadline, policy.timeout_s)
    if not addresses:
        raise PageRefused("unresolvable", f"{host} resolves to no address")
    unusable = [a for a in addresses if not _is_ip_literal(a)]
    if unusable:
        raise PageRefused("unresolvable", f"{host} resolves to something that is not an IP address")
    if not policy.allow_private:
        # One bad answer refuses the host: which address a client ends up using is not ours to bet on.
        private = [a for a in addresses if not is_public_address(a)]
        if private:
            raise PageRefused(
                "address_not_allowed", f"{host} resolves to a non-public address ({', '.join(private)})"
            )

    name = f"[{host}]" if ":" in host else host
    host_header = name if port == DEFAULT_PORTS[scheme] else f"{name}:{port}"
    return _Target(url=url.copy_with(fragment=None), host=host, host_header=host_header, address=addresses[0])


class _BoundedDecoder:
    """Undo a Content-Encoding the server used although we asked for identity, never past `limit`.

    httpx would decompress for us, but one small gzip chunk can inflate to gigabytes in a single call;
    zlib's max_length lets the limit bite before the memory is spent.
    """

    def __init__(self, encoding: str, limit: int, where: str) -> None:
        self.limit = limit
        self.size = 0
        self.where = where
        name = encoding.strip().lower()
        if name in ("", "identity"):
            self._zlib = None
        elif name in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif name == "deflate":
            self._zlib = zlib.decompressobj()
        else:
            raise PageRefused("not_html", f"{where} came with content encoding {name!r}; we read none")

    def _count(self, data: bytes) -> bytes:
        self.size += len(data)
        if self.size > self.limit:
            raise PageRefused("too_large", f"{self.where} is larger than {self.limit} bytes")
        return data

    def feed(self, chunk: bytes) -> bytes:
        if self._zlib is None:
            return self._count(chunk)
        try:
            # One byte more than the room left: getting it back means the page is too large.
            return self._count(self._zlib.decompress(chunk, self.limit - self.size + 1))
        except zlib.error as exc:
            raise self._corrupt(exc) from None

    def finish(self) -> bytes:
        if self._zlib is None:
            return b""
        try:
            return self._count(self._zlib.flush())
        except zlib.error as exc:
            raise self._corrupt(exc) from None

    def _corrupt(self, exc: zlib.error) -> PageRefused:
        return PageRefused("connection_failed", f"{self.where}: the body does not decompress ({exc})")


def _read_body(response: httpx.Response, target: _Target, policy: PagePolicy, deadline: float) -> bytes:
    where = _display(target.url)
    declared = response.headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > policy.max_bytes:
        raise PageRefused("too_large", f"{where} declares {declared} bytes, over {policy.max_bytes}")
    decoder = _BoundedDecoder(response.headers.get("content-encoding", ""), policy.max_bytes, where)
    chunks: list[bytes] = []
    for chunk in response.iter_raw():
        # httpx's read timeout restarts with every chunk; a server dripping bytes would never trip it.
        _remaining(deadline, policy.timeout_s, f"reading {where}")
        chunks.append(decoder.feed(chunk))
    chunks.append(decoder.finish())
    return b"".join(chunks)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """Certificate verification against certifi's CAs, built once: loading them takes ~70 ms per client."""
    return httpx.create_ssl_context(trust_env=False)


def _send(target: _Target, policy: PagePolicy, deadline: float) -> tuple[httpx.Client, httpx.Response]:
    timeout = httpx.Timeout(_remaining(deadline, policy.timeout_s, f"fetching {_display(target.url)}"))
    # Connect to the address _check approved, not to the name: resolving it again here could get a
    # different answer (DNS rebinding) and reach an internal host. The server still sees its own name
    # in Host, and for https the TLS handshake sends it as SNI and verifies the certificate against it.
    pinned = target.url.copy_with(host=target.address)
    extensions: dict[str, Any] = {"sni_hostname": target.host} if target.url.scheme == "https" else {}
    headers = {
        "Host": target.host_header,
        "User-Agent": policy.user_agent,
        "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1",
        "Accept-Language": "ar,en;q=0.5",
        "Accept-Encoding": "identity",
    }
    # A client per hop: no connection, cookie or TLS session carries over to a host checked separately,
    # and trust_env=False keeps proxy variables from routing around the checks.
    client = httpx.Client(verify=_tls_context(), trust_env=False, follow_redirects=False, timeout=timeout)
    try:
        request = client.build_request("GET", pinned, headers=headers, extensions=extensions)
        return client, client.send(request, stream=True)
    except BaseException:
        client.close()
        raise


_Answer = httpx.URL | tuple[bytes, str]  # a redirect's target, or an HTML body and its content type


def _answer(
    response: httpx.Response, target: _Target, policy: PagePolicy, deadline: float, last_hop: bool
) -> _Answer:
    where = _display(target.url)
    status = response.status_code
    if status in REDIRECT_STATUSES:
        if last_hop:
            raise PageRefused("too_many_redirects", f"{where} redirects after {policy.max_redirects} hops")
        location = response.headers.get("location", "").strip()
        if not location:
            raise PageRefused("http_error", f"{where}: {status} with no Location")
        try:
            return target.url.join(location)
        except httpx.InvalidURL:
            raise PageRefused("invalid_url", f"{where} redirects to an invalid URL") from None
    if not 200 <= status < 300:
        raise PageRefused("http_error", f"{where} answered HTTP {status}")
    content_type = response.headers.get("content-type", "")
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime not in HTML_TYPES:
        raise PageRefused("not_html", f"{where} is {mime or 'of no stated type'}, not HTML")
    return _read_body(response, target, policy, deadline), content_type


class _Watchdog:
    """Shuts the response's socket at the deadline.

    httpx takes one read timeout per request and restarts it with every read, so a server that sends
    part of the body and then goes quiet would hold us for up to a whole timeout past the deadline;
    checking the clock between chunks cannot help while a read is blocked. Shutting the socket down
    wakes that read at once.
    """

    def __init__(self, response: httpx.Response, deadline: float) -> None:
        self.fired = False
        stream = response.extensions.get("network_stream")
        found = stream.get_extra_info("socket") if stream is not None else None
        self._socket = found if isinstance(found, socket.socket) else None
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._cut)
        self._timer.daemon = True
        if self._socket is not None:
            self._timer.start()

    def _cut(self) -> None:
        if self._socket is None:
            return
        self.fired = True
        try:
            # The plain socket's shutdown, also for TLS: SSLSocket's own would tear down its state
            # under the reading thread's feet. A socket already closed raises instead of touching an fd.
            socket.socket.shutdown(self._socket, socket.SHUT_RDWR)
        except OSError:
            pass

    def cancel(self) -> None:
        self._timer.cancel()


def _hop(target: _Target, policy: PagePolicy, deadline: float, last_hop: bool) -> _Answer:
    watchdog: _Watchdog | None = None
    try:
        client, response = _send(target, policy, deadline)
        try:
            watchdog = _Watchdog(response, deadline)
            return _answer(response, target, policy, deadline, last_hop)
        finally:
            if watchdog is not None:
                watchdog.cancel()
            response.close()
            client.close()
    except httpx.HTTPError as exc:
        where = _display(target.url)
        cut_off = watchdog is not None and watchdog.fired
        if isinstance(exc, httpx.TimeoutException) or cut_off or time.monotonic() >= deadline:
            raise PageRefused("timeout", f"{where}: no full answer within {policy.timeout_s:g} s") from None
        raise PageRefused("connection_failed", f"{where}: {type(exc).__name__}: {exc}") from None


def _fetch(url: str, policy: PagePolicy, resolve: Resolver, deadline: float) -> tuple[FetchedPage, int]:
    current = _parse(url)
    for hop in range(policy.max_redirects + 1):
        target = _check(current, policy, resolve, deadline)
        outcome = _hop(target, policy, deadline, last_hop=hop == policy.max_redirects)
        if isinstance(outcome, httpx.URL):
            current = outcome
            continue
        body, content_type = outcome
        page = _extract(_decode(body, content_type), str(target.url), target.host)
        if page.title is None and page.text is None:
            raise PageRefused("no_content", f"{_display(target.url)} has neither a title nor article text")
        return page, len(body)
    raise AssertionError("unreachable: the last hop returns a page or refuses")


def fetch_article_page(url: str, policy: PagePolicy, *, resolve: Resolver | None = None) -> FetchedPage:
    """Fetch the article at `url` under `policy` and extract it; PageRefused is the only exception.

    Blocking (run it in a worker thread). `resolve(host, port)` returns IP address strings; the
    system resolver by default, a fake one in tests.
    """
    started = time.monotonic()
    try:
        page, size = _fetch(url, policy, resolve or system_resolve, started + policy.timeout_s)
    except PageRefused as refused:
        logger.warning("article page refused: %s (%s)", refused.code, refused.message)
        raise
    except Exception as exc:
        # A bug or a library surprise must still look like a failed fetch to the caller, not a 500.
        wrapped = PageRefused("connection_failed", f"{_display_raw(url)}: {type(exc).__name__}: {exc}")
        logger.warning("article page refused: %s (%s)", wrapped.code, wrapped.message)
        raise wrapped from exc
    elapsed_ms = (time.monotonic() - started) * 1000
    logger.info(
        "article page fetched from %s: %d bytes in %.0f ms",
        httpx.URL(page.url).host,
        size,
        elapsed_ms,
    )
    return page


def _charset(name: str | None) -> str | None:
    if not name:
        return None
    try:
        codec = codecs.lookup(name).name
    except LookupError:
        return None
    # A page that reached us as bytes and declares UTF-16 in ASCII is lying; browsers read UTF-8 then.
    return "utf-8" if codec.startswith("utf-16") else codec


def _decode(body: bytes, content_type: str) -> str:
    if body.startswith(codecs.BOM_UTF8):
        return body[len(codecs.BOM_UTF8) :].decode("utf-8", "replace")
    header = _CHARSET_PARAM.search(content_type)
    meta = _META_CHARSET.search(body[:4096])
    for candidate in (header.group(1) if header else None, meta.group(1).decode("ascii") if meta else None):
        codec = _charset(candidate)
        if codec is None:
            continue
        try:
            return body.decode(codec, "replace")
        except LookupError:
            continue  # a bytes-to-bytes codec such as base64, not a text encoding
    return body.decode("utf-8", "replace")


class _HeadParser(HTMLParser):
    """The <head> facts trafilatura may miss: <title>, named meta tags and <html lang>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.meta: dict[str, str] = {}
        self.lang: str | None = None
        self._title: list[str] = []
        self._in_title = False
        self._title_done = False

    @property
    def title(self) -> str | None:
        return _one_line("".join(self._title))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {key.lower(): value or "" for key, value in attrs}
        if tag == "html" and self.lang is None:
            self.lang = _one_line(values.get("lang") or values.get("xml:lang") or "")
        elif tag == "title" and not self._title_done:
            self._in_title = True
        elif tag == "meta":
            key = values.get("property") or values.get("name") or values.get("http-equiv") or ""
            key = key.strip().lower()
            if key and key not in self.meta and values.get("content", "").strip():
                self.meta[key] = values["content"]

    def handle_endtag(self, tag: str) -> None:
        if tag == "title" and self._in_title:
            self._in_title = False
            self._title_done = True

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self._title.append(data)


def _one_line(value: str | None) -> str | None:
    text = " ".join(value.split()) if value else ""
    return text or None


def _paragraphs(value: str | None) -> str | None:
    lines = [" ".join(line.split()) for line in (value or "").splitlines()]
    text = "\n".join(line for line in lines if line)
    return text or None


def _head_facts(markup: str) -> _HeadParser:
    end = _HEAD_END.search(markup, 0, _HEAD_SCAN_CHARS)
    parser = _HeadParser()
    try:
        parser.feed(markup[: end.end() if end else _HEAD_SCAN_CHARS])
        parser.close()
    except Exception:  # html.parser is lenient; whatever it still trips on just leaves fields empty
        logger.debug("could not parse the page head", exc_info=True)
    return parser


def _trafilatura_fields(markup: str, final_url: str, host: str) -> dict[str, Any]:
    try:
        # Imported here, not at the top: trafilatura pulls in lxml, dateparser and more, and the
        # server's cold start should not pay for a feature most sites never switch on.
        import trafilatura

        result = trafilatura.bare_extraction(
            markup,
            url=final_url,
            with_metadata=True,
            include_comments=False,
            favor_precision=True,
            # We keep no date, and htmldate's extensive search hands text to dateparser, which tries
            # ~200 locales and took seconds per page in our tests: the quick, markup-only search is enough.
            date_extraction_params={"extensive_search": False, "original_date": True},
        )
    except Exception as exc:  # the <head> fallback still gives a title and description
        logger.warning("article page from %s: extraction failed (%s)", host, type(exc).__name__)
        return {}
    if result is None:
        return {}
    return result if isinstance(result, dict) else result.as_dict()


def _extract(markup: str, final_url: str, host: str) -> FetchedPage:
    fields = _trafilatura_fields(markup, final_url, host)
    head = _head_facts(markup)
    meta = head.meta
    title = _one_line(fields.get("title")) or _one_line(meta.get("og:title")) or head.title
    description = (
        _one_line(fields.get("description"))
        or _one_line(meta.get("description"))
        or _one_line(meta.get("og:description"))
    )
    language = _one_line(fields.get("language")) or head.lang or _one_line(meta.get("content-language"))
    return FetchedPage(
        url=final_url,
        title=title,
        description=description,
        text=_paragraphs(fields.get("text")),
        language=language,
    )
