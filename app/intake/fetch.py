"""Fetch an image from a URL a client gave us, without being turned against the host.

Only http and https. The host's addresses are checked where the connection is
made: a resolver that refuses non-public addresses sits inside the connector,
so the address that was checked is the address that is dialled (no DNS
rebinding in between), and an IP written into the URL is checked before any
request starts. Redirects are followed by hand, at most three, each checked
again. Timeouts and a byte cap bound what one URL can cost.
"""

import asyncio
import ipaddress
import socket

import aiohttp
from yarl import URL

from app.errors import ApiError
from app.limits.budget import Reservation
from app.settings import Settings

MAX_REDIRECTS = 3
REDIRECT_STATUSES = {301, 302, 303, 307, 308}
USER_AGENT = "Pounce/1.0 (image classifier)"


def _refused(host: str) -> ApiError:
    return ApiError(
        "url_not_allowed",
        f"The URL's host {host} is a loopback, private, link-local or otherwise "
        "non-public address, which this server does not fetch.",
    )


# IPv6 prefixes whose last 32 bits are an IPv4 address that a gateway or the host
# itself reaches: NAT64's well-known prefix (RFC 6052), SIIT's IPv4-translated
# addresses (RFC 2765) and the deprecated IPv4-compatible ones (RFC 4291), beside the
# mapped, 6to4 and Teredo forms. NAT64's local-use prefix (RFC 8215) embeds an address
# of the operator's choosing wherever it likes: never public.
EMBEDDING = [ipaddress.IPv6Network(n) for n in ("64:ff9b::/96", "::ffff:0:0:0/96", "::/96")]
LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    embedded = ip.ipv4_mapped or ip.sixtofour
    if embedded is not None:
        return embedded
    if ip.teredo:
        return ip.teredo[1]
    if any(ip in network for network in EMBEDDING) and int(ip) > 1:  # not :: or ::1
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public(address: str) -> bool:
    """True only for globally routable unicast addresses, and for an IPv6 address that
    carries an IPv4 one, only when that one is too."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in LOCAL_NAT64:
            return False
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return is_public(str(embedded))
    return ip.is_global and not ip.is_multicast


def _literal_ip(host: str) -> str | None:
    """The address a host names by itself, in any spelling, or None for a name.

    inet_aton reads the legacy IPv4 forms a resolver would also accept
    (2130706433, 0x7f.1, 0177.0.0.1, 127.1); it parses text and sends nothing.
    """
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        pass
    try:
        return socket.inet_ntoa(socket.inet_aton(host))
    except OSError:
        return None


class PublicOnlyResolver(aiohttp.ThreadedResolver):
    """Resolves names, then refuses the lot if any address is not public."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[aiohttp.abc.ResolveResult]:
        results = await super().resolve(host, port, family)
        if not all(is_public(r["host"]) for r in results):
            raise _refused(host)
        return results


def check_url(text: str, allow_private: bool) -> URL:
    """Parse and vet a URL before anything is sent."""
    try:
        url = URL(text.strip())
    except (ValueError, TypeError):
        raise ApiError("invalid_url", "The URL is not valid.") from None
    if url.scheme not in ("http", "https"):
        raise ApiError("invalid_url", "Only http:// and https:// URLs can be fetched.")
    if not url.host:
        raise ApiError("invalid_url", "The URL has no host.")
    labels = url.host.rstrip(".").split(".")
    if len(url.host) > 253 or not all(0 < len(label) <= 63 for label in labels):
        raise ApiError("invalid_url", "The URL's host is not a valid name.")
    literal = _literal_ip(url.host)
    if literal is not None and not allow_private and not is_public(literal):
        raise _refused(url.host)
    return url


def _redirected(url: URL, location: str) -> str:
    """Where a redirect points, resolved against the URL that sent it."""
    try:
        return str(url.join(URL(location)))
    except (ValueError, TypeError):
        raise ApiError(
            "invalid_url", f"The URL redirected to {location[:100]!r}, which is not a URL."
        ) from None


class Fetcher:
    """One shared aiohttp session for the app's lifetime."""

    def __init__(self, *, max_bytes: int, timeout_s: float, allow_private: bool) -> None:
        self.max_bytes = max_bytes
        self.allow_private = allow_private
        self._timeout = aiohttp.ClientTimeout(
            total=timeout_s, sock_connect=min(5.0, timeout_s), sock_read=timeout_s
        )
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> "Fetcher":
        return cls(
            max_bytes=settings.max_upload_bytes,
            timeout_s=settings.url_timeout_s,
            allow_private=settings.allow_private_urls,
        )

    async def start(self) -> None:
        resolver = aiohttp.ThreadedResolver() if self.allow_private else PublicOnlyResolver()
        connector = aiohttp.TCPConnector(resolver=resolver, limit=32, ttl_dns_cache=30)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            headers={"User-Agent": USER_AGENT, "Accept": "image/*"},
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def fetch(self, text: str, reservation: Reservation | None = None) -> bytes:
        """The body of the image at `text`, or an ApiError saying what went wrong. Its
        bytes count against `reservation` (the request's share of the upload budget)
        as they arrive."""
        assert self._session is not None, "Fetcher.start() was not awaited"
        url = check_url(text, self.allow_private)
        try:
            async with asyncio.timeout(self._timeout.total):
                for _ in range(MAX_REDIRECTS + 1):
                    async with self._session.get(url, allow_redirects=False) as response:
                        location = response.headers.get("Location")
                        if response.status in REDIRECT_STATUSES and location:
                            url = check_url(_redirected(url, location), self.allow_private)
                            continue
                        return await self._read(response, reservation)
                raise ApiError(
                    "too_many_redirects",
                    f"The URL redirected more than {MAX_REDIRECTS} times.",
                )
        except TimeoutError:
            raise ApiError("url_timeout", "The URL took too long to answer.") from None
        except aiohttp.InvalidURL:
            raise ApiError("invalid_url", "The URL is not valid.") from None
        except aiohttp.ClientConnectorError as exc:
            raise ApiError(
                "url_unreachable",
                f"Could not connect to {url.host}: {exc.os_error}",
            ) from None
        except aiohttp.ClientError as exc:
            raise ApiError("url_fetch_failed", f"Fetching the URL failed: {exc}") from None

    async def _read(
        self, response: aiohttp.ClientResponse, reservation: Reservation | None
    ) -> bytes:
        if response.status >= 400:
            status = 502 if response.status >= 500 else 422
            raise ApiError(
                "url_http_error",
                f"The URL answered {response.status} {response.reason or ''}".rstrip() + ".",
                status=status,
            )
        kind = response.content_type
        if not (kind.startswith("image/") or kind in ("application/octet-stream", "")):
            raise ApiError("url_not_image", f"The URL points to {kind}, not an image.")
        if (response.content_length or 0) > self.max_bytes:
            raise self._too_big()
        body = bytearray()
        async for chunk in response.content.iter_chunked(64 * 1024):
            body += chunk
            if len(body) > self.max_bytes:
                raise self._too_big()
            if reservation is not None:
                reservation.add(len(chunk))
        return bytes(body)

    def _too_big(self) -> ApiError:
        return ApiError(
            "payload_too_large",
            f"The image at the URL is larger than {self.max_bytes / 2**20:g} MB.",
        )
