"""serving.remote.pages against a real HTTP server on loopback, reached through a fake resolver.

The server answers for every fake host name (news.example, evil.example...), because the resolver maps
them to 127.0.0.1; which of them a fetch may reach is the policy's business, and the server counts the
requests that got through.
"""

from __future__ import annotations

import datetime as dt
import gzip
import logging
import pickle
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from serving.remote import pages
from serving.remote.pages import FetchedPage, PagePolicy, PageRefused, fetch_article_page, is_public_address

pytestmark = pytest.mark.unit

HEADLINE = "مجلس بلدية السنديان يقر المرحلة الأولى من مشروع تجديد شبكة المياه"
DESCRIPTION = "كلفة المشروع ثمانية وأربعون مليون دينار، والأعمال تبدأ في الخريف وتستمر عامين."
PARAGRAPHS = [
    "صادق مجلس بلدية مدينة السنديان، في جلسته المنعقدة مساء الأربعاء، على المرحلة الأولى من مشروع "
    "تجديد شبكة مياه الشرب، بكلفة تقديرية تبلغ ثمانية وأربعين مليون دينار، على أن تبدأ الأعمال مطلع "
    "الخريف المقبل وتستمر نحو عامين.",
    "وقال رئيس البلدية سامر الخطيب إن الأنابيب الحالية مُدّت قبل أكثر من أربعين عاماً، وإن نسبة الفاقد "
    "منها تتجاوز ثلث الكميات التي تُضخ يومياً من محطة المعالجة الواقعة شمال المدينة، مشيراً إلى أن "
    "الأحياء الشرقية تعاني انقطاعات متكررة في أشهر الصيف.",
    "ويشمل المشروع استبدال مئة وعشرين كيلومتراً من الخطوط الرئيسية، وإنشاء خزانين جديدين على التلال "
    "الغربية بسعة إجمالية تبلغ عشرين ألف متر مكعب، إضافة إلى تركيب عدادات ذكية في نحو خمسة عشر ألف "
    "منزل لرصد التسربات فور حدوثها.",
    "وأبدى عدد من الأعضاء تحفظهم على آلية التمويل، إذ يعتمد المشروع على قرض من صندوق التنمية الإقليمي "
    "يُسدَّد على خمس عشرة سنة، وطالبت العضوة هالة منصور بنشر دراسة الجدوى كاملة قبل توقيع العقود، "
    "وبتحديد سقف واضح لأي زيادة محتملة في تعرفة المياه.",
    "وردّ مدير دائرة الأشغال بأن الدراسة ستُعرض على المواطنين في لقاءات مفتوحة خلال الشهر المقبل، وأن "
    "البلدية ستعلن جدولاً زمنياً لأعمال الحفر في كل حي حتى يتمكن السكان والتجار من الاستعداد لها، "
    "مؤكداً أن الخدمة لن تنقطع أكثر من ست ساعات متواصلة.",
]
# Page furniture around the article: none of it may reach the extracted text.
BOILERPLATE = [
    "اشترك في النشرة البريدية",
    "نتائج امتحانات الثانوية العامة تصدر الأسبوع المقبل",
    "منتخب الشباب يتأهل إلى نصف النهائي",
    "جميع الحقوق محفوظة",
    "سياسة الخصوصية",
    "أخيراً سيصل الماء إلى حيّنا بعد سنوات من الانتظار",
]


def article_html(charset: str = "utf-8") -> str:
    paragraphs = "\n".join(f"      <p>{p}</p>" for p in PARAGRAPHS)
    return f"""<!DOCTYPE html>
<html lang="ar" dir="rtl">
<head>
  <meta charset="{charset}">
  <title>{HEADLINE} | صحيفة الوادي</title>
  <meta name="description" content="{DESCRIPTION}">
  <meta property="og:title" content="{HEADLINE}">
  <meta property="og:type" content="article">
  <meta name="viewport" content="width=device-width, initial-scale=1">
</head>
<body>
  <header class="site-header">
    <a class="logo" href="/">صحيفة الوادي</a>
    <nav class="main-menu">
      <ul>
        <li><a href="/">الرئيسية</a></li>
        <li><a href="/local">محليات</a></li>
        <li><a href="/politics">سياسة</a></li>
        <li><a href="/economy">اقتصاد</a></li>
        <li><a href="/sport">رياضة</a></li>
        <li><a href="/opinion">آراء</a></li>
      </ul>
    </nav>
    <div class="newsletter"><a href="/newsletter">اشترك في النشرة البريدية</a></div>
  </header>
  <div class="layout">
    <aside class="sidebar most-read">
      <h3>الأكثر قراءة</h3>
      <ul>
        <li><a href="/local/4411">نتائج امتحانات الثانوية العامة تصدر الأسبوع المقبل</a></li>
        <li><a href="/sport/4398">منتخب الشباب يتأهل إلى نصف النهائي</a></li>
        <li><a href="/economy/4402">أسعار الخضار تتراجع في الأسواق المركزية</a></li>
      </ul>
    </aside>
    <main>
      <article class="story">
      <h1>{HEADLINE}</h1>
      <p class="byline">السنديان - مراسل الوادي · <time datetime="2025-03-12">12 مارس 2025</time></p>
{paragraphs}
      </article>
      <section id="comments" class="comments">
        <h3>التعليقات (2)</h3>
        <div class="comment"><b>أبو خالد</b><p>أخيراً سيصل الماء إلى حيّنا بعد سنوات من الانتظار</p></div>
        <div class="comment"><b>ريم</b><p>نريد أن نعرف من سيدفع ثمن القرض في النهاية</p></div>
        <form><textarea name="comment"></textarea><button>أرسل تعليقك</button></form>
      </section>
    </main>
  </div>
  <footer class="site-footer">
    <p>جميع الحقوق محفوظة © 2025 صحيفة الوادي</p>
    <a href="/about">من نحن</a> · <a href="/contact">اتصل بنا</a> · <a href="/privacy">سياسة الخصوصية</a>
  </footer>
</body>
</html>
"""


BIG_PAGE = ("<html><body><p>" + "ماء " * 30_000 + "</p></body></html>").encode()  # 210 kB


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.seen: list[tuple[str, str | None]] = []  # (path, Host header) of every request
        self.lock = threading.Lock()
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def paths(self) -> list[str]:
        with self.lock:
            return [path for path, _ in self.seen]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # pytest shows stderr of failing tests; request lines are noise there

    def answer(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def redirect(self, location: str) -> None:
        self.answer(302, b"", "text/html", Location=location)

    def chunked(self, content_type: str, chunks: Iterator[bytes], pause: float = 0.0) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            for chunk in chunks:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
                time.sleep(pause)
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            return  # the client hung up, as it should

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.seen.append((self.path, self.headers.get("Host")))
        html = "text/html; charset=utf-8"
        port = self.server.port
        if self.path == "/article":
            self.answer(200, article_html().encode(), html)
        elif self.path == "/article-1256":
            # Arabic in the legacy Windows code page, declared only in the page's own <meta>.
            self.answer(200, article_html("windows-1256").encode("cp1256"), "text/html")
        elif self.path == "/gzip-article":
            self.answer(200, gzip.compress(article_html().encode()), html, Content_Encoding="gzip")
        elif self.path == "/gzip-bomb":
            self.answer(200, gzip.compress(b" " * 5_000_000), html, Content_Encoding="gzip")
        elif self.path == "/big":
            self.answer(200, BIG_PAGE, html)
        elif self.path == "/big-chunked":
            self.chunked(html, (BIG_PAGE[i : i + 8192] for i in range(0, len(BIG_PAGE), 8192)))
        elif self.path == "/slow":
            self.chunked(html, (b"<p>" for _ in range(15)), pause=0.2)  # 3 s of drip, never idle long
        elif self.path == "/stall":
            self.send_response(200)
            self.send_header("Content-Type", html)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            time.sleep(2.5)
            self.close_connection = True
        elif self.path == "/stall-midway":
            self.send_response(200)
            self.send_header("Content-Type", html)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                for _ in range(8):  # bytes until just before the deadline, then silence
                    self.wfile.write(b"<p>" * 50)
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:
                return
            time.sleep(3)
            self.close_connection = True
        elif self.path == "/empty":
            self.answer(200, b"<html><head></head><body><div></div></body></html>", html)
        elif self.path == "/json":
            self.answer(200, b'{"title": "not a page"}', "application/json")
        elif self.path == "/redirect-relative":
            self.redirect("/article")
        elif self.path == "/redirect-loopback":
            self.redirect(f"http://127.0.0.1:{port}/article")
        elif self.path == "/redirect-offlist":
            self.redirect("http://evil.example/x")
        elif self.path == "/redirect-loop":
            self.redirect("/redirect-loop")
        elif self.path == "/redirect-bare":
            self.answer(302, b"", "text/html")
        else:
            self.answer(404, "<html><body><h1>الصفحة غير موجودة</h1></body></html>".encode(), html)


def serving(httpd: Server) -> Iterator[Server]:
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    yield from serving(Server())


class Tls:
    """A throwaway CA and a certificate it signed for news.example only (no IP address in it)."""

    def __init__(self) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        now = dt.datetime.now(dt.UTC)

        def certificate(
            subject: str,
            key: ec.EllipticCurvePrivateKey,
            issuer: str,
            signer: ec.EllipticCurvePrivateKey,
            ca: bool,
        ) -> x509.Certificate:
            builder = (
                x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(hours=1))
                .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            )
            if ca:
                builder = builder.add_extension(
                    x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
                )
            else:
                builder = builder.add_extension(
                    x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False
                )
            return builder.sign(signer, hashes.SHA256())

        ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
        ca = certificate("Raqib test CA", ca_key, "Raqib test CA", ca_key, ca=True)
        leaf = certificate("news.example", leaf_key, "Raqib test CA", ca_key, ca=False)
        self.ca_pem = ca.public_bytes(serialization.Encoding.PEM).decode()
        self.leaf_pem = leaf.public_bytes(serialization.Encoding.PEM)
        self.key_pem = leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def server_context(self, tmp: Path, sni_seen: list[str | None]) -> ssl.SSLContext:
        cert, key = tmp / "leaf.pem", tmp / "leaf.key"
        cert.write_bytes(self.leaf_pem)
        key.write_bytes(self.key_pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)

        def record_sni(
            _socket: ssl.SSLObject | ssl.SSLSocket, name: str | None, _context: ssl.SSLContext
        ) -> None:
            sni_seen.append(name)

        context.sni_callback = record_sni
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self.ca_pem)


@pytest.fixture(scope="module")
def tls() -> Tls:
    return Tls()


@pytest.fixture(scope="module")
def sni_seen() -> list[str | None]:
    return []


@pytest.fixture(scope="module")
def tls_server(
    tls: Tls, sni_seen: list[str | None], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    yield from serving(Server(tls.server_context(tmp_path_factory.mktemp("tls"), sni_seen)))


@pytest.fixture
def trusting_test_ca(tls: Tls, monkeypatch: pytest.MonkeyPatch) -> None:
    """httpx clients trust the throwaway CA (the fetcher itself offers no way to change trust)."""
    real_client = httpx.Client

    def client(**kwargs: Any) -> httpx.Client:
        return real_client(**{**kwargs, "verify": tls.client_context()})

    monkeypatch.setattr(httpx, "Client", client)


FAKE_DNS = {
    "news.example": ["127.0.0.1"],
    "evil.example": ["127.0.0.1"],
    "a.example.com": ["127.0.0.1"],
    "example.com": ["127.0.0.1"],
    "badexample.com": ["127.0.0.1"],
    "intranet.example": ["10.0.0.5"],
    "meta.example": ["169.254.169.254"],
    "mixed.example": ["93.184.216.34", "10.0.0.5"],
    "junk.example": ["not-an-address"],
}


class FakeDns:
    def __init__(self) -> None:
        self.asked: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append((host, port))
        if host not in FAKE_DNS:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(FAKE_DNS[host])


@pytest.fixture
def dns() -> FakeDns:
    return FakeDns()


def policy(*hosts: str, **fields: Any) -> PagePolicy:
    return PagePolicy(allowed_hosts=hosts, **fields)


LOCAL_NEWS = policy("news.example", allow_private=True)  # the test server lives on loopback


def refusal(url: str, page_policy: PagePolicy, dns: Callable[[str, int], list[str]]) -> PageRefused:
    with pytest.raises(PageRefused) as caught:
        fetch_article_page(url, page_policy, resolve=dns)
    return caught.value


# --- the article itself ------------------------------------------------------------------------------


def test_an_allowed_article_is_fetched_through_the_pinned_address_and_extracted(
    server: Server, dns: FakeDns
) -> None:
    page = fetch_article_page(f"http://news.example:{server.port}/article", LOCAL_NEWS, resolve=dns)

    assert isinstance(page, FetchedPage)
    assert page.url == f"http://news.example:{server.port}/article"
    assert page.title == HEADLINE
    assert page.description == DESCRIPTION
    assert page.language == "ar"
    assert page.text is not None
    for paragraph in PARAGRAPHS:
        assert paragraph in page.text  # whole sentences, Arabic untouched (diacritics, shadda, hamza)
    for furniture in BOILERPLATE:
        assert furniture not in page.text
    assert "محليات" not in page.text and "الأكثر قراءة" not in page.text and "أرسل تعليقك" not in page.text
    # The name was resolved once, by our resolver, and the server still saw its own name in Host.
    assert dns.asked == [("news.example", server.port)]
    assert server.seen[-1] == ("/article", f"news.example:{server.port}")


def test_the_connection_never_resolves_the_name_again(
    server: Server, dns: FakeDns, monkeypatch: pytest.MonkeyPatch
) -> None:
    # DNS rebinding: a second lookup at connect time could answer with an internal address.
    looked_up: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def recording_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        looked_up.append(str(host))
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", recording_getaddrinfo)
    fetch_article_page(f"http://news.example:{server.port}/article", LOCAL_NEWS, resolve=dns)
    assert "127.0.0.1" in looked_up  # the recorder does see the connection's own lookups
    assert "news.example" not in looked_up


@pytest.mark.usefixtures("trusting_test_ca")
def test_https_connects_to_the_address_but_verifies_the_name(
    tls_server: Server, dns: FakeDns, sni_seen: list[str | None]
) -> None:
    # The certificate names news.example and no IP address: verifying it against the pinned 127.0.0.1
    # would fail, so success means SNI and verification used the name.
    page = fetch_article_page(f"https://news.example:{tls_server.port}/article", LOCAL_NEWS, resolve=dns)
    assert page.title == HEADLINE
    assert sni_seen[-1] == "news.example"
    assert tls_server.seen[-1] == ("/article", f"news.example:{tls_server.port}")


@pytest.mark.usefixtures("trusting_test_ca")
def test_https_refuses_a_certificate_for_another_name(tls_server: Server, dns: FakeDns) -> None:
    other = policy("evil.example", allow_private=True)
    refused = refusal(f"https://evil.example:{tls_server.port}/article", other, dns)
    assert refused.code == "connection_failed"
    assert "certificate" in refused.message.lower()


def test_the_charset_in_the_pages_meta_tag_decodes_it(server: Server, dns: FakeDns) -> None:
    page = fetch_article_page(f"http://news.example:{server.port}/article-1256", LOCAL_NEWS, resolve=dns)
    assert page.title == HEADLINE
    assert page.text is not None and PARAGRAPHS[2] in page.text


def test_a_gzipped_body_is_read_although_identity_was_asked_for(server: Server, dns: FakeDns) -> None:
    page = fetch_article_page(f"http://news.example:{server.port}/gzip-article", LOCAL_NEWS, resolve=dns)
    assert page.text is not None and PARAGRAPHS[0] in page.text


def test_a_page_with_neither_title_nor_text_is_no_content(server: Server, dns: FakeDns) -> None:
    assert refusal(f"http://news.example:{server.port}/empty", LOCAL_NEWS, dns).code == "no_content"


def test_success_is_logged_at_info_without_the_page(
    server: Server, dns: FakeDns, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="raqib.remote.pages"):
        fetch_article_page(f"http://news.example:{server.port}/article", LOCAL_NEWS, resolve=dns)
    infos = [r for r in caplog.records if r.name == "raqib.remote.pages" and r.levelno == logging.INFO]
    assert len(infos) == 1
    assert "news.example" in infos[0].getMessage() and "bytes" in infos[0].getMessage()
    assert not any(HEADLINE in r.getMessage() or PARAGRAPHS[0][:30] in r.getMessage() for r in caplog.records)


def test_trafilatura_is_not_imported_with_the_module() -> None:
    check = "import sys, serving.remote.pages; print('trafilatura' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# --- addresses ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "0.0.0.0",
        "::",
        "224.0.0.1",
        "255.255.255.255",
        "240.0.0.1",
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "2002:a00:1::",  # 6to4 of 10.0.0.1
        "not an address",
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not is_public_address(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "2001:4860:4860::8888", "93.184.216.34", "::ffff:8.8.8.8"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert is_public_address(address)


def test_a_host_resolving_to_loopback_is_refused_unless_private_is_allowed(
    server: Server, dns: FakeDns
) -> None:
    before = len(server.seen)
    refused = refusal(f"http://news.example:{server.port}/article", policy("news.example"), dns)
    assert refused.code == "address_not_allowed"
    assert "news.example" in refused.message and "127.0.0.1" in refused.message
    assert len(server.seen) == before


@pytest.mark.parametrize("host", ["intranet.example", "meta.example", "mixed.example"])
def test_hosts_resolving_to_internal_addresses_are_refused(host: str, dns: FakeDns) -> None:
    # mixed.example has one public and one private answer: one bad answer is enough.
    assert refusal(f"http://{host}/article", policy(host), dns).code == "address_not_allowed"


def test_a_resolver_answer_that_is_not_an_address_is_unresolvable(dns: FakeDns) -> None:
    assert refusal("http://junk.example/", policy("junk.example"), dns).code == "unresolvable"


def test_an_unknown_name_is_unresolvable(dns: FakeDns) -> None:
    refused = refusal("http://nowhere.example/", policy("nowhere.example"), dns)
    assert refused.code == "unresolvable" and "nowhere.example" in refused.message


@pytest.mark.parametrize(("host", "url_host"), [("127.0.0.1", "127.0.0.1"), ("::1", "[::1]")])
def test_literal_loopback_addresses_are_refused(
    server: Server, dns: FakeDns, host: str, url_host: str
) -> None:
    refused = refusal(f"http://{url_host}:{server.port}/article", policy(host), dns)
    assert refused.code == "address_not_allowed"
    assert dns.asked == []  # a literal address is checked as it is, never resolved


def test_a_literal_address_is_fetched_when_listed_and_private_is_allowed(
    server: Server, dns: FakeDns
) -> None:
    page = fetch_article_page(
        f"http://127.0.0.1:{server.port}/article", policy("127.0.0.1", allow_private=True), resolve=dns
    )
    assert page.title == HEADLINE and dns.asked == []


def test_the_system_resolver_returns_addresses() -> None:
    assert pages.system_resolve("127.0.0.1", 80) == ["127.0.0.1"]


# --- the allow-list ----------------------------------------------------------------------------------


def test_a_host_off_the_list_is_refused_before_anything_is_sent(
    server: Server, dns: FakeDns, caplog: pytest.LogCaptureFixture
) -> None:
    before = len(server.seen)
    with caplog.at_level(logging.WARNING, logger="raqib.remote.pages"):
        refused = refusal(f"http://evil.example:{server.port}/article", LOCAL_NEWS, dns)
    assert refused.code == "host_not_allowed" and "evil.example" in refused.message
    assert len(server.seen) == before
    assert dns.asked == []
    warnings = [r for r in caplog.records if r.name == "raqib.remote.pages" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "host_not_allowed" in warnings[0].getMessage()


def test_an_empty_allow_list_refuses_everything(server: Server, dns: FakeDns) -> None:
    for url in (f"http://news.example:{server.port}/article", f"http://127.0.0.1:{server.port}/article"):
        assert refusal(url, PagePolicy(allow_private=True), dns).code == "host_not_allowed"


def test_a_wildcard_allows_subdomains_only(server: Server, dns: FakeDns) -> None:
    wildcard = policy("*.example.com", allow_private=True)
    page = fetch_article_page(f"http://a.example.com:{server.port}/article", wildcard, resolve=dns)
    assert page.title == HEADLINE
    for host in ("example.com", "badexample.com"):
        assert refusal(f"http://{host}:{server.port}/article", wildcard, dns).code == "host_not_allowed"
    assert wildcard.allows_host("deep.a.example.com")
    assert not wildcard.allows_host("example.com.evil.example")


def test_allow_list_entries_are_normalised_and_checked() -> None:
    assert policy("News.Example.", "[::1]", "*.Example.COM").allowed_hosts == (
        "news.example",
        "::1",
        "*.example.com",
    )
    assert policy("صحيفة.example").allowed_hosts[0].startswith("xn--")
    for bad in ("not a host", "*.10.0.0.1", "http://news.example/"):
        with pytest.raises(ValidationError):
            policy(bad)
    with pytest.raises(ValidationError):
        PagePolicy(allowed_hosts=("news.example",), follow=True)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        policy("news.example", timeout_s=0)


# --- URLs --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("ftp://news.example/article", "scheme_not_allowed"),
        ("file:///etc/passwd", "scheme_not_allowed"),
        ("gopher://news.example:70/", "scheme_not_allowed"),
        ("javascript:alert(1)", "scheme_not_allowed"),
        ("http://", "invalid_url"),
        ("http:/news.example/article", "invalid_url"),
        ("//news.example/article", "invalid_url"),
        ("not a url at all", "invalid_url"),
        ("", "invalid_url"),
        ("http://news.example\n/article", "invalid_url"),
        ("http://user:secret@news.example/article", "invalid_url"),
        ("http://news.example:99999/article", "invalid_url"),
        ("http://127.1/", "invalid_url"),  # shorthand IPv4, which a resolver would turn into loopback
        ("http://news example/", "invalid_url"),
    ],
)
def test_urls_that_are_not_plain_http_are_refused(url: str, code: str, dns: FakeDns) -> None:
    refused = refusal(url, LOCAL_NEWS, dns)
    assert refused.code == code
    assert "secret" not in refused.message
    assert dns.asked == []


# --- redirects ---------------------------------------------------------------------------------------


def test_a_relative_redirect_is_followed(server: Server, dns: FakeDns) -> None:
    page = fetch_article_page(f"http://news.example:{server.port}/redirect-relative", LOCAL_NEWS, resolve=dns)
    assert page.url == f"http://news.example:{server.port}/article" and page.title == HEADLINE
    assert len(dns.asked) == 2  # every hop is checked again, resolution included


def test_a_redirect_to_a_host_off_the_list_is_refused(server: Server, dns: FakeDns) -> None:
    refused = refusal(f"http://news.example:{server.port}/redirect-offlist", LOCAL_NEWS, dns)
    assert refused.code == "host_not_allowed" and "evil.example" in refused.message
    assert "/x" not in server.paths()


def test_a_redirect_to_a_literal_loopback_address_needs_it_listed(server: Server, dns: FakeDns) -> None:
    url = f"http://news.example:{server.port}/redirect-loopback"
    assert refusal(url, LOCAL_NEWS, dns).code == "host_not_allowed"
    both = policy("news.example", "127.0.0.1", allow_private=True)
    assert fetch_article_page(url, both, resolve=dns).url == f"http://127.0.0.1:{server.port}/article"


def test_a_redirect_loop_stops_after_max_redirects(server: Server, dns: FakeDns) -> None:
    before = server.paths().count("/redirect-loop")
    refused = refusal(f"http://news.example:{server.port}/redirect-loop", LOCAL_NEWS, dns)
    assert refused.code == "too_many_redirects"
    assert server.paths().count("/redirect-loop") - before == LOCAL_NEWS.max_redirects + 1


def test_no_redirect_is_followed_when_none_are_allowed(server: Server, dns: FakeDns) -> None:
    strict = policy("news.example", allow_private=True, max_redirects=0)
    url = f"http://news.example:{server.port}/redirect-relative"
    assert refusal(url, strict, dns).code == "too_many_redirects"


def test_a_redirect_without_location_is_an_http_error(server: Server, dns: FakeDns) -> None:
    assert refusal(f"http://news.example:{server.port}/redirect-bare", LOCAL_NEWS, dns).code == "http_error"


# --- size, time, type --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/big", "/big-chunked", "/gzip-bomb"])
def test_a_page_over_max_bytes_is_too_large(server: Server, dns: FakeDns, path: str) -> None:
    small = policy("news.example", allow_private=True, max_bytes=50_000)
    refused = refusal(f"http://news.example:{server.port}{path}", small, dns)
    assert refused.code == "too_large"


def test_a_server_dripping_bytes_is_cut_off_at_the_deadline(server: Server, dns: FakeDns) -> None:
    quick = policy("news.example", allow_private=True, timeout_s=1.0)
    started = time.monotonic()
    refused = refusal(f"http://news.example:{server.port}/slow", quick, dns)
    assert refused.code == "timeout"
    assert time.monotonic() - started < 3.0


def test_a_server_that_stops_sending_times_out(server: Server, dns: FakeDns) -> None:
    quick = policy("news.example", allow_private=True, timeout_s=0.5)
    started = time.monotonic()
    assert refusal(f"http://news.example:{server.port}/stall", quick, dns).code == "timeout"
    assert time.monotonic() - started < 2.0


def test_a_server_that_goes_quiet_mid_body_is_cut_off_at_the_deadline(server: Server, dns: FakeDns) -> None:
    # The read timeout restarts with every chunk: without the deadline's own cut-off, this fetch would
    # run until about 0.8 s + 1.0 s.
    quick = policy("news.example", allow_private=True, timeout_s=1.0)
    started = time.monotonic()
    assert refusal(f"http://news.example:{server.port}/stall-midway", quick, dns).code == "timeout"
    assert time.monotonic() - started < 1.5


def test_a_resolver_that_hangs_is_given_up_at_the_deadline() -> None:
    release = threading.Event()

    def hanging(host: str, port: int) -> list[str]:
        release.wait(5)
        return ["93.184.216.34"]

    started = time.monotonic()
    try:
        refused = refusal("http://news.example/article", policy("news.example", timeout_s=0.3), hanging)
    finally:
        release.set()
    assert refused.code == "timeout"
    assert time.monotonic() - started < 2.0


def test_json_is_not_html(server: Server, dns: FakeDns) -> None:
    assert refusal(f"http://news.example:{server.port}/json", LOCAL_NEWS, dns).code == "not_html"


def test_a_404_is_an_http_error(server: Server, dns: FakeDns, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="raqib.remote.pages"):
        refused = refusal(f"http://news.example:{server.port}/missing", LOCAL_NEWS, dns)
    assert refused.code == "http_error" and "404" in refused.message
    assert any("http_error" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_a_closed_port_is_a_connection_failure(dns: FakeDns) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nobody listens: bound, never listen()ed
        assert refusal(f"http://news.example:{port}/article", LOCAL_NEWS, dns).code == "connection_failed"


def test_an_unexpected_error_becomes_a_connection_failure(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("surprise")

    monkeypatch.setattr(pages, "_extract", broken)
    refused = refusal(f"http://news.example:{server.port}/article", LOCAL_NEWS, FakeDns())
    assert refused.code == "connection_failed" and "surprise" in refused.message


# --- the exception -----------------------------------------------------------------------------------


def test_page_refused_reads_as_code_and_message_and_pickles() -> None:
    refused = PageRefused("too_large", "news.example/x is larger than 10 bytes")
    assert str(refused) == "too_large: news.example/x is larger than 10 bytes"
    copy = pickle.loads(pickle.dumps(refused))
    assert (copy.code, copy.message) == (refused.code, refused.message)
