"""Both drivers delivering to Debian's real Postfix on 127.0.0.1.

Postfix's own log proves the result: ``status=sent`` for the recipient, and
the smtpd TLS line for the session the message came in on.
"""

from __future__ import annotations

import asyncio

import pytest

from postfix_support import receiving_postfix, requires_postfix_server
from smtp_servers import DOMAIN, MX_HOST, CertSet, decision_from_toml, make_cert_set
from tlspolicy.adapters import StartTlsFailed, check_reuse
from tlspolicy.adapters import aiosmtplib as async_driver
from tlspolicy.adapters import smtplib as sync_driver
from tlspolicy.reuse import VerifiedAs

pytestmark = [pytest.mark.slow, pytest.mark.network, pytest.mark.postfix, requires_postfix_server,
              pytest.mark.timeout(120)]

MESSAGE = b"Subject: tlspolicy to postfix\r\n\r\nhello postfix\r\n"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertSet:
    return make_cert_set(tmp_path_factory.mktemp("certs"))


def test_verified_tls_to_postfix_both_drivers(certs: CertSet) -> None:
    valid = certs.files["valid"]
    decision = decision_from_toml(tls="required", verify="host", ca=certs.ca_path)
    with receiving_postfix(cert=valid.chain_path, key=valid.key_path, hostname=MX_HOST) as pf:
        result = sync_driver.starttls(decision, pf.host, pf.port, local_hostname="client.test",
                                      timeout=15)
        assert result.record.verified is VerifiedAs.HOST
        result.smtp.sendmail("s@client.test", [f"sync@{MX_HOST}"], MESSAGE)
        result.smtp.quit()
        delivery = pf.wait_for_delivery(f"sync@{MX_HOST}")
        assert delivery.status == "sent" and delivery.tls is not None
        assert delivery.tls.protocol == result.record.tls_version

        async def run() -> str | None:
            r = await async_driver.starttls(decision, pf.host, pf.port,
                                            local_hostname="client.test", timeout=15)
            assert r.record.verified is VerifiedAs.HOST
            await r.smtp.sendmail("s@client.test", [f"async@{MX_HOST}"], MESSAGE)
            await r.smtp.quit()
            return r.record.tls_version

        version = asyncio.run(asyncio.wait_for(run(), 60))
        delivery = pf.wait_for_delivery(f"async@{MX_HOST}")
        assert delivery.status == "sent" and delivery.tls is not None
        assert delivery.tls.protocol == version


def test_postfix_with_wrong_name_fails_under_host(certs: CertSet) -> None:
    wrong = certs.files["wrong-name"]
    decision = decision_from_toml(tls="ifavailable", verify="host", ca=certs.ca_path)
    with receiving_postfix(cert=wrong.chain_path, key=wrong.key_path, hostname=MX_HOST) as pf:
        with pytest.raises(StartTlsFailed) as info:
            sync_driver.starttls(decision, pf.host, pf.port, timeout=15)
        assert str(info.value.status) == "451 4.7.5 SSL certificate subject does not match host"
        assert pf.deliveries() == []


def test_postfix_without_tls_skips_under_ifavailable(certs: CertSet) -> None:
    decision = decision_from_toml(tls="ifavailable", verify="host", ca=certs.ca_path)
    with receiving_postfix(security_level="none", hostname=MX_HOST) as pf:
        result = sync_driver.starttls(decision, pf.host, pf.port, timeout=15)
        assert not result.record.encrypted and result.record.starttls_advertised is False
        assert check_reuse(decision, result.record).permitted
        result.smtp.sendmail("s@client.test", [f"plain@{DOMAIN}"], MESSAGE)
        result.smtp.quit()
        delivery = pf.wait_for_delivery(f"plain@{DOMAIN}")
        assert delivery.tls is None
