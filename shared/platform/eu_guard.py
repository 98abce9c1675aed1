"""The EU guard (policy 6.3): every endpoint the suite is configured to call stays in the EU.

Scaleway endpoints must name an EU region; the database must be a Scaleway EU managed database, a
Private Network name or address (loopback and dotless names only outside production); the
subprocessors' APIs must be their own hosts. Settings' validators call these checks at start-up.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import ParseResult, parse_qsl, unquote, urlparse

EU_REGIONS = ("fr-par", "nl-ams", "pl-waw")
# Hosts of the subprocessors named in policy 6.2 (besides Scaleway, checked by region).
RESEND_HOSTS = ("api.resend.com",)
STRIPE_HOSTS = ("api.stripe.com", "files.stripe.com", "connect.stripe.com")


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host(url: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    return parsed.hostname


def check_scaleway_endpoint(url: str | None, service: str) -> str | None:
    """S3 and SQS endpoints must be Scaleway EU regions, or loopback (local, tests)."""
    if url is None:
        return None
    host = _host(url)
    if is_loopback(host):
        return url
    allowed = {
        "s3": [f"s3.{r}.scw.cloud" for r in EU_REGIONS],
        "sqs": [f"sqs.mnq.{r}.scaleway.com" for r in EU_REGIONS],
    }[service]
    if host in allowed or any(host.endswith("." + a) for a in allowed):
        return url
    raise ValueError(f"endpoint host {host!r} is outside the EU regions {EU_REGIONS} (policy 6.3)")


# PostgreSQL hosts: Scaleway Managed Database endpoints (rw-<uuid>.rdb.<region>.scw.cloud) in an EU region,
# names of a Scaleway Private Network (<resource>.<network>.internal, regional like the VPC), private
# addresses; outside production also loopback and dotless names (a local container such as `db`).
_DATABASE_DOMAINS = tuple(f".rdb.{r}.scw.cloud" for r in EU_REGIONS)
_PRIVATE_NETWORK_DOMAIN = ".internal"


_PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)


def _is_private_address(host: str) -> bool:
    """RFC 1918 / RFC 4193 addresses: a Private Network of the deployment's own (regional) VPC."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return any(address in network for network in _PRIVATE_NETWORKS if network.version == address.version)


def _database_host_is_local(host: str) -> bool:
    return is_loopback(host) or "." not in host


def _postgres_hosts(parsed: ParseResult) -> list[str]:
    """Every host a libpq URL may connect to: the netloc's (comma-separated) and `host`/`hostaddr` parameters."""
    netloc = parsed.netloc.rpartition("@")[2]
    hosts = [
        item.rpartition("]")[0] + "]" if item.startswith("[") else item.partition(":")[0] for item in netloc.split(",")
    ]
    for name, value in parse_qsl(parsed.query, keep_blank_values=True):
        if name in ("host", "hostaddr"):
            hosts += value.split(",")
    return [unquote(h).strip().strip("[]").lower() for h in hosts if h.strip()]


def is_local_postgres(url: str | None) -> bool:
    parsed = urlparse(url or "")
    return parsed.scheme.startswith("postgres") and any(_database_host_is_local(h) for h in _postgres_hosts(parsed))


def check_database_url(url: str | None) -> str | None:
    """SQLite is always fine; a PostgreSQL host must be in the EU like the S3 and SQS endpoints (policy 6.3)."""
    if url is None:
        return None
    parsed = urlparse(url)
    scheme = parsed.scheme.split("+", 1)[0]
    if scheme == "sqlite":
        return url
    if scheme not in ("postgres", "postgresql"):
        raise ValueError(f"not a PostgreSQL or SQLite URL (scheme {parsed.scheme!r})")
    if any(name == "service" for name, _ in parse_qsl(parsed.query)):
        raise ValueError("a PostgreSQL URL names its host, not a `service` file entry (policy 6.3 checks the host)")
    hosts = _postgres_hosts(parsed)
    if not hosts:
        raise ValueError("a PostgreSQL URL names its host (a socket path cannot be checked for policy 6.3)")
    for host in hosts:
        if _database_host_is_local(host) or _is_private_address(host):
            continue
        if host.endswith(_DATABASE_DOMAINS) or host.endswith(_PRIVATE_NETWORK_DOMAIN):
            continue
        raise ValueError(
            f"database host {host!r} is outside the EU regions {EU_REGIONS} (policy 6.3): use a Scaleway "
            "Managed Database endpoint (*.rdb.<region>.scw.cloud), a Private Network name (*.internal) or address"
        )
    return url


def check_processor_url(url: str | None, hosts: tuple[str, ...]) -> str | None:
    if url is None:
        return None
    host = _host(url)
    if is_loopback(host) or host in hosts:
        return url
    raise ValueError(f"host {host!r} is not the subprocessor's endpoint {hosts} nor loopback (policy 6.3)")
