from exconn.model import TlsAuthLevel
from exconn.rules.emulation import Fidelity, emulate, tls_domain_covers_pattern


def test_single_host_is_exact() -> None:
    e = emulate(["mx1.partner.test"])
    assert (e.tls_auth_level, e.tls_domain, e.fidelity) == (
        TlsAuthLevel.DOMAIN_VALIDATION,
        "mx1.partner.test",
        Fidelity.EXACT,
    )


def test_hosts_under_one_domain_are_looser() -> None:
    e = emulate(["mx1.mail.partner.com", "mx2.mail.partner.com"])
    assert e.tls_domain == "*.mail.partner.com"
    assert e.fidelity is Fidelity.LOOSER
    assert all(
        tls_domain_covers_pattern(e.tls_domain, p) for p in ["mx1.mail.partner.com", "mx2.mail.partner.com"]
    )


def test_exchange_online_pattern() -> None:
    e = emulate(["*.mail.protection.outlook.com"])
    assert e.tls_domain == "*.mail.protection.outlook.com"
    assert e.fidelity is Fidelity.LOOSER


def test_common_parent_never_climbs_above_registrable_domain() -> None:
    e = emulate(["mx.a.co.uk", "mx.b.co.uk"])
    assert e.tls_domain is None
    assert e.tls_auth_level is TlsAuthLevel.CERTIFICATE_VALIDATION
    assert e.fidelity is Fidelity.NO_NAME_CHECK


def test_patterns_across_domains_fall_back_to_certificate_validation() -> None:
    e = emulate(["mx.partner.com", "*.mail.protection.outlook.com"])
    assert e.tls_domain is None
    assert e.fidelity is Fidelity.NO_NAME_CHECK
    assert "span several registrable domains" in e.explanation


def test_empty_policy() -> None:
    assert emulate([]).fidelity is Fidelity.NO_NAME_CHECK
