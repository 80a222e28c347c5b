"""Fetching an MTA-STS policy over HTTPS (RFC 8461 section 3.3), with httpx.

``https://mta-sts.<domain>/.well-known/mta-sts.txt``, connected to an address
our own resolver gave, with SNI and Host the policy host name and Web PKI
validation of that name; HTTP 200 only, no redirects, media type
``text/plain`` (compared case-insensitively, parameters ignored), at most
64 KiB, and a deadline on the whole exchange so a slow server cannot hold us.
Every outcome maps to one :class:`~tlspolicy.policies.mtasts.FetchOutcome` and so to its TLS-RPT
result type.
"""

from __future__ import annotations

import asyncio
import importlib.util
import ipaddress
import logging
import ssl
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

import attrs

from ..errors import MissingDependencyError
from ..policies.mtasts import FetchOutcome, MtaStsPolicy, MtaStsPolicyError, parse_policy

if TYPE_CHECKING:
    import httpx

# httpx (about 4 MiB of resident memory once imported) is needed only at the first policy
# fetch, which may never come (a server answering from its cache under a resolver outage):
# it is imported then, in the functions below.  Its absence still fails at start.
def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a finder refusing it; a module set to None
        return False


if not _installed("httpx"):  # pragma: no cover - exercised only without the extra
    raise MissingDependencyError.for_extra("discovery", "httpx", "discovery")

__all__ = ["MAX_POLICY_BYTES", "PolicyFetch", "fetch_policy", "make_client", "make_ssl_context"]

_log = logging.getLogger("tlspolicy.discovery")

#: Largest policy body read (RFC 8461 section 3.3: senders SHOULD limit to 64 KiB).
MAX_POLICY_BYTES: Final = 64 * 1024
_PATH: Final = "/.well-known/mta-sts.txt"


@attrs.frozen(slots=True)
class PolicyFetch:
    """What one fetch gave: its outcome, the policy on success, and why otherwise."""

    outcome: FetchOutcome
    policy: MtaStsPolicy | None = None
    detail: str = ""
    address: str | None = None


def make_ssl_context(ca_file: str | None = None) -> ssl.SSLContext:
    """A client context validating Web PKI names: the system store, or ``ca_file``
    (a bundle for tests; real policy hosts use the system store)."""
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def make_client(context: ssl.SSLContext) -> httpx.AsyncClient:
    """One client for every policy fetch of a process, over one ``context``.

    It keeps no connection alive: a connection to one address must never carry the
    request of another policy host (its SNI differs), so every fetch opens its own and
    closes it.  What is shared is the client itself (its transport, pool and context),
    built once instead of once per fetch.  Close it with ``await client.aclose()``.
    """
    import httpx  # the discovery extra, imported at the first fetch (see above)

    return httpx.AsyncClient(
        verify=context, follow_redirects=False, trust_env=False, http2=False,
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=0))


def _certificate_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        current = current.__cause__ or current.__context__
    return None


def _media_type_ok(value: str | None) -> bool:
    if value is None:
        return False
    return value.split(";", 1)[0].strip().lower() == "text/plain"


async def _fetch_one(host: str, address: str, *, port: int, context: ssl.SSLContext,
                     timeout: float, client: httpx.AsyncClient | None) -> PolicyFetch:
    if client is None:
        # No shared client: one for this fetch alone.
        async with make_client(context) as own:
            return await _fetch_one(host, address, port=port, context=context,
                                    timeout=timeout, client=own)
    import httpx  # the discovery extra, imported at the first fetch (see above)

    ip = ipaddress.ip_address(address)
    netloc = f"[{ip}]" if ip.version == 6 else str(ip)
    url = f"https://{netloc}:{port}{_PATH}"
    host_header = host if port == 443 else f"{host}:{port}"
    # No keep-alive (make_client) and "Connection: close": a pooled connection to one
    # address must never carry the request of another policy host (its SNI differs).
    request = client.build_request(
        "GET", url, headers={"Host": host_header, "Accept-Encoding": "identity",
                             "Connection": "close", "User-Agent": "tlspolicy"},
        extensions={"sni_hostname": host}, timeout=httpx.Timeout(timeout))
    response = await client.send(request, stream=True)
    try:
        if response.status_code != 200:
            where = response.headers.get("location")
            return PolicyFetch(FetchOutcome.FETCH_ERROR,
                               detail=f"HTTP {response.status_code}" + (
                                   f" (redirect to {where[:200]!r} not followed)"
                                   if where else ""), address=address)
        content_type = response.headers.get("content-type")
        if not _media_type_ok(content_type):
            return PolicyFetch(FetchOutcome.INVALID,
                               detail=f"media type {str(content_type)[:100]!r} is not "
                               "text/plain", address=address)
        body = bytearray()
        async for chunk in response.aiter_raw():
            body += chunk
            if len(body) > MAX_POLICY_BYTES:
                return PolicyFetch(FetchOutcome.INVALID,
                                   detail=f"policy larger than {MAX_POLICY_BYTES} bytes",
                                   address=address)
    finally:
        await response.aclose()
    try:
        policy = parse_policy(bytes(body))
    except MtaStsPolicyError as exc:
        return PolicyFetch(FetchOutcome.INVALID, detail=str(exc), address=address)
    return PolicyFetch(FetchOutcome.OK, policy, "fetched", address)


async def fetch_policy(domain: str, addresses: Sequence[str], *, port: int = 443,
                       context: ssl.SSLContext, timeout: float = 10.0,
                       client: httpx.AsyncClient | None = None) -> PolicyFetch:
    """Fetch and parse the policy of ``domain`` from the first address that answers.

    ``timeout`` bounds the whole fetch, however slowly a server sends.  A
    certificate that does not validate is ``WEBPKI_INVALID`` (no other address
    is tried: the name is what failed); no address, a connection or HTTP
    failure, a non-200 status (redirects included) or the deadline is
    ``FETCH_ERROR``; a wrong media type, an oversized body or a document that
    does not parse is ``INVALID``.  Never raises for what the server does.
    ``client`` (from :func:`make_client` over the same ``context``) is shared by the
    caller's fetches; without it, the fetch makes its own.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout  # before the first fetch's import, which blocks
    import httpx  # the discovery extra, imported at the first fetch (see above)

    host = f"mta-sts.{domain}"
    if not addresses:
        return PolicyFetch(FetchOutcome.FETCH_ERROR, detail=f"{host} has no address")
    tried = list(dict.fromkeys(addresses))[:4]

    async def attempt(address: str) -> tuple[bool, PolicyFetch]:
        # Whether the address's result decides the fetch (an HTTP answer, or a
        # certificate that does not validate: the name is what failed), and the result.
        try:
            # httpx's own timeouts end at the deadline too: ending the attempt from
            # outside in the TLS handshake would leave its socket to the collector.
            return True, await _fetch_one(host, address, port=port, context=context,
                                          timeout=max(deadline - loop.time(), 0.001),
                                          client=client)
        except (httpx.HTTPError, OSError, ssl.SSLError, ValueError) as exc:
            bad_certificate = _certificate_error(exc)
            if bad_certificate is not None:
                return True, PolicyFetch(
                    FetchOutcome.WEBPKI_INVALID, address=address,
                    detail=f"{host}: certificate not valid: "
                           f"{bad_certificate.verify_message or bad_certificate}")
            return False, _failed_at(host, address, exc)
        except Exception as exc:  # a fault of a library's: this address fails, not the fetch
            _log.exception("MTA-STS fetch from %s at %s failed unexpectedly", host, address)
            return False, _failed_at(host, address, exc)

    # One deadline for the whole fetch: four slow addresses tried one after another would
    # take four times ``timeout``, past the single-flight lock that holds other processes
    # back.  The next address is started when the ones before have had an even share of
    # what is left (or at once when one fails), without stopping them, so that an address
    # that hangs leaves time for the next and a slow one that works may still finish.
    # What decides is what one after another would have given: a policy at once from any
    # address, else the answer of the first address whose earlier ones all failed.
    results: dict[int, tuple[bool, PolicyFetch]] = {}
    running: dict[asyncio.Task[tuple[bool, PolicyFetch]], int] = {}
    try:
        while (left := deadline - loop.time()) > 0 and (len(results) + len(running)
                                                         < len(tried) or running):
            started = len(results) + len(running)
            if started < len(tried):
                running[asyncio.ensure_future(attempt(tried[started]))] = started
                left /= len(tried) - started
            done, _ = await asyncio.wait(running, timeout=left,
                                         return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                index = running.pop(task)
                if task.cancelled():
                    # Cancelled from elsewhere: its address failed, not the fetch.
                    results[index] = (False, _failed_at(host, tried[index],
                                                        asyncio.CancelledError()))
                else:
                    results[index] = task.result()
            decided = _decided(results, len(tried), final=False)
            if decided is not None:
                return decided[1]
        # The deadline: what still runs had no complete answer, and counts as failed.
        decided = _decided(results, len(tried), final=True)
        late = [tried[i] for i in sorted(running.values())]
        if decided is not None and (decided[0] or not late):
            return decided[1]
        return PolicyFetch(FetchOutcome.FETCH_ERROR, address=late[0] if late else None,
                           detail=f"{host} at {', '.join(late)}: no complete answer within "
                                  f"{timeout:g} s" if late else f"{host}: nothing tried")
    finally:
        for task in running:
            task.cancel()
        cancelled = False
        while running:
            # Every attempt ends before the fetch does, however often it is cancelled.
            try:
                await asyncio.shield(asyncio.wait(running))
            except asyncio.CancelledError:
                cancelled = True
            running = {task: i for task, i in running.items() if not task.done()}
        if cancelled:
            raise asyncio.CancelledError


def _failed_at(host: str, address: str, exc: BaseException) -> PolicyFetch:
    return PolicyFetch(FetchOutcome.FETCH_ERROR, address=address,
                       detail=f"{host} at {address}: {type(exc).__name__}: {exc}"[:300])


def _decided(results: dict[int, tuple[bool, PolicyFetch]], count: int, *,
             final: bool) -> tuple[bool, PolicyFetch] | None:
    """What the results of ``count`` addresses decide, as trying them one after another
    would, and whether it is a deciding answer: a policy from any address at once; else
    the deciding answer of the first address whose earlier ones all failed; else, when
    every address failed, the last failure; else ``None`` (an earlier address may still
    answer).  With ``final``, an address without a result failed (the deadline passed)."""
    for index in sorted(results):
        if results[index][1].outcome is FetchOutcome.OK:
            return results[index]
    last: tuple[bool, PolicyFetch] | None = None
    for index in range(count):
        if index not in results:
            if not final:
                return None
            continue
        if results[index][0]:
            return results[index]
        last = results[index]
    return last
